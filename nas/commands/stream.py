"""``xnas stream ARCH VIDEO``: run a causal MoViNet on a video frame by frame, printing the running top-k.

The video is decoded with PyAV one frame at a time; every ``frame_stride``-th source frame (the
architecture's clip stride unless ``--frame-stride`` says otherwise) is resized (short side = crop),
centre-cropped, normalised like the trainer's input and fed to ``model.step`` as a one-frame chunk. Only
the model's stream state (fixed size: ``k_t - 1`` frames per temporal conv plus running sums) persists
between frames, so memory stays constant however long the video is.
"""
from __future__ import annotations

import argparse
import json
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from nas.commands.checkpoints import load_checkpoint
from nas.errors import UsageError
from nas.commands.argtypes import positive_int as _positive

__all__ = ["register", "cmd_stream", "StreamUpdate", "stream_video"]


@dataclass(frozen=True)
class StreamUpdate:
    """The prediction after one model frame.

    Attributes:
        frame: model frames seen so far (1-based).
        source_frame: index of that frame in the decoded video (0-based).
        seconds: its presentation time, if the container gives one.
        topk: ``[(class index, probability), ...]`` best first.
        state_bytes: total size of the stream state after this frame (constant while streaming).
    """

    frame: int
    source_frame: int
    seconds: float | None
    topk: list[tuple[int, float]]
    state_bytes: int


def register(subparsers: Any) -> None:
    """Add ``xnas stream`` to the CLI."""
    p = subparsers.add_parser("stream", help="run a causal MoViNet on a video frame by frame (running top-k)")
    p.add_argument("arch", help="a causal architecture (movinet-a0-stream, ..., or an ensemble of causal MoViNets) "
                                "or a document path")
    p.add_argument("video", help="a video file PyAV can decode")
    p.add_argument("--every", type=_positive, default=1, help="print the running top-k every N model frames (default 1)")
    p.add_argument("--topk", type=_positive, default=5, help="classes to print (default 5)")
    p.add_argument("--frame-stride", type=_positive, help="feed every N-th source frame (default: the architecture's)")
    p.add_argument("--size", type=_positive, help="frame crop (default: the architecture's crop)")
    p.add_argument("--checkpoint", help="model weights: a checkpoint.pt from `xnas train` or a state_dict file "
                                        "(default: freshly initialised weights, seeded by --seed)")
    p.add_argument("--labels", help="a text file with one class name per line")
    p.add_argument("--seed", type=int, default=0, help="init seed when no checkpoint is given")
    p.add_argument("--json", action="store_true", help="print one JSON object per update (JSON lines)")
    p.set_defaults(func=cmd_stream)


def _frames(path: Path, frame_stride: int) -> Iterator[tuple[int, float | None, Any]]:
    """Decoded RGB frames (index, seconds, uint8 (H, W, 3)) of every ``frame_stride``-th source frame."""
    import av

    from nas.data.video import VideoDecodeError

    try:
        container = av.open(str(path))
    except (av.FFmpegError, OSError) as err:
        raise VideoDecodeError(path, f"cannot open ({getattr(err, 'strerror', None) or err})") from err
    try:
        if not container.streams.video:
            raise VideoDecodeError(path, "no video stream")
        stream = container.streams.video[0]
        stream.codec_context.thread_count = 1
        for i, frame in enumerate(container.decode(stream)):
            if i % frame_stride == 0:
                yield i, (float(frame.time) if frame.time is not None else None), frame.to_ndarray(format="rgb24")
    except av.FFmpegError as err:
        raise VideoDecodeError(path, f"decoding failed ({getattr(err, 'strerror', None) or err})") from err
    finally:
        container.close()


def stream_video(model: Any, path: str | Path, *, size: int, frame_stride: int = 1,
                 topk: int = 5) -> Iterator[StreamUpdate]:
    """Stream ``path`` through a causal model, one frame per ``model.step``.

    Args:
        model: a built causal model with ``init_state`` / ``step`` (a causal MoViNet or an ensemble of
            them), in eval mode.
        path: the video.
        size: the square crop fed to the model (short side resized to it, then centre-cropped).
        frame_stride: feed every ``frame_stride``-th decoded frame.
        topk: classes per update.

    Yields:
        One :class:`StreamUpdate` per model frame.
    """
    import torch

    from nas.data.transforms import center_crop, normalize, resize_short_side

    state = model.init_state(1, size)
    n = 0
    with torch.inference_mode():
        for index, seconds, rgb in _frames(Path(path), frame_stride):
            clip = center_crop(resize_short_side(rgb[None], size), size)  # (1, size, size, 3)
            chunk = torch.from_numpy(normalize(clip))[None]  # (1, 3, 1, size, size)
            logits, state = model.step(chunk, state)
            n += 1
            probs = logits[0].float().softmax(-1)
            k = min(topk, probs.numel())
            values, classes = probs.topk(k)
            yield StreamUpdate(frame=n, source_frame=index, seconds=seconds,
                               topk=list(zip(classes.tolist(), values.tolist())),
                               state_bytes=int(sum(v.numel() * v.element_size() for v in state.values())))
            del rgb, clip, chunk
    if n == 0:
        from nas.data.video import VideoDecodeError

        raise VideoDecodeError(path, "no frame could be decoded")


def _load_model(args: argparse.Namespace) -> tuple[Any, Any]:
    import torch

    from nas.models import build_model
    from nas.registry import load_arch

    arch = load_arch(args.arch)
    torch.manual_seed(args.seed)
    model = build_model(arch)
    if not getattr(model, "causal", False):
        raise UsageError(f"arch: got {arch.name!r}; allowed: a causal MoViNet architecture (causal: true), "
                         "e.g. movinet-a0-stream, or an ensemble of them")
    if args.checkpoint:
        load_checkpoint(model, args.checkpoint, arch.name)
    return arch, model.eval()


def cmd_stream(args: argparse.Namespace) -> int:
    """Print the running top-k of a causal MoViNet on a video, frame by frame."""
    from nas.data.video import VideoDecodeError

    video = Path(args.video)
    if not video.is_file():
        raise UsageError(f"video: got {args.video!r}; allowed: an existing video file")
    arch, model = _load_model(args)
    names: list[str] | None = None
    if args.labels:
        try:
            names = [line.strip() for line in Path(args.labels).read_text().splitlines() if line.strip()]
        except OSError as err:
            raise UsageError(f"--labels: got {args.labels!r}; allowed: a readable text file ({err.strerror})") from None
    size = args.size or arch.clip.crop
    stride = args.frame_stride or arch.clip.frame_stride
    if not args.json:
        weights = args.checkpoint or f"random init, seed {args.seed}"
        print(f"{arch.name}: streaming {video.name} every {stride} source frame(s) at {size}² ({weights})")
    t0 = time.perf_counter()
    last = None
    try:
        for update in stream_video(model, video, size=size, frame_stride=stride, topk=args.topk):
            last = update
            if update.frame % args.every:
                continue
            _print(update, names, args.json)
    except VideoDecodeError as err:
        raise UsageError(f"video: got {args.video!r}; allowed: a decodable video ({err})") from None
    if last is not None and last.frame % args.every:
        _print(last, names, args.json)  # always report the final prediction
    if last is not None and not args.json:
        ms = 1000 * (time.perf_counter() - t0) / last.frame
        print(f"done: {last.frame} frames, {ms:.1f} ms/frame (decode + model), state {last.state_bytes:,} bytes",
              file=sys.stderr)
    return 0


def _print(update: StreamUpdate, names: list[str] | None, as_json: bool) -> None:
    def name(c: int) -> str:
        return names[c] if names and c < len(names) else str(c)

    if as_json:
        print(json.dumps({"frame": update.frame, "source_frame": update.source_frame, "seconds": update.seconds,
                          "topk": [{"class": c, "name": name(c), "prob": p} for c, p in update.topk],
                          "state_bytes": update.state_bytes}), flush=True)
        return
    when = f" t={update.seconds:.2f}s" if update.seconds is not None else ""
    top = "  ".join(f"{name(c)} {p:.4f}" for c, p in update.topk)
    print(f"frame {update.frame:>5} (src {update.source_frame}{when}): {top}", flush=True)
