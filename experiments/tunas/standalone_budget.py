"""Can MoViNet blocks learn the default task at the search's clip and budget at all? (issue 20)

A supernet can rank architectures only if a single architecture of its space learns the task within the
search's budget. This trains MoViNet-A0, re-clipped to the search clip (8x5x112, the supernet's 0.125
of the crop: 14²), stand-alone with the proxy trainer under budgets around the default search's per-
architecture budget (600 steps x 4 clips) and reports its validation top-1 (chance: 100 / classes)
with the binomial standard error, for each seed. Every trial goes through ``nas.train.evaluate``;
results are cached in the output JSON, so a rerun only trains what is missing. Run::

    .venv/bin/python experiments/tunas/standalone_budget.py [--set budgets|clips|span] [--seeds 0,1] [--old-recipe]

``standalone_budget.json`` was measured with ``--old-recipe`` (zero-initialised residual branches, no
precise BN); the current recipe writes ``standalone_budget_v2.json``.
"""
from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from bench_train import matmul_peak  # noqa: E402

from nas import load_arch  # noqa: E402
from nas.drivers.expand import top1_se  # noqa: E402
from nas.drivers.tunas.driver import reclip  # noqa: E402
from nas.proxy import Proxy  # noqa: E402
from nas.train import evaluate  # noqa: E402

# (label, steps, batch, size_scale, task, clip): the default search gives each sampled architecture 4
# clips a step for 600 steps at 0.125 of the crop, at the 8x5x112 clip; the others ask what more clips,
# more steps, more pixels and a clip that spans more of the event buy
BUDGETS = [
    ("search budget: 600 x 4 @ 14²", 600, 4, 0.125, "graded", (8, 5, 112)),
    ("4x clips: 600 x 16 @ 14²", 600, 16, 0.125, "graded", (8, 5, 112)),
    ("4x clips, 2.5x steps: 1500 x 16 @ 14²", 1500, 16, 0.125, "graded", (8, 5, 112)),
    ("4x clips, 2x pixels: 600 x 16 @ 28²", 600, 16, 0.25, "graded", (8, 5, 112)),
    ("search budget on event_order: 600 x 4 @ 14²", 600, 4, 0.125, "event_order", (8, 5, 112)),
    ("4x clips on event_order: 600 x 16 @ 14²", 600, 16, 0.125, "event_order", (8, 5, 112)),
]
# graded's event fills 52-72 of the 96 source frames; 8x5 spans 40 of them. Clips of the movinet space
# that span more of it, at the search budget and at 4x its clips
CLIP_BUDGETS = [
    (f"{f}x{st}: {steps} x {b} @ 14²", steps, b, 0.125, "graded", (f, st, 112))
    for f, st in ((8, 5), (16, 5), (16, 6)) for steps, b in ((600, 4), (600, 16))
]
# the same spans at half the frames: 8 frames at a wider stride cost what 8x5 costs and span 71-85 source
# frames (strides outside the movinet space's 1-6; ``xnas search --clip`` takes them on `movinet` since
# c9e4a70, before which a search at these clips needed experiments/tunas/spaces/movinet-span.yaml)
SPAN_BUDGETS = [
    (f"{f}x{st}: {steps} x {b} @ 14²", steps, b, 0.125, "graded", (f, st, 112))
    for f, st, steps, b in ((8, 10, 600, 4), (8, 10, 600, 16), (8, 12, 600, 16))
]
SETS = {"budgets": BUDGETS, "clips": CLIP_BUDGETS, "span": SPAN_BUDGETS}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--set", choices=sorted(SETS), default="budgets",
                        help="budgets: more clips, steps, pixels at 8x5x112; clips: clips spanning more of the event; "
                             "span: 8 frames at strides 10 and 12")
    parser.add_argument("--seeds", default="0,1")
    parser.add_argument("--val-clips", type=int, default=1024)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--old-recipe", action="store_true",
                        help="zero-initialised residual branches and no precise BN (how standalone_budget.json was "
                             "measured, before the proxy's recipe changed)")
    parser.add_argument("--out", type=Path, default=None,
                        help="default: results/standalone_budget.json with --old-recipe, else "
                             "results/standalone_budget_v2.json")
    args = parser.parse_args()
    name = "standalone_budget.json" if args.old_recipe else "standalone_budget_v2.json"
    args.out = args.out or Path(__file__).parent / "results" / name
    torch.set_num_threads(args.threads)
    base = load_arch("movinet-a0")
    done = json.loads(args.out.read_text()) if args.out.is_file() else {"runs": []}
    have = {(r["label"], r["seed"]) for r in done["runs"]}
    done.setdefault("matmul_gmacs", []).append(round(matmul_peak(), 1))
    recipe = {"zero_init_residual": True, "precise_bn_batches": 0} if args.old_recipe else {}

    def save() -> None:
        args.out.parent.mkdir(parents=True, exist_ok=True)
        args.out.write_text(json.dumps({**done, "arch": base.name, "val_clips": args.val_clips,
                                        "threads": args.threads, "proxy_recipe": recipe or "default"}, indent=1))

    for label, steps, batch, scale, task, clip in SETS[args.set]:
        arch = reclip(base, clip)
        for seed in (int(s) for s in args.seeds.split(",")):
            if (label, seed) in have:
                continue
            proxy = Proxy(steps=steps, batch_size=batch, size_scale=scale, task=task, val_clips=args.val_clips,
                          train_clips=2048, checkpoint_every=0, **recipe)
            t0 = time.perf_counter()
            r = evaluate(arch, "synthetic", proxy, seed=seed, progress=False)
            row = {"label": label, "seed": seed, "steps": steps, "batch": batch, "size_scale": scale, "task": task,
                   "clip": "x".join(map(str, clip)), "gflops": arch.cost().gflops,
                   "crop": r.size, "top1": r.top1, "se": top1_se(r.top1, args.val_clips),
                   "loss": r.loss, "wall_s": round(time.perf_counter() - t0, 1), "status": r.status}
            print(json.dumps(row), flush=True)
            done["runs"].append(row)
            save()
    done["matmul_gmacs"].append(round(matmul_peak(), 1))
    save()


if __name__ == "__main__":
    main()
