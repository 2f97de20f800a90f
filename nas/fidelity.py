"""Proxy fidelity: does a run's cheap score rank architectures the way a reference evaluation does?

``xnas fidelity RUN_DIR`` (:mod:`nas.commands.fidelity`) re-evaluates some of a finished run's
architectures under a *reference* evaluator (usually a longer or larger proxy) and compares the two
rankings. This module is the torch-free part: the rank statistics, which architectures to audit, and
the report. It works for every driver because it reads only what every run writes: ``results.csv``
(each row's ``top1``, ``loss``, ``gflops``, ``driver``, ``step`` and ``tags``), the frozen
``archs/<hash>.yaml``, and for expansion runs ``trajectory.csv`` (which candidate each step accepted).

Statistics (all on the pairs where both scores are finite):

* Kendall's tau-b (ties in either list are handled, as in ``scipy.stats.kendalltau``);
* Spearman's rho (Pearson correlation of average ranks);
* 90 % percentile-bootstrap intervals of both (pairs resampled with replacement, a fixed seed);
* the same two statistics for GFLOPs as a predictor of the reference score: a cheap proxy that
  ranks no better than the architecture's cost carries no information beyond it.

A ranking of constant scores is undefined: :class:`FidelityError` says so in one line, never NaN.
"""
from __future__ import annotations

import csv
import json
import math
import random
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Mapping, Sequence

from nas.drivers.expand import criterion_score

__all__ = ["FidelityError", "Pair", "StepAudit", "Report", "kendall_tau_b", "spearman_rho", "bootstrap_ci",
           "rank_agreement", "band_agreement", "row_tags", "select_rows", "expand_steps", "audit_steps", "build_report",
           "METRICS", "write_report"]

METRICS = ("top1", "loss")


class FidelityError(ValueError):
    """An audit that cannot give an answer (message: what, the values, what is needed)."""


# ------------------------------------------------------------------------------------------------
# Rank statistics


def _ranks(values: Sequence[float]) -> list[float]:
    """Average ranks (1-based; tied values share the mean of their positions)."""
    order = sorted(range(len(values)), key=lambda i: values[i])
    ranks = [0.0] * len(values)
    i = 0
    while i < len(order):
        j = i
        while j + 1 < len(order) and values[order[j + 1]] == values[order[i]]:
            j += 1
        for k in range(i, j + 1):
            ranks[order[k]] = (i + j) / 2 + 1
        i = j + 1
    return ranks


def kendall_tau_b(x: Sequence[float], y: Sequence[float]) -> float:
    """Kendall's tau-b of two equally long lists (NaN if either is constant or shorter than 2).

    ``(concordant - discordant) / sqrt((n0 - ties_x) (n0 - ties_y))`` over all ``n0 = n (n-1) / 2``
    pairs, where ``ties_x`` counts pairs tied in ``x`` (including pairs tied in both).
    """
    n = len(x)
    if n != len(y):
        raise ValueError(f"kendall_tau_b: got lists of {n} and {len(y)} values; allowed: equal lengths")
    concordant = discordant = ties_x = ties_y = 0
    for i in range(n):
        for j in range(i + 1, n):
            dx, dy = x[i] - x[j], y[i] - y[j]
            if dx == 0:
                ties_x += 1
            if dy == 0:
                ties_y += 1
            if dx == 0 or dy == 0:
                continue
            if (dx > 0) == (dy > 0):
                concordant += 1
            else:
                discordant += 1
    n0 = n * (n - 1) // 2
    denominator = math.sqrt((n0 - ties_x) * (n0 - ties_y))
    return (concordant - discordant) / denominator if denominator > 0 else float("nan")


def spearman_rho(x: Sequence[float], y: Sequence[float]) -> float:
    """Spearman's rho: the Pearson correlation of average ranks (NaN if either list is constant)."""
    if len(x) != len(y):
        raise ValueError(f"spearman_rho: got lists of {len(x)} and {len(y)} values; allowed: equal lengths")
    rx, ry = _ranks(x), _ranks(y)
    n = len(rx)
    if n < 2:
        return float("nan")
    mx, my = sum(rx) / n, sum(ry) / n
    sxy = sum((a - mx) * (b - my) for a, b in zip(rx, ry))
    sxx = sum((a - mx) ** 2 for a in rx)
    syy = sum((b - my) ** 2 for b in ry)
    return sxy / math.sqrt(sxx * syy) if sxx > 0 and syy > 0 else float("nan")


def bootstrap_ci(x: Sequence[float], y: Sequence[float], statistic: Callable[[Sequence[float], Sequence[float]], float],
                 *, level: float = 0.9, resamples: int = 2000, seed: int = 0) -> tuple[float, float]:
    """Percentile-bootstrap interval of ``statistic(x, y)``: pairs resampled with replacement.

    Resamples where the statistic is undefined (all drawn pairs tied) are skipped; ``(nan, nan)`` if
    every one is.
    """
    rng = random.Random(seed)
    n = len(x)
    values = []
    for _ in range(resamples):
        idx = [rng.randrange(n) for _ in range(n)]
        v = statistic([x[i] for i in idx], [y[i] for i in idx])
        if math.isfinite(v):
            values.append(v)
    if not values:
        return float("nan"), float("nan")
    values.sort()
    tail = (1 - level) / 2

    def quantile(q: float) -> float:
        pos = q * (len(values) - 1)
        lo = math.floor(pos)
        hi = min(lo + 1, len(values) - 1)
        return values[lo] + (values[hi] - values[lo]) * (pos - lo)

    return quantile(tail), quantile(1 - tail)


def rank_agreement(run: Sequence[float], reference: Sequence[float], *, what: str = "scores",
                   resamples: int = 2000, seed: int = 0) -> dict[str, Any]:
    """Kendall tau-b, Spearman rho and their 90 % bootstrap intervals of two score lists.

    Raises:
        FidelityError: fewer than 3 pairs, or either list constant (the ranking is undefined).
    """
    n = len(run)
    if n < 3:
        raise FidelityError(f"fidelity: {what}: got {n} architecture(s) scored by both the run and the reference; "
                            "allowed: at least 3")
    for name, values in (("the run's", run), ("the reference's", reference)):
        if len(set(values)) == 1:
            raise FidelityError(f"fidelity: {what}: {name} scores are all {values[0]:g} over {n} architectures, so "
                                "they rank nothing; allowed: scores that differ (a longer proxy, or --metric loss)")
    return {
        "n": n,
        "kendall_tau": kendall_tau_b(run, reference),
        "spearman_rho": spearman_rho(run, reference),
        "ci90": {"kendall_tau": list(bootstrap_ci(run, reference, kendall_tau_b, resamples=resamples, seed=seed)),
                 "spearman_rho": list(bootstrap_ci(run, reference, spearman_rho, resamples=resamples, seed=seed))},
    }


def band_agreement(pairs: Sequence["Pair"], target: float, fraction: float = 0.2) -> dict[str, Any]:
    """:func:`rank_agreement` over the pairs whose cost lies within ``fraction`` of ``target``: how well the
    run ranks the architectures it actually had to choose between. Where that is undefined (fewer than 3
    pairs, or constant scores) the entry carries ``n`` and a ``note`` instead of the statistics."""
    inside = [p for p in pairs if abs(p.cost / target - 1) <= fraction
              and math.isfinite(p.run_score) and math.isfinite(p.reference_score)]
    entry: dict[str, Any] = {"target": target, "fraction": fraction, "n": len(inside)}
    try:
        entry.update(rank_agreement([p.run_score for p in inside], [p.reference_score for p in inside],
                                    what=f"the {len(inside)} architectures within {fraction:.0%} of the target"))
    except FidelityError as err:
        entry["note"] = str(err)
    return entry


# ------------------------------------------------------------------------------------------------
# What to audit


def row_tags(row: Mapping[str, str]) -> dict[str, Any]:
    """The ``tags`` column of a ``results.csv`` row as a mapping (empty if missing or not JSON)."""
    text = row.get("tags") or ""
    try:
        tags = json.loads(text) if text else {}
    except ValueError:
        tags = {}
    return tags if isinstance(tags, dict) else {}


def _finite(text: str) -> bool:
    try:
        return math.isfinite(float(text))
    except (TypeError, ValueError):
        return False


def expand_steps(rows: Sequence[Mapping[str, str]]) -> list[int]:
    """The forward steps (1, 2, ...) of an expansion run that have candidates."""
    return sorted({int(r["step"]) for r in rows if row_tags(r).get("role") == "candidate" and r["step"] != ""})


def select_rows(rows: Sequence[Mapping[str, str]], driver: str, *, sample: int, steps: Sequence[int] | None = None,
                parents: Mapping[int, str] | None = None, seed: int = 0) -> list[Mapping[str, str]]:
    """The run's rows to audit, in the run's order, one per architecture (its first ``ok`` row).

    * ``expand``: every candidate of the chosen ``steps`` (default: the first steps whose candidates
      number at most ``sample`` together, at least one step), plus each step's parent (``parents``:
      step -> hash of the start or of the previous step's accepted candidate), so that a step's
      decision can be replayed on the reference scores.
    * ``sample`` / ``search`` / anything else: every architecture with a finite score if there are at
      most ``sample``, else ``sample`` of them drawn at random with ``seed`` (an unbiased subset;
      choosing by score would widen the spread and flatter the statistics).

    Raises:
        FidelityError: a requested step does not exist, or nothing finished.
    """
    ok: dict[str, Mapping[str, str]] = {}
    for r in rows:
        if r.get("status") == "ok" and _finite(r.get("top1", "")) and r["hash"] not in ok:
            ok[r["hash"]] = r
    if not ok:
        raise FidelityError("fidelity: the run has no finished architecture (status ok) to audit; allowed: a run "
                            "with results")
    if driver != "expand":
        chosen = list(ok.values())
        if len(chosen) > sample:
            picked = set(random.Random(seed).sample(range(len(chosen)), sample))
            chosen = [r for i, r in enumerate(chosen) if i in picked]
        return chosen
    available = expand_steps(rows)
    if steps is None:
        steps, total = [], 0
        for s in available:
            count = sum(1 for r in ok.values() if _is_candidate(r, s))
            if steps and total + count > sample:
                break
            steps.append(s)
            total += count
    missing = [s for s in steps if s not in available]
    if missing:
        raise FidelityError(f"--expand-steps: got step {missing[0]}; allowed: steps of this run "
                            f"({', '.join(map(str, available)) or 'none'})")
    wanted_parents = {(parents or {}).get(s) for s in steps}
    return [r for r in ok.values()
            if any(_is_candidate(r, s) for s in steps) or r["hash"] in wanted_parents]


def _is_candidate(row: Mapping[str, str], step: int) -> bool:
    return row_tags(row).get("role") == "candidate" and row.get("step", "") == str(step)


# ------------------------------------------------------------------------------------------------
# Expansion decisions (the trade-off itself is nas.drivers.expand.criterion_score)


@dataclass
class Pair:
    """One audited architecture: the run's score and the reference's (``nan`` if its trial failed)."""

    hash: str
    name: str
    gflops: float
    run_score: float
    reference_score: float
    reference_loss: float = float("nan")
    step: int | None = None
    axis: str = ""
    role: str = ""
    reference_status: str = "ok"
    latency_ms: float | None = None  # the run's predicted latency (a --target-ms run's cost)
    # the reference's top-1 when ``reference_score`` is another metric (--metric loss): a step's decision
    # is replayed with the run's criterion, which is written in top-1 (and loss), whatever the audit ranks
    reference_top1: float | None = None

    @property
    def cost(self) -> float:
        """The cost the run decided on: predicted ms for a latency-target run, else GFLOPs."""
        return self.latency_ms if self.latency_ms is not None else self.gflops

    def as_dict(self) -> dict[str, Any]:
        return {"hash": self.hash, "name": self.name, "gflops": self.gflops, "latency_ms": self.latency_ms, "run_score": _json_float(self.run_score),
                "reference_score": _json_float(self.reference_score), "step": self.step, "axis": self.axis,
                "role": self.role, "reference_status": self.reference_status}


@dataclass
class StepAudit:
    """One expansion step replayed on the reference scores."""

    step: int
    n: int
    kendall_tau: float | None
    run_choice: str
    reference_choice: str | None
    agree: bool | None
    note: str = ""
    # where the reference ranks the run's axis by the run's criterion: 1 = its best, 2 = its runner-up
    # (ties share the better place); None when the reference could not replay the step
    run_choice_reference_rank: int | None = None

    def as_dict(self) -> dict[str, Any]:
        return {"step": self.step, "n": self.n, "kendall_tau": self.kendall_tau, "run_choice": self.run_choice,
                "reference_choice": self.reference_choice, "agree": self.agree,
                "run_choice_reference_rank": self.run_choice_reference_rank, "note": self.note}


def _reference_top1(p: Pair) -> float:
    return p.reference_top1 if p.reference_top1 is not None else p.reference_score


def audit_steps(pairs: Sequence[Pair], accepted: Mapping[int, str], parents: Mapping[int, str],
                criterion: str) -> list[StepAudit]:
    """Per expansion step: tau within its candidates, and whether the reference picks the run's axis.

    Args:
        pairs: the audited architectures (candidates carry ``step`` and ``axis``).
        accepted: step -> the axis the run accepted.
        parents: step -> the hash of that step's parent.
        criterion: the run's trade-off criterion, replayed with the reference's scores.
    """
    by_hash = {p.hash: p for p in pairs}
    out = []
    for step in sorted({p.step for p in pairs if p.role == "candidate" and p.step is not None}):
        cands = [p for p in pairs if p.role == "candidate" and p.step == step and math.isfinite(p.reference_score)]
        tau: float | None = None
        note = ""
        if len(cands) >= 2:
            t = kendall_tau_b([c.run_score for c in cands], [c.reference_score for c in cands])
            tau = t if math.isfinite(t) else None
            if tau is None:
                note = "tau undefined: one side's scores are all equal"
        parent = by_hash.get(parents.get(step, ""))
        choice = None
        rank = None
        run_choice = accepted.get(step, "")
        if parent is not None and math.isfinite(parent.reference_score) and cands:
            # the trade-off in the cost the run expanded in (GFLOPs, or predicted ms)
            scored = [(criterion_score(criterion, _reference_top1(c), c.reference_loss, c.cost,
                                       _reference_top1(parent), parent.reference_loss, parent.cost), c)
                      for c in cands]
            best = max(s for s, _ in scored)
            tied = [c.axis for s, c in scored if s == best]
            choice = tied[0]
            if len(tied) > 1:
                note = (note + "; " if note else "") + "reference tie between " + ", ".join(tied)
            mine = [s for s, c in scored if c.axis == run_choice]
            if mine:
                rank = 1 + sum(1 for s, _ in scored if s > mine[0])
        elif parent is None:
            note = (note + "; " if note else "") + "parent not audited"
        out.append(StepAudit(step, len(cands), tau, run_choice, choice,
                             None if choice is None else choice == run_choice, note, rank))
    return out


# ------------------------------------------------------------------------------------------------
# The report


@dataclass
class Report:
    """What ``xnas fidelity`` measured (written as ``fidelity.json``)."""

    run_dir: str
    driver: str
    metric: str
    reference: dict[str, Any]
    agreement: dict[str, Any]
    gflops_agreement: dict[str, Any] | None
    pairs: list[Pair]
    steps: list[StepAudit] = field(default_factory=list)
    reference_se: float | None = None
    band: dict[str, Any] | None = None  # a search audit: the agreement near the target (:func:`band_agreement`)

    @property
    def mean_step_tau(self) -> float | None:
        """Mean of the defined within-step taus of an expansion audit (None when there is none)."""
        taus = [s.kendall_tau for s in self.steps if s.kendall_tau is not None]
        return sum(taus) / len(taus) if taus else None

    def as_dict(self) -> dict[str, Any]:
        from nas.cost import GFLOPS_NOTE

        return {
            "run_dir": self.run_dir, "driver": self.driver, "metric": self.metric,
            "kendall_tau": self.agreement["kendall_tau"], "spearman_rho": self.agreement["spearman_rho"],
            "ci90": self.agreement["ci90"], "n": self.agreement["n"],
            "gflops_vs_reference": self.gflops_agreement,
            "reference": self.reference, "reference_top1_se": self.reference_se,
            "steps": [s.as_dict() for s in self.steps],
            "mean_step_kendall_tau": self.mean_step_tau,
            "band": self.band,
            "pairs": [p.as_dict() for p in self.pairs],
            "gflops_convention": GFLOPS_NOTE,
        }


def _json_float(v: float) -> float | None:
    return v if math.isfinite(v) else None


def build_report(run_dir: str, driver: str, metric: str, reference: dict[str, Any], pairs: list[Pair], *,
                 accepted: Mapping[int, str] | None = None, parents: Mapping[int, str] | None = None,
                 criterion: str = "gain-per-log-cost", val_clips: int | None = None) -> Report:
    """Compute the statistics of ``pairs``. Both sides use the same metric, so agreement is a positive tau
    for ``loss`` as for ``top1``; GFLOPs are compared with the reference's *goodness* (its top-1, or its
    negated loss), so a positive tau means "more compute, better" either way."""
    valid = [p for p in pairs if math.isfinite(p.run_score) and math.isfinite(p.reference_score)]
    run = [p.run_score for p in valid]
    ref = [p.reference_score for p in valid]
    agreement = rank_agreement(run, ref, what=f"{metric} of {len(valid)} audited architectures")
    goodness = [-v for v in ref] if metric == "loss" else ref
    try:
        gflops = rank_agreement([p.gflops for p in valid], goodness, what="GFLOPs")
    except FidelityError:
        gflops = None
    steps = audit_steps(pairs, accepted or {}, parents or {}, criterion) if driver == "expand" else []
    se = None
    if val_clips and metric == "top1":
        # binomial standard error of a top-1 measured on val_clips clips, at the audited accuracies
        ses = [math.sqrt(max(p.reference_score, 0) / 100 * (1 - p.reference_score / 100) / val_clips) * 100
               for p in valid]
        se = max(ses) if ses else None
    return Report(run_dir, driver, metric, reference, agreement, gflops, list(pairs), steps, se)


def write_report(report: Report, out_dir: Path) -> dict[str, Path]:
    """Write ``fidelity.json``, ``fidelity.csv`` and ``plots/fidelity.png`` under ``out_dir``."""
    from nas.runs import write_json

    out_dir.mkdir(parents=True, exist_ok=True)
    paths = {"json": out_dir / "fidelity.json", "csv": out_dir / "fidelity.csv",
             "plot": out_dir / "plots" / "fidelity.png"}
    write_json(paths["json"], report.as_dict())
    tmp = paths["csv"].with_suffix(".csv.tmp")
    columns = ["hash", "name", "gflops", "step", "axis", "role", "run_score", "reference_score", "reference_status"]
    with open(tmp, "w", newline="") as f:
        writer = csv.DictWriter(f, fieldnames=columns)
        writer.writeheader()
        for p in report.pairs:
            d = p.as_dict()
            writer.writerow({k: "" if d[k] is None else d[k] for k in columns})
    tmp.replace(paths["csv"])
    from nas.plots import fidelity_plot

    fidelity_plot(report, paths["plot"])
    return paths
