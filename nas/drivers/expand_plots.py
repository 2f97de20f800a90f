"""The expansion trade-off plot of ``xnas expand`` (like X3D's Figure 2): proxy top-1 against GFLOPs
(log axis) for every candidate of every step, coloured by axis, with the chosen path joined from the
start through each accepted step to the contraction and the final architecture.

matplotlib with the Agg backend (files only, never a window); imported only when a plot is written.
"""
from __future__ import annotations

from pathlib import Path

from nas.cost import GFLOPS_NOTE
from nas.drivers.expand import AXES, PAPER_SYMBOLS, ExpansionResult
from nas.plots import save_figure

__all__ = ["tradeoff_plot", "AXIS_COLOURS"]

AXIS_COLOURS = {"frame_stride": "#1f77b4", "frames": "#17becf", "spatial": "#2ca02c", "width": "#ff7f0e",
                "bottleneck": "#d62728", "depth": "#9467bd"}


def tradeoff_plot(result: ExpansionResult, path: str | Path, *, title: str = "") -> Path:
    """Write the expansion trade-off plot of ``result`` to ``path`` (PNG or anything matplotlib saves).

    Failed candidates (no top-1) are drawn as crosses on the bottom edge so every candidate is visible.
    """
    from matplotlib.figure import Figure

    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fig = Figure(figsize=(8.5, 5.5), dpi=120)
    ax = fig.subplots()
    x = result.in_unit  # GFLOPs, or predicted ms for a latency target
    unit = "ms" if result.target_ms else "GFLOPs"
    scored = [c for c in result.rows() if c.top1 == c.top1]
    floor = min((c.top1 for c in scored), default=0.0) - 2.0
    for axis in AXES:
        cands = [c for step in result.steps for c in step if c.axis == axis]
        ok = [c for c in cands if c.top1 == c.top1]
        bad = [c for c in cands if c.top1 != c.top1]
        if ok:
            ax.scatter([x(c) for c in ok], [c.top1 for c in ok], s=28, color=AXIS_COLOURS[axis], alpha=0.75,
                       label=f"{axis} {PAPER_SYMBOLS[axis]}", zorder=3)
        if bad:
            ax.scatter([x(c) for c in bad], [floor] * len(bad), marker="x", color=AXIS_COLOURS[axis],
                       zorder=3)
    chosen = [c for c in result.path() if c.top1 == c.top1]
    ax.plot([x(c) for c in chosen], [c.top1 for c in chosen], "-", color="black", lw=1.3, zorder=2,
            label="chosen path")
    for c in result.path():
        if c.role == "candidate" and c.top1 == c.top1:
            ax.annotate(str(c.step), (x(c), c.top1), textcoords="offset points", xytext=(4, 4), fontsize=8)
    s = result.start
    if s.top1 == s.top1:
        ax.scatter([x(s)], [s.top1], marker="s", s=60, color="grey", zorder=4, label=f"start ({s.arch.name})")
    f = result.final
    if f.top1 == f.top1:
        ax.scatter([x(f)], [f.top1], marker="*", s=180, color="gold", edgecolor="black", zorder=5,
                   label=f"final ({x(f):.3f} {unit})")
    ax.axvline(result.target, color="grey", ls="--", lw=0.8)
    ax.text(result.target, ax.get_ylim()[0], f" target {result.target:g}", fontsize=8,
            color="grey", va="bottom")
    ax.set_xscale("log")
    from matplotlib.ticker import FuncFormatter, LogLocator, NullFormatter

    # 1-2-5 ticks with plain numbers: an expansion often spans less than two decades
    ax.xaxis.set_major_locator(LogLocator(base=10, subs=(1.0, 2.0, 5.0)))
    ax.xaxis.set_major_formatter(FuncFormatter(lambda v, _: f"{v:g}"))
    ax.xaxis.set_minor_formatter(NullFormatter())
    ax.set_xlabel(f"GFLOPs (log scale; {GFLOPS_NOTE})" if unit == "GFLOPs" else
                  "predicted latency (ms per clip, batch 1, log scale; this machine's latency table)", fontsize=8)
    ax.set_ylabel("proxy top-1 (%)")
    ax.set_title(title or f"X3D progressive expansion: every candidate, chosen path joined "
                          f"(x{result.rate:g} per step, {result.criterion})", fontsize=10)
    ax.grid(True, which="both", alpha=0.25)
    ax.legend(fontsize=7, loc="best")
    return save_figure(fig, path, svg=False)
