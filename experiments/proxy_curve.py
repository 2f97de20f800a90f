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

from nas.dsl.arch import Arch
from nas.models import build_model
from nas.proxy import Proxy
from nas.registry import load_arch
from nas.train import _batches, _choose_layout, _evaluate_split, _lr_factor, _optimizer, _seed_everything, \
    _to_tensor, make_data


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("arch", help="reference architecture name or document path")
    parser.add_argument("--every", type=int, default=50)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--json", help="append the curve as one JSON line to this file")
    for name, kind in (("steps", int), ("batch_size", int), ("lr", float), ("size_scale", float),
                       ("task", str), ("optimizer", str), ("warmup_steps", int), ("weight_decay", float),
                       ("train_clips", int), ("val_clips", int)):
        parser.add_argument("--" + name.replace("_", "-"), dest=name, type=kind)
    args = parser.parse_args()
    overrides = {k: v for k, v in vars(args).items() if k in Proxy.__dataclass_fields__ and v is not None}
    proxy = Proxy(**overrides)
    arch = load_arch(args.arch)

    t0 = time.perf_counter()
    train, val, _ = make_data("synthetic", arch, proxy, args.seed)
    data_s = time.perf_counter() - t0
    _seed_everything(args.seed)
    sized = Arch.from_dict({**arch.to_dict(), "classes": train.num_classes})
    model = build_model(sized).train()
    optimizer = _optimizer(model, proxy)
    batches = _batches(len(train), proxy.batch_size, args.seed, 0)

    def fetch(indices: np.ndarray) -> tuple[np.ndarray, torch.Tensor]:
        items = [train[int(i)] for i in indices]
        return np.stack([c[0] for c, _ in items]), torch.tensor([lab for _, lab in items])

    clips, labels = fetch(next(_batches(len(train), proxy.batch_size, args.seed, 0)))
    layout = _choose_layout(model, _to_tensor(clips, torch.device("cpu"), "channels_first"), labels,
                            (arch.hash, clips.shape)) if proxy.layout == "auto" else proxy.layout
    model.to(memory_format=torch.channels_last_3d if layout == "channels_last_3d" else torch.contiguous_format)
    print(f"{arch.name}: {clips.shape[1]}x{clips.shape[-2]}², layout {layout}, data {data_s:.1f} s, proxy {proxy}")
    curve = []
    train_s = 0.0
    for step in range(proxy.steps):
        t = time.perf_counter()
        clips, labels = fetch(next(batches))
        for group in optimizer.param_groups:
            group["lr"] = proxy.lr * _lr_factor(step, proxy)
        loss = F.cross_entropy(model(_to_tensor(clips, torch.device("cpu"), layout)), labels,
                               label_smoothing=proxy.label_smoothing)
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        optimizer.step()
        train_s += time.perf_counter() - t
        if (step + 1) % args.every == 0 or step + 1 == proxy.steps:
            t = time.perf_counter()
            top1, val_loss = _evaluate_split(model, val, proxy.batch_size, torch.device("cpu"), layout)
            eval_s = time.perf_counter() - t
            model.train()
            curve.append({"step": step + 1, "train_s": round(train_s, 1), "top1": top1, "val_loss": val_loss,
                          "eval_s": round(eval_s, 1)})
            print(f"  step {step + 1:5d}  train {train_s:7.1f} s  loss {loss.item():.3f}  "
                  f"val top-1 {top1:5.1f} %  (eval {eval_s:.1f} s)", flush=True)
    if args.json:
        with open(args.json, "a") as f:
            f.write(json.dumps({"arch": arch.name, "proxy": proxy.to_dict(), "layout": layout, "curve": curve}) + "\n")


if __name__ == "__main__":
    main()
