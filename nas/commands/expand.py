"""``xnas expand``: X3D progressive expansion to a target cost, then backward contraction.

    xnas expand --target-gflops 4                 # the embedded default: synthetic data, local Ray
    xnas expand --target-gflops 0.6 --axes frames,spatial,depth --criterion accuracy
    xnas expand --target-gflops 4 --resume        # continue a run (finished trials are not redone)

The driver is :mod:`nas.drivers.expand`; the run directory, the Ray / in-process dispatch, the proxy
options and the results table come from the shared run options (:mod:`nas.commands._run_options`).
"""
from __future__ import annotations

import argparse
import sys
import time
from typing import Any

from nas.errors import UsageError
from nas.data.synthetic import DEFAULT_TASK
from nas.proxy import Proxy

__all__ = ["register", "cmd_expand", "DEFAULT_PROXY"]

# The embedded default proxy: sized so that `xnas expand --target-gflops 4` (about 8 steps x 6
# candidates + 2 trials) fits in 20 min on 2 CPU cores (one 2-thread Ray trial at a time). Candidates
# train at a quarter of their crop (the GFLOPs reported are always the full-size ones) and inherit
# their parent's weights, so 40 fine-tuning steps per candidate carry the lineage's training forward.
# 384 validation clips (standard error of a top-1 difference about 3 points near 25 %, against 5.8 at
# 96) cost about a tenth of a candidate's time: decisions are worth the clips
# (experiments/expand_inherit/README.md).
DEFAULT_PROXY = Proxy(steps=40, batch_size=8, size_scale=0.25, train_clips=192, val_clips=384,
                      task=DEFAULT_TASK, warmup_steps=8, checkpoint_every=0)


def _number(name: str):
    def parse(text: str) -> float:
        try:
            return float(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"expected a number for {name}, got {text!r}") from None
    return parse


def _int(name: str):
    def parse(text: str) -> int:
        try:
            return int(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"expected an integer for {name}, got {text!r}") from None
    return parse


def register(subparsers: Any) -> None:
    """Add the ``expand`` subcommand."""
    from nas.commands._run_options import add_run_arguments
    from nas.drivers.expand import AXES, CRITERIA

    p = subparsers.add_parser(
        "expand", help="X3D progressive expansion to a target GFLOPs (the headline command)",
        description="Expand an architecture one axis at a time (one candidate per axis at ~RATE x the cost, "
                    "all trained with the same proxy, keep the best trade-off) until the target, then contract "
                    "the last step to land within the tolerance of --target-gflops. GFLOPs = multiply-adds of "
                    "conv and linear layers x 1e-9, of the full-size architecture.")
    g = p.add_argument_group("expansion")
    target = g.add_mutually_exclusive_group(required=True)
    target.add_argument("--target-gflops", type=_number("--target-gflops"),
                        help="the cost to land on (GFLOPs = multiply-adds x 1e-9)")
    target.add_argument("--target-ms", type=_number("--target-ms"),
                        help="expand in predicted latency instead: the ms per clip (batch 1, CPU) to land on, from "
                             "this machine's latency table (measured first if missing; docs/latency.md)")
    g.add_argument("--latency-threads", type=_int("--latency-threads"), default=1,
                   help="with --target-ms: CPU threads the latency is predicted at (default 1)")
    g.add_argument("--from", dest="start", default="x2d", metavar="ARCH",
                   help="start architecture: a reference name or a document of an expandable space (default x2d)")
    g.add_argument("--axes", default=",".join(AXES),
                   help="comma-separated axes to expand (default all: " + ",".join(AXES) + ")")
    g.add_argument("--rate", type=_number("--rate"), default=2.0, help="cost multiplier per step (default 2.0)")
    g.add_argument("--criterion", default="gain-per-log-cost",
                   help="trade-off a step keeps: " + ", ".join(CRITERIA) + " (default gain-per-log-cost, as X3D)")
    g.add_argument("--tolerance", type=_number("--tolerance"), default=0.03,
                   help="the final cost must be within this fraction of the target (default 0.03)")
    g.add_argument("--span", type=_int("--span"), default=32,
                   help="source frames a single-frame start clip stands for (X-Fast / X-Temporal from X2D; default 32)")
    g.add_argument("--max-steps", type=_int("--max-steps"), default=20, help="most forward steps (default 20)")
    g = p.add_argument_group("weight inheritance (network morphism)")
    g.add_argument("--inherit", action=argparse.BooleanOptionalAction, default=True,
                   help="every candidate starts from its parent's trained weights, transformed along its axis, "
                        "and fine-tunes --steps steps (default); --no-inherit trains every candidate from "
                        "scratch, as the X3D paper does")
    g.add_argument("--start-steps", type=_int("--start-steps"), default=None,
                   help="with --inherit: the start's own training steps (default 4 x --steps; 0 with "
                        "--from-checkpoint: use the checkpoint as it is)")
    g.add_argument("--from-checkpoint", metavar="FILE",
                   help="with --inherit: trained weights of the --from architecture to start from (an `xnas "
                        "train` checkpoint.pt or a state dict)")
    g.add_argument("--inherit-noise", type=_number("--inherit-noise"), default=0.01,
                   help="relative noise added to copied channels so copies learn apart (default 0.01; 0 keeps "
                        "the parent's function exactly)")
    add_run_arguments(p, proxy=DEFAULT_PROXY, formula="x3d-factors")
    p.set_defaults(func=cmd_expand)


def _start_arch(ref: str):
    from nas.errors import DSLError
    from nas.registry import load_arch

    try:
        return load_arch(ref)
    except (DSLError, FileNotFoundError, OSError) as err:
        raise UsageError(f"--from: {err}") from None


def cmd_expand(args: argparse.Namespace) -> int:
    """Run the expansion; print the summary; return 0 (1 if the final cost missed the tolerance)."""
    from nas.commands._run_options import open_run
    from nas.drivers.expand import ExpandError, check_settings, expand, summary_text, write_outputs

    start = _start_arch(args.start)
    axes = tuple(a.strip() for a in args.axes.split(",") if a.strip())
    settings = dict(target_gflops=args.target_gflops, rate=args.rate, axes=axes, criterion=args.criterion,
                    tolerance=args.tolerance, span=args.span, max_steps=args.max_steps)
    measure = None
    if args.target_ms is not None:
        measure = _latency_measure(start, args.latency_threads)
        settings["target_ms"] = args.target_ms
    try:
        check_settings(start, measure=measure, **settings)
    except ExpandError as err:  # name the flag, not the driver field
        flag = "--" + (err.field or "").replace("_", "-")
        raise UsageError(str(err).replace(f"expand.{err.field}", flag, 1)) from None
    if args.evaluator == "formula":  # before the run directory is made
        from nas.formulas import get_formula

        try:
            get_formula(args.formula)
        except ValueError as err:
            raise UsageError(str(err).replace("evaluator.formula", "--formula")) from None
    config = {"start": start.hash, "start_name": start.name, **{k: (list(v) if isinstance(v, tuple) else v)
                                                               for k, v in settings.items()}}
    if measure is not None:
        config["latency"] = {"device": "cpu", "threads": args.latency_threads, "mode": "clip", "batch": 1}
    val_clips, chance = _validation(args)
    inheritance = _inheritance(args, config)
    run, evaluator = open_run(args, driver="expand", config=config, inheritance=inheritance)
    t0 = time.perf_counter()
    try:
        try:
            result = expand(start, evaluator, log=run.log, val_clips=val_clips, chance_top1=chance, measure=measure,
                            **settings)
        except ExpandError as err:
            raise UsageError(str(err)) from None
        except KeyboardInterrupt:
            run.log(f"interrupted; finished trials are kept: rerun with --resume --name {run.name} to continue")
            return 130
        paths = write_outputs(result, run.dir, save_arch=lambda arch, name: run.save_arch(arch, name))
        paths.update(_plots(result, run))
        if inheritance is not None:
            paths.update(_prune_weights(result, run.dir / "weights"))
    finally:
        run.close()
    wall = time.perf_counter() - t0
    print(summary_text(result, paths))
    print(f"  run dir        {run.dir}  ({sum(1 for c in result.rows() if c.result is not None)} candidates, "
          f"{wall:.0f} s this invocation)")
    run.log(f"expand finished in {wall:.0f} s: final {result.final.gflops:.4f} GFLOPs, top-1 {result.final.top1:.2f}")
    return 0 if result.landed else 1


def _latency_measure(start: Any, threads: int) -> Any:
    """A document's predicted clip latency (ms, batch 1) on this machine: the cost ``--target-ms``
    expands in (the family's latency table is measured first when missing)."""
    from nas.commands.latency import latency_cost
    from nas.dsl.arch import Arch
    from nas.registry import load_space

    predict = latency_cost(load_space(start.space or "x3d"), threads=threads,
                           log=lambda m: print(m, file=sys.stderr, flush=True))
    return lambda doc: predict(Arch.from_dict(doc))


def _inheritance(args: argparse.Namespace, config: dict) -> Any:
    """The weight-inheritance settings as a function of the run's weights folder (``None`` with
    ``--no-inherit``); records them in ``config``. Checks the flags, naming them."""
    from nas.commands._run_options import proxy_from_args

    if args.evaluator == "formula":  # a formula has no weights to inherit
        config["inherit"] = False
        return None
    if not args.inherit:
        for flag, value in (("--from-checkpoint", args.from_checkpoint), ("--start-steps", args.start_steps)):
            if value is not None:
                raise UsageError(f"{flag}: got {value!r} with --no-inherit; allowed: only with --inherit")
        config["inherit"] = False
        return None
    from pathlib import Path

    from nas.evaluator import Inheritance

    checkpoint = Path(args.from_checkpoint).resolve() if args.from_checkpoint else None
    if checkpoint is not None and not checkpoint.is_file():
        raise UsageError(f"--from-checkpoint: got {args.from_checkpoint!r}; allowed: an existing weights file")
    steps = args.start_steps if args.start_steps is not None else 4 * proxy_from_args(args, DEFAULT_PROXY).steps
    if steps < (0 if checkpoint else 1):
        raise UsageError(f"--start-steps: got {steps}; allowed: an integer >= 1 (>= 0 with --from-checkpoint)")
    if not 0 <= args.inherit_noise <= 1:
        raise UsageError(f"--inherit-noise: got {args.inherit_noise:g}; allowed: a number in [0, 1]")
    config["inherit"] = {"start_steps": steps, "noise": args.inherit_noise,
                         "from_checkpoint": str(checkpoint) if checkpoint else None}
    return lambda weights_dir: Inheritance(weights_dir, start_steps=steps, start_checkpoint=checkpoint,
                                           noise=args.inherit_noise)


def _prune_weights(result: Any, weights_dir: Any) -> dict[str, Any]:
    """Delete the weights of candidates off the chosen path once the run is finished (a run keeps every
    trained model's weights while it runs, since any candidate of a step may become the next parent;
    after the last decision only the path's are parents of anything). Returns the final weights' path."""
    keep = {f"{c.arch.hash}.pt" for c in result.path()} | {f"{result.final.arch.hash}.pt"}
    for path in weights_dir.glob("*.pt") if weights_dir.is_dir() else []:
        if path.name not in keep:
            path.unlink(missing_ok=True)
    final = weights_dir / f"{result.final.arch.hash}.pt"
    return {"final_weights": final} if final.is_file() else {}


def _validation(args: argparse.Namespace) -> tuple[int | None, float | None]:
    """The validation clips each candidate is scored on (for the decisions' standard errors) and the
    task's chance top-1; ``(None, None)`` for a formula, which has no sampling error."""
    if args.evaluator == "formula":
        return None, None
    from nas.commands._run_options import proxy_from_args

    proxy = proxy_from_args(args, DEFAULT_PROXY)
    if args.data in (None, "", "synthetic"):
        from nas.data.synthetic import num_classes

        return proxy.val_clips, 100.0 / num_classes(proxy.task)
    from nas.data.layouts import discover

    try:
        val = discover(args.data, split="val")
    except ValueError:
        return None, None
    return len(val), 100.0 / val.num_classes


def _plots(result: Any, run: Any) -> dict[str, Any]:
    """The trade-off plot (always) and the Pareto plot (when :mod:`nas.plots` is available)."""
    from nas.drivers.expand_plots import tradeoff_plot

    paths = {"tradeoff_plot": tradeoff_plot(result, run.plots_dir / "expansion.png")}
    try:
        from nas.plots import pareto_plot
    except ImportError:
        print("note: nas.plots is not available; no Pareto plot written", file=sys.stderr)
        return paths
    from nas.registry import load_arch

    baselines = [load_arch(n) for n in ("x3d-xs", "x3d-s", "x3d-m")]
    paths["pareto_plot"] = pareto_plot(run.results(), run.plots_dir / "pareto.png", baselines=baselines,
                                       title="xnas expand: every evaluated candidate")
    return paths
