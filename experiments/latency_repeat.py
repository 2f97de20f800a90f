"""How repeatable is one latency measurement on this machine? (issue 18)

Measures the same architectures ``--repeats`` times back to back, each time as ``nas.measure.measure_latency``
does (3 warm-up calls, then timed calls for at least 7 calls and 1 s), and prints the spread of three
statistics of each repetition: the median (what ``xnas latency`` reports), the minimum and the 10th
percentile. If the measurement itself does not repeat within ±10 %, no model can be checked against the
±10 % bar on this machine. Run with the machine otherwise idle::

    .venv/bin/python experiments/latency_repeat.py [--threads 1] [--repeats 8] [--out FILE]
"""
from __future__ import annotations

import argparse
import statistics
import sys
import time
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))
from bench_train import matmul_peak  # noqa: E402

from nas import load_arch  # noqa: E402
from nas.models import build_model  # noqa: E402


def repetitions(name: str, repeats: int) -> dict[str, list[float]]:
    arch = load_arch(name)
    model = build_model(arch).eval()
    clip = arch.clip
    x = torch.randn(1, 3, clip.frames, clip.crop, clip.crop)
    out: dict[str, list[float]] = {"median": [], "min": [], "p10": []}
    with torch.no_grad():
        for _ in range(3):
            model(x)
        for _ in range(repeats):
            times: list[float] = []
            start = time.perf_counter()
            while len(times) < 7 or time.perf_counter() - start < 1.0:
                t0 = time.perf_counter()
                model(x)
                times.append((time.perf_counter() - t0) * 1e3)
            times.sort()
            out["median"].append(statistics.median(times))
            out["min"].append(times[0])
            out["p10"].append(times[len(times) // 10])
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--repeats", type=int, default=8)
    parser.add_argument("--archs", default="x3d-xs,x3d-s,movinet-a0,tsm-mbv2")
    parser.add_argument("--out", type=Path)
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    lines = []

    def say(text: str = "") -> None:
        print(text, flush=True)
        lines.append(text)

    before = matmul_peak()
    say(f"`experiments/latency_repeat.py --threads {args.threads} --repeats {args.repeats}`: fp32 2048² matmul "
        f"{before:.0f} GMAC/s before.")
    say()
    say("| architecture | statistic | repetitions (ms) | max / min - 1 |")
    say("|---|---|---|---|")
    for name in [a.strip() for a in args.archs.split(",") if a.strip()]:
        for stat, values in repetitions(name, args.repeats).items():
            say(f"| {name} | {stat} | {' '.join(f'{v:.1f}' for v in values)} | **{100 * (max(values) / min(values) - 1):.1f} %** |")
    say()
    say(f"fp32 2048² matmul after: {matmul_peak():.0f} GMAC/s.")
    if args.out:
        args.out.write_text("\n".join(lines) + "\n")


if __name__ == "__main__":
    main()
