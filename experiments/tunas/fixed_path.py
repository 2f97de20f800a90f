"""Does the supernet learn when it trains one path only? (issue 20)

The span search (8x10x112, 16 clips a step) ended at chance (supernet top-1 17.6 %, training loss at
ln 6), while MoViNet-A0 trained stand-alone at the same clip, pixels and budget reached 95 %. This
separates the two suspects: weight sharing over many sampled paths, or the supernet and its training
recipe themselves. Each condition trains for ``--steps`` steps x ``--batch`` clips on the search's own
data (``SupernetData``: the search's training split and held-out split, at the search clip and pixels),
with the search's optimiser, schedule and loss, then reports the held-out top-1 the way the search
measures ``supernet_top1`` (batch statistics), with its binomial standard error, and the same every 100
steps (``top1_every_100_steps``, the last entry the final one: does it leave chance before the search's RL
starts? That was step 150 of 600 under the old 25 % warm-up, step 50 of 1000 under today's defaults):

* ``supernet-a0``: the supernet, trained on MoViNet-A0's path every step (no sampling);
* ``standalone-a0``: ``build_model`` of the same architecture, same data, optimiser and loss;
* ``supernet-wide``: the supernet trained on one path, A0 with every width and expansion at its largest,
  and evaluated on that path;
* ``supernet-a0-2048``: as ``supernet-a0`` with 2048 training clips (the stand-alone proxy's count)
  instead of the search's 512;
* ``shared-uniform``: the supernet trained as the search trains it, on a freshly sampled path every step,
  but drawn from a uniform policy (no controller, no warm-up); A0's path is evaluated at the end;
* ``shared-warmup``: as ``shared-uniform`` with TuNAS's op/filter warm-up over the first 25 % of the steps
  (the largest widths and every kernel, with a probability falling from 1 to 0), as the search does;
* ``shared-filters``: as ``shared-uniform``, but only the filter-wise choices vary (every width and
  expansion); the depths and kernels are A0's, so no op-wise choice and no depth changes between steps;
* ``shared-two``: two fixed paths in turn, A0's and A0 with every width and expansion at its largest value:
  the least sharing there is.

``--zero-init-residual`` starts every ReZero scalar at 0 (the old recipe); the default starts them at
1, as the search does (``SearchConfig.zero_init_residual`` is False).

Run::

    .venv/bin/python experiments/tunas/fixed_path.py --seeds 0,1 --out experiments/tunas/results/fixed_path.json

Results are cached in the output JSON by (condition, seed).
"""
from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

import torch
import torch.nn.functional as F

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from bench_train import matmul_peak  # noqa: E402

from nas import load_arch, load_space  # noqa: E402
from nas.drivers.expand import top1_se  # noqa: E402
from nas.drivers.tunas.driver import reclip  # noqa: E402
from nas.drivers.tunas.search import (SearchConfig, SupernetData, default_fixed, heldout_top1,  # noqa: E402
                                      supernet_backward, warmup_steps)
from nas.drivers.tunas.controller import Controller  # noqa: E402
from nas.drivers.tunas.supernet import Path as NetPath, Supernet, kernel_positions  # noqa: E402
from nas.loop import run_steps  # noqa: E402
from nas.models import build_model  # noqa: E402

CONDITIONS = ("supernet-a0", "supernet-wide", "standalone-a0", "supernet-a0-2048", "shared-uniform", "shared-warmup", "shared-filters", "shared-two")


def train_one(condition: str, seed: int, clip: tuple[int, int, int], steps: int, batch: int,
              zero_init_residual: bool, lr: float = 3e-3) -> dict:
    """Train one condition and return its row."""
    space = load_space("movinet").with_clip(clip)
    train_clips = 2048 if condition.endswith("-2048") else 512
    cfg = SearchConfig(target_gflops=0.18, fixed=default_fixed(space), steps=steps, batch_size=batch,
                       train_clips=train_clips, seed=seed, zero_init_residual=zero_init_residual, lr=lr)
    torch.manual_seed(seed)
    data = SupernetData("synthetic", space, cfg.fixed, cfg)
    arch = reclip(load_arch("movinet-a0"), clip, suffix=False)
    path = NetPath.of(arch, classes=data.num_classes)
    dims, widest = space.dims(), space.sample_of(arch)  # A0 with every width and expansion at its largest
    for label in widest:
        if label.endswith(("width", "/expand", "/project")):
            widest[label] = max(dims[label].values) if dims[label].values is not None else dims[label].high
    wide_path = NetPath.of(space.freeze(widest), classes=data.num_classes)
    if condition == "supernet-wide":
        path = wide_path
    if condition == "shared-two":
        model = Supernet(space, classes=data.num_classes, zero_init_residual=zero_init_residual)
        paths = (path, wide_path)
        step_fn = lambda s: {"loss": supernet_backward(model, paths[s % 2], *data.batch("train", s, batch), cfg)}  # noqa: E731
    elif condition.startswith("shared"):
        model = Supernet(space, classes=data.num_classes, zero_init_residual=zero_init_residual)
        fixed = dict(cfg.fixed)
        if condition == "shared-filters":  # A0's depths and kernels: only widths and expansions vary
            fixed.update({label: value for label, value in space.sample_of(arch).items()
                          if label.endswith(("/kernel", "/repeat"))})
        ctrl = Controller(space, cfg.target, steps, fixed=fixed, lr=0.0, seed=seed,
                          warmup_fraction=0.25 if condition == "shared-warmup" else 0.0)
        positions = kernel_positions(space)

        def step_fn(s: int) -> dict:
            sampled = ctrl.sample()
            ctrl.step += 1  # the warm-up's clock; the policy stays uniform
            mixed = [p for label in sampled.mixed_labels for p in positions.get(label, ())]
            path_now = NetPath.of(sampled.arch, mixed, classes=data.num_classes)
            return {"loss": supernet_backward(model, path_now, *data.batch("train", s, batch), cfg)}
    elif condition.startswith("supernet"):
        model = Supernet(space, classes=data.num_classes, zero_init_residual=zero_init_residual)
        step_fn = lambda s: {"loss": supernet_backward(model, path, *data.batch("train", s, batch), cfg)}  # noqa: E731
    else:
        model = build_model(arch.with_classes(data.num_classes), zero_init_residual=zero_init_residual)

        def step_fn(s: int) -> dict:
            x, y = data.batch("train", s, batch)
            loss = F.cross_entropy(model(x), y, label_smoothing=cfg.label_smoothing)
            loss.backward()
            return {"loss": float(loss.detach())}
    model.train()
    opt = torch.optim.Adam(model.parameters(), lr=cfg.lr)
    losses: list[float] = []
    held = [data.batch("held", i, 64) for i in range(len(data.held[1]) // 64)]
    # the evaluated path's held-out top-1 every 100 steps: when it leaves chance (the search's RL starts
    # after SearchConfig.warmup_fraction of the steps); costs about 3 % of the wall time, which includes it
    curve: list[float] = []

    def after_step(done: int, metrics: dict) -> None:
        losses.append(metrics["loss"])
        if done % 100 == 0 and done < steps and not condition.startswith("standalone"):
            curve.append(round(heldout_top1(model, path, held), 1))

    t0 = time.perf_counter()
    run_steps(opt, step_fn, start=0, end=steps, total=steps, base_lr=cfg.lr, warmup=warmup_steps(steps),
              after_step=after_step)
    wall = time.perf_counter() - t0
    if not condition.startswith("standalone"):
        top1 = heldout_top1(model, path, held)
        curve.append(round(top1, 1))
    else:
        with torch.no_grad():
            top1 = 100 * sum(int((model(x).argmax(-1) == y).sum()) for x, y in held) / sum(len(y) for _, y in held)
    n = sum(len(y) for _, y in held)
    return {"condition": condition, "seed": seed, "zero_init_residual": zero_init_residual, "lr": lr, "clip": "x".join(map(str, clip)), "steps": steps, "batch": batch,
            "train_clips": train_clips, "heldout_clips": n, "top1": round(top1, 2),
            "se": round(top1_se(top1, n), 2),
            "final_train_loss": round(sum(losses[-50:]) / len(losses[-50:]), 3),
            # mean training loss per 100 steps: when (and whether) it leaves the plateau at ln(classes)
            "loss_per_100_steps": [round(sum(w) / len(w), 3) for w in (losses[i:i + 100] for i in range(0, steps, 100))],
            "top1_every_100_steps": curve,
            "chance": round(100 / data.num_classes, 2), "wall_s": round(wall, 1)}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--conditions", default=",".join(CONDITIONS))
    parser.add_argument("--seeds", default="0")
    parser.add_argument("--clip", default="8x10x112")
    parser.add_argument("--steps", type=int, default=600)
    parser.add_argument("--batch", type=int, default=16)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--zero-init-residual", action="store_true")
    parser.add_argument("--lr", type=float, default=3e-3, help="peak learning rate (default 3e-3, the search's default when these runs began; 1e-3 since)")
    parser.add_argument("--out", type=Path, default=Path(__file__).parent / "results" / "fixed_path.json")
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    clip = tuple(int(v) for v in args.clip.split("x"))
    done = json.loads(args.out.read_text()) if args.out.is_file() else {"runs": []}
    done.setdefault("matmul_gmacs", []).append(round(matmul_peak(), 1))
    have = {(r["condition"], r["seed"], r["clip"], r["steps"], r["batch"], r["zero_init_residual"], r.get("lr", 3e-3))
            for r in done["runs"]}
    for condition in args.conditions.split(","):
        for seed in (int(s) for s in args.seeds.split(",")):
            if (condition, seed, args.clip, args.steps, args.batch, args.zero_init_residual, args.lr) in have:
                continue
            row = train_one(condition, seed, clip, args.steps, args.batch, args.zero_init_residual, args.lr)
            print(json.dumps(row), flush=True)
            done["runs"].append(row)
            args.out.parent.mkdir(parents=True, exist_ok=True)
            args.out.write_text(json.dumps(done, indent=1))
    done["matmul_gmacs"].append(round(matmul_peak(), 1))
    args.out.write_text(json.dumps(done, indent=1))


if __name__ == "__main__":
    main()
