"""``xnas search``: TuNAS weight-sharing search (Bender et al. 2020) over a MoViNet-family space.

One supernet and one REINFORCE controller per cost target; the final architecture is the argmax
of every choice. The argmax and the ``--top-k`` most probable architectures of the final policy are
then proxy-retrained from scratch through the run's evaluator (Ray trials by default), together
with the ``--baselines``, and placed on the run's Pareto plot.

The search trains at one fixed clip (``--clip FRAMESxSTRIDExCROP``, default 8x10x112): GFLOPs targets
are at that clip, and baselines are re-clipped to it, so every point of the plot sees the same input.
The default (``xnas search --space movinet``) is sized for a 2-core CPU: target 0.18 GFLOPs (about
MoViNet-A0 at 8x112²), 1000 search steps of 1 architecture x 16 clips at an eighth of the crop
(14 px), shared-weights rate 1e-3, a 5 % op/filter warm-up and RL delay, the abs reward's cost weight
-0.25 (TuNAS -0.10), then proxy retrains of 600 steps x 16 clips at 0.15 of the crop (17 px). Why
these values: docs/tunas.md.

Outputs, under ``runs/<name>/``: ``search-<target>/`` (``argmax.yaml`` -- the frozen final
architecture --, ``top_k/``, ``trajectory.csv``, ``policy.csv``, ``policy.png``, ``summary.json``,
``checkpoint.pt``), ``results.csv`` (every retrained architecture) and ``plots/pareto.png``.
``--resume`` (or rerunning the same command) continues an interrupted search from its checkpoint
and never retrains a finished candidate.
"""
from __future__ import annotations

import argparse
import json
import math
import os
import sys
from typing import Any

from nas.commands._run_options import add_run_arguments, open_run, space_hash
from nas.cost import GFLOPS_NOTE
from nas.errors import UsageError
from nas.proxy import Proxy
from nas.drivers.tunas.driver import TunasConfig
from nas.drivers.tunas.config import LAYOUTS as SEARCH_LAYOUTS, OPTIMIZERS, REWARDS, SEARCH_DEFAULTS, SearchConfig
from nas.commands.argtypes import clip as _clip, positive_float as _positive_float, positive_int as _positive_int

__all__ = ["register", "cmd_search", "DEFAULT_PROXY", "DEFAULT_TARGET", "DEFAULT_CLIP", "FAULT_EXIT_CODE"]

# Retraining budget: the default Proxy (16 clips at 0.15 x the crop, AdamW 2e-3) cut to 600 steps.
# Unlike the 40-step smoke budget of xnas sample / expand, it learns the synthetic default, so the
# default run's retrains and Pareto plot carry accuracy: seed 0's argmax and MoViNet-A0 reached 94.8 and
# 95.1 % top-1 (chance 16.7 %) against 95.2 and 95.5 % at 1000 steps (a tie: SE 0.43), in 0.6x the time
# (experiments/tunas/README.md). Until 2026-12-07 it was 1000 steps.
DEFAULT_PROXY = Proxy(steps=600)
DEFAULT_TARGET = 0.18  # GFLOPs at the default clip: about MoViNet-A0 re-clipped to 8x112² (0.176)
# 8 frames 10 apart span the synthetic event at 8x5's cost; at 8x5 no MoViNet learns `graded` within the
# search's budget (experiments/tunas/README.md)
DEFAULT_CLIP = "8x10x112"
FAULT_EXIT_CODE = 75  # --fail-after-steps: the same status the run API's fault injection uses


def _targets(text: str) -> list[float]:
    try:
        values = [float(t) for t in text.split(",") if t.strip()]
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected comma-separated GFLOPs like 0.5,1,2, got {text!r}") from None
    if not values or any(not (v > 0 and math.isfinite(v)) for v in values):
        raise argparse.ArgumentTypeError(f"expected comma-separated positive GFLOPs, got {text!r}")
    return list(dict.fromkeys(values))


def register(subparsers: Any) -> None:
    """Add ``xnas search`` to the CLI."""
    p = subparsers.add_parser("search", help="TuNAS weight-sharing search (supernet + REINFORCE) under a GFLOPs target",
                              description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--space", default="movinet", help="a movinet-family space name or document path (default movinet)")
    g = p.add_mutually_exclusive_group()
    g.add_argument("--target-gflops", type=_positive_float,
                   help=f"cost target T0 in GFLOPs at the search clip (default {DEFAULT_TARGET})")
    g.add_argument("--targets", type=_targets, help="comma-separated targets, one search each (e.g. 0.1,0.2,0.4; "
                   "GFLOPs)")
    g.add_argument("--target-ms", type=_positive_float,
                   help="search against predicted latency instead: ms per clip at the search clip (batch 1, CPU), "
                        "from this machine's latency table (measured first if missing)")
    p.add_argument("--latency-threads", type=_positive_int, default=1,
                   help="with --target-ms: CPU threads the latency is predicted at (default 1)")
    p.add_argument("--clip", type=_clip, default=_clip(DEFAULT_CLIP),
                   help=f"the fixed clip FRAMESxSTRIDExCROP the search trains and counts GFLOPs at (default {DEFAULT_CLIP}); "
                        "it may lie outside the space's clip choices")
    p.add_argument("--dropout", type=float, help="head dropout of the searched architectures (default: the space's first value)")
    p.add_argument("--top-k", type=int, default=TunasConfig.top_k,
                   help=f"most probable architectures of the final policy retrained besides the argmax (default {TunasConfig.top_k})")
    p.add_argument("--baselines", default="nearest",
                   help="'nearest' (default: the space's reference architecture nearest each target), 'none', or "
                        "comma-separated reference names; re-clipped to --clip and retrained with the same proxy")
    p.add_argument("--no-retrain", dest="retrain", action="store_false", help="search only: no proxy retraining")
    p.add_argument("--json", action="store_true", help="print the summary as one JSON object")
    g = p.add_argument_group("search budget and TuNAS hyper-parameters")
    D = SEARCH_DEFAULTS  # one place for the defaults: the flags and SearchConfig agree
    g.add_argument("--search-steps", type=_positive_int, default=D["steps"], help=f"search steps (default {D['steps']})")
    g.add_argument("--search-batch-size", type=_positive_int, default=D["batch_size"],
                   help=f"training clips per architecture per step (default {D['batch_size']})")
    g.add_argument("--archs-per-step", type=_positive_int, default=D["archs_per_step"],
                   help="architectures sampled per step, each on its own batch (TuNAS: one per core; default 1: "
                   "on a CPU more, smaller controller updates reach the cost target in the same time)")
    g.add_argument("--val-multiplier", type=_positive_int, default=D["val_multiplier"], help="held-out batch = this x the batch (TuNAS 4)")
    g.add_argument("--search-size-scale", type=float, default=D["size_scale"],
                   help=f"the supernet trains at this fraction of the crop (default {D['size_scale']})")
    g.add_argument("--search-layout", choices=SEARCH_LAYOUTS, default=D["layout"],
                   help=f"the supernet's memory layout (default {D['layout']}: search steps 1.1-1.3x faster "
                        "on 2 cores than channels_first, same gradients; experiments/tunas/README.md)")
    g.add_argument("--weights-lr", type=_positive_float, default=D["lr"],
                   help=f"shared-weights peak learning rate (default {D['lr']:g}; at 2e-3 and above shared weights stay at chance)")
    g.add_argument("--weights-optimizer", choices=OPTIMIZERS, default=D["optimizer"],
                   help="adam (default, short searches) or TuNAS's rmsprop_tf (eps 1 inside the sqrt)")
    g.add_argument("--weight-decay", type=float, default=D["weight_decay"], help="masked L2 in the loss (TuNAS 4e-5)")
    g.add_argument("--rl-lr", type=float, default=D["rl_lr"], help="controller base learning rate (Adam beta1 0; x10 by the end)")
    g.add_argument("--beta", type=float, default=D["beta"],
                   help=f"reward cost weight (default {D['beta']:g}; TuNAS abs: -0.10, which missed the target by up to 9 %% here; "
                        "the exponent for --reward mnas / mnas_hard, where MnasNet used -0.07)")
    g.add_argument("--reward", choices=REWARDS, default=D["reward"], help=f"reward (default {D['reward']})")
    g.add_argument("--warmup-fraction", type=float, default=D["warmup_fraction"],
                   help=f"op/filter warm-up and RL delay fraction (default {D['warmup_fraction']:g}: the warm-up's largest paths cost "
                        "10-20x a target-sized step; TuNAS 0.25)")
    g.add_argument("--search-train-clips", type=_positive_int, default=D["train_clips"], help="synthetic training clips of the supernet")
    g.add_argument("--fail-after-steps", type=_positive_int, help=argparse.SUPPRESS)
    add_run_arguments(p, proxy=DEFAULT_PROXY)
    p.set_defaults(func=cmd_search)



def _baselines(args: argparse.Namespace, space: Any, targets: list[float], latency: Any = None) -> list[Any]:
    from nas.drivers.tunas.driver import nearest_baselines, reclip
    from nas.registry import load_arch

    spec = args.baselines.strip()
    if spec in ("", "none"):
        return []
    if spec == "nearest":
        return nearest_baselines(space, targets, args.clip, latency)
    out = []
    for name in (s.strip() for s in spec.split(",") if s.strip()):
        try:
            arch = load_arch(name)
        except Exception as err:
            raise UsageError(f"--baselines: got {name!r}; allowed: 'nearest', 'none' or reference names ({err})") from None
        out.append(reclip(arch, args.clip))
    return out


def cmd_search(args: argparse.Namespace) -> int:
    """Run one TuNAS search per target, retrain the winners, plot; print a summary."""
    from nas.registry import load_space
    from nas.drivers.tunas.driver import search_and_retrain
    from nas.drivers.tunas.search import default_fixed

    space = load_space(args.space)
    if space.family != "movinet":
        raise UsageError(f"--space: got {args.space!r} (family {space.family!r}); allowed: a movinet-family space "
                         "(the only family with a supernet so far)")
    in_ms = args.target_ms is not None
    targets = [args.target_ms] if in_ms else (args.targets or [args.target_gflops or DEFAULT_TARGET])
    if args.top_k < 0:
        raise UsageError(f"--top-k: got {args.top_k}; allowed: an integer >= 0")
    try:
        space = space.with_clip(args.clip)  # the search's one clip: it may lie outside the space's clip choices
        fixed = default_fixed(space, args.dropout)
        base = SearchConfig(target_gflops=None if in_ms else targets[0], target_ms=args.target_ms,
                            fixed=fixed, steps=args.search_steps,
                            batch_size=args.search_batch_size, archs_per_step=args.archs_per_step,
                            val_multiplier=args.val_multiplier,
                            size_scale=args.search_size_scale, lr=args.weights_lr, optimizer=args.weights_optimizer,
                            weight_decay=args.weight_decay, rl_lr=args.rl_lr, beta=args.beta, reward=args.reward,
                            warmup_fraction=args.warmup_fraction, task=args.task or DEFAULT_PROXY.task,
                            train_clips=args.search_train_clips, seed=args.seed,
                            zero_init_residual=bool(args.zero_init_residual), layout=args.search_layout)
    except ValueError as err:
        raise UsageError(str(err)) from None
    latency = None
    if in_ms:
        from nas.commands.latency import latency_cost

        # the latency of each architecture as the search counts it: at the search clip
        latency = latency_cost(space, threads=args.latency_threads,
                               log=lambda m: print(m, file=sys.stderr, flush=True))
    baselines = _baselines(args, space, targets, latency)
    search_cfg = {k: v for k, v in base.to_dict().items() if k not in ("target_gflops", "target_ms")}
    config = {"space": space.name, "space_hash": space_hash(space), "targets": targets,
              "target_gflops": targets[0] if len(targets) == 1 and not in_ms else None, "search": search_cfg,
              "top_k": args.top_k, "baselines": [b.name for b in baselines], "retrain": args.retrain}
    if in_ms:
        config.update(target_ms=args.target_ms, latency={"device": "cpu", "threads": args.latency_threads,
                                                          "mode": "clip", "batch": 1})
    run, evaluator = open_run(args, driver="search", config=config)
    try:
        run.register_space(space)
        space_file = run.dir / "space.yaml"  # the space as searched: `xnas fidelity` rebuilds the supernet from it
        if not space_file.is_file():
            from nas.files import atomic_write_text

            atomic_write_text(space_file, space.to_yaml())
        tunas = TunasConfig(search=base, targets=tuple(targets), top_k=args.top_k, retrain=args.retrain)
        for cfg in tunas.configs:
            unit = "ms predicted (batch 1, cpu)" if in_ms else "GFLOPs"
            run.log(f"search: target {cfg.target:g} {unit} at clip {args.clip[0]}x{args.clip[1]}x{args.clip[2]}, "
                    f"{cfg.steps} steps ({GFLOPS_NOTE})")
        map_fn = getattr(evaluator.inner, "map", None)
        if len(targets) > 1 and map_fn is not None and args.fail_after_steps is None:
            run.log(f"running {len(targets)} searches as Ray tasks ({args.cpus_per_trial} CPU each); "
                    "their progress goes to search-<target>/search.log")
        result = search_and_retrain(space, tunas, evaluator, out_dir=run.dir, data=args.data, baselines=baselines,
                                    map_fn=map_fn, progress=args.progress and sys.stderr.isatty(), log=run.log,
                                    stop_after=args.fail_after_steps, latency=latency)
        unfinished = len(result.searches) < len(tunas.configs) or any(
            r.steps_done < cfg.steps for cfg, (_, r) in zip(tunas.configs, result.searches))
        if args.fail_after_steps is not None and unfinished:
            run.log("fault injection: exiting before the search finished")
            sys.stderr.flush()
            os._exit(FAULT_EXIT_CODE)
        for t, r in result.searches:
            run.save_arch(r.argmax, name=f"tunas-{t:g}{'ms' if in_ms else ''}-argmax")
        return _finish(args, run, result.searches, baselines, result.retrained, latency)
    finally:
        run.close()


def _finish(args: argparse.Namespace, run: Any, searches: list, baselines: list, retrained: dict,
            latency: Any = None) -> int:
    from nas.plots import pareto_plot

    plots = [str(r.dir / "policy.png") for _, r in searches]
    table = run.results()
    if len(table):
        chosen = [r.argmax.hash for _, r in searches]
        title = "TuNAS " + ", ".join(f"{t:g}" for t, _ in searches) + (" ms" if latency else " GFLOPs")
        plots.append(str(pareto_plot(table, run.plots_dir / "pareto.png", baselines=baselines, title=title,
                                     chosen=chosen)))
        if latency is not None:
            plots.append(str(pareto_plot(table, run.plots_dir / "pareto_latency.png", title=title, chosen=chosen,
                                         cost="latency_ms")))

    def top1(arch: Any) -> float | None:
        res = retrained.get(arch.hash)
        return res.top1 if res is not None and res.status == "ok" else None

    summary = {"run": str(run.dir), "searches": [], "baselines": [], "plots": plots, "gflops_convention": GFLOPS_NOTE}
    for t, r in searches:
        g = r.argmax.cost().gflops
        ms = latency(r.argmax) if latency is not None else None
        summary["searches"].append({
            "target_gflops": None if latency else t, "argmax": str(r.dir / "argmax.yaml"), "argmax_hash": r.argmax.hash,
            "argmax_gflops": g, "off_target": (ms if latency else g) / t - 1, "argmax_top1": top1(r.argmax),
            **({"target_ms": t, "argmax_ms": ms} if latency is not None else {}),
            "top_k": [{"name": a.name, "hash": a.hash, "gflops": a.cost().gflops, "top1": top1(a)} for a in r.top_k],
            "search_s": r.wall_s, "supernet_step_s": r.step_s, "trajectory": str(r.dir / "trajectory.csv")})
    for b in baselines:
        summary["baselines"].append({"name": b.name, "hash": b.hash, "gflops": b.cost().gflops, "top1": top1(b)})
    if args.json:
        print(json.dumps(summary, indent=2, default=str))
        return 0
    print(f"run {run.dir}")
    for s in summary["searches"]:
        acc = f"{s['argmax_top1']:.1f} %" if s["argmax_top1"] is not None else "not retrained"
        if "target_ms" in s:
            print(f"  target {s['target_ms']:g} ms: argmax {s['argmax_ms']:.4g} ms predicted ({s['off_target']:+.1%}), "
                  f"{s['argmax_gflops']:.4g} GFLOPs, proxy top-1 {acc}  -> {s['argmax']}")
        else:
            print(f"  target {s['target_gflops']:g} GFLOPs: argmax {s['argmax_gflops']:.4g} GFLOPs ({s['off_target']:+.1%}), "
                  f"proxy top-1 {acc}  -> {s['argmax']}")
        for a in s["top_k"]:
            acc = f"{a['top1']:.1f} %" if a["top1"] is not None else "-"
            print(f"    {a['name']:<34} {a['gflops']:.4g} GFLOPs  top-1 {acc}")
    for b in summary["baselines"]:
        acc = f"{b['top1']:.1f} %" if b["top1"] is not None else "-"
        print(f"  baseline {b['name']:<30} {b['gflops']:.4g} GFLOPs  top-1 {acc}")
    print(f"plots: {', '.join(plots)}")
    print(GFLOPS_NOTE)
    sys.stdout.flush()
    return 0
