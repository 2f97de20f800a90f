"""``xnas plot RUN_DIR`` (redraw a run's figures from its results table) and ``xnas report RUN_DIR``
(print its Pareto set as a table)."""
from __future__ import annotations

import argparse
import json
import math
from pathlib import Path
from typing import TYPE_CHECKING, Any, Sequence

from nas.cost import GFLOPS_NOTE
from nas.errors import UsageError

if TYPE_CHECKING:
    import pandas

__all__ = ["register", "load_results", "pareto_rows", "format_pareto", "write_plots"]


def load_results(run_dir: str | Path) -> "pandas.DataFrame":
    """A run's ``results.csv`` as a DataFrame (``UsageError`` if the folder has none)."""
    from nas.runs import results_frame

    path = Path(run_dir) / "results.csv"
    if not path.is_file():
        raise UsageError(f"RUN_DIR: got {str(run_dir)!r}; allowed: a run folder with a results.csv (runs/<name>)")
    return results_frame(path)  # a torn last line left out; the file is the run's writer's to repair


def pareto_rows(table: "pandas.DataFrame") -> list[dict[str, Any]]:
    """The Pareto set (higher top-1, lower GFLOPs) as plain rows, by GFLOPs ascending."""
    from nas.plots import pareto_front

    if not len(table):
        return []
    front = pareto_front(table)
    cols = ["name", "hash", "gflops", "params", "top1", "loss", "driver", "step", "arch_path"]
    rows = []
    for _, r in front.iterrows():
        rows.append({c: (None if isinstance(r[c], float) and math.isnan(r[c]) else r[c]) for c in cols if c in r})
    return json.loads(json.dumps(rows, default=lambda v: v.item() if hasattr(v, "item") else str(v)))


def format_pareto(rows: Sequence[dict[str, Any]]) -> str:
    """The Pareto set as an aligned text table."""
    if not rows:
        return "Pareto set: empty (no successful trial)"
    lines = [f"Pareto set ({len(rows)} architectures; higher top-1, lower GFLOPs)",
             f"  {'name':<28} {'hash':<10} {'GFLOPs':>9} {'params':>11} {'top-1 %':>8}  document"]
    for r in rows:
        lines.append(f"  {str(r['name']):<28} {str(r['hash'])[:8]:<10} {r['gflops']:>9.4f} {int(r['params']):>11,} "
                     f"{r['top1']:>8.2f}  {r.get('arch_path', '')}")
    return "\n".join(lines)


def write_plots(run_dir: str | Path, table: "pandas.DataFrame | None" = None,
                baselines: Sequence[Any] = (), cost: str = "gflops") -> list[Path]:
    """Draw ``plots/pareto.png`` (+ ``.svg``) of a run, or ``plots/pareto_latency.png`` against the
    recorded predicted latency (``cost="latency_ms"``); return the paths written."""
    from nas.plots import pareto_plot

    run_dir = Path(run_dir)
    table = load_results(run_dir) if table is None else table
    name = run_dir.name
    config_path = run_dir / "config.json"
    chosen: list[str] = []
    if config_path.is_file():
        stored = json.loads(config_path.read_text())
        chosen = list(stored.get("chosen", []))
        name = f"{stored.get('name', name)} ({stored.get('driver', '?')})"
    file = "pareto.png" if cost == "gflops" else "pareto_latency.png"
    png = pareto_plot(table, run_dir / "plots" / file, baselines=baselines, title=name, chosen=chosen, cost=cost)
    return [png, png.with_suffix(".svg")]


def cmd_plot(args: argparse.Namespace) -> int:
    """Redraw a run's Pareto plot from its results table."""
    from nas.registry import load_arch

    baselines = [load_arch(b.strip()) for b in (args.baselines or "").split(",") if b.strip()]
    cost = {"gflops": "gflops", "latency": "latency_ms"}[args.cost]
    table = load_results(args.run_dir)
    if cost == "latency_ms" and not table["latency_ms"].notna().any():
        raise UsageError(f"--cost: got 'latency' for {args.run_dir}, whose results.csv has no latency_ms; "
                         "allowed: gflops, or latency for a run made with --target-ms")
    for path in write_plots(args.run_dir, table, baselines=baselines, cost=cost):
        print(path)
    return 0


def cmd_report(args: argparse.Namespace) -> int:
    """Print a run's Pareto set."""
    table = load_results(args.run_dir)
    rows = pareto_rows(table)
    if args.json:
        print(json.dumps({"run": str(args.run_dir), "evaluated": int(len(table)), "pareto": rows,
                          "gflops_convention": GFLOPS_NOTE}, indent=2))
        return 0
    ok = int((table["status"] == "ok").sum()) if len(table) else 0
    print(f"{args.run_dir}: {len(table)} architectures evaluated, {ok} ok, {len(table) - ok} failed or stopped")
    print(format_pareto(rows))
    print(GFLOPS_NOTE)
    return 0


def register(subparsers: Any) -> None:
    """Add ``xnas plot`` and ``xnas report`` to the CLI."""
    p = subparsers.add_parser("plot", help="redraw a run's accuracy-GFLOPs plot from its results table")
    p.add_argument("run_dir", help="a run folder (runs/<name>)")
    p.add_argument("--baselines", help="comma-separated reference architectures to mark (x3d-xs,movinet-a0)")
    p.add_argument("--cost", choices=("gflops", "latency"), default="gflops",
                   help="x axis: exact GFLOPs (default, plots/pareto.png) or the predicted latency the run "
                        "recorded (runs made with --target-ms; plots/pareto_latency.png)")
    p.set_defaults(func=cmd_plot)
    p = subparsers.add_parser("report", help="print a run's Pareto set as a table")
    p.add_argument("run_dir", help="a run folder (runs/<name>)")
    p.add_argument("--json", action="store_true", help="print one JSON object")
    p.set_defaults(func=cmd_report)
