"""Proxy accuracy vs GFLOPs of each tsn2d temporal module on one fixed backbone (issue 5).

Every variant is the same small MobileNetV2-style per-frame backbone (8 segments x 12 source frames,
so the clip spans the whole 96-frame synthetic event, at 32²); only the temporal module of its 4
residual layers changes (plus one bLVNet variant that reads 16 frames). Each is trained with the same
proxy budget by :func:`nas.train.evaluate` on a synthetic task: by default the default proxy's
(``event_order``: 6 colour orders; a frame-order-blind model is capped at chance, 16.7 %, so only a
module that mixes information across frames can learn it) with the default proxy's steps and rate;
``--task chiral_motion`` (8 classes in 4 time-reversal pairs, order-blind ceiling 50 %) is another view.

    .venv/bin/python experiments/tsn2d_modules.py   # writes experiments/results/tsn2d_modules.{md,json}
    .venv/bin/python experiments/tsn2d_modules.py --steps 20 --only none tsm   # a quick look

GFLOPs are multiply-adds of conv and linear layers x 1e-9 (X3D/MoViNet convention) of the document itself.
"""
from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

import torch

from nas.cost import GFLOPS_NOTE
from nas.dsl import Arch
from nas.train import Proxy, evaluate

RESULTS = Path(__file__).resolve().parent / "results"
VARIANTS = ["none", "tsm", "tsm_online", "tam", "shuffle_compact", "shuffle_headtail", "sth_merge", "sth_hybrid",
            "sth_hybrid_att", "blvnet+tam"]


def variant(name: str, crop: int = 32) -> Arch:
    """The comparison backbone with ``name``'s temporal module in its residual layers."""
    blvnet = name.startswith("blvnet")
    op = name.split("+")[-1]

    def layer(expand: float, residual: bool) -> dict:
        return {"type": "ir", "expand": expand, "kernel": 3, "se": False, "temporal": op if residual else "none"}

    return Arch.from_dict({
        "xnas": 1, "kind": "architecture", "name": f"cmp-{name.replace('+', '-')}", "family": "tsn2d",
        "classes": 6, "clip": {"frames": 16 if blvnet else 8, "frame_stride": 6 if blvnet else 12, "crop": crop},
        "activation": "relu6", "stem": {"width": 16},
        "stages": [
            {"width": 16, "stride": 1, "layers": [layer(1, False)]},
            {"width": 24, "stride": 2, "layers": [layer(4, False), layer(4, True)]},
            {"width": 32, "stride": 2, "layers": [layer(4, False), layer(4, True), layer(4, True)]},
            {"width": 64, "stride": 2, "layers": [layer(4, False), layer(4, True)]},
        ],
        "head": {"width": 256, "dropout": 0.0},
        "temporal": {"shift_div": 8, "tam_frames": 3},
        "blvnet": {"stages": 2 if blvnet else 0, "little": 0.5},
    })


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--steps", type=int, default=Proxy().steps)
    parser.add_argument("--crop", type=int, default=32)
    parser.add_argument("--task", default=Proxy().task)
    parser.add_argument("--lr", type=float, default=Proxy().lr)
    parser.add_argument("--seeds", type=int, nargs="+", default=[0])
    parser.add_argument("--only", nargs="+", choices=VARIANTS, default=VARIANTS)
    parser.add_argument("--out", type=Path, default=RESULTS / "tsn2d_modules")
    args = parser.parse_args()
    torch.set_num_threads(2)
    proxy = Proxy(steps=args.steps, batch_size=16, lr=args.lr, warmup_steps=20, task=args.task, size_scale=1.0,
                  train_clips=2048, val_clips=512, layout="channels_last_3d", checkpoint_every=0)
    rows = []
    for name in args.only:
        arch = variant(name, args.crop)
        for seed in args.seeds:
            t0 = time.perf_counter()
            r = evaluate(arch, "synthetic", proxy, seed=seed, progress=False)
            rows.append({"variant": name, "seed": seed, "top1": r.top1, "loss": r.loss, "gflops": r.gflops,
                         "params": r.params, "frames": r.frames, "status": r.status,
                         "clips_per_s": r.train_clips_per_s, "wall_s": time.perf_counter() - t0})
            print(json.dumps(rows[-1]), flush=True)
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.with_suffix(".json").write_text(json.dumps({"proxy": proxy.to_dict(), "rows": rows,
                                                         "convention": GFLOPS_NOTE}, indent=1))
    from nas.data.synthetic import ORDERLESS_CEILING, num_classes

    lines = ["# tsn2d temporal modules at equal backbone on the synthetic proxy (issue 5)", "",
             f"`experiments/tsn2d_modules.py --steps {args.steps} --task {args.task}`. "
             f"Proxy: {args.steps} steps x batch 16, AdamW {args.lr:g}, crop {args.crop}, synthetic {args.task} "
             f"(chance {100 / num_classes(args.task):.1f} %, frame-order-blind ceiling "
             f"{100 * ORDERLESS_CEILING[args.task]:.1f} %), 2048 train / 512 val clips, seeds {args.seeds}, "
             f"{torch.get_num_threads()} threads. {GFLOPS_NOTE}.", "",
             "| temporal module | frames | GFLOPs | params | top-1 % | train clips/s |", "|---|---|---|---|---|---|"]
    for row in rows:
        lines.append(f"| {row['variant']} | {row['frames']} | {row['gflops']:.5f} | {row['params']:,} | "
                     f"{row['top1']:.1f} | {row['clips_per_s']:.0f} |")
    args.out.with_suffix(".md").write_text("\n".join(lines) + "\n")
    print("\n".join(lines))


if __name__ == "__main__":
    main()
