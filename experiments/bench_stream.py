"""Benchmark: streaming MoViNet-A0-Stream frame by frame vs the whole-clip forward, on 1 CPU thread.

For each stream length N (default 16, 64, 256, 1024 frames at 172²) a fresh subprocess builds
``movinet-a0-stream`` (eval, fresh init: latency does not depend on the weights), streams N random
frames one ``model.step`` at a time and reports the median and p90 per-frame latency, the stream-state
size and the process's peak resident memory (``ru_maxrss``). Flat memory = the same peak for every N.
Side by side: the whole-clip causal forward of 50 frames divided by 50, and its peak memory. The
anchor: the official TF-Lite A0-stream runs 16 ms per frame on one x86 core (fp32, README).

    .venv/bin/python experiments/bench_stream.py [--frames 16 64 256 1024] [--out experiments/results/bench_stream.md]
"""
from __future__ import annotations

import argparse
import json
import os
import platform
import subprocess
import sys
import time
from pathlib import Path

ANCHOR_MS = 16.0  # official TF-Lite MoViNet-A0-Stream, 1 x86 core, fp32 (movinet.md §1)


def _child(mode: str, frames: int, size: int, warmup: int) -> dict:
    """Runs inside the subprocess: one measurement, printed as JSON."""
    import resource
    import statistics

    import torch

    from nas import load_arch
    from nas.models import build_model

    torch.set_num_threads(1)
    torch.manual_seed(0)
    model = build_model(load_arch("movinet-a0-stream")).eval()
    base_rss = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    with torch.inference_mode():
        if mode == "whole":
            clip = torch.randn(1, 3, frames, size, size)
            model(clip[:, :, :4])  # warm-up on a short clip
            times, cpu = [], []
            for _ in range(3):
                t0, c0 = time.perf_counter(), time.thread_time()
                model(clip)
                times.append(time.perf_counter() - t0)
                cpu.append(time.thread_time() - c0)
            best = min(times)
            return {"mode": mode, "frames": frames, "ms_per_frame": 1000 * best / frames,
                    "cpu_ms_per_frame": 1000 * min(cpu) / frames,
                    "peak_rss_mb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024,
                    "model_rss_mb": base_rss / 1024}
        state = model.init_state(1, size)
        frame = torch.randn(1, 3, 1, size, size)
        for _ in range(warmup):  # warm-up steps on a throw-away state
            model.step(frame, state)
        times, cpu = [], []
        for _ in range(frames):
            frame = torch.randn(1, 3, 1, size, size)  # a new frame each step, as a decoder would give
            t0, c0 = time.perf_counter(), time.thread_time()
            _, state = model.step(frame, state)
            times.append(time.perf_counter() - t0)
            cpu.append(time.thread_time() - c0)
        times.sort()
        return {"mode": mode, "frames": frames, "ms_per_frame": 1000 * statistics.median(times),
                "cpu_ms_per_frame": 1000 * statistics.median(cpu),
                "p90_ms": 1000 * times[int(0.9 * (len(times) - 1))],
                "state_kb": sum(v.numel() * v.element_size() for v in state.values()) / 1024,
                "peak_rss_mb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024,
                "model_rss_mb": base_rss / 1024}


def _measure(mode: str, frames: int, size: int, warmup: int) -> dict:
    code = ("import json, sys; sys.path.insert(0, %r); from bench_stream import _child; "
            "print(json.dumps(_child(%r, %d, %d, %d)))") % (str(Path(__file__).parent), mode, frames, size, warmup)
    out = subprocess.run([sys.executable, "-c", code], check=True, capture_output=True, text=True).stdout
    return json.loads(out.strip().splitlines()[-1])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--frames", type=int, nargs="+", default=[16, 64, 256, 1024])
    parser.add_argument("--whole", type=int, default=50, help="frames of the whole-clip forward")
    parser.add_argument("--size", type=int, default=172)
    parser.add_argument("--warmup", type=int, default=5)
    parser.add_argument("--out", default="experiments/results/bench_stream.md")
    args = parser.parse_args()

    rows = [_measure("stream", n, args.size, args.warmup) for n in args.frames]
    whole = _measure("whole", args.whole, args.size, args.warmup)
    lines = [
        "# Streaming MoViNet-A0-Stream vs whole clip (1 CPU thread)",
        "",
        f"{platform.processor() or platform.machine()}, torch {__import__('torch').__version__}, "
        f"{args.size}², fresh init, batch 1, eval, `torch.inference_mode`; each row a fresh process.",
        f"Anchor: official TF-Lite A0-stream {ANCHOR_MS:.0f} ms/frame on one x86 core (fp32).",
        "",
        "Wall-clock ms depend on how busy the machine is; CPU ms (thread CPU time) are what one",
        "dedicated core would need, less sensitive to other processes (cache sharing still counts).",
        "",
        "| run | frames | wall ms / frame (median) | p90 wall ms | CPU ms / frame | state KiB | peak RSS MiB |"
        " RSS after build MiB |",
        "|---|---|---|---|---|---|---|---|",
    ]
    for r in rows:
        lines.append(f"| stream, 1 frame per step | {r['frames']} | {r['ms_per_frame']:.1f} | {r['p90_ms']:.1f} | "
                     f"{r['cpu_ms_per_frame']:.1f} | {r['state_kb']:.0f} | {r['peak_rss_mb']:.0f} | "
                     f"{r['model_rss_mb']:.0f} |")
    lines.append(f"| whole clip / {whole['frames']} | {whole['frames']} | {whole['ms_per_frame']:.1f} | – | "
                 f"{whole['cpu_ms_per_frame']:.1f} | – | {whole['peak_rss_mb']:.0f} | {whole['model_rss_mb']:.0f} |")
    lines += ["", f"Load average while measuring (1 / 5 / 15 min): {' / '.join(f'{v:.1f}' for v in os.getloadavg())} "
              f"on {os.cpu_count()} cores."]
    text = "\n".join(lines) + "\n"
    print(text)
    Path(args.out).parent.mkdir(parents=True, exist_ok=True)
    Path(args.out).write_text(text)


if __name__ == "__main__":
    main()
