"""``xnas fidelity RUN_DIR``: audit a finished run's decisions against a reference evaluation.

Re-evaluates some of the run's architectures (``--sample N``, default all up to 24; for an expansion
run whole steps, ``--expand-steps 1,2,3``, each with its parent) under a *reference* evaluator set by
the shared run options (``--steps --size-scale --batch-size --task --data --evaluator --formula
--executor ...``; default: the default proxy budget, which is longer than any driver's), then compares
the run's own scores with the reference's: Kendall tau-b and Spearman rho with 90 % bootstrap
intervals, GFLOPs as a baseline predictor, and for an expansion run, per step, tau within the step's
candidates and whether the reference would accept the axis the run accepted.

A search run is audited inside its final supernet: ``--sample`` architectures spanning the space's
cost range at the search's clip, each scored by its path in the shared weights and trained stand-alone
as the reference. The report's ``band`` entry repeats the agreement over those within +-20 % of the
target (the architectures the controller had to choose between); ``--search-band F`` audits only
architectures within +-F of the target, for a machine on which the whole range's reference trainings
(hours each for the dearest) do not fit.

The reference trials form a run of their own inside the audited one, ``RUN_DIR/fidelity/`` (another
``--name`` gives another folder), with the same cache, results table and Optuna study as every run:
killed and rerun, it redoes no finished reference training, and a later audit with another
``--sample`` reuses every reference result it already has. Outputs: ``fidelity.json``,
``fidelity.csv`` and ``plots/fidelity.png`` in that folder.

``--steps`` is the reference proxy's optimiser steps, as in every run command; expansion steps are
chosen with ``--expand-steps``.
"""
from __future__ import annotations

import argparse
import csv
import json
import math
import sys
from pathlib import Path
from typing import Any

from nas.commands._run_options import add_run_arguments, open_run, proxy_from_args
from nas.commands.argtypes import fraction, positive_int
from nas.cost import GFLOPS_NOTE
from nas.errors import UsageError
from nas.fidelity import METRICS
from nas.proxy import Proxy

__all__ = ["register", "cmd_fidelity", "DEFAULT_REFERENCE", "DEFAULT_SAMPLE"]

# The reference budget: the default proxy (1500 steps x 16 clips, the graded task), 25x the 40-step
# smoke budget of xnas sample / expand.
DEFAULT_REFERENCE = Proxy()
DEFAULT_SAMPLE = 24
DEFAULT_BAND = 0.2  # a search audit's band entry: within +-20 % of the target (issue 20)


def _step_list(text: str) -> list[int]:
    try:
        steps = [int(t) for t in text.split(",") if t.strip()]
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected comma-separated step numbers like 1,2,3, got {text!r}") from None
    if not steps or any(s < 1 for s in steps):
        raise argparse.ArgumentTypeError(f"expected comma-separated step numbers >= 1, got {text!r}")
    return sorted(set(steps))


def register(subparsers: Any) -> None:
    """Add ``xnas fidelity`` to the CLI."""
    p = subparsers.add_parser("fidelity", help="audit a run: its scores against a reference evaluation (Kendall tau)",
                              description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("run_dir", metavar="RUN_DIR", help="a finished run folder (runs/<name>) of expand, sample or search")
    p.add_argument("--sample", type=positive_int, default=DEFAULT_SAMPLE,
                   help=f"audit at most this many architectures, drawn at random with --seed (default {DEFAULT_SAMPLE}); "
                   "for an expand run: the first steps that fit")
    p.add_argument("--expand-steps", type=_step_list, help="expand runs: audit these steps (e.g. 1,2,3), each with its parent")
    p.add_argument("--search-scores", choices=("supernet", "results"), default="supernet",
                   help="search runs: audit the final supernet's scores of --sample architectures spanning the "
                        "space's cost range (default), or the run's own results table (its retrained architectures)")
    p.add_argument("--search-target", type=float, metavar="GFLOPS",
                   help="search runs with several targets: audit the supernet of this one (its search-<target>/)")
    p.add_argument("--search-band", type=fraction, metavar="FRACTION",
                   help="search runs: audit only architectures within this fraction of the target (0.2: +-20 %%; "
                        "default: the whole cost range; the report's band entry is at +-20 %%)")
    p.add_argument("--metric", choices=METRICS, default="top1",
                   help="rank by validation top-1 (default) or validation loss (lower is better)")
    p.add_argument("--json", action="store_true", help="print fidelity.json instead of the summary")
    add_run_arguments(p, proxy=DEFAULT_REFERENCE)
    p.set_defaults(func=cmd_fidelity)


def _read_audited(run_dir: Path) -> tuple[str, dict[str, Any], list[dict[str, str]]]:
    from nas.runs import read_results

    results, config = run_dir / "results.csv", run_dir / "config.json"
    stored = json.loads(config.read_text()) if config.is_file() else {}
    driver = stored.get("driver", "")
    # a search run with --no-retrain trains nothing, so it has no results table; its supernet is audited
    if not config.is_file() or not (results.is_file() or driver == "search"):
        raise UsageError(f"RUN_DIR: got {str(run_dir)!r}; allowed: a run folder with config.json and results.csv "
                         "(runs/<name>)")
    if driver == "fidelity":
        raise UsageError(f"RUN_DIR: got {str(run_dir)!r}, an audit; allowed: the run it audits")
    return driver, stored.get("config", {}), read_results(results) if results.is_file() else []


def _expansion_path(run_dir: Path) -> tuple[dict[int, str], dict[int, str]]:
    """step -> accepted axis, and step -> hash of the step's parent, from ``trajectory.csv``."""
    accepted: dict[int, str] = {}
    accepted_hash: dict[int, str] = {}
    path = run_dir / "trajectory.csv"
    if path.is_file():
        with open(path, newline="") as f:
            for row in csv.DictReader(f):
                if row.get("chosen") == "1" and row.get("role") in ("start", "candidate"):
                    step = int(row["step"])
                    accepted[step] = row.get("axis", "")
                    accepted_hash[step] = row.get("arch_hash", "")
    parents = {s: accepted_hash[s - 1] for s in accepted_hash if s - 1 in accepted_hash}
    return {s: a for s, a in accepted.items() if s > 0}, parents


def _search_space(run_dir: Path, config: dict[str, Any]) -> Any:
    """The space a search run searched: its saved ``space.yaml``, else the named space (checked
    against the run's ``space_hash``)."""
    from nas.commands._run_options import space_hash
    from nas.registry import load_space

    saved = run_dir / "space.yaml"
    try:
        space = load_space(str(saved) if saved.is_file() else config.get("space", ""))
    except (ValueError, OSError) as err:
        raise UsageError(f"RUN_DIR: got {str(run_dir)!r}; allowed: a search run whose space can be loaded ({err})") from None
    if config.get("space_hash") and space_hash(space) != config["space_hash"]:
        raise UsageError(f"RUN_DIR: got {str(run_dir)!r}, searched over another version of space {space.name!r}; "
                         "allowed: a run with its space.yaml")
    return space


def _search_audit(run_dir: Path, config: dict[str, Any],
                  args: argparse.Namespace) -> tuple[list[Any], list[dict[str, str]], float | None]:
    """A search run's audit: ``--sample`` architectures spanning the space's cost range (or ``--search-band``
    of it) at the search's clip, each with its score inside the final supernet (the run's score; cached in
    the audit folder's ``supernet_scores.json`` so a rerun does not recompute them). Returns the
    architectures, results-table-like rows carrying those scores, and the GFLOPs target the band entry is
    measured around (None for a latency search, whose target is in ms)."""
    from nas.drivers.tunas.score import load_search_config, searches_in, spanning_archs, supernet_top1s
    from nas.files import atomic_write_text

    searches = searches_in(run_dir)
    if not searches:
        raise UsageError(f"RUN_DIR: got {str(run_dir)!r}, a search run without a supernet checkpoint "
                         "(search-<target>/checkpoint.pt); allowed: a search run that kept its checkpoint")
    if args.search_target is None and len(searches) > 1:
        raise UsageError(f"--search-target: required for a run with {len(searches)} searches; allowed: one of "
                         + ", ".join(f"{t:g}" for t in searches))
    target = args.search_target if args.search_target is not None else next(iter(searches))
    if target not in searches:
        raise UsageError(f"--search-target: got {target:g}; allowed: one of " + ", ".join(f"{t:g}" for t in searches))
    search_dir = searches[target]
    gflops_target = None if search_dir.name.endswith("ms") else target
    if args.search_band is not None and gflops_target is None:
        raise UsageError(f"--search-band: given for the latency search {search_dir.name}; allowed: only for a "
                         "GFLOPs target")
    space = _search_space(run_dir, config)
    cfg = load_search_config(search_dir)
    band = None if args.search_band is None else (target * (1 - args.search_band), target * (1 + args.search_band))
    try:
        archs = spanning_archs(space, cfg.fixed, args.sample, seed=args.seed, band=band)
    except ValueError as err:
        raise UsageError(f"--search-band: {err}") from None
    cache_path = run_dir / (args.name or "fidelity") / "supernet_scores.json"
    cache = json.loads(cache_path.read_text()) if cache_path.is_file() else {}
    key = f"{search_dir.name}:{cfg.hash}:{args.data or 'synthetic'}"
    scores = cache.get(key, {})
    missing = [a for a in archs if a.hash not in scores]
    if missing:
        print(f"scoring {len(missing)} architecture(s) inside the supernet of {search_dir}", file=sys.stderr)
        for arch, top1 in zip(missing, supernet_top1s(space, search_dir, missing, data=args.data or "synthetic")):
            scores[arch.hash] = top1
        cache[key] = scores
        cache_path.parent.mkdir(parents=True, exist_ok=True)
        atomic_write_text(cache_path, json.dumps(cache, indent=2, sort_keys=True) + "\n")
    rows = [{"hash": a.hash, "name": a.name, "gflops": repr(a.cost().gflops), "top1": repr(scores[a.hash]),
             "loss": "nan", "trial": "", "tags": json.dumps({"role": f"supernet {target:g}"})} for a in archs]
    return archs, rows, gflops_target


def cmd_fidelity(args: argparse.Namespace) -> int:
    """Audit RUN_DIR (see the module docstring)."""
    from nas.dsl.arch import Arch
    from nas.fidelity import FidelityError, Pair, band_agreement, build_report, row_tags, select_rows, write_report

    run_dir = Path(args.run_dir)
    driver, audited_config, rows = _read_audited(run_dir)
    accepted, parents = _expansion_path(run_dir) if driver == "expand" else ({}, {})
    if args.expand_steps and driver != "expand":
        raise UsageError(f"--expand-steps: given for a {driver!r} run; allowed: only for expand runs")
    if args.search_target is not None and driver != "search":
        raise UsageError(f"--search-target: given for a {driver!r} run; allowed: only for search runs")
    if args.search_band is not None and (driver != "search" or args.search_scores != "supernet"):
        raise UsageError(f"--search-band: given for a {driver!r} run's "
                         f"{'results table' if driver == 'search' else 'scores'}; allowed: only for a search run's "
                         "supernet audit")
    band_target = None
    if driver == "search" and args.search_scores == "supernet":
        if args.metric == "loss":
            raise UsageError("--metric: got 'loss' for a search run; allowed: top1 (a supernet path's score is its "
                             "held-out top-1, as the search's Q)")
        archs, chosen, band_target = _search_audit(run_dir, audited_config, args)
    else:
        try:
            chosen = select_rows(rows, driver, sample=args.sample, steps=args.expand_steps, parents=parents,
                                 seed=args.seed)
        except FidelityError as err:
            raise UsageError(str(err)) from None
        archs = [Arch.load(run_dir / r["arch_path"]) for r in chosen]

    if args.runs_dir != "runs":
        raise UsageError(f"--runs-dir: got {args.runs_dir!r}; allowed: leave it out (an audit lives inside "
                         "RUN_DIR; --name names its folder there)")
    args.runs_dir = str(run_dir)
    args.name = args.name or "fidelity"
    run, evaluator = open_run(args, driver="fidelity", config={"audited_driver": driver})
    try:
        tags = []
        for r in chosen:
            t = row_tags(r)
            tags.append({"driver": "fidelity", "step": t.get("step", ""), "axis": t.get("axis", ""),
                         "role": t.get("role", ""), "audited_trial": r["trial"]})
        run.log(f"auditing {len(archs)} architecture(s) of {driver} run {run_dir}")
        results = evaluator.evaluate(archs, tags)
    finally:
        run.close()

    loss_metric = args.metric == "loss"
    pairs = []
    for r, tag, res in zip(chosen, tags, results):
        ok = res.status == "ok"
        pairs.append(Pair(
            hash=r["hash"], name=r["name"], gflops=float(r["gflops"]),
            latency_ms=float(r["latency_ms"]) if r.get("latency_ms") else None,
            run_score=float(r["loss"] if loss_metric else r["top1"]),
            reference_score=(res.loss if loss_metric else res.top1) if ok else float("nan"),
            reference_loss=res.loss if ok else float("nan"),
            reference_top1=res.top1 if ok else float("nan"),
            step=int(tag["step"]) if str(tag["step"]) != "" else None, axis=tag["axis"], role=tag["role"],
            reference_status=res.status))
    proxy = proxy_from_args(args, DEFAULT_REFERENCE)
    formula = args.evaluator == "formula"
    reference = {"evaluator": f"formula:{args.formula}" if formula else "proxy",
                 "proxy": None if formula else proxy.to_dict(), "data": None if formula else args.data,
                 "seed": args.seed, "folder": str(run.dir)}
    try:
        report = build_report(str(run_dir), driver, args.metric, reference, pairs, accepted=accepted,
                              parents=parents, criterion=audited_config.get("criterion", "gain-per-log-cost"),
                              val_clips=None if formula else proxy.val_clips)
    except FidelityError as err:
        raise UsageError(str(err)) from None
    if band_target is not None:
        report.band = band_agreement(pairs, band_target, args.search_band or DEFAULT_BAND)
    paths = write_report(report, run.dir)
    if args.json:
        print(json.dumps(report.as_dict(), indent=2))
        return 0
    print(_summary(report, paths))
    sys.stdout.flush()
    return 0


def _fmt(v: float | None) -> str:
    return "-" if v is None or not math.isfinite(v) else f"{v:+.2f}"


def _summary(report: Any, paths: dict[str, Path]) -> str:
    a = report.agreement
    ci = a["ci90"]
    failed = sum(1 for p in report.pairs if p.reference_status != "ok")
    lines = [f"fidelity of {report.driver} run {report.run_dir} ({report.metric}; reference: "
             f"{report.reference['evaluator']}, audit folder {report.reference['folder']})",
             f"  n = {a['n']} architectures" + (f" ({failed} reference trial(s) failed, left out)" if failed else ""),
             f"  Kendall tau-b  {_fmt(a['kendall_tau'])}  90 % CI [{_fmt(ci['kendall_tau'][0])}, {_fmt(ci['kendall_tau'][1])}]",
             f"  Spearman rho   {_fmt(a['spearman_rho'])}  90 % CI [{_fmt(ci['spearman_rho'][0])}, {_fmt(ci['spearman_rho'][1])}]"]
    g = report.gflops_agreement
    if g is not None:
        lines.append(f"  GFLOPs as the predictor instead: tau-b {_fmt(g['kendall_tau'])}, rho {_fmt(g['spearman_rho'])}")
    if report.reference_se is not None:
        lines.append(f"  reference top-1 standard error: at most {report.reference_se:.2f} points "
                     f"({report.reference['proxy']['val_clips']} validation clips)")
    if report.steps:
        lines.append("  expansion steps: tau within the step's candidates; the axis the run accepted vs the reference's")
        for s in report.steps:
            verdict = {True: "same", False: "differs", None: "-"}[s.agree]
            rank = "" if s.run_choice_reference_rank is None else f" (run's axis: reference's #{s.run_choice_reference_rank})"
            lines.append(f"    step {s.step}: n={s.n} tau {_fmt(s.kendall_tau)}  run {s.run_choice or '-':<12} "
                         f"reference {s.reference_choice or '-':<12} {verdict}{rank}" + (f"  ({s.note})" if s.note else ""))
        lines.append(f"    mean within-step tau {_fmt(report.mean_step_tau)}")
    band = report.band
    if band is not None:
        where = f"within {band['fraction']:.0%} of the target {band['target']:g} GFLOPs: n = {band['n']}"
        if "kendall_tau" in band:
            lines.append(f"  {where}, tau-b {_fmt(band['kendall_tau'])} 90 % CI [{_fmt(band['ci90']['kendall_tau'][0])}, "
                         f"{_fmt(band['ci90']['kendall_tau'][1])}], rho {_fmt(band['spearman_rho'])}")
        else:
            lines.append(f"  {where} ({band['note']})")
    lines += [f"  wrote {paths['json']}, {paths['csv']}, {paths['plot']}", f"  {GFLOPS_NOTE}"]
    return "\n".join(lines)
