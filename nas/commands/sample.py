"""``xnas sample``: multi-trial baselines -- Optuna samplers over a DSL space, dispatched like every
driver's trials (Ray Tune by default), recorded in a run directory.

Strategies: ``random``, ``tpe`` (multivariate TPE; the space's dimension set is static so it never
falls back to independent sampling) and ``nsga2`` (NSGA-II on two objectives: maximise top-1,
minimise GFLOPs).

``--target-gflops G``:

* ``random`` / ``tpe`` optimise the **TuNAS absolute reward** ``top1 − 7 · |GFLOPs / G − 1|`` (percent;
  TuNAS's β = −0.07 on a fraction, Bender et al. 2020) instead of top-1;
* ``nsga2`` keeps its two objectives and adds the **constraint** ``GFLOPs <= G`` (Optuna's
  ``constraints_func``: infeasible candidates rank behind every feasible one).

Cost cap: a candidate costlier than ``--max-gflops`` (default: the space's largest reference
architecture -- x3d-l's 18.4 GFLOPs for ``x3d`` -- or twice ``--target-gflops`` if more) is recorded as
a failed trial with its exact cost and the reason, and never trained: the x3d space reaches 1220
GFLOPs, and one such draw would otherwise take hours or the machine's memory. Independently, the
proxy trainer refuses a candidate whose estimated training memory exceeds ``--memory-per-trial``
(default: the free memory shared by the trials that run at once).

Trials are asked in batches of ``--batch`` (evaluated together, e.g. in parallel on Ray); each batch
gets a sampler seeded by (``--seed``, batch index), so a rerun -- ``--resume`` after a crash --
proposes exactly the trials the uninterrupted run would have.

``--timeout S`` stops asking new batches once S seconds of this invocation have passed (the batch
under way finishes): a wall-time budget, e.g. to give a sampler the compute a TuNAS search took.
It is not part of the run's identity: rerunning the command goes on towards ``--trials``.
"""
from __future__ import annotations

import argparse
import json
import sys
import time
from typing import Any

from nas.commands._run_options import add_run_arguments, open_run
from nas.cost import GFLOPS_NOTE
from nas.proxy import Proxy
from nas.commands.argtypes import clip as _clip, non_negative_float as _non_negative_float
from nas.commands.argtypes import positive_float as _positive_float, positive_int as _positive_int

__all__ = ["register", "cmd_sample", "DEFAULT_PROXY"]

# A proxy small enough that a handful of candidates of the x3d or movinet space train on a CPU in
# minutes: a quarter of each candidate's crop, 40 steps of 8 clips.
DEFAULT_PROXY = Proxy(steps=40, batch_size=8, size_scale=0.25, train_clips=256, val_clips=128,
                      warmup_steps=5, checkpoint_every=10)


def register(subparsers: Any) -> None:
    """Add ``xnas sample`` to the CLI."""
    p = subparsers.add_parser("sample",
                              help="multi-trial baseline: Optuna samplers (random, TPE, NSGA-II) over a space",
                              description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--space", required=True, help="a space name (x3d, movinet) or a document path")
    p.add_argument("--strategy", choices=("random", "tpe", "nsga2"), default="random")
    p.add_argument("--trials", type=_positive_int, default=16, help="number of trials (default 16)")
    p.add_argument("--target-gflops", type=_positive_float,
                   help="random/tpe: optimise the TuNAS absolute reward around this cost; "
                   "nsga2: constraint GFLOPs <= G")
    p.add_argument("--max-gflops", type=_non_negative_float,
                   help="candidates costlier than this are recorded as failed without training (default: the "
                   "space's largest reference architecture, or 2x --target-gflops if more; 0: no cap)")
    p.add_argument("--clip", type=_clip,
                   help="fix the clip FRAMESxSTRIDExCROP (and the head dropout at its first value), as xnas search "
                   "does, so costs compare with a search's at the same --target-gflops")
    p.add_argument("--timeout", type=_positive_float,
                   help="stop asking new trials after this many seconds (the batch under way finishes)")
    p.add_argument("--batch", type=_positive_int, default=4,
                   help="trials asked and evaluated together (default 4; part of the run's identity)")
    p.add_argument("--population", type=_positive_int, default=8, help="NSGA-II population size (default 8)")
    p.add_argument("--baselines", default="",
                   help="comma-separated reference architectures (x3d-xs,movinet-a0) evaluated under the "
                   "same proxy and marked on the plot")
    p.add_argument("--json", action="store_true", help="print the summary as one JSON object")
    add_run_arguments(p, proxy=DEFAULT_PROXY)
    p.set_defaults(func=cmd_sample)


def _objectives(strategy: str, target: float | None) -> list[str]:
    if strategy == "nsga2":
        return ["top1", "gflops"]
    return ["reward"] if target else ["top1"]


def cmd_sample(args: argparse.Namespace) -> int:
    """Run the sampler until ``--trials`` trials are finished; write the plots; print the Pareto set."""
    from nas.registry import load_arch, load_space

    space = load_space(args.space)
    if args.clip:
        space = _fix_clip(space, args.clip)
    baselines = [b.strip() for b in args.baselines.split(",") if b.strip()]
    baseline_archs = [load_arch(b) for b in baselines]
    cap, origin = _cost_cap(args, space.name)
    config = {"space": space.name, "space_hash": _space_hash(space), "strategy": args.strategy,
              "trials": args.trials, "target_gflops": args.target_gflops, "max_gflops": cap, "batch": args.batch,
              "population": args.population if args.strategy == "nsga2" else None,
              "objectives": _objectives(args.strategy, args.target_gflops)}
    run, evaluator = open_run(args, driver="sample", config=config)
    evaluator.max_gflops, evaluator.max_gflops_origin = cap, origin
    try:
        run.register_space(space)
        if cap is not None:
            run.log(f"cost cap: candidates over {cap:g} GFLOPs are recorded as failed, untrained ({origin})")
        _sample_loop(args, run, evaluator, space)
        if baseline_archs:
            run.log(f"evaluating {len(baseline_archs)} baseline(s) under the same proxy: {', '.join(baselines)}")
            evaluator.evaluate(baseline_archs, [{"driver": "sample", "role": "baseline"} for _ in baseline_archs])
        return _finish(args, run)
    except KeyboardInterrupt:
        run.log(f"interrupted; continue with the same command and --resume (or --name {run.name})")
        return 130
    finally:
        run.close()


def _fix_clip(space: Any, clip: tuple[int, int, int]) -> Any:
    """The sub-space at one clip, named ``<space>-FxSxC`` (what ``xnas search --clip`` searches)."""
    from nas.errors import DSLError, UsageError
    from nas.tunas.search import default_fixed

    try:
        return space.fix(default_fixed(space, clip), name=f"{space.name}-{'x'.join(map(str, clip))}")
    except (ValueError, DSLError) as err:
        raise UsageError(f"--clip: {err}") from None


def _cost_cap(args: argparse.Namespace, space_name: str) -> tuple[float | None, str]:
    """The cost cap and where it comes from: ``--max-gflops``, else the space's largest reference
    architecture (or twice the target, if that is more); ``None`` when there is neither."""
    from nas.registry import arch_names, load_arch

    if args.max_gflops is not None:
        return (float(args.max_gflops) or None), "--max-gflops"
    refs = {name: load_arch(name).cost().gflops for name in arch_names(space_name)}
    cap, origin = None, ""
    if refs:
        name = max(refs, key=refs.get)
        cap, origin = round(refs[name], 4), f"the space's largest reference, {name}; raise with --max-gflops"
    if args.target_gflops and (cap is None or 2 * args.target_gflops > cap):
        cap, origin = 2 * float(args.target_gflops), "2 x --target-gflops; raise with --max-gflops"
    return cap, origin


def _space_hash(space: Any) -> str:
    import hashlib

    return hashlib.sha256(space.to_yaml().encode()).hexdigest()[:12]


def _sample_loop(args: argparse.Namespace, run: Any, evaluator: Any, space: Any) -> None:
    from nas.integrations.optuna_study import make_sampler

    study = run.study
    deadline = None if args.timeout is None else time.monotonic() + args.timeout
    asked_here = False  # the budget stops asking only after one batch of this invocation: progress is made
    pending = study.unfinished(space)
    if pending:
        run.log(f"finishing {len(pending)} trial(s) asked before the run stopped")
    while True:
        if pending:
            asked, pending = pending, []
        else:
            total = study.next_number()
            remaining = args.trials - total
            if remaining <= 0:
                break
            if deadline is not None and asked_here and time.monotonic() >= deadline:
                run.log(f"--timeout {args.timeout:g} s reached after {total} trial(s); rerun the command to go on")
                break
            batch_index = total // args.batch
            sampler = make_sampler(args.strategy, seed=args.seed * 1_000_003 + batch_index,
                                   population_size=args.population)
            if args.strategy == "nsga2" and args.target_gflops:
                sampler = _constrained_nsga2(args, batch_index)
            asked = study.ask_batch(space, min(args.batch, remaining), sampler)
            asked_here = True
        archs = [space.freeze(sample) for _, sample in asked]
        tags = [{"driver": "sample", "step": number // args.batch, "strategy": args.strategy, "_trial": number}
                for number, _ in asked]
        evaluator.evaluate(archs, tags)


def _constrained_nsga2(args: argparse.Namespace, batch_index: int) -> Any:
    import optuna

    target = float(args.target_gflops)

    def constraints(trial: Any) -> list[float]:
        gflops = trial.user_attrs.get("gflops")
        return [float(gflops) - target if gflops is not None else 1.0]

    return optuna.samplers.NSGAIISampler(seed=args.seed * 1_000_003 + batch_index, population_size=args.population,
                                         constraints_func=constraints)


def _finish(args: argparse.Namespace, run: Any) -> int:
    from nas.commands.results import pareto_rows, write_plots

    table = run.results()
    paths = write_plots(run.dir, table)
    front = pareto_rows(table)
    ok = int((table["status"] == "ok").sum()) if len(table) else 0
    summary = {"run": str(run.dir), "evaluated": int(len(table)), "ok": ok, "failed": int(len(table) - ok),
               "pareto": front, "plots": [str(p) for p in paths], "gflops_convention": GFLOPS_NOTE}
    if args.json:
        print(json.dumps(summary, indent=2, default=str))
    else:
        print(f"run {run.dir}: {len(table)} architectures evaluated ({ok} ok)")
        from nas.commands.results import format_pareto

        print(format_pareto(front))
        print(f"plots: {', '.join(str(p) for p in paths)}")
        print(GFLOPS_NOTE)
    sys.stdout.flush()
    return 0

