"""Learning curve of one architecture under a proxy: validation top-1 every ``--every`` steps.

Used to choose the default proxy (how many steps a temporal model needs on the synthetic default) and
to compare a temporal model with its frame-wise ablation. It runs the same training as
``nas.train.evaluate`` (same data, optimiser, schedule, layout choice) but pauses every ``--every``
steps to score the whole validation split; the training clock excludes those pauses. Run::

    .venv/bin/python experiments/proxy_curve.py x3d-s --steps 400 --every 50 [--size-scale 0.4] [--task mixed]
"""
from __future__ import annotations

import argparse
import json
import time

import numpy as np
import torch
import torch.nn.functional as F

from nas.models import build_model
from nas.proxy import Proxy
from nas.registry import load_arch
from nas.loop import run_steps
from nas.train import batch_indices, choose_layout, evaluate_split, make_data, make_optimizer, precise_bn, \
    seed_everything, to_tensor


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("arch", help="reference architecture name or document path")
    parser.add_argument("--every", type=int, default=50)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--json", help="append the curve as one JSON line to this file")
    for name, kind in (("steps", int), ("batch_size", int), ("lr", float), ("size_scale", float),
                       ("task", str), ("optimizer", str), ("warmup_steps", int), ("weight_decay", float),
                       ("train_clips", int), ("val_clips", int), ("precise_bn_batches", int)):
        parser.add_argument("--" + name.replace("_", "-"), dest=name, type=kind)
    parser.add_argument("--zero-init-residual", action=argparse.BooleanOptionalAction, default=None,
                        help="residual branches start at scale 0 (X3D's recipe) instead of the proxy's default 1")
    args = parser.parse_args()
    overrides = {k: v for k, v in vars(args).items() if k in Proxy.__dataclass_fields__ and v is not None}
    proxy = Proxy(**overrides)
    arch = load_arch(args.arch)

    t0 = time.perf_counter()
    train, val, _ = make_data("synthetic", arch, proxy, args.seed)
    data_s = time.perf_counter() - t0
    seed_everything(args.seed)
    sized = arch.with_classes(train.num_classes)
    model = build_model(sized, zero_init_residual=proxy.zero_init_residual).train()
    optimizer = make_optimizer(model, proxy)
    batches = batch_indices(len(train), proxy.batch_size, args.seed, 0)

    def fetch(indices: np.ndarray) -> tuple[np.ndarray, torch.Tensor]:
        items = [train[int(i)] for i in indices]
        return np.stack([c[0] for c, _ in items]), torch.tensor([lab for _, lab in items])

    clips, labels = fetch(next(batch_indices(len(train), proxy.batch_size, args.seed, 0)))
    layout = choose_layout(model, to_tensor(clips, torch.device("cpu"), "channels_first"), labels,
                            (arch.hash, clips.shape)) if proxy.layout == "auto" else proxy.layout
    model.to(memory_format=torch.channels_last_3d if layout == "channels_last_3d" else torch.contiguous_format)
    print(f"{arch.name}: {clips.shape[1]}x{clips.shape[-2]}², layout {layout}, data {data_s:.1f} s, proxy {proxy}")
    curve = []

    def train_step(step: int) -> dict:
        clips, labels = fetch(next(batches))
        loss = F.cross_entropy(model(to_tensor(clips, torch.device("cpu"), layout)), labels,
                               label_smoothing=proxy.label_smoothing)
        loss.backward()
        return {"loss": loss.item()}

    train_s = {"before_eval": 0.0}

    def evaluate_every(done: int, metrics: dict) -> None:
        if done % args.every == 0 or done == proxy.steps:
            t = time.perf_counter()
            precise_bn(model, train, proxy, args.seed, torch.device("cpu"), layout)  # as evaluate() does
            top1, val_loss = evaluate_split(model, val, proxy.batch_size, torch.device("cpu"), layout)
            eval_s = time.perf_counter() - t
            model.train()
            trained = time.perf_counter() - t_start - train_s["before_eval"] - eval_s
            train_s["before_eval"] += eval_s
            curve.append({"step": done, "train_s": round(trained, 1), "top1": top1, "val_loss": val_loss,
                          "eval_s": round(eval_s, 1)})
            print(f"  step {done:5d}  train {trained:7.1f} s  loss {metrics['loss']:.3f}  "
                  f"val top-1 {top1:5.1f} %  (eval {eval_s:.1f} s)", flush=True)

    t_start = time.perf_counter()
    run_steps(optimizer, train_step, start=0, end=proxy.steps, total=proxy.steps, base_lr=proxy.lr,
              warmup=proxy.warmup_steps, after_step=evaluate_every)
    if args.json:
        with open(args.json, "a") as f:
            f.write(json.dumps({"arch": arch.name, "proxy": proxy.to_dict(), "layout": layout, "curve": curve}) + "\n")


if __name__ == "__main__":
    main()
