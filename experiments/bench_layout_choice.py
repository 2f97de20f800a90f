"""Benchmark: how many timed passes does the trainer's ``layout: auto`` choice need?

:func:`nas.train.choose_layout` times forward + backward on a trial's first batch in each memory layout
(``channels_first``, ``channels_last_3d``) and keeps the faster. Every trial of a search meets new
shapes, so it pays this on every trial: with two passes per layout, 9-10 % of an ``xnas expand``
default trial (x3d-xs 2.2 of 24 s, x3d-s 6.3 of 64 s at 63 GMAC/s). This script measures, per
architecture and side by side in one process:

* the passes the rules see, in :func:`nas.train.choose_layout`'s order: cf, cl3d, cf, cl3d;
* the truth: the median of 3 further steady passes per layout, alternating;
* the decision of each rule: ``two passes`` (the min of 2 per layout), ``one pass`` (pass 1 only), and
  ``one pass, margin M`` (pass 1 when one layout is more than M faster, else the two-pass rule), and
  what each costs in timed passes and in seconds, and what a wrong choice costs per training step
  (the steady time of the chosen layout over the faster one).

Architectures: random points of the ``x3d`` space (the expand driver's candidates) and of ``movinet``
at the expand default proxy's clip (0.25 of the crop, 8 clips), plus X3D-XS and X3D-S at full size
(160², 2 clips), where the other layout can win. Run::

    .venv/bin/python experiments/bench_layout_choice.py [--x3d 10] [--movinet 6] [--threads 2]
        [--out experiments/results/layout_choice.md]

The machine's fp32 matmul rate is printed at the top and bottom of the report.
"""
from __future__ import annotations

import argparse
import random
import statistics
import sys
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))

from bench_train import matmul_peak  # noqa: E402

from nas import load_arch, load_space  # noqa: E402
from nas.dsl.arch import Arch  # noqa: E402
from nas.models import build_model  # noqa: E402
from nas.train import LAYOUT_DECISIVE_MARGIN, timed_training_pass  # noqa: E402

LAYOUTS = ("channels_first", "channels_last_3d")
MARGINS = tuple(sorted({0.10, 0.15, 0.25, LAYOUT_DECISIVE_MARGIN}))  # the trainer's among them


def measure(arch: Arch, size_scale: float, batch: int) -> dict:
    """Pass 1 and 2 per layout in the rule's order, then 3 steady passes per layout, alternating."""
    torch.manual_seed(0)
    model = build_model(arch.with_classes(6)).train()
    clip = arch.clip
    size = max(8, round(clip.crop * size_scale))
    x = torch.randn(batch, 3, clip.frames, size, size)
    y = torch.randint(0, 6, (batch,))
    passes = {layout: [] for layout in LAYOUTS}
    for _ in range(2):  # choose_layout's order: a first pass in each layout, then a second in each
        for layout in LAYOUTS:
            passes[layout].append(timed_training_pass(model, x, y, layout))
    steady = {layout: [] for layout in LAYOUTS}
    for _ in range(3):
        for layout in LAYOUTS:
            steady[layout].append(timed_training_pass(model, x, y, layout))
    return {"arch": arch.name, "clip": f"{clip.frames}x{size}²", "batch": batch, "passes": passes,
            "steady": {k: statistics.median(v) for k, v in steady.items()}}


def decisions(m: dict) -> dict[str, tuple[str, int, float]]:
    """Each rule's (layout, timed passes, seconds of timing)."""
    p = m["passes"]
    two = min(LAYOUTS, key=lambda k: min(p[k]))
    out = {"two passes": (two, 4, sum(sum(v) for v in p.values())),
           "one pass": (min(LAYOUTS, key=lambda k: p[k][0]), 2, sum(v[0] for v in p.values()))}
    first = {k: p[k][0] for k in LAYOUTS}
    fast, slow = sorted(first.values())
    for margin in MARGINS:
        if slow > fast * (1 + margin):
            out[f"one pass, margin {margin:.0%}"] = (min(first, key=first.get), 2, fast + slow)
        else:
            out[f"one pass, margin {margin:.0%}"] = (two, 4, out["two passes"][2])
    return out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--x3d", type=int, default=10, help="random x3d points")
    ap.add_argument("--movinet", type=int, default=6, help="random movinet points")
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--out", type=Path, default=None)
    args = ap.parse_args()
    torch.set_num_threads(args.threads)
    before = matmul_peak()
    rng = random.Random(args.seed)
    cases: list[tuple[Arch, float, int]] = []
    for space_name, n in (("x3d", args.x3d), ("movinet", args.movinet)):
        space = load_space(space_name)
        for i in range(n):
            arch = space.freeze(space.random(rng))
            while arch.cost().gflops > 5.0:  # the graded range's top: a proxy trial, not a full model
                arch = space.freeze(space.random(rng))
            cases.append((arch, 0.25, 8))
    cases += [(load_arch("x3d-xs"), 1.0, 2), (load_arch("x3d-s"), 1.0, 2)]
    rows, wrong_cost, totals = [], {}, {}
    for arch, scale, batch in cases:
        m = measure(arch, scale, batch)
        truth = min(LAYOUTS, key=m["steady"].get)
        d = decisions(m)
        for rule, (layout, n, secs) in d.items():
            totals.setdefault(rule, [0, 0.0, 0])
            totals[rule][0] += n
            totals[rule][1] += secs
            totals[rule][2] += layout == truth
            wrong_cost.setdefault(rule, []).append(m["steady"][layout] / m["steady"][truth])
        rows.append((m, truth, d))
        print(f"{m['arch']:<28} {m['clip']:>8} b{batch}: cf {[round(t, 3) for t in m['passes']['channels_first']]} "
              f"cl3d {[round(t, 3) for t in m['passes']['channels_last_3d']]} steady cf "
              f"{m['steady']['channels_first']:.3f} cl3d {m['steady']['channels_last_3d']:.3f} -> {truth}", flush=True)
    after = matmul_peak()
    lines = [
        "# How many timed passes the `auto` layout choice needs",
        "",
        f"Reproduce: `.venv/bin/python experiments/bench_layout_choice.py --x3d {args.x3d} --movinet {args.movinet} "
        f"--threads {args.threads} --seed {args.seed}`. {args.threads} threads; fp32 2048² matmul {before:.1f} "
        f"GMAC/s before, {after:.1f} after. Times in seconds of one forward + backward (cross-entropy) on the "
        "batch; the truth is the median of 3 steady passes per layout, alternating, after the rule's passes.",
        "",
        "| architecture | clip | batch | cf pass 1, 2 | cl3d pass 1, 2 | steady cf | steady cl3d | faster |",
        "|---|---|---|---|---|---|---|---|",
    ]
    for m, truth, _ in rows:
        p = m["passes"]
        lines.append(f"| {m['arch']} | {m['clip']} | {m['batch']} | {p['channels_first'][0]:.3f}, "
                     f"{p['channels_first'][1]:.3f} | {p['channels_last_3d'][0]:.3f}, {p['channels_last_3d'][1]:.3f} | "
                     f"{m['steady']['channels_first']:.3f} | {m['steady']['channels_last_3d']:.3f} | {truth} |")
    lines += ["", "| rule | right choices | timed passes | seconds timing | worst steady cost of its choice |",
              "|---|---|---|---|---|"]
    for rule, (n, secs, right) in totals.items():
        lines.append(f"| {rule} | {right} of {len(rows)} | {n} | {secs:.1f} | {max(wrong_cost[rule]):.3f}x |")
    text = "\n".join(lines) + "\n"
    print(text)
    if args.out is not None:
        args.out.write_text(text)


if __name__ == "__main__":
    main()
