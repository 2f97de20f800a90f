"""The ``xnas`` command line.

Subcommands: ``list`` (spaces and reference architectures with their cost), ``cost ARCH`` (exact
multiply-adds and params of one architecture), ``train ARCH`` (proxy-train and evaluate), ``check DOC`` (validate a space or architecture
document). A user mistake prints one line to stderr and exits with status 2, never a traceback.
"""
from __future__ import annotations

import argparse
import json
import sys
from typing import Sequence

from nas.cost import GFLOPS_NOTE
from nas.data.synthetic import DEFAULT_TASK, TASKS
from nas.errors import DSLError, UsageError
from nas.commands.argtypes import fraction as _fraction, non_negative_int as _non_negative, positive_int as _positive

__all__ = ["main", "UsageError", "COMMAND_MODULES"]

# Commands that live in their own module under nas/commands/. Each module defines
# ``register(subparsers)``, which adds its parser(s) and sets ``func``; it keeps heavy imports (torch,
# Ray, Optuna) inside the command function so ``xnas --help`` stays fast.
COMMAND_MODULES = ("stream", "export", "sample", "expand", "search", "results", "fidelity", "latency")


def cmd_list(args: argparse.Namespace) -> int:
    """Print every shipped space and reference architecture with its cost."""
    from nas.registry import arch_names, load_arch, load_space, space_names

    spaces = []
    for name in space_names():
        space = load_space(name)
        spaces.append({"name": name, "family": space.family, "dims": len(space.dims()), "size": space.size()})
    archs = []
    for name in arch_names():
        arch = load_arch(name)
        cost = arch.cost()
        clip = arch.clip
        archs.append({"name": name, "space": arch.space, **cost.as_dict(), "frame_stride": clip.frame_stride})
    if args.json:
        for s in spaces:
            s["size"] = str(s["size"])
        print(json.dumps({"spaces": spaces, "architectures": archs}, indent=2))
        return 0
    # column widths follow the longest name, so new spaces and architectures never break the table
    sw = max([len("name")] + [len(s["name"]) for s in spaces])
    fw = max([len("family")] + [len(s["family"]) for s in spaces])
    print("spaces")
    print(f"  {'name':<{sw}} {'family':<{fw}} {'dims':>5}  size")
    for s in spaces:
        size = s["size"]
        size_text = "continuous" if size == float("inf") else f"{float(size):.3g}"
        print(f"  {s['name']:<{sw}} {s['family']:<{fw}} {s['dims']:>5}  {size_text}")
    aw = max([len("name")] + [len(a["name"]) for a in archs])
    pw = max([len("space")] + [len(a["space"] or "-") for a in archs])
    print("\nreference architectures")
    print(f"  {'name':<{aw}} {'space':<{pw}} {'clip (T x stride, crop)':<24} {'GFLOPs':>9} {'params':>12}")
    for a in archs:
        clip_text = f"{a['frames']} x {a['frame_stride']}, {a['size']}²"
        print(f"  {a['name']:<{aw}} {a['space'] or '-':<{pw}} {clip_text:<24} {a['gflops']:>9.4f} {a['params']:>12,}")
    print(f"\n{GFLOPS_NOTE}; params = trainable parameters of the built model.")
    return 0


def cmd_cost(args: argparse.Namespace) -> int:
    """Print the exact cost of one architecture."""
    from nas.registry import load_arch

    arch = load_arch(args.arch)
    cost = arch.cost(frames=args.frames, size=args.size)
    if args.json:
        print(json.dumps({"name": arch.name, "hash": arch.hash, **cost.as_dict()}))
        return 0
    print(f"{arch.name} ({arch.family}, hash {arch.hash})")
    print(f"  clip    {cost.frames} frames x {cost.size}²")
    print(f"  GFLOPs  {cost.gflops:.6f}   ({cost.macs:,} multiply-adds)")
    print(f"  params  {cost.params:,}")
    print(f"  {GFLOPS_NOTE}")
    return 0


def cmd_check(args: argparse.Namespace) -> int:
    """Validate a document; print what it is."""
    from nas.dsl import Arch, Space
    from nas.dsl.document import read_document

    path = args.document
    raw = read_document(path)
    kind = raw.get("kind") if isinstance(raw, dict) else None
    if kind == "architecture":
        arch = Arch.from_dict(raw, file=str(path))
        print(f"{path}: architecture {arch.name!r} ({arch.family}), hash {arch.hash}, "
              f"{arch.cost().gflops:.4f} GFLOPs, {arch.cost().params:,} params")
    else:
        space = Space.from_dict(raw, file=str(path))
        print(f"{path}: space {space.name!r} ({space.family}), {len(space.dims())} dims, size {space.size():.3g}")
    return 0


def cmd_train(args: argparse.Namespace) -> int:
    """Proxy-train one architecture, evaluate it, write a checkpoint and a metrics JSON."""
    from pathlib import Path

    from nas.registry import load_arch

    arch = load_arch(args.arch)
    try:
        from nas.train import Proxy, evaluate

        overrides = {k: v for k, v in {
            "steps": args.steps, "batch_size": args.batch_size, "size_scale": args.size_scale,
            "optimizer": args.optimizer, "lr": args.lr, "task": args.task,
            "zero_init_residual": args.zero_init_residual,
        }.items() if v is not None}
        proxy = Proxy(**overrides)
    except ValueError as err:
        raise UsageError(str(err)) from None
    out = Path(args.out or f"runs/train-{arch.name}-{arch.hash[:8]}")
    out.mkdir(parents=True, exist_ok=True)
    arch.save(out / "arch.yaml")
    try:
        result = evaluate(arch, args.data, proxy, seed=args.seed, checkpoint=out / "checkpoint.pt",
                          workers=args.workers_per_trial, loader_workers=args.loader_workers)
    except ValueError as err:
        raise UsageError(str(err).replace("workers:", "--workers-per-trial:", 1)) from None
    metrics = {**result.as_dict(), "proxy": proxy.to_dict(), "workers": args.workers_per_trial}
    (out / "metrics.json").write_text(json.dumps(metrics, indent=2))
    if result.status != "ok":
        print(f"{arch.name}: trial failed: {result.reason}", file=sys.stderr)
        return 1
    print(f"{arch.name}: top-1 {result.top1:.2f} %  loss {result.loss:.3f}  ({result.steps} steps at "
          f"{result.frames}x{result.size}², {result.train_clips_per_s:.1f} clips/s, {result.wall_s:.0f} s, "
          f"layout {result.layout})")
    print(f"  {arch.cost().gflops:.4f} GFLOPs (full-size architecture; {GFLOPS_NOTE})")
    if result.skipped_files:
        print(f"  skipped {len(result.skipped_files)} unreadable file(s): {', '.join(result.skipped_files)}")
    print(f"  wrote {out / 'metrics.json'} and {out / 'checkpoint.pt'}")
    return 0


def build_parser() -> argparse.ArgumentParser:
    """The argument parser of ``xnas``."""
    parser = argparse.ArgumentParser(prog="xnas", description="Neural-architecture search for video networks.")
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")

    p = sub.add_parser("list", help="spaces and reference architectures with their cost")
    p.add_argument("--json", action="store_true", help="print one JSON object")
    p.set_defaults(func=cmd_list)

    p = sub.add_parser("cost", help="exact GFLOPs (multiply-adds) and params of an architecture")
    p.add_argument("arch", help="a reference architecture name (x3d-m) or a document path")
    p.add_argument("--frames", type=_positive, help="count for this many frames instead of the architecture's")
    p.add_argument("--size", type=_positive, help="count for this crop size instead of the architecture's")
    p.add_argument("--json", action="store_true", help="print one JSON object (gflops, macs, params, frames, size)")
    p.set_defaults(func=cmd_cost)

    p = sub.add_parser("train", help="proxy-train and evaluate one architecture")
    p.add_argument("arch", help="a reference architecture name or a document path")
    p.add_argument("--data", default="synthetic", help="'synthetic' (default) or a path to videos")
    p.add_argument("--steps", type=_positive, help="optimiser steps")
    p.add_argument("--batch-size", type=_positive, help="clips per step")
    p.add_argument("--size-scale", type=_fraction,
                   help="train at this fraction of the crop (reported GFLOPs stay the full-size ones)")
    p.add_argument("--optimizer", choices=("sgd", "rmsprop", "adamw"))
    p.add_argument("--zero-init-residual", action=argparse.BooleanOptionalAction, default=None,
                   help="start each residual branch's scale (last BN gamma; MoViNet: ReZero) at 0 as X3D's recipe does (default: at 1)")
    p.add_argument("--workers-per-trial", type=_positive, default=1,
                   help="data-parallel processes (DDP: gloo on CPU, NCCL on CUDA); the same training as one "
                        "process with the same global batch (default 1)")
    p.add_argument("--loader-workers", type=_non_negative, default=0,
                   help="processes that read training batches ahead (decode, resize, crop); the same batches at "
                        "any count (default 0: read in the training process)")
    p.add_argument("--lr", type=float, help="peak learning rate")
    p.add_argument("--task", help="synthetic task: " + ", ".join(TASKS) + f" (default {DEFAULT_TASK})")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--out", help="output folder (default runs/train-<arch>-<hash>)")
    p.set_defaults(func=cmd_train)

    p = sub.add_parser("check", help="validate a space or architecture document")
    p.add_argument("document", help="path of a YAML or JSON document")
    p.set_defaults(func=cmd_check)

    import importlib
    import importlib.util

    for name in COMMAND_MODULES:
        if importlib.util.find_spec(f"nas.commands.{name}") is not None:
            importlib.import_module(f"nas.commands.{name}").register(sub)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    """Run ``xnas``; return the exit status (2 for user mistakes, messages on stderr)."""
    parser = build_parser()
    args = parser.parse_args(argv)
    try:
        return args.func(args)
    except (DSLError, UsageError) as err:
        print(f"xnas: error: {err}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
