"""The TuNAS policy plot: costs vs target, reward and Q, and the policy's confidence per choice."""
from __future__ import annotations

import math
from pathlib import Path
from typing import Any, Mapping, Sequence

from nas.plots import save_figure

__all__ = ["policy_plot"]


def policy_plot(trajectory: Sequence[Mapping[str, Any]], policy_rows: Sequence[Mapping[str, Any]], path: Path,
                *, title: str = "") -> Path:
    """Three panels over search steps: sampled / expected / argmax GFLOPs with the target (log y);
    Q, reward and baseline; a heat map of the most likely value's probability for every choice.

    Args:
        trajectory: rows of :data:`nas.drivers.tunas.search.TRAJECTORY_COLUMNS`.
        policy_rows: ``{step, label, value, prob}`` rows.
        path: the PNG to write (an SVG is written next to it).
        title: the figure title.
    """
    from matplotlib.figure import Figure
    import numpy as np

    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fig = Figure(figsize=(8, 9), dpi=110)
    axes = fig.subplots(3, 1, sharex=True, gridspec_kw={"height_ratios": [1.2, 1, 1.4]})
    steps = [r["step"] for r in trajectory]
    ax = axes[0]
    # the search's own cost: predicted latency for a --target-ms search, else GFLOPs
    unit = "ms" if trajectory and trajectory[0].get("target_ms") else "gflops"
    ax.plot(steps, [r[f"sampled_{unit}"] for r in trajectory], ".", ms=3, alpha=0.4, label="sampled (trained)")
    logged = [r for r in trajectory if isinstance(r.get(f"expected_{unit}"), float) and math.isfinite(r[f"expected_{unit}"])]
    if logged:
        ax.plot([r["step"] for r in logged], [r[f"expected_{unit}"] for r in logged], "-", lw=1.5, label="expected (policy)")
        ax.plot([r["step"] for r in logged], [r[f"argmax_{unit}"] for r in logged], "-", lw=1.5, label="argmax")
    target = trajectory[0][f"target_{unit}"] if trajectory else None
    if target:
        ax.axhline(target, color="k", ls="--", lw=1, label="target")
        ax.axhspan(target * 0.95, target * 1.05, color="k", alpha=0.07, label="target ±5 %")
    ax.set_yscale("log")
    ax.set_ylabel("GFLOPs" if unit == "gflops" else "predicted latency (ms per clip)")
    ax.legend(fontsize=7, loc="upper right")
    ax.grid(True, which="both", alpha=0.3)
    ax = axes[1]
    ax.plot(steps, [r["q"] for r in trajectory], ".", ms=3, alpha=0.4, label="Q (held-out batch top-1)")
    ax.plot(steps, [r["reward"] for r in trajectory], ".", ms=3, alpha=0.4, label="reward")
    ax.plot(steps, [r["baseline"] for r in trajectory], "-", lw=1.5, label="baseline (EMA)")
    warm_end = next((r["step"] for r in trajectory if r["rl_lr"] > 0), None)
    for a in axes:
        if warm_end:
            a.axvline(warm_end, color="grey", ls=":", lw=1)
    ax.set_ylabel("fraction")
    ax.legend(fontsize=7, loc="lower right")
    ax.grid(True, alpha=0.3)
    ax = axes[2]
    labels = list(dict.fromkeys(r["label"] for r in policy_rows))
    psteps = sorted({r["step"] for r in policy_rows})
    if labels and psteps:
        col = {s: j for j, s in enumerate(psteps)}
        row = {lab: i for i, lab in enumerate(labels)}
        heat = np.zeros((len(labels), len(psteps)))
        for r in policy_rows:
            i, j = row[r["label"]], col[r["step"]]
            heat[i, j] = max(heat[i, j], r["prob"])
        im = ax.imshow(heat, aspect="auto", interpolation="nearest", vmin=0, vmax=1, cmap="viridis",
                       extent=(psteps[0] - 0.5, psteps[-1] + 0.5, len(labels) - 0.5, -0.5))
        fig.colorbar(im, ax=ax, label="P(most likely value)", pad=0.01)
        if len(labels) <= 40:
            ax.set_yticks(range(len(labels)), labels, fontsize=5)
        else:
            ax.set_ylabel(f"{len(labels)} choices (document order)")
    ax.set_xlabel("search step")
    fig.suptitle(title or "TuNAS policy")
    return save_figure(fig, path, note=True)
