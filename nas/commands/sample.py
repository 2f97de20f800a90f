"""``xnas sample``: multi-trial baselines -- Optuna samplers over a DSL space, dispatched like every
driver's trials (Ray Tune by default), recorded in a run directory.

Strategies: ``random``, ``tpe`` (multivariate TPE; the space's dimension set is static so it never
falls back to independent sampling) and ``nsga2`` (NSGA-II on two objectives: maximise top-1,
minimise GFLOPs).

``--target-gflops G``:

* ``random`` / ``tpe`` optimise the **TuNAS absolute reward** ``top1 − 7 · |GFLOPs / G − 1|`` (percent;
  TuNAS's β = −0.07 on a fraction, Bender et al. 2020) instead of top-1;
* ``nsga2`` keeps its two objectives and adds the **constraint** ``GFLOPs <= G`` (an Optuna constraint
  on every trial: infeasible candidates rank behind every feasible one).

Cost cap: a candidate costlier than ``--max-gflops`` (default: the space's largest reference
architecture -- x3d-l's 18.4 GFLOPs for ``x3d`` -- or twice ``--target-gflops`` if more) is recorded as
a failed trial with its exact cost and the reason, and never trained (its Optuna trial is PRUNED with
the constraint ``GFLOPs - cap``, so TPE learns where the cap lies): the x3d space reaches 1220
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
from typing import Any

from nas.commands._run_options import add_run_arguments, open_run, space_hash
from nas.cost import GFLOPS_NOTE
from nas.errors import UsageError
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
    p.add_argument("--target-ms", type=_positive_float,
                   help="like --target-gflops with predicted latency (ms per clip, batch 1, this machine's "
                   "latency table; measured first if missing) as the cost: random/tpe reward, nsga2 "
                   "top-1 vs latency with latency <= T")
    p.add_argument("--latency-threads", type=_positive_int, default=1,
                   help="CPU threads the latency is predicted at (default 1; part of the run's identity)")
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


def cmd_sample(args: argparse.Namespace) -> int:
    """Run the sampler until ``--trials`` trials are finished; write the plots; print the Pareto set."""
    from nas.drivers.sample import SampleConfig, cost_cap, fix_clip, sample
    from nas.errors import DSLError
    from nas.registry import load_arch, load_space

    space = load_space(args.space)
    if args.clip:
        try:
            space = fix_clip(space, args.clip)
        except (ValueError, DSLError) as err:
            raise UsageError(f"--clip: {err}") from None
    baselines = [b.strip() for b in args.baselines.split(",") if b.strip()]
    baseline_archs = [load_arch(b) for b in baselines]
    if args.target_ms and args.target_gflops:
        raise UsageError(f"--target-ms: got {args.target_ms:g} with --target-gflops {args.target_gflops:g}; "
                         "allowed: one cost target")
    cfg = SampleConfig(strategy=args.strategy, trials=args.trials, target_gflops=args.target_gflops,
                       target_ms=args.target_ms, batch=args.batch,
                       population=args.population, seed=args.seed, timeout=args.timeout)
    cap, origin = cost_cap(space.name, args.max_gflops, args.target_gflops)
    config = {"space": space.name, "space_hash": space_hash(space), "strategy": args.strategy,
              "trials": args.trials, "target_gflops": args.target_gflops, "max_gflops": cap, "batch": args.batch,
              "population": args.population if args.strategy == "nsga2" else None,
              "objectives": cfg.objectives}
    latency = None
    if args.target_ms:
        from nas.commands.latency import latency_cost

        config.update(target_ms=args.target_ms, latency={"device": "cpu", "threads": args.latency_threads,
                                                           "mode": "clip", "batch": 1})
        latency = latency_cost(space, threads=args.latency_threads,
                               log=lambda m: print(m, file=sys.stderr, flush=True))
    run, evaluator = open_run(args, driver="sample", config=config)
    evaluator.max_gflops, evaluator.max_gflops_origin = cap, origin
    try:
        run.register_space(space)
        if cap is not None:
            run.log(f"cost cap: candidates over {cap:g} GFLOPs are recorded as failed, untrained ({origin})")
        if args.target_ms:
            run.log(f"cost target {args.target_ms:g} ms: predicted clip latency (batch 1, cpu, "
                    f"{args.latency_threads} thread(s)) from this machine's latency table")
        sample(space, evaluator, run.study, cfg, log=run.log, latency=latency)
        if baseline_archs:
            run.log(f"evaluating {len(baseline_archs)} baseline(s) under the same proxy: {', '.join(baselines)}")
            evaluator.evaluate(baseline_archs, [{"driver": "sample", "role": "baseline",
                                                 **({"latency_ms": latency(b)} if latency else {})}
                                                for b in baseline_archs])
        return _finish(args, run)
    except KeyboardInterrupt:
        run.log(f"interrupted; continue with the same command and --resume (or --name {run.name})")
        return 130
    finally:
        run.close()



def _finish(args: argparse.Namespace, run: Any) -> int:
    from nas.commands.results import pareto_rows, write_plots

    table = run.results()
    paths = write_plots(run.dir, table)
    if len(table) and table["latency_ms"].notna().any():  # a --target-ms run: also against latency
        paths += write_plots(run.dir, table, cost="latency_ms")
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

