"""Command-line options every search command shares (``xnas sample``, ``xnas expand``, ``xnas search``):
where the run lives, where trials run (Ray or in-process), what scores them (the proxy trainer or a
named formula) and the proxy budget.

A driver calls :func:`add_run_arguments` on its parser with the proxy budget it wants by default, then
:func:`open_run` in its command function to get the run and a caching, recording evaluator.
"""
from __future__ import annotations

import argparse
from pathlib import Path
from typing import TYPE_CHECKING, Any, Callable

from nas.data.synthetic import DEFAULT_TASK, TASKS
from nas.errors import RunError, UsageError
from nas.proxy import AUTO_CPUS, LAYOUTS, Proxy
from nas.commands.argtypes import fraction as _fraction
from nas.commands.argtypes import cpus_per_trial as _cpus_per_trial
from nas.commands.argtypes import non_negative_float as _non_negative_float
from nas.commands.argtypes import non_negative_int as _non_negative_int
from nas.commands.argtypes import positive_int as _positive_int

# Per trial, one thread for a small proxy training step and two for a larger one (nas.proxy.AUTO_CPUS,
# bounds per family). Measured on 2 cores (experiments/results/threads_per_trial.md): one 2-thread trial
# trains X3D candidates from 0.22 GMAC a step 1.2-1.6x faster than two 1-thread trials side by side, while
# smaller X3D candidates and MoViNets up to 0.57 GMAC a step (the TuNAS retrains) train 1.1-2.4x faster
# two at a time.
DEFAULT_CPUS_PER_TRIAL = AUTO_CPUS

if TYPE_CHECKING:
    from nas.evaluator import Evaluator, Inheritance
    from nas.runs import RecordingEvaluator, Run

__all__ = ["add_run_arguments", "open_run", "proxy_from_args", "run_settings", "space_hash"]


def add_run_arguments(parser: argparse.ArgumentParser, *, proxy: Proxy, formula: str = "saturating") -> None:
    """Add the shared run options to ``parser``.

    ``--name --resume --runs-dir --storage --address --cpus-per-trial --gpus-per-trial --memory-per-trial --max-failures
    --scheduler {none,asha} --executor {ray,local} --evaluator {proxy,formula} --formula --data --seed
    --steps --batch-size --size-scale --task --lr --train-clips --val-clips --[no-]zero-init-residual
    --precise-bn-batches``, and the hidden
    fault-injection switch ``--fail-after-trials N`` (the process exits abruptly after N newly finished
    trials; tests use it to test ``--resume``).

    Args:
        parser: the subcommand's parser.
        proxy: the proxy budget this driver uses by default (``--steps`` etc. override its fields).
        formula: the default ``--formula`` name for ``--evaluator formula``.
    """
    g = parser.add_argument_group("run directory")
    g.add_argument("--name", help="run name: the folder runs/<name>/ (default: <driver>-<hash of the config>); "
                   "an existing name continues that run")
    g.add_argument("--resume", action="store_true",
                   help="continue an existing run (finished trials are not redone; error if there is none)")
    g.add_argument("--runs-dir", default="runs", help="where run folders live (default: runs)")
    g.add_argument("--storage", help="Optuna storage as an SQLAlchemy URL (default: sqlite:///runs/<name>/study.db; "
                   "e.g. postgresql://user:pass@host/db)")
    g = parser.add_argument_group("where trials run")
    g.add_argument("--executor", choices=("ray", "local"), default="ray",
                   help="ray: Ray Tune trials (default); local: in this process, one after another")
    g.add_argument("--address", help="join a running Ray cluster: 'auto' or HOST:PORT (default: start a local "
                   "Ray sized to this machine)")
    g.add_argument("--cpus-per-trial", type=_cpus_per_trial, default=DEFAULT_CPUS_PER_TRIAL,
                   help="CPUs each Ray trial reserves, and the torch threads it trains with: a number, or auto "
                        "(default): 1 for a trial whose proxy training step (batch x clip at the proxy's crop) is "
                        "under its family's bound (X3D and TSN-2D 0.15 GMAC, MoViNet 1.0), else 2 (1 on a one-core "
                        "machine). On 2 cores two small 1-thread trials at once train 1.1-2.4x more clips/s than one "
                        "at 2 threads, and one larger 2-thread trial 1.2-1.6x more than two at 1 "
                        "(experiments/results/threads_per_trial.md)")
    g.add_argument("--gpus-per-trial", type=_non_negative_float, default=0.0,
                   help="GPUs each Ray trial reserves (default 0)")
    g.add_argument("--memory-per-trial", type=_non_negative_float, default=0.0,
                   help="GiB of memory each trial may use (Ray reserves it); a candidate estimated to need more is "
                   "recorded as failed, untrained (default 0: the free memory shared by the trials running at once)")
    g.add_argument("--workers-per-trial", type=_positive_int, default=1,
                   help="data-parallel processes per trial on its machine (DDP: gloo on CPU, NCCL on CUDA); the "
                        "same training as one process with the same global batch (default 1)")
    g.add_argument("--loader-workers", type=_non_negative_int, default=0,
                   help="processes per trial that read training batches ahead (decode, resize, crop); the same "
                        "batches at any count (default 0: read in the training process)")
    g.add_argument("--max-failures", type=_non_negative_int, default=1,
                   help="retries of a Ray trial that crashed (default 1)")
    g.add_argument("--scheduler", choices=("none", "asha"), default="none",
                   help="asha: stop weak trials early on their intermediate training loss (Ray only)")
    g.add_argument("--no-progress", dest="progress", action="store_false", help="no progress line")
    g.add_argument("--fail-after-trials", type=_positive_int, help=argparse.SUPPRESS)
    g = parser.add_argument_group("what scores a candidate")
    g.add_argument("--evaluator", choices=("proxy", "formula"), default="proxy",
                   help="proxy: train with the proxy budget (default); formula: a named formula, no training")
    g.add_argument("--formula", default=formula, help=f"the formula of --evaluator formula (default {formula})")
    g.add_argument("--data", default="synthetic", help="'synthetic' (default) or a path to videos")
    g.add_argument("--seed", type=int, default=0, help="trial seed (same architecture + proxy + seed = same result)")
    g = parser.add_argument_group(f"proxy budget (defaults: {proxy.steps} steps, batch {proxy.batch_size}, "
                                  f"size-scale {proxy.size_scale}, task {proxy.task})")
    g.add_argument("--steps", type=_positive_int, help="optimiser steps per candidate")
    g.add_argument("--batch-size", type=_positive_int, help="clips per step")
    g.add_argument("--size-scale", type=_fraction, help="train at this fraction of each candidate's crop")
    g.add_argument("--task", help="synthetic task: " + ", ".join(TASKS) + f" (default {DEFAULT_TASK})")
    g.add_argument("--lr", type=float, help="peak learning rate")
    g.add_argument("--train-clips", type=_positive_int, help="synthetic training clips")
    g.add_argument("--val-clips", type=_positive_int, help="synthetic validation clips")
    g.add_argument("--zero-init-residual", action=argparse.BooleanOptionalAction, default=None,
                   help="start each residual branch's scale (last BN gamma; MoViNet: ReZero) at 0 as X3D's recipe "
                        "does (default: at 1, which "
                        "leaves the synthetic tasks' plateau hundreds of steps sooner)")
    g.add_argument("--precise-bn-batches", type=_non_negative_int,
                   help=f"training batches that re-estimate BN statistics before validation (default "
                        f"{proxy.precise_bn_batches}; 0: keep the running averages)")
    g.add_argument("--layout", metavar="{" + ",".join(LAYOUTS) + "}",
                   help=f"memory format of training (default {proxy.layout}: time both on the first batch and keep "
                        "the faster, which is fastest but lets timing noise pick the layout, and so the floating-point "
                        "result, of architectures whose two layouts run equally fast; name one for results that "
                        "repeat exactly on this machine)")
    parser.set_defaults(_default_proxy=proxy.to_dict())


def proxy_from_args(args: argparse.Namespace, default: Proxy) -> Proxy:
    """``default`` with the fields given on the command line replaced (``UsageError`` if invalid)."""
    overrides = {field: getattr(args, field, None) for field in
                 ("steps", "batch_size", "size_scale", "task", "lr", "train_clips", "val_clips",
                  "zero_init_residual", "precise_bn_batches", "layout")}
    raw = {**default.to_dict(), **{k: v for k, v in overrides.items() if v is not None}}
    # a proxy shorter than its warm-up / checkpoint interval would never warm up fully: scale them down
    raw["warmup_steps"] = min(raw["warmup_steps"], max(0, raw["steps"] // 5))
    try:
        return Proxy.from_dict(raw)
    except ValueError as err:
        # name the flag the user typed, not the proxy's field ("proxy.val_clips" -> "--val-clips")
        message = str(err)
        for name in overrides:
            message = message.replace(f"proxy.{name}:", f"--{name.replace('_', '-')}:")
        raise UsageError(message) from None


def run_settings(args: argparse.Namespace) -> dict[str, Any]:
    """The run-level settings that go into ``config.json`` next to the driver's own config."""
    proxy = proxy_from_args(args, Proxy.from_dict(args._default_proxy))
    data = args.data if args.data == "synthetic" else str(Path(args.data).resolve())
    formula = args.evaluator == "formula"
    return {
        "evaluator": f"formula:{args.formula}" if formula else "proxy",
        "proxy": None if formula else proxy.to_dict(),
        "data": None if formula else data,
        "seed": args.seed,
        "scheduler": args.scheduler,
        "executor": args.executor,
        "address": args.address,
        "cpus_per_trial": args.cpus_per_trial,
        "gpus_per_trial": args.gpus_per_trial,
        "max_failures": args.max_failures,
        "memory_per_trial": args.memory_per_trial,
        "workers_per_trial": args.workers_per_trial,
        "loader_workers": args.loader_workers,
    }


def space_hash(space: Any) -> str:
    """A short content hash of a space document (part of a run's identity)."""
    import hashlib

    return hashlib.sha256(space.to_yaml().encode()).hexdigest()[:12]


def usage_error(err: RunError) -> UsageError:
    """A run's error as the command line says it: its field as the flag that sets it."""
    flag = {"name": "--name", "resume": "--resume", "driver": "--name", "storage": "--storage"}.get(err.field, err.field)
    detail = err.detail.replace("another name", "another --name").replace("resume=False", "leave out --resume")
    return UsageError(f"{flag}: {detail}")


def open_run(args: argparse.Namespace, *, driver: str, config: dict,
             inheritance: "Callable[[Path], Inheritance] | None" = None) -> "tuple[Run, RecordingEvaluator]":
    """Open (or resume) the run and return it with a caching, recording evaluator.

    The evaluator dispatches through Ray (``--executor ray``, the default) or in-process
    (``--executor local``), with the proxy trainer (``--evaluator proxy``) or a named formula
    (``--evaluator formula``). ``inheritance`` maps the run's weights folder (``RUN_DIR/weights``) to the
    proxy trainer's weight inheritance (ignored by a formula, which has no weights). Call
    ``run.close()`` at the end (it shuts down a Ray session it started).
    """
    from nas.runs import Run

    if args.evaluator == "formula":  # checked before the run folder is made: a typo leaves nothing behind
        from nas.formulas import get_formula

        try:
            get_formula(args.formula)
        except ValueError as err:
            raise UsageError(str(err).replace("evaluator.formula", "--formula")) from None
    settings = run_settings(args)
    full = {**config, **settings}
    try:
        run = Run.open(args.name, driver=driver, config=full, root=args.runs_dir, resume=args.resume,
                       storage=args.storage)
    except RunError as err:
        raise usage_error(err) from None
    run.fail_after_trials = args.fail_after_trials
    proxy = proxy_from_args(args, Proxy.from_dict(args._default_proxy))
    if args.workers_per_trial > 1 and proxy.batch_size % args.workers_per_trial:
        raise UsageError(f"--workers-per-trial: got {args.workers_per_trial} for --batch-size {proxy.batch_size}; "
                         "allowed: a divisor of the batch size (each worker takes an equal share)")
    inner: "Evaluator"
    inherit = inheritance(run.dir.resolve() / "weights") if inheritance and args.evaluator != "formula" else None
    if args.executor == "local":
        if args.scheduler != "none":
            raise UsageError(f"--scheduler: got {args.scheduler!r} with --executor local; allowed: none "
                             "(early stopping needs --executor ray)")
        if args.evaluator == "formula":
            from nas.evaluator import FormulaEvaluator
            from nas.formulas import get_formula

            inner = FormulaEvaluator(get_formula(args.formula), args.formula)
        else:
            from nas.evaluator import LocalEvaluator

            inner = LocalEvaluator(settings["data"], proxy, args.seed, checkpoint_dir=run.dir / "checkpoints",
                                   memory_limit_gib=args.memory_per_trial or None, inheritance=inherit,
                                   workers=args.workers_per_trial, loader_workers=args.loader_workers)
    else:
        from nas.integrations.ray_tune import RayEvaluator

        spec = {"kind": "formula", "name": args.formula} if args.evaluator == "formula" else None
        inner = RayEvaluator(settings["data"] or "synthetic", proxy, args.seed, address=args.address,
                             cpus_per_trial=args.cpus_per_trial, gpus_per_trial=args.gpus_per_trial,
                             max_failures=args.max_failures, scheduler=args.scheduler,
                             memory_per_trial=args.memory_per_trial,
                             log_dir=run.dir / "ray", progress=args.progress, evaluator_spec=spec,
                             inheritance=inherit, workers=args.workers_per_trial,
                             loader_workers=args.loader_workers)
        run.on_close(inner.shutdown)
    return run, run.evaluator(inner)
