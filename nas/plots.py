"""Figures from a results table: the accuracy-GFLOPs trade-off with its Pareto front.

Matplotlib figures built without pyplot (files only, never a window, never a backend switch). Every figure is
written as PNG and SVG side by side.
"""
from __future__ import annotations

import json
import math
from pathlib import Path
from typing import TYPE_CHECKING, Any, Sequence

from nas.cost import GFLOPS_NOTE

if TYPE_CHECKING:
    from matplotlib.figure import Figure
    import pandas

    from nas.fidelity import Report

    from nas.dsl.arch import Arch

__all__ = ["pareto_plot", "pareto_front", "is_baseline", "fidelity_plot", "save_figure"]


def save_figure(fig: "Figure", path: Path, *, note: bool = False, svg: bool = True) -> Path:
    """Lay ``fig`` out, write it as ``path`` (PNG) and, with ``svg``, an SVG beside it; ``note`` prints the
    GFLOPs convention in the bottom-left corner. Figures are built with :class:`matplotlib.figure.Figure`
    (no pyplot): drawing a file never switches the global backend, so a notebook keeps its inline plots."""
    if note:
        fig.text(0.01, 0.01, GFLOPS_NOTE, fontsize=6, alpha=0.7)
        fig.tight_layout(rect=(0, 0.03, 1, 1))
    else:
        fig.tight_layout()
    fig.savefig(path)
    if svg:
        fig.savefig(path.with_suffix(".svg"))
    return path


def is_baseline(row: Any) -> bool:
    """Whether a results row is a reference architecture evaluated for comparison (tag role=baseline)."""
    tags = row.get("tags") if hasattr(row, "get") else None
    if isinstance(tags, str) and tags:
        try:
            tags = json.loads(tags)
        except ValueError:
            tags = {}
    return isinstance(tags, dict) and tags.get("role") == "baseline"


COST_AXES = {"gflops": "GFLOPs (log scale; one multiply-add of a conv/linear layer = 1 FLOP)",
             "latency_ms": "predicted latency (ms per clip, batch 1, log scale; this machine's latency table)"}


def pareto_front(results: "pandas.DataFrame", cost: str = "gflops") -> "pandas.DataFrame":
    """Rows not dominated in (higher top-1, lower ``cost``: a column of :data:`COST_AXES`) among the ``ok``
    ones with a finite cost, by cost ascending.

    Baseline rows (tag ``role: baseline``) are left out: the front is the search's own.
    """
    ok = results[(results["status"] == "ok") & results["top1"].notna() & results[cost].notna()]
    if len(ok):
        ok = ok[[not is_baseline(r) for _, r in ok.iterrows()]]
    ok = ok.sort_values([cost, "top1"], ascending=[True, False])
    keep, best = [], -math.inf
    for idx, row in ok.iterrows():
        if row["top1"] > best:
            keep.append(idx)
            best = row["top1"]
    return ok.loc[keep]


def _baseline_points(results: "pandas.DataFrame", baselines: Sequence["Arch | dict"]) -> list[dict[str, Any]]:
    points = []
    for _, row in results.iterrows():
        if is_baseline(row) and row["status"] == "ok":
            points.append({"name": row["name"], "gflops": float(row["gflops"]), "top1": float(row["top1"])})
    for b in baselines:
        if isinstance(b, dict):
            points.append({"name": b.get("name", "?"), "gflops": float(b["gflops"]),
                           "top1": float(b.get("top1", math.nan))})
            continue
        match = results[results["hash"] == b.hash] if len(results) else results
        top1 = float(match["top1"].iloc[0]) if len(match) else math.nan
        points.append({"name": b.name, "gflops": b.cost().gflops, "top1": top1})
    seen, unique = set(), []
    for p in points:
        if p["name"] not in seen:
            seen.add(p["name"])
            unique.append(p)
    return unique


def pareto_plot(results: "pandas.DataFrame", path: Path, *, baselines: Sequence["Arch | dict"] = (),
                title: str = "", chosen: Sequence[str] = (), cost: str = "gflops") -> Path:
    """Accuracy vs GFLOPs (log x) of every evaluated candidate, the Pareto front joined, baselines
    marked by name, ``chosen`` architectures (hashes or names) highlighted; GFLOPs note on the axis.
    ``cost="latency_ms"`` draws against the predicted latency recorded in ``results`` instead (rows
    without one, and baselines given as architectures, are left out).

    Args:
        results: a results table (``Run.results()`` or ``pandas.read_csv(results.csv)``).
        path: the PNG to write; an SVG is written next to it.
        baselines: reference architectures (looked up in ``results`` by hash for their top-1; a
            baseline not evaluated is drawn as a vertical line at its GFLOPs) or dicts
            ``{name, gflops, top1}``. Rows tagged ``role: baseline`` are marked too.
        title: the figure title.
        chosen: hashes or names of the architectures a driver picked.

    Returns:
        ``path``.
    """
    from matplotlib.figure import Figure

    if cost not in COST_AXES:
        raise ValueError(f"cost: got {cost!r}; allowed: {', '.join(COST_AXES)}")
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fig = Figure(figsize=(7, 4.5), dpi=120)
    ax = fig.subplots()
    ok = results[(results["status"] == "ok") & results["top1"].notna() & results[cost].notna()] if len(results) else results
    search = ok[[not is_baseline(r) for _, r in ok.iterrows()]] if len(ok) else ok
    if len(search):
        ax.scatter(search[cost], search["top1"], s=18, alpha=0.5, color="tab:blue", label="candidates")
    front = pareto_front(results, cost) if len(results) else results
    if len(front):
        ax.plot(front[cost], front["top1"], "-o", color="tab:orange", ms=5, lw=1.5, label="Pareto front")
    if chosen and len(ok):
        sel = ok[ok["hash"].isin(chosen) | ok["name"].isin(chosen)]
        if len(sel):
            ax.scatter(sel[cost], sel["top1"], s=120, facecolors="none", edgecolors="red", linewidths=2,
                       label="chosen", zorder=5)
    if cost != "gflops":  # baselines in latency: only those evaluated in the run with a prediction
        for _, row in ok.iterrows():
            if is_baseline(row):
                ax.scatter([row[cost]], [row["top1"]], marker="*", s=140, color="tab:green", zorder=6)
                ax.annotate(row["name"], (row[cost], row["top1"]), textcoords="offset points", xytext=(5, 5),
                            fontsize=8)
    for p in (_baseline_points(results, baselines) if cost == "gflops" else []):
        if math.isfinite(p["top1"]):
            ax.scatter([p["gflops"]], [p["top1"]], marker="*", s=140, color="tab:green", zorder=6)
            ax.annotate(p["name"], (p["gflops"], p["top1"]), textcoords="offset points", xytext=(5, 5), fontsize=8)
        else:
            ax.axvline(p["gflops"], color="tab:green", ls=":", lw=1)
            ax.annotate(p["name"], (p["gflops"], 0.02), xycoords=("data", "axes fraction"), rotation=90,
                        fontsize=8, xytext=(3, 0), textcoords="offset points")
    if len(ok) or (baselines and cost == "gflops"):  # baselines are only drawn on the GFLOPs axis
        ax.set_xscale("log")
    ax.set_xlabel(COST_AXES[cost])
    ax.set_ylabel("proxy top-1 (%)")
    ax.set_title(title or ("accuracy vs GFLOPs" if cost == "gflops" else "accuracy vs predicted latency"))
    ax.grid(True, which="both", alpha=0.3)
    if ax.get_legend_handles_labels()[0]:
        ax.legend(loc="lower right", fontsize=8)
    return save_figure(fig, path, note=True)


def fidelity_plot(report: "Report", path: Path) -> Path:
    """The run's score against the reference's for every audited architecture (``xnas fidelity``),
    coloured by expansion step for an expand run, with tau-b, rho and their 90 % intervals in the title.

    Returns:
        ``path`` (an SVG is written next to it).
    """
    from matplotlib.figure import Figure

    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fig = Figure(figsize=(6, 5), dpi=120)
    ax = fig.subplots()
    points = [p for p in report.pairs if math.isfinite(p.run_score) and math.isfinite(p.reference_score)]
    groups: dict[str, list] = {}
    for p in points:
        key = f"step {p.step}" if report.driver == "expand" and p.step is not None else "architectures"
        groups.setdefault(key, []).append(p)
    for key, members in sorted(groups.items(), key=lambda kv: (len(kv[0]), kv[0])):
        ax.scatter([p.run_score for p in members], [p.reference_score for p in members], s=28, alpha=0.8, label=key)
    unit = " (%)" if report.metric == "top1" else ""
    ax.set_xlabel(f"run's {report.metric}{unit}")
    ax.set_ylabel(f"reference {report.metric}{unit}")
    a = report.agreement
    ci = a["ci90"]
    ax.set_title(f"{report.driver} run, n = {a['n']}: Kendall tau-b {a['kendall_tau']:.2f} "
                 f"[{ci['kendall_tau'][0]:.2f}, {ci['kendall_tau'][1]:.2f}]\n"
                 f"Spearman rho {a['spearman_rho']:.2f} [{ci['spearman_rho'][0]:.2f}, {ci['spearman_rho'][1]:.2f}] "
                 "(90 % bootstrap)", fontsize=9)
    ax.grid(True, alpha=0.3)
    if len(groups) > 1:
        ax.legend(fontsize=7, loc="best")
    return save_figure(fig, path)
