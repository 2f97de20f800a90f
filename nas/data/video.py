"""Real video clips: PyAV decoding, X3D clip sampling and the :class:`VideoClips` dataset (no torch).

Decoding (data.md §3) uses PyAV with ``thread_count = 1``: a threaded decoder stalls when DataLoader
workers share the cores, so parallelism belongs across clips, not inside one. Frames are decoded
sequentially from the start up to the last one needed (no seeking: seeks land on key frames and
give container-dependent results), so a frame's index is its position in presentation order.

Headers lie: ``nb_frames`` is missing in WebM / MPEG-PS, durations can be wrong (MPEG-PS), fps can be
absent. :func:`probe` trusts the header frame count only when the header's duration and rate agree
with it, and otherwise counts packets (demuxing without decoding, one packet per frame). A stream
that still ends early at decode time is clamped (its last frame repeats) when it is at most 10 %
short, and reported as damaged otherwise.

Sampling follows X3D / SlowFast (data.md §4): a clip is ``frames`` frames every ``frame_stride``
source frames, spanning ``(frames - 1) * frame_stride + 1`` frames. Training takes a uniformly random
start; testing takes ``n_clips`` starts spread evenly (the centre of ``n_clips`` equal slots). Clips
longer than the video repeat its last frame.
"""
from __future__ import annotations

import hashlib
import warnings
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path
from typing import Any, NamedTuple

import numpy as np

try:
    import av
except ImportError as err:  # only real-video datasets need PyAV; say how to get it
    raise ImportError("nas.data.video decodes with PyAV, which is not installed: pip install av") from err

from nas.data.layouts import VideoIndex
from nas.files import atomic_path
from nas.data.transforms import resize, resize_short_side, short_side_size, three_crops

__all__ = [
    "default_cache_dir", "VideoClips", "VideoDecodeError", "VideoInfo", "VideoSkipWarning", "clip_indices", "probe", "read_frames",
]

# A stream may end this much short of its probed length before it counts as damaged (headers that
# round durations, edit lists); beyond it the file is truncated and is skipped.
_SHORT_TOLERANCE = 0.1
_CHUNK = 16            # frames resized at once while building the cache (bounds memory at 720p+)


class VideoDecodeError(RuntimeError):
    """A video file cannot be opened or decoded.

    Attributes:
        path: the file.
        reason: what went wrong, in a few words.
    """

    def __init__(self, path: str | Path, reason: str) -> None:
        self.path = Path(path)
        self.reason = reason
        super().__init__(f"{path}: {reason}")


class VideoSkipWarning(UserWarning):
    """A video was left out of a dataset because it cannot be decoded (see ``VideoClips.report()``)."""


class VideoInfo(NamedTuple):
    """What :func:`probe` finds: frame count, frames per second (``None`` if unknown), size."""

    frames: int
    fps: float | None
    height: int
    width: int


def _fail(name: str, value: object, allowed: str) -> ValueError:
    return ValueError(f"{name}: got {value!r}; allowed: {allowed}")


def _check_int(name: str, value: object, low: int) -> int:
    if not isinstance(value, (int, np.integer)) or isinstance(value, bool) or value < low:
        raise _fail(name, value, f"an integer >= {low}")
    return int(value)


@contextmanager
def _open(path: str | Path) -> Iterator[tuple[Any, Any]]:
    """Open ``path``'s first video stream single-threaded; turn PyAV errors into VideoDecodeError."""
    try:
        container = av.open(str(path))
    except (av.FFmpegError, OSError) as err:
        raise VideoDecodeError(path, f"cannot open ({_why(err)})") from err
    try:
        if not container.streams.video:
            raise VideoDecodeError(path, "no video stream")
        stream = container.streams.video[0]
        stream.codec_context.thread_count = 1
        yield container, stream
    except av.FFmpegError as err:
        raise VideoDecodeError(path, f"decoding failed ({_why(err)})") from err
    finally:
        container.close()


def _why(err: BaseException) -> str:
    """PyAV's message without the file name it repeats."""
    return getattr(err, "strerror", None) or str(err)


def _rgb(frame: Any, size: tuple[int, int]) -> np.ndarray:
    """RGB uint8 ``(H, W, 3)`` of a decoded frame, scaled to ``size`` = (width, height) if the
    stream changed resolution midway (rare, but it would break stacking)."""
    if (frame.width, frame.height) != size:
        frame = frame.reformat(width=size[0], height=size[1])
    return frame.to_ndarray(format="rgb24")


def _check_length(path: str | Path, decoded: int, expected: int) -> None:
    if decoded == 0:
        raise VideoDecodeError(path, "no frame could be decoded")
    if expected > 0 and decoded < (1 - _SHORT_TOLERANCE) * expected - 1:
        raise VideoDecodeError(path, f"truncated or damaged: the stream ended after {decoded} of {expected} frames")


def _header_agrees(frames: int, duration: float | None, fps: float | None) -> bool:
    if frames <= 0 or not duration or not fps:
        return False
    return abs(frames - duration * fps) <= max(2.0, 0.05 * frames)


def probe(path: str | Path, *, exact: bool = False) -> VideoInfo:
    """Frame count, fps and size of a video's first video stream.

    Args:
        path: the video file.
        exact: count frames by decoding them all (slow; the default counts packets when the header's
            frame count, duration and rate disagree or are missing, which is exact for usual codecs).

    Raises:
        VideoDecodeError: the file cannot be opened, has no video stream or no frame, or has far fewer
            packets than its header lists (truncated).
    """
    with _open(path) as (container, stream):
        rate = stream.average_rate or stream.guessed_rate or stream.base_rate
        fps = float(rate) if rate else None
        if stream.duration and stream.time_base:
            duration = float(stream.duration * stream.time_base)
        else:  # container duration is in AV_TIME_BASE (microsecond) units
            duration = container.duration / 1e6 if container.duration else None
        header = stream.frames
        height, width = stream.codec_context.height, stream.codec_context.width
        if exact:
            frames = sum(1 for _ in container.decode(stream))
        elif _header_agrees(header, duration, fps):
            frames = header
        else:
            frames = sum(1 for packet in container.demux(stream) if packet.size)
    _check_length(path, frames, header)
    if not height or not width:            # some containers only know the size after a decode
        height, width = read_frames(path, [0]).shape[1:3]
    if fps is None and duration:
        fps = frames / duration
    return VideoInfo(int(frames), fps, int(height), int(width))


def _read(path: str | Path, wanted: np.ndarray) -> tuple[np.ndarray, int | None]:
    """Decode the frames at sorted unique ``wanted`` indices.

    Returns:
        ``(frames, ended)``: uint8 ``(len(wanted), H, W, 3)``, and the stream's frame count if it
        ended before ``wanted[-1]`` (those indices then hold its last frame), else ``None``.
    """
    got: list[np.ndarray] = []
    size = None
    with _open(path) as (container, stream):
        last, n = None, 0
        for n, frame in enumerate(container.decode(stream), start=1):
            size = size or (frame.width, frame.height)
            last = frame
            if n - 1 == wanted[len(got)]:
                got.append(_rgb(frame, size))
                if len(got) == len(wanted):
                    return np.stack(got), None
        if last is None:
            raise VideoDecodeError(path, "no frame could be decoded")
        if not got or n - 1 > wanted[len(got) - 1]:
            got.append(_rgb(last, size))           # the stream's last frame stands in for the rest
        got.extend([got[-1]] * (len(wanted) - len(got)))
        return np.stack(got), n


def _as_indices(indices: Sequence[int] | np.ndarray) -> np.ndarray:
    idx = np.asarray(indices)
    if idx.ndim != 1 or idx.size == 0 or not np.issubdtype(idx.dtype, np.integer) or idx.min() < 0:
        raise _fail("indices", indices, "a non-empty 1-D sequence of integers >= 0")
    return idx.astype(np.int64)


def read_frames(path: str | Path, indices: Sequence[int] | np.ndarray, *, strict: bool = True) -> np.ndarray:
    """Decode the frames at ``indices`` (any order, repeats allowed) as RGB.

    Decodes sequentially from the first frame up to ``max(indices)`` and converts only the frames
    asked for.

    Args:
        path: the video file.
        indices: frame positions in presentation order (0-based).
        strict: if True an index past the end of the stream raises; if False it gets the last frame.

    Returns:
        uint8 ``(len(indices), H, W, 3)``.

    Raises:
        ValueError: ``indices`` is not a non-empty sequence of non-negative integers.
        VideoDecodeError: the file cannot be decoded, or (``strict``) the stream ends before an index.
    """
    idx = _as_indices(indices)
    wanted, inverse = np.unique(idx, return_inverse=True)
    frames, ended = _read(path, wanted)
    if ended is not None and strict:
        raise VideoDecodeError(path, f"index {int(wanted[-1])} requested but the stream has {ended} frames")
    return frames[inverse.reshape(-1)]


def clip_indices(num_frames: int, frames: int, frame_stride: int, *, train: bool, n_clips: int = 1,
                 rng: np.random.Generator | None = None) -> np.ndarray:
    """Frame indices of X3D-style clips: ``frames`` frames every ``frame_stride`` frames.

    With ``span = (frames - 1) * frame_stride + 1`` and ``delta = max(num_frames - span, 0)``, training
    starts at a uniform integer in ``[0, delta]``; testing starts clip ``i`` at
    ``floor(delta * (2 i + 1) / (2 n_clips))`` (centred in ``n_clips`` equal slots; one clip is the
    centre clip). Indices past the end are clamped to the last frame.

    Args:
        num_frames: frames in the video (>= 1).
        frames: frames per clip (>= 1).
        frame_stride: source frames between samples (>= 1).
        train: random start (needs ``rng``) or evenly spread test starts.
        n_clips: clips when testing (ignored when training).
        rng: generator for the training start.

    Returns:
        int64 ``(views, frames)``; views is 1 when training, ``n_clips`` when testing.

    Raises:
        ValueError: a count is not a positive integer, or ``train`` without ``rng``.
    """
    num_frames = _check_int("num_frames", num_frames, 1)
    frames = _check_int("frames", frames, 1)
    frame_stride = _check_int("frame_stride", frame_stride, 1)
    delta = max(num_frames - ((frames - 1) * frame_stride + 1), 0)
    if train:
        if rng is None:
            raise _fail("rng", rng, "a numpy Generator when train=True")
        starts = np.array([rng.integers(0, delta + 1)], dtype=np.int64)
    else:
        n_clips = _check_int("n_clips", n_clips, 1)
        starts = (delta * (2 * np.arange(n_clips, dtype=np.int64) + 1)) // (2 * n_clips)
    idx = starts[:, None] + frame_stride * np.arange(frames, dtype=np.int64)[None, :]
    return np.minimum(idx, num_frames - 1)


def _decode_resized(path: Path, short_side: int) -> np.ndarray:
    """Every frame of ``path`` resized to ``short_side``: uint8 ``(N, h, w, 3)``."""
    chunks: list[np.ndarray] = []
    pending: list[np.ndarray] = []
    size, n = None, 0
    with _open(path) as (container, stream):
        header = stream.frames
        for n, frame in enumerate(container.decode(stream), start=1):
            size = size or (frame.width, frame.height)
            pending.append(_rgb(frame, size))
            if len(pending) == _CHUNK:
                chunks.append(resize_short_side(np.stack(pending), short_side))
                pending = []
    _check_length(path, n, header)
    if pending:
        chunks.append(resize_short_side(np.stack(pending), short_side))
    return np.concatenate(chunks)


def default_cache_dir() -> Path | None:
    """The decode-once cache the trainer's real-video datasets share on this machine:
    ``$XNAS_VIDEO_CACHE`` (``off`` disables it), else ``~/.cache/xnas/video``. Its files are keyed by
    path, mtime, size and stored size, so trials and runs with different clips share them safely."""
    import os

    env = os.environ.get("XNAS_VIDEO_CACHE", "")
    if env.strip().lower() in ("off", "none", "0"):
        return None
    return Path(env) if env else Path.home() / ".cache" / "xnas" / "video"


class VideoClips:
    """Clips of real videos: ``dataset[i] -> (clips, label)`` with ``clips`` uint8 ``(views, T, crop, crop, 3)``.

    Training gives one view: a random clip (:func:`clip_indices`), the short side resized to a
    random ``S`` in ``short_side``, a random ``crop`` x ``crop`` window. Testing gives ``n_clips x
    n_crops`` views (clip-major): evenly spread clips, short side ``S = short_side`` (its low end if a
    range, the X3D test scale), then the centre crop (``n_crops=1``) or three crops along the long
    side (``n_crops=3``). Randomness comes from ``(seed, epoch, item)`` alone, so an item gives the
    same clip in any worker and :meth:`set_epoch` draws new ones.

    A video that cannot be decoded (at probe or mid-decode) is skipped with a
    :class:`VideoSkipWarning` and listed by :meth:`report`; its items are served by the next decodable
    item instead (deterministically), so ``__getitem__`` never raises for a bad file.

    With ``cache_dir``, each video is decoded once, resized to ``cache_short_side`` and stored as a
    uint8 ``.npy`` keyed by path, mtime, size and ``cache_short_side``; later reads memory-map it, so
    repeated proxy trials cost model time only. Frames are then resized from the cached size: keep
    ``cache_short_side`` at least the largest short side used. Undecodable videos leave a ``.err``
    file, so other processes skip them without decoding.

    Args:
        index: the videos (see :func:`nas.data.layouts.discover`).
        frames: frames per clip (T).
        frame_stride: source frames between sampled frames.
        crop: output height and width.
        train: training (random, one view) or testing (deterministic, several views).
        n_clips: clips per video when testing.
        n_crops: 1 (centre) or 3 (along the long side) when testing.
        short_side: ``(lo, hi)`` scale-jitter range, or one size; default ``crop``. Must be >= ``crop``.
        seed: random seed.
        cache_dir: folder for the decode-once cache (created if needed); ``None`` decodes every read.
        cache_short_side: short side of cached frames.
        hflip: mirror half of the training clips. Off by default: it swaps direction classes.

    Raises:
        ValueError: an argument is out of range (the message names it and what is allowed).
    """

    def __init__(self, index: VideoIndex, *, frames: int, frame_stride: int, crop: int, train: bool,
                 n_clips: int = 1, n_crops: int = 1, short_side: int | tuple[int, int] | None = None,
                 seed: int = 0, cache_dir: str | Path | None = None, cache_short_side: int = 128,
                 hflip: bool = False) -> None:
        if not isinstance(index, VideoIndex):
            raise _fail("index", type(index).__name__, "a VideoIndex (from nas.data.layouts.discover)")
        if len(index) == 0:
            raise _fail("index", f"{index.source} with 0 videos", "an index with at least one video")
        self.index = index
        self.frames = _check_int("frames", frames, 1)
        self.frame_stride = _check_int("frame_stride", frame_stride, 1)
        self.crop = _check_int("crop", crop, 1)
        self.train = bool(train)
        self.n_clips = _check_int("n_clips", n_clips, 1)
        if n_crops not in (1, 3):
            raise _fail("n_crops", n_crops, "1 (centre crop) or 3 (three crops along the long side)")
        self.n_crops = int(n_crops)
        self.short_side = self._check_short_side(short_side)
        self.seed = _check_int("seed", seed, 0)
        self.cache_short_side = _check_int("cache_short_side", cache_short_side, 1)
        self.cache_dir = None if cache_dir is None else Path(cache_dir)
        self.hflip = bool(hflip)
        if self.cache_dir is not None and self.short_side[1] > self.cache_short_side:
            warnings.warn(f"short_side up to {self.short_side[1]} exceeds cache_short_side={self.cache_short_side}: "
                          "cached frames will be upsampled; raise cache_short_side to avoid it", stacklevel=2)
        if index.skipped:
            warnings.warn(f"{len(index.skipped)} of {len(index) + len(index.skipped)} annotated videos of "
                          f"{index.source} are missing or unusable (first: {index.skipped[0][0]}: "
                          f"{index.skipped[0][1]}); see report()", VideoSkipWarning, stacklevel=2)
        self.epoch = 0
        self._info: dict[int, VideoInfo] = {}
        self._bad: dict[int, str] = {}
        self._stats = {"decoded": 0, "cache_hits": 0}

    def _check_short_side(self, short_side: int | tuple[int, int] | None) -> tuple[int, int]:
        allowed = f"an integer >= crop ({self.crop}) or a pair (lo, hi) with crop <= lo <= hi"
        if short_side is None:
            return self.crop, self.crop
        pair = (short_side, short_side) if isinstance(short_side, (int, np.integer)) else short_side
        try:
            lo, hi = pair                           # type: ignore[misc]
        except (TypeError, ValueError):
            raise _fail("short_side", short_side, allowed) from None
        ints = all(isinstance(v, (int, np.integer)) and not isinstance(v, bool) for v in (lo, hi))
        if not ints or not self.crop <= lo <= hi:
            raise _fail("short_side", short_side, allowed)
        return int(lo), int(hi)

    # ---- public surface ------------------------------------------------------------------------

    @property
    def num_classes(self) -> int:
        """Number of classes of the index."""
        return self.index.num_classes

    @property
    def class_names(self) -> list[str]:
        """Class names, indexed by label."""
        return self.index.class_names

    @property
    def labels(self) -> np.ndarray:
        """Labels of all items, int64 ``(len(self),)`` (for balanced samplers)."""
        return np.array([item.label for item in self.index.items], dtype=np.int64)

    @property
    def views(self) -> int:
        """Views per item: 1 when training, ``n_clips * n_crops`` when testing."""
        return 1 if self.train else self.n_clips * self.n_crops

    def set_epoch(self, epoch: int) -> None:
        """Draw different training clips: randomness is seeded by ``(seed, epoch, item)``."""
        self.epoch = _check_int("epoch", epoch, 0)

    def __len__(self) -> int:
        return len(self.index)

    def __getitem__(self, i: int) -> tuple[np.ndarray, int]:
        n = len(self)
        if not isinstance(i, (int, np.integer)) or isinstance(i, bool):
            raise TypeError(f"index: got {i!r}; allowed: an integer")
        if not -n <= i < n:
            raise IndexError(f"index: got {i}; allowed: -{n} <= index < {n}")
        for step in range(n):
            j = (int(i) + step) % n
            if j in self._bad:
                continue
            try:
                return self._load(j), self.index.items[j].label
            except VideoDecodeError as err:
                self._skip(j, err.reason)
        reasons = "; ".join(f"{self.index.items[j].path.name}: {r}" for j, r in list(self._bad.items())[:3])
        raise RuntimeError(f"none of the {n} videos of {self.index.source} can be decoded ({reasons}...)")

    def scan(self) -> dict[str, Any]:
        """Check every video now instead of on first use, and return :meth:`report`.

        Without a cache this probes headers (cheap; a file that fails mid-decode is still only found
        when read). With a cache it builds the cache, decoding every video once.
        """
        for j, item in enumerate(self.index.items):
            if j in self._bad:
                continue
            try:
                if self.cache_dir is not None:
                    self._cached(item.path)
                else:
                    self._probe(j)
            except VideoDecodeError as err:
                self._skip(j, err.reason)
        return self.report()

    def unusable(self) -> dict[int, str]:
        """Items found undecodable so far in this process: ``{item: reason}``."""
        return dict(self._bad)

    def note_unusable(self, found: dict[int, str]) -> None:
        """Record items another process (a loader worker) found undecodable, so :meth:`report` lists
        them and this process skips them without trying."""
        for j, reason in found.items():
            self._bad.setdefault(int(j), reason)

    def report(self) -> dict[str, Any]:
        """What the dataset holds and what it left out.

        Returns:
            ``listed`` (annotated videos), ``videos`` (found on disk), ``usable`` (not found bad so
            far), ``skipped`` (``{"path", "reason"}`` for missing and undecodable files), ``decoded``
            (decodes done by this process) and ``cache_hits``.
        """
        skipped = [{"path": str(p), "reason": r} for p, r in self.index.skipped]
        skipped += [{"path": str(self.index.items[j].path), "reason": r} for j, r in self._bad.items()]
        return {
            "source": str(self.index.source), "layout": self.index.layout,
            "listed": len(self.index) + len(self.index.skipped), "videos": len(self.index),
            "usable": len(self.index) - len(self._bad), "skipped": skipped, **self._stats,
        }

    def __repr__(self) -> str:
        return (f"VideoClips({self.index.layout}: {len(self)} videos, {self.num_classes} classes, "
                f"frames={self.frames}, frame_stride={self.frame_stride}, crop={self.crop}, train={self.train}, "
                f"views={self.views}, short_side={self.short_side}, cache_dir={self.cache_dir})")

    # ---- loading -------------------------------------------------------------------------------

    def _skip(self, j: int, reason: str) -> None:
        self._bad[j] = reason
        warnings.warn(f"skipping {self.index.items[j].path}: {reason}", VideoSkipWarning, stacklevel=3)

    def _probe(self, j: int) -> VideoInfo:
        if j not in self._info:
            self._info[j] = probe(self.index.items[j].path)
        return self._info[j]

    def _load(self, j: int) -> np.ndarray:
        path = self.index.items[j].path
        rng = np.random.default_rng([self.seed, self.epoch, j])
        if self.cache_dir is not None:
            video = self._cached(path)
            idx = clip_indices(len(video), self.frames, self.frame_stride, train=self.train,
                               n_clips=self.n_clips, rng=rng)
            wanted, inverse = np.unique(idx, return_inverse=True)
            frames = np.asarray(video[wanted])      # copies only these frames out of the memory map
        else:
            info = self._probe(j)
            idx = clip_indices(info.frames, self.frames, self.frame_stride, train=self.train,
                               n_clips=self.n_clips, rng=rng)
            wanted, inverse = np.unique(idx, return_inverse=True)
            frames, ended = _read(path, wanted)
            self._stats["decoded"] += 1
            if ended is not None:
                _check_length(path, ended, info.frames)
                self._info[j] = info._replace(frames=ended)   # the header overstated: remember the truth
        return self._spatial(frames, inverse.reshape(idx.shape), rng)

    def _spatial(self, frames: np.ndarray, inverse: np.ndarray, rng: np.random.Generator) -> np.ndarray:
        """Resize and crop the decoded frames once, then gather each view's frames (clips overlap).

        Only the pixels inside the crops are resized (``resize(window=...)``), bit-identical to
        resizing whole frames and cropping."""
        h, w = frames.shape[1:3]
        c = self.crop
        if self.train:
            oh, ow = short_side_size(h, w, int(rng.integers(self.short_side[0], self.short_side[1] + 1)))
            y, x = int(rng.integers(0, oh - c + 1)), int(rng.integers(0, ow - c + 1))
            frames = resize(frames, oh, ow, window=(y, x, c, c))
            if self.hflip and rng.random() < 0.5:
                frames = frames[:, :, ::-1]
            return np.ascontiguousarray(frames[inverse])          # inverse is (1, T): one view
        oh, ow = short_side_size(h, w, self.short_side[0])
        if self.n_crops == 1:
            crops = resize(frames, oh, ow, window=((oh - c) // 2, (ow - c) // 2, c, c))[None]
        else:  # the band across the short side that holds all three crops
            band = (((oh - c) // 2, 0, c, ow) if ow >= oh else (0, (ow - c) // 2, oh, c))
            crops = three_crops(resize(frames, oh, ow, window=band), c)
        # (crops, K, ...) gathered to (clips, crops, T, ...), clip-major
        return np.ascontiguousarray(crops[:, inverse].transpose(1, 0, 2, 3, 4, 5)).reshape(
            self.views, self.frames, c, c, 3)

    def _cache_file(self, path: Path) -> Path:
        try:
            st = path.stat()
        except OSError as err:                      # deleted or unreadable since indexing
            raise VideoDecodeError(path, f"cannot stat ({err.strerror})") from err
        key = f"{path.resolve()}|{st.st_mtime_ns}|{st.st_size}|{self.cache_short_side}"
        digest = hashlib.sha1(key.encode()).hexdigest()[:20]
        return self.cache_dir / f"{path.stem[:40]}-{digest}.npy"  # type: ignore[operator]

    def _cached(self, path: Path) -> np.ndarray:
        """The video at ``cache_short_side``: memory-mapped from the cache, or decoded and stored."""
        file = self._cache_file(path)
        error = file.with_suffix(".err")
        if error.exists():
            raise VideoDecodeError(path, error.read_text().strip() or "undecodable (cached verdict)")
        if file.exists():
            try:
                video = np.load(file, mmap_mode="r")
                self._stats["cache_hits"] += 1
                return video
            except (OSError, ValueError):
                pass                                   # a damaged cache file: decode again
        self._stats["decoded"] += 1
        file.parent.mkdir(parents=True, exist_ok=True)
        try:
            video = _decode_resized(path, self.cache_short_side)
        except VideoDecodeError as err:
            error.write_text(err.reason)
            raise
        # write then rename: concurrent workers never see a half-written file
        with atomic_path(file) as tmp, open(tmp, "wb") as f:
            np.save(f, video)
        return video
