"""Benchmark: training steps with and without the kernel taps that meet only padding, side by side.

:func:`nas.models.layers.conv3d_same` (every TF-'same' conv of the stand-alone models and the TuNAS
supernet) skips the taps of a kernel that only ever multiply padding: at proxy resolutions a 1x7x7
kernel on MoViNet's 1 x 1 last-stage map needs its centre tap only. The result and the gradients are
the same (tested in ``tests/test_layers.py``); this script measures the time. For each architecture,
at the proxy scale it trains at, in both memory layouts and at each thread count, it times full
AdamW training steps (forward, cross-entropy, backward, step) with the whole kernels
(:func:`~nas.models.layers.whole_kernels`, what every conv computed before) and with the trimmed
ones, interleaving rounds of the two so both see the same machine noise, and prints the ratio of the
faster layout's median step times. The fp32 matmul rate is measured before and after. Run::

    .venv/bin/python experiments/bench_trimmed_conv.py --out experiments/results/trimmed_conv.md
"""
from __future__ import annotations

import argparse
import statistics
import sys
import time
from pathlib import Path

import torch

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "experiments"))

from bench_train import LAYOUTS, _Trainer, matmul_peak  # noqa: E402

from nas import load_arch  # noqa: E402
from nas.cost import GFLOPS_NOTE  # noqa: E402
from nas.dsl.arch import Arch  # noqa: E402
from nas.models.layers import whole_kernels  # noqa: E402
from nas.proxy import Proxy  # noqa: E402

TUNAS_RUN = ROOT / "experiments/tunas/results/auto_cpus/default"
# (architecture, proxy scale, batch, what trains it so): the default runs' training steps
DEFAULT_CASES = (
    (str(TUNAS_RUN / "search-0.18/argmax.yaml"), 0.15, 16, "TuNAS retrain (argmax)"),
    (str(TUNAS_RUN / "archs/f5649e32790eb2eb.yaml"), 0.15, 16, "TuNAS retrain (A0 baseline)"),
    ("movinet-a0", 0.1, 8, "movinet-a0, its own clip"),
    ("x3d-s", 0.25, 8, "expand scale"),
    ("tsm-mbv2", 0.1, 8, "tsn2d"),
)


def _load(name: str) -> Arch:
    path = Path(name)
    return Arch.from_yaml(path.read_text()) if path.suffix == ".yaml" else load_arch(name)


class _Whole:
    """A trainer whose steps run with every kernel tap."""

    def __init__(self, trainer: _Trainer) -> None:
        self.trainer = trainer

    def step(self) -> float:
        with whole_kernels():
            return self.trainer.step()


def bench(arch: Arch, crop: int, batch: int, rounds: int, steps: int) -> dict[str, dict[str, float]]:
    """Median step seconds per (layout, whole|trimmed), interleaved round by round."""
    runners: dict[tuple[str, str], object] = {}
    for layout in LAYOUTS:
        runners[(layout, "whole")] = _Whole(_Trainer(arch, crop, batch, layout))
        runners[(layout, "trimmed")] = _Trainer(arch, crop, batch, layout)
    for r in runners.values():  # warm-up: allocator, kernel selection
        r.step()
        r.step()
    times: dict[tuple[str, str], list[float]] = {key: [] for key in runners}
    for _ in range(rounds):
        for key, r in runners.items():
            times[key].extend(r.step() for _ in range(steps))
    out: dict[str, dict[str, float]] = {}
    for mode in ("whole", "trimmed"):
        per_layout = {layout: statistics.median(times[(layout, mode)]) for layout in LAYOUTS}
        best = min(per_layout, key=per_layout.get)
        out[mode] = {"step_s": per_layout[best], "layout": best}
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--threads", default="1,2", help="comma-separated torch thread counts (default 1,2)")
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--steps", type=int, default=4, help="steps per round per set-up")
    parser.add_argument("--out", help="append the markdown table to this file")
    args = parser.parse_args()
    peak_before = matmul_peak()
    lines = []
    for threads in (int(t) for t in args.threads.split(",")):
        torch.set_num_threads(threads)
        for name, scale, batch, what in DEFAULT_CASES:
            arch = _load(name)
            crop = Proxy(size_scale=scale).train_crop(arch.clip.crop)
            res = bench(arch, crop, batch, args.rounds, args.steps)
            whole, trimmed = res["whole"], res["trimmed"]
            ratio = whole["step_s"] / trimmed["step_s"]
            clip = arch.clip
            line = (f"| {arch.name} ({what}) | {clip.frames}x{clip.frame_stride}, {crop}² | {batch} | {threads} | "
                    f"{whole['step_s'] * 1e3:.0f} ({whole['layout']}) | {trimmed['step_s'] * 1e3:.0f} "
                    f"({trimmed['layout']}) | {ratio:.2f} |")
            print(line, flush=True)
            lines.append(line)
    peak_after = matmul_peak()
    header = [
        f"Machine: fp32 2048² matmul {peak_before:.0f} GMAC/s before, {peak_after:.0f} after "
        f"({time.strftime('%Y-%m-%d')}); median of {args.rounds} x {args.steps} AdamW steps, the faster layout "
        f"of each mode. {GFLOPS_NOTE}",
        "",
        "| architecture | clip at the proxy | batch | threads | whole kernels (ms/step) | trimmed (ms/step) | speed-up |",
        "|---|---|---|---|---|---|---|",
    ]
    text = "\n".join(header + lines) + "\n"
    print(text)
    if args.out:
        with open(args.out, "a") as f:
            f.write("\n" + text)


if __name__ == "__main__":
    main()
