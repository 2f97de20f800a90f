"""X3D progressive expansion and backward contraction (Feichtenhofer, CVPR 2020, §3; ``xnas expand``).

The search state is one architecture of an *expandable* family (the six continuous factors of
``spaces/x3d.yaml``). Each **forward step** builds one candidate per axis, each scaled on that axis
alone so that its exact analytic cost is as close as the rounding rules allow to ``rate`` x the
current cost; all candidates of a step go to the :class:`~nas.evaluator.Evaluator` as one batch (one
Ray wave), and the step keeps the candidate with the best trade-off (``criterion``). Steps repeat
until the cost reaches the target. If the last accepted step overshoots, **backward contraction**
shrinks that step's axis so the final architecture lands within ``tolerance`` of the target.

Solving an axis (:func:`solve_axis`): the cost is a monotone *step function* of a factor (widths round
to multiples of 8, depths to ``ceil``, frames to integers, crops to multiples of 8), so the driver
bisects over the factor with the real cost model to find the two cost levels that bracket the wanted
cost, keeps the closer one (in log ratio), bisects again for the factor interval that gives that
level, and writes the simplest decimal in the interval (2.25 rather than 2.2500001) so documents stay
readable and reruns produce identical hashes. Nothing is derived from exponents.

Axes (doc factor, paper symbol, what the candidate changes):

* ``frame_stride`` (gamma_tau, X-Fast): more frames over the *same* clip duration -- frames x k and the
  frame stride / k (integer, >= 1). A one-frame clip (X2D) has no duration of its own; it stands for a
  clip of ``span`` source frames (default 32, about 1 s at 30 fps), so X-Fast from X2D gives 2 frames x
  stride 16. When the stride is already 1 the candidate equals X-Temporal's and is not built twice.
* ``frames`` (gamma_t, X-Temporal): a longer clip at the same frame rate -- frames x k, stride kept
  (a one-frame clip's stride is ``span``, clamped to the space's range).
* ``spatial`` (gamma_s), ``width`` (gamma_w), ``bottleneck`` (gamma_b), ``depth`` (gamma_d): the factor.

Trade-off criteria (:data:`CRITERIA`), all computed against the current (parent) architecture:

* ``gain-per-log-cost`` (default, X3D): (top1 - parent top1) / ln(GFLOPs / parent GFLOPs);
* ``gain-per-gflop``: (top1 - parent top1) / (GFLOPs - parent GFLOPs);
* ``loss-drop-per-log-cost``: (parent validation loss - loss) / ln(GFLOPs / parent GFLOPs) -- for
  small proxies whose top-1s sit near chance (the loss moves before the arg-max does);
* ``accuracy``: the candidate's top-1 alone.

Ties (equal scores -- common when a small proxy leaves several candidates at the same top-1 on a small
validation split) go to the lower validation loss, then to the earlier axis in :data:`AXES` order, so
a run is deterministic given its evaluator.
**Cost.** By default a step's cost is the exact multiply-add count. With a ``measure`` (an
architecture's cost in any unit that grows with every factor, e.g. the predicted latency of
:mod:`nas.latency`, ``xnas expand --target-ms``) the same machinery runs on it: each candidate aims at
``rate`` x the parent's measured cost, the criteria divide by its log ratio, and the contraction lands
the final architecture within ``tolerance`` of ``target_ms``. GFLOPs are reported beside it either way.

This module imports no torch and no Ray: it talks to an evaluator and writes plain files.
"""
from __future__ import annotations

import csv
import json
import math
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Sequence

from nas.cost import GFLOPS_NOTE
from nas.dsl.arch import Arch
from nas.evaluator import Evaluator, for_parent
from nas.proxy import TrialResult

__all__ = [
    "AXES", "CRITERIA", "PAPER_SYMBOLS", "ExpandError", "criterion_score", "Solution", "Candidate", "ExpansionResult",
    "Measure", "expandable", "is_growth", "weights_donor", "factor_bounds", "solve_axis", "build_candidates",
    "contract", "expand",
    "replay", "write_outputs", "summary_text", "TRAJECTORY_COLUMNS", "top1_se", "top1_se_of_difference",
]

# The paper's axis order (Figure 2 legend); also the tie-break order.
AXES = ("frame_stride", "frames", "spatial", "width", "bottleneck", "depth")
PAPER_SYMBOLS = {"frame_stride": "γτ (X-Fast)", "frames": "γt (X-Temporal)", "spatial": "γs",
                 "width": "γw", "bottleneck": "γb", "depth": "γd"}
CRITERIA = ("gain-per-log-cost", "gain-per-gflop", "accuracy", "loss-drop-per-log-cost")

# An axis whose best candidate grows the cost by less than rate ** MIN_RATE_POWER is exhausted (it hit
# its range bound); comparing a x1.1 candidate's "gain per log cost" with x2 ones would be noise.
MIN_RATE_POWER = 0.5


class ExpandError(ValueError):
    """A bad driver setting (message ``expand.FIELD: got VALUE; allowed: WHAT``; ``field`` names it) or
    a search that cannot go on (every candidate of a step failed; ``field`` is ``None``)."""

    def __init__(self, message: str, field: str | None = None) -> None:
        super().__init__(message)
        self.field = field


def _fail(name: str, value: Any, allowed: str) -> ExpandError:
    return ExpandError(f"expand.{name}: got {value!r}; allowed: {allowed}", field=name)


# -- the factor state -------------------------------------------------------------------------------
def expandable(arch: Arch) -> bool:
    """Whether ``arch`` has the six continuous expansion factors (an X3D-family document)."""
    factors = arch.doc.get("factors")
    return isinstance(factors, dict) and all(a in factors for a in AXES)


def factor_bounds(arch: Arch) -> dict[str, tuple[float, float]]:
    """Allowed range of each factor: the space's ranges when ``arch`` is a point of its declared space
    (so every candidate stays a point of it), else the family schema's range."""
    bounds = {axis: (0.01, 1000.0) for axis in AXES}
    if arch.space:
        from nas.registry import load_space

        try:
            space = load_space(arch.space)
        except Exception:  # an architecture naming a space that is not shipped: schema bounds
            return bounds
        if space.contains(arch):
            for axis in AXES:
                choice = space.dims().get(f"factors/{axis}")
                if choice is not None and choice.values is None:
                    bounds[axis] = (float(choice.low), float(choice.high))
    return bounds


def _family_cost(doc: dict) -> Any:
    from nas.families import family_of

    return family_of(doc["family"]).cost(doc)


# An architecture document's cost in the unit a run expands in (``None``: exact multiply-adds).
Measure = Callable[[dict], float]


def _cost_of(doc: dict, measure: "Measure | None") -> float:
    return float(_family_cost(doc).macs) if measure is None else float(measure(doc))


def _clip(doc: dict) -> Any:
    from nas.families import family_of

    return family_of(doc["family"]).clip(doc)


@dataclass(frozen=True)
class Solution:
    """One solved move along an axis: the variable's value, the document it gives and its cost."""

    axis: str
    value: float  # the axis variable: the factor itself, or the frames factor for the temporal axes
    doc: dict
    macs: int
    cost: float = 0.0  # in the run's unit (equal to macs without a measure)


def _variable(axis: str) -> str:
    """The factor bisection runs over: both temporal axes move the frame count."""
    return "frames" if axis in ("frame_stride", "frames") else axis


def _moved(doc: dict, axis: str, value: float, span: int, bounds: dict[str, tuple[float, float]]) -> dict:
    """``doc`` with ``axis`` moved so that its variable equals ``value`` (other factors untouched)."""
    new = dict(doc)  # only the factors change: copy them, share the rest (never mutated)
    new["factors"] = dict(doc["factors"])
    factors, base = new["factors"], new["base"]
    if axis not in ("frame_stride", "frames"):
        factors[axis] = value
        return new
    clip = _clip(doc)
    frames_now = clip.frames
    # a single frame has no duration: it stands for a clip of `span` source frames
    stride_now = clip.frame_stride if frames_now > 1 else span
    factors["frames"] = value
    frames_new = _clip(new).frames
    if axis == "frames":   # X-Temporal: same frame rate, longer clip
        stride_new = stride_now
    else:                  # X-Fast: same duration, higher frame rate
        stride_new = max(1, int(math.floor(stride_now * frames_now / frames_new + 0.5)))
    lo, hi = bounds["frame_stride"]
    base_stride = base["frame_stride"]
    stride_new = min(max(stride_new, math.ceil(lo * base_stride - 1e-9)), math.floor(hi * base_stride + 1e-9))
    if frames_new == 1:  # a single frame: keep the stride it has
        return new
    factors["frame_stride"] = float(stride_new) / base_stride
    return new


def _bracket(pred: Callable[[float], bool], lo: float, hi: float) -> tuple[float, float]:
    """``(a, b)`` with ``a < b`` close together, ``pred(b)`` true and (unless ``a == lo``) ``pred(a)``
    false: the threshold of a monotone ``pred`` on ``[lo, hi]`` (``pred(hi)`` true), by bisection."""
    for _ in range(200):
        mid = 0.5 * (lo + hi)
        if not lo < mid < hi or hi - lo <= 1e-11 * hi:
            break
        if pred(mid):
            hi = mid
        else:
            lo = mid
    return lo, hi


def _first_true(pred: Callable[[float], bool], lo: float, hi: float) -> float:
    """Smallest ``v`` in ``(lo, hi]`` with ``pred(v)``, to ~1e-11 relative (``pred`` monotone, ``pred(hi)``)."""
    return _bracket(pred, lo, hi)[1]


def _simplest_in(lo: float, hi: float, ok: Callable[[float], bool]) -> float:
    """The value with the fewest decimals in ``[lo, hi)`` for which ``ok`` holds (``lo`` if none)."""
    for digits in range(0, 13):
        scale = 10.0 ** digits
        value = round(math.ceil(lo * scale - 1e-9) / scale, digits)
        if value < lo:
            value = round(value + 1.0 / scale, digits)
        if lo <= value < hi and ok(value):
            return value
    return lo


def solve_axis(doc: dict, axis: str, target_macs: float, *, low: float, high: float, span: int = 32,
               bounds: dict[str, tuple[float, float]] | None = None, measure: "Measure | None" = None) -> Solution | None:
    """Move ``axis`` of ``doc`` within ``[low, high]`` so the cost is the achievable one closest to
    ``target_macs`` (closest in log ratio; the cost is a step function of the factor).

    Args:
        doc: the current architecture document.
        axis: one of :data:`AXES`.
        target_macs: the wanted multiply-adds (the wanted cost in ``measure``'s unit, with one).
        low, high: the range of the axis variable (the factor; the frames factor for temporal axes).
        span: source frames a single-frame clip stands for (see the module docstring).
        bounds: factor ranges (for the stride the temporal axes set); default: the schema's.
        measure: the cost to solve for (non-decreasing in the factor); default: multiply-adds.

    Returns:
        The solution, or ``None`` if ``low > high``.
    """
    bounds = bounds or {a: (0.01, 1000.0) for a in AXES}
    if low > high:
        return None

    def cost_at(v: float) -> float:  # in the run's unit
        return _cost_of(_moved(doc, axis, v, span, bounds), measure)

    m_low, m_high = cost_at(low), cost_at(high)
    if m_high <= target_macs:
        levels = [m_high]
    elif m_low >= target_macs:
        levels = [m_low]
    else:  # bracket the target: the first level >= target and the one just below it
        below, t = _bracket(lambda v: cost_at(v) >= target_macs, low, high)
        levels = [m for m in (cost_at(t), cost_at(below)) if m > 0]
    level = min(levels, key=lambda m: (abs(math.log(m / target_macs)), m))
    # the interval of the variable that gives exactly this level
    a = low if cost_at(low) >= level else _first_true(lambda v: cost_at(v) >= level, low, high)
    b = high if cost_at(high) <= level else _first_true(lambda v: cost_at(v) > level, low, high)
    if b == high and cost_at(high) == level:
        b = math.nextafter(high, math.inf)
    value = _simplest_in(a, b, lambda v: low <= v <= high and cost_at(v) == level)
    new = _moved(doc, axis, value, span, bounds)
    return Solution(axis=axis, value=value, doc=new, macs=_family_cost(new).macs, cost=_cost_of(new, measure))


# -- candidates and their records -------------------------------------------------------------------
@dataclass
class Candidate:
    """One architecture the driver built: the start, a step's candidate, the contraction or the final."""

    step: int
    role: str  # start | candidate | contraction | adjustment (a fine adjustment after the contraction)
    axis: str  # "" for the start
    arch: Arch
    macs: int
    params: int
    parent_cost: float = 0.0  # the parent's cost in the run's unit (multiply-adds without a measure)
    wanted_cost: float = 0.0
    result: TrialResult | None = None
    score: float = float("nan")
    chosen: bool = False
    note: str = ""
    file: str = ""
    margin_se: float = float("nan")  # chosen candidates: top-1 lead over the step's runner-up, in SEs
    cost: float = 0.0  # in the run's unit (equal to macs without a measure)
    in_ms: bool = False  # the cost is a predicted latency (a --target-ms run)

    @property
    def gflops(self) -> float:
        """Multiply-adds x 1e-9 (see :data:`nas.cost.GFLOPS_NOTE`)."""
        return self.macs / 1e9

    @property
    def top1(self) -> float:
        """The proxy top-1 (NaN if not evaluated or failed)."""
        return self.result.top1 if self.result is not None and self.result.status == "ok" else float("nan")

    @property
    def factors(self) -> dict[str, float]:
        """The six factors of the architecture."""
        return {a: float(self.arch.doc["factors"][a]) for a in AXES}

    def tags(self) -> dict[str, Any]:
        """What a recording evaluator copies into the results table."""
        tags = {"driver": "expand", "step": self.step, "role": self.role, "axis": self.axis}
        if self.in_ms:  # the results table's latency_ms column
            tags["latency_ms"] = self.cost
        return tags


def _candidate(step: int, role: str, axis: str, doc: dict, name: str, parent_cost: float = 0.0,
               wanted: float = 0.0, note: str = "", measure: "Measure | None" = None) -> Candidate:
    doc = dict(doc)
    doc["name"] = name
    doc.pop("description", None)
    arch = Arch.from_dict(doc)
    cost = arch.cost()
    return Candidate(step=step, role=role, axis=axis, arch=arch, macs=cost.macs, params=cost.params,
                     parent_cost=parent_cost, wanted_cost=wanted, note=note,
                     cost=float(cost.macs) if measure is None else float(measure(arch.to_dict())),
                     in_ms=measure is not None)


def build_candidates(current: Arch, step: int, rate: float, axes: Sequence[str] = AXES, *, span: int = 32,
                     bounds: dict[str, tuple[float, float]] | None = None,
                     measure: "Measure | None" = None) -> tuple[list[Candidate], list[str]]:
    """One candidate per axis whose cost (multiply-adds, or ``measure``) is the achievable one closest to
    ``rate`` x the current cost.

    Returns:
        The candidates (in :data:`AXES` order) and notes on the axes that could not grow (range bound
        reached, or the same architecture as an earlier axis's candidate).
    """
    bounds = bounds or factor_bounds(current)
    doc = current.to_dict()
    cost_now = _cost_of(doc, measure)  # in the run's unit
    wanted = rate * cost_now
    out: list[Candidate] = []
    skipped: list[str] = []
    seen: dict[str, str] = {}
    for axis in AXES:
        if axis not in axes:
            continue
        var = _variable(axis)
        low = float(doc["factors"][var])
        high = bounds[var][1]
        sol = solve_axis(doc, axis, wanted, low=low, high=high, span=span, bounds=bounds, measure=measure)
        if sol is None or sol.cost < cost_now * rate ** MIN_RATE_POWER:
            got = "nothing" if sol is None else f"x{sol.cost / cost_now:.2f}"
            skipped.append(f"{axis}: exhausted (range {bounds[var][0]:g}..{bounds[var][1]:g}; best {got})")
            continue
        cand = _candidate(step, "candidate", axis, sol.doc, f"expand-s{step:02d}-{axis}", cost_now, wanted,
                          measure=measure)
        if cand.arch.hash in seen:
            skipped.append(f"{axis}: same architecture as the {seen[cand.arch.hash]} candidate")
            continue
        seen[cand.arch.hash] = axis
        out.append(cand)
    return out, skipped


def top1_se(top1: float, val_clips: int) -> float:
    """The binomial standard error (points) of a top-1 (percent) measured on ``val_clips`` clips."""
    p = top1 / 100
    return 100 * math.sqrt(max(p * (1 - p), 1e-12) / val_clips)


def top1_se_of_difference(top1_a: float, top1_b: float, val_clips: int) -> float:
    """The binomial standard error (points) of the difference of two top-1 values measured on
    ``val_clips`` validation clips each."""
    return math.hypot(top1_se(top1_a, val_clips), top1_se(top1_b, val_clips))


def choose(cands: Sequence[Candidate], val_clips: int | None = None) -> tuple[Candidate, str]:
    """The step's decision and how it was made.

    The leader is the best criterion score. With ``val_clips`` (the validation split's size), every
    candidate whose top-1 is within one standard error of a difference of the leader's ties with it,
    and the tie goes to the lowest validation loss (then the criterion): a difference the validation
    split cannot resolve is not a decision. Without it, only exact ties go to the loss.

    Returns:
        The chosen candidate (its ``margin_se`` set: its top-1 lead over the best other candidate in
        standard errors, NaN without ``val_clips``) and a one-line account of the decision.
    """
    ok = [c for c in cands if c.score == c.score]
    leader = max(ok, key=lambda c: (c.score, -_loss(c), -AXES.index(c.axis)))
    tied = [leader]
    if val_clips:
        tied = [c for c in ok if abs(c.top1 - leader.top1) <= top1_se_of_difference(c.top1, leader.top1, val_clips)]
    best = min(tied, key=lambda c: (_loss(c), -c.score, AXES.index(c.axis)))
    others = sorted((c for c in ok if c is not best), key=lambda c: -c.score)
    if not others:
        return best, f"chose {best.axis}: the only candidate that evaluated"
    runner = others[0]
    lead = best.top1 - max(c.top1 for c in others)
    if val_clips:
        best.margin_se = lead / top1_se_of_difference(best.top1, max(c.top1 for c in others), val_clips)
        margin = f"top-1 lead {lead:+.2f} pt = {best.margin_se:+.1f} SE (validation: {val_clips} clips)"
    else:
        margin = f"top-1 lead {lead:+.2f} pt (no validation size given: no standard error)"
    if len(tied) > 1:
        how = (f"a tie within 1 SE of {', '.join(c.axis for c in tied)}: decided by validation loss "
               f"{_loss(best):.4f} (runner-up by criterion {runner.axis})")
    else:
        how = f"best criterion {best.score:.3f} vs {runner.axis} {runner.score:.3f}"
    return best, f"chose {best.axis}: {how}; {margin}"


def is_growth(parent: Arch, child: Arch) -> bool:
    """Whether ``child`` only grows ``parent`` (channels, bottleneck units, blocks; any clip), so a weight-
    inheriting evaluator can start it from ``parent``'s weights (:func:`nas.families.x3d.growth_error`)."""
    from nas.families.x3d import growth_error, resolve

    return growth_error(resolve(parent.doc), resolve(child.doc)) is None


def weights_donor(chosen_path: Sequence[Candidate], final: Arch) -> Candidate | None:
    """The architecture the final's weights start from under inheritance: the latest one on the chosen
    path (start first, the contraction's parent last) that ``final`` is a growth of, or ``None`` when it
    grows none of them. The contraction shrinks the last step's axis only down to the parent's value,
    so the parent serves, except when a fine adjustment moved another axis below the parent's."""
    return next((c for c in reversed(chosen_path) if is_growth(c.arch, final)), None)


def _loss(c: Candidate) -> float:
    """Validation loss for tie-breaks (``inf`` when unknown, so it never wins a tie)."""
    loss = c.result.loss if c.result is not None else float("nan")
    return loss if math.isfinite(loss) else float("inf")


def criterion_score(criterion: str, top1: float, loss: float, gflops: float, parent_top1: float,
                    parent_loss: float, parent_gflops: float) -> float:
    """The trade-off a step maximises (:data:`CRITERIA`), from plain numbers: ``xnas fidelity`` replays a
    step's decision with a reference's scores through it. A non-finite loss drop gives NaN."""
    if criterion == "loss-drop-per-log-cost":
        drop = parent_loss - loss
        return drop / math.log(gflops / parent_gflops) if math.isfinite(drop) else float("nan")
    if criterion == "accuracy":
        return top1
    gain = top1 - parent_top1
    if criterion == "gain-per-gflop":
        return gain / (gflops - parent_gflops)
    return gain / math.log(gflops / parent_gflops)


def _score(criterion: str, cand: Candidate, parent: Candidate) -> float:
    """The criterion in the run's unit: GFLOPs (multiply-adds / 1e9), or the measure's own unit."""
    if cand.result is None or cand.result.status != "ok" or not math.isfinite(cand.top1):
        return float("nan")
    scale = 1.0 if cand.in_ms else 1e9
    return criterion_score(criterion, cand.top1, _loss(cand), cand.cost / scale, parent.top1, _loss(parent),
                           cand.parent_cost / scale)


def contract(parent: Arch, chosen: Candidate, target_macs: float, step: int, tolerance: float, *,
             axes: Sequence[str] = AXES, span: int = 32,
             bounds: dict[str, tuple[float, float]] | None = None, measure: "Measure | None" = None) -> list[Candidate]:
    """Backward contraction: shrink the last step's axis (between the parent's and the chosen factor)
    so the cost is the one closest to ``target_macs``.

    If that axis's rounding cannot land within ``tolerance`` (say depth 1 -> 2 when only 1.5x is
    wanted), a second, fine adjustment moves the allowed axis (within its whole range) that lands
    closest to the target from the contracted architecture. Returns the contraction candidate and,
    if needed, the adjustment candidate (the last one is the final architecture).
    """
    bounds = bounds or factor_bounds(parent)
    var = _variable(chosen.axis)
    doc = parent.to_dict()
    low = float(doc["factors"][var])
    high = float(chosen.arch.doc["factors"][var])
    sol = solve_axis(doc, chosen.axis, target_macs, low=low, high=high, span=span, bounds=bounds, measure=measure)
    if sol is None:  # cannot happen: low <= high because the chosen step grew this axis
        raise RuntimeError(f"contraction of {chosen.axis}: no factor between {low:g} and {high:g}")
    out = [_candidate(step, "contraction", chosen.axis, sol.doc, f"expand-final-{chosen.axis}",
                      _cost_of(doc, measure), target_macs,
                      note=f"{chosen.axis} {PAPER_SYMBOLS[chosen.axis]}: {var} factor "
                           f"{high:g} -> {sol.value:g}", measure=measure)]
    if abs(sol.cost / target_macs - 1) <= tolerance:
        return out
    best: Solution | None = None
    for axis in AXES:
        if axis not in axes:
            continue
        v = _variable(axis)
        s = solve_axis(sol.doc, axis, target_macs, low=bounds[v][0], high=bounds[v][1], span=span, bounds=bounds,
                       measure=measure)
        if s is not None and (best is None or abs(math.log(s.cost / target_macs)) < abs(math.log(best.cost / target_macs))):
            best = s
    if best is not None and abs(math.log(best.cost / target_macs)) < abs(math.log(sol.cost / target_macs)):
        before = float(sol.doc["factors"][_variable(best.axis)])
        out.append(_candidate(step, "adjustment", best.axis, best.doc, f"expand-final-{best.axis}",
                              sol.cost, target_macs,
                              note=f"fine adjustment of {best.axis}: {_variable(best.axis)} factor "
                                   f"{before:g} -> {best.value:g}", measure=measure))
    return out


# -- the driver -------------------------------------------------------------------------------------
@dataclass
class ExpansionResult:
    """Everything a run produced: every candidate (the trajectory) and the final architecture."""

    start: Candidate
    steps: list[list[Candidate]]
    contraction: list[Candidate]
    final: Candidate
    target_gflops: float | None
    rate: float
    criterion: str
    tolerance: float
    skipped: dict[int, list[str]] = field(default_factory=dict)
    stop_reason: str = ""
    chance_top1: float | None = None
    val_clips: int | None = None
    target_ms: float | None = None  # set when the run expanded in predicted latency (``measure``)

    def in_unit(self, c: "Candidate") -> float:
        """A candidate's cost in the run's unit (GFLOPs, or predicted milliseconds)."""
        return c.cost if self.target_ms else c.gflops

    @property
    def target(self) -> float:
        """The target in the run's unit."""
        return float(self.target_ms or self.target_gflops)

    def rows(self) -> list[Candidate]:
        """Every candidate in order: the start, each step's candidates, the contraction (the last of
        which is then the final architecture)."""
        return [self.start] + [c for step in self.steps for c in step] + list(self.contraction)

    def path(self) -> list[Candidate]:
        """The chosen path: the start, each accepted candidate, the contraction (if any)."""
        return [self.start] + [c for step in self.steps for c in step if c.chosen] + list(self.contraction)

    @property
    def landed(self) -> bool:
        """Whether the final cost (in the run's unit) is within the tolerance of the target."""
        return abs(self.in_unit(self.final) / self.target - 1) <= self.tolerance


def _evaluate(evaluator: Evaluator, cands: list[Candidate]) -> None:
    results = evaluator.evaluate([c.arch for c in cands], tags=[c.tags() for c in cands])
    if len(results) != len(cands):
        raise ExpandError(f"evaluator returned {len(results)} results for {len(cands)} architectures")
    for c, r in zip(cands, results):
        c.result = r


def check_settings(start: Arch, *, target_gflops: float | None, rate: float, axes: Sequence[str], criterion: str,
                   tolerance: float, span: int, max_steps: int, target_ms: float | None = None,
                   measure: "Measure | None" = None) -> None:
    """Raise :class:`ExpandError` naming the field, the value and what is allowed."""
    if not expandable(start):
        raise _fail("from", start.name, "an architecture with the six X3D factors (family x3d, e.g. x2d, x3d-xs)")
    if not axes:
        raise _fail("axes", "", "a comma-separated subset of " + ",".join(AXES))
    for axis in axes:
        if axis not in AXES:
            raise _fail("axes", axis, "a comma-separated subset of " + ",".join(AXES))
    if criterion not in CRITERIA:
        raise _fail("criterion", criterion, "one of " + ", ".join(CRITERIA))
    if not (math.isfinite(rate) and 1.05 <= rate <= 16):
        raise _fail("rate", rate, "a number in [1.05, 16] (cost multiplier per step)")
    if not (0 < tolerance < 0.5):
        raise _fail("tolerance", tolerance, "a number in (0, 0.5)")
    if not 1 <= span <= 1000:
        raise _fail("span", span, "an integer in [1, 1000] (source frames)")
    if not 1 <= max_steps <= 100:
        raise _fail("max_steps", max_steps, "an integer in [1, 100]")
    if (target_gflops is None) == (target_ms is None):
        raise _fail("target_gflops", target_gflops, "a number, or target_ms instead (exactly one cost target)")
    if target_ms is not None:
        if measure is None:
            raise _fail("measure", None, "a cost function (predicted milliseconds of a document) with target_ms")
        start_ms = float(measure(start.to_dict()))
        if not (math.isfinite(target_ms) and target_ms > start_ms * (1 + tolerance)):
            raise _fail("target_ms", target_ms,
                        f"a number above the start's predicted latency, {start_ms:.3f} ms ({start.name}) x (1 + tolerance)")
        return
    start_g = start.cost().gflops
    if not (math.isfinite(target_gflops) and target_gflops > start_g * (1 + tolerance)):
        raise _fail("target_gflops", target_gflops,
                    f"a number above the start's cost, {start_g:.4f} GFLOPs ({start.name}) x (1 + tolerance)")


def expand(start: Arch, evaluator: Evaluator, *, target_gflops: float | None = None, rate: float = 2.0,
           axes: Sequence[str] = AXES, criterion: str = "gain-per-log-cost", tolerance: float = 0.03,
           span: int = 32, max_steps: int = 20, log: Callable[[str], None] = print,
           val_clips: int | None = None, chance_top1: float | None = None,
           target_ms: float | None = None, measure: "Measure | None" = None) -> ExpansionResult:
    """Run forward expansion from ``start`` up to ``target_gflops``, then backward contraction.

    Args:
        start: the architecture to expand (``x2d`` or any point of an expandable space).
        evaluator: scores each batch (one forward step = one batch); it may cache and record. An
            evaluator that inherits weights (``for_parent``, :func:`nas.evaluator.for_parent`) trains the
            start from its own budget, every candidate from its parent's trained weights (the step's
            current architecture; the contracted final from the last step's parent, or from the latest
            architecture on the chosen path it grows, :func:`weights_donor`).
        target_gflops: the cost to land on (GFLOPs = multiply-adds x 1e-9).
        rate: cost multiplier each forward step aims for (X3D: 2).
        axes: the axes candidates are built on.
        criterion: one of :data:`CRITERIA` (module docstring).
        tolerance: the final cost must be within this fraction of the target.
        span: source frames a single-frame clip stands for (X-Fast / X-Temporal from X2D).
        max_steps: give up expanding after this many steps.
        log: where progress lines go.
        val_clips: the evaluator's validation clips per candidate: top-1 values closer than one standard
            error of a difference tie, and the tie goes to the validation loss (:func:`choose`); each
            decision's margin is logged in standard errors. ``None`` (a formula): exact ties only.
        chance_top1: 100 / classes of the task, recorded beside the final top-1.
        target_ms: expand in predicted latency instead: the target in milliseconds (exactly one of
            ``target_gflops`` and ``target_ms``).
        measure: with ``target_ms``, a document's predicted milliseconds (non-decreasing in every
            factor, e.g. :meth:`nas.latency.LatencyTable.predict_ms` of ``Arch.from_dict(doc)``).

    Returns:
        The trajectory and the final architecture (evaluated).

    Raises:
        ExpandError: a bad setting, or every candidate of a step failed, or no axis can grow.
    """
    check_settings(start, target_gflops=target_gflops, rate=rate, axes=axes, criterion=criterion,
                   tolerance=tolerance, span=span, max_steps=max_steps, target_ms=target_ms, measure=measure)
    if target_ms is None:
        measure = None  # multiply-adds
    bounds = factor_bounds(start)
    target_cost = float(target_ms) if target_ms is not None else float(target_gflops) * 1e9  # in the run's unit
    start_c = _candidate(0, "start", "", start.to_dict(), start.name, measure=measure)
    start_c.chosen = True

    def shown(cost: float) -> str:
        return f"{cost:.3f} ms" if target_ms is not None else f"{cost / 1e9:.4f} GFLOPs"

    planned = max(1, math.ceil(math.log(target_cost / start_c.cost) / math.log(rate) - 1e-9))
    log(f"expand: {start.name} ({shown(start_c.cost)}) -> {shown(target_cost)} at x{rate:g} per step: "
        f"about {planned} steps x {len(axes)} candidates; criterion {criterion}")
    log(f"step 0: evaluating the start {start.name}")
    _evaluate(for_parent(evaluator, None), [start_c])
    if start_c.top1 != start_c.top1:
        raise ExpandError(f"the start architecture {start.name} failed to evaluate: "
                          f"{start_c.result.reason if start_c.result else 'no result'}")
    current = start_c
    steps: list[list[Candidate]] = []
    skipped: dict[int, list[str]] = {}
    stop_reason = ""
    for step in range(1, max_steps + 1):
        if current.cost >= target_cost * (1 - tolerance):
            break
        cands, skip = build_candidates(current.arch, step, rate, axes, span=span, bounds=bounds, measure=measure)
        if skip:
            skipped[step] = skip
        if not cands:
            stop_reason = f"step {step}: no axis can grow further ({'; '.join(skip)})"
            log(stop_reason)
            break
        log(f"step {step}/~{planned}: {len(cands)} candidates at ~{shown(rate * current.cost)} "
            f"({', '.join(c.axis for c in cands)})")
        for note in skip:
            log(f"  not built: {note}")
        _evaluate(for_parent(evaluator, current.arch), cands)
        for c in cands:
            c.score = _score(criterion, c, current)
        ok = [c for c in cands if c.score == c.score]
        if not ok:
            raise ExpandError(f"step {step}: every candidate failed: "
                              + "; ".join(f"{c.axis}: {c.result.reason if c.result else 'no result'}" for c in cands))
        best, decision = choose(cands, val_clips)
        best.chosen = True
        steps.append(cands)
        for c in cands:
            mark = "*" if c.chosen else " "
            ms = f" {c.cost:9.3f} ms" if target_ms is not None else ""
            log(f"  {mark} {c.axis:<12} {c.gflops:9.4f} GFLOPs{ms} (x{c.cost / c.parent_cost:.3f})  "
                f"top-1 {c.top1:6.2f}  {criterion} {c.score:8.3f}")
        log(f"  step {step}: {decision}")
        current = best
    else:
        if current.cost < target_cost * (1 - tolerance):
            stop_reason = f"stopped after max_steps={max_steps} below the target"
            log(stop_reason)

    contraction: list[Candidate] = []
    final = current
    if current.cost > target_cost * (1 + tolerance) and steps:
        parent = ([c for c in steps[-2] if c.chosen][0] if len(steps) > 1 else start_c)
        contraction = contract(parent.arch, current, target_cost, len(steps), tolerance, axes=axes, span=span,
                               bounds=bounds, measure=measure)
        final = contraction[-1]
        for c in contraction:
            log(f"contraction: {c.note}: {c.gflops:.4f} GFLOPs" + (f", {c.cost:.3f} ms" if target_ms is not None else ""))
        chosen_path = [start_c] + [c for step in steps[:-1] for c in step if c.chosen]
        donor = weights_donor(chosen_path, final.arch)
        final_evaluator = for_parent(evaluator, donor.arch if donor is not None else None)
        # an inheriting evaluator, and a fine adjustment shrank an axis below the parent's
        if final_evaluator is not evaluator and donor is not parent:
            log(f"contraction: the final is not a growth of {parent.arch.name}: its weights start from "
                + (donor.arch.name if donor is not None else "scratch, with the start's budget"))
        _evaluate(final_evaluator, [final])
        final.chosen = True
        for c in contraction:
            c.chosen = True
    result = ExpansionResult(start=start_c, steps=steps, contraction=contraction, final=final,
                             target_gflops=target_gflops, rate=rate, criterion=criterion, tolerance=tolerance,
                             skipped=skipped, stop_reason=stop_reason, chance_top1=chance_top1, val_clips=val_clips,
                             target_ms=target_ms)
    return result


def replay(start: Arch, path: Sequence[dict[str, float]]) -> list[Arch]:
    """The architectures a fixed path of factor settings gives (each dict updates some factors).

    Used to replay a published path (X3D Figure 2) through the same documents the driver writes.
    """
    doc = start.to_dict()
    out = []
    for i, change in enumerate(path, 1):
        for axis, value in change.items():
            if axis not in AXES:
                raise _fail("path", axis, ", ".join(AXES))
            doc["factors"][axis] = value
        doc = dict(doc, name=f"replay-{i:02d}")
        out.append(Arch.from_dict(json.loads(json.dumps(doc))))
    return out


# -- outputs ----------------------------------------------------------------------------------------
TRAJECTORY_COLUMNS = ["step", "role", "axis", "chosen", *AXES, "frames_x_stride", "crop", "gflops", "params",
                      "ratio", "top1", "score", "margin_se", "status", "arch_hash", "arch_file", "note", "latency_ms"]


def _row(c: Candidate) -> dict[str, Any]:
    clip = c.arch.clip
    r = c.result
    return {
        "step": c.step, "role": c.role, "axis": c.axis, "chosen": int(c.chosen),
        **{a: f"{v:g}" for a, v in c.factors.items()},
        "frames_x_stride": f"{clip.frames}x{clip.frame_stride}", "crop": clip.crop,
        "gflops": f"{c.gflops:.6f}", "params": c.params,
        "ratio": f"{c.cost / c.parent_cost:.4f}" if c.parent_cost else "",
        "top1": f"{c.top1:.3f}" if c.top1 == c.top1 else "",
        "score": f"{c.score:.4f}" if c.score == c.score else "",
        "margin_se": f"{c.margin_se:.2f}" if c.margin_se == c.margin_se else "",
        "status": r.status if r is not None else "not evaluated",
        "arch_hash": c.arch.hash, "arch_file": c.file,
        "note": c.note or (r.reason if r is not None and r.status != "ok" else ""),
        "latency_ms": f"{c.cost:.4f}" if c.in_ms else "",
    }


def write_outputs(result: ExpansionResult, out_dir: Path, *,
                  save_arch: Callable[[Arch, str], Path] | None = None) -> dict[str, Path]:
    """Write the trajectory CSV, the frozen documents of the path and a JSON summary under ``out_dir``.

    Args:
        result: what :func:`expand` returned.
        out_dir: the run directory.
        save_arch: how to save a document under a name (a run's ``save_arch``); default
            ``out_dir/archs/<name>.yaml``.

    Returns:
        The paths written, by kind (``trajectory``, ``summary``, ``final``, ``step-NN``).
    """
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)

    def _save(arch: Arch, name: str) -> str:
        path = Path(save_arch(arch, name)) if save_arch is not None else arch.save(out_dir / "archs" / f"{name}.yaml")
        try:  # relative to the run directory when it is inside it (the CSV stays valid if the run moves)
            return str(path.resolve().relative_to(out_dir.resolve()))
        except ValueError:
            return str(path)

    paths: dict[str, Path] = {}
    for c in result.path():
        key = f"step-{c.step:02d}" if c.role in ("start", "candidate") else c.role
        name = f"expand-{key}-{c.axis or 'start'}"
        c.file = _save(c.arch.renamed(name), name)
        paths[key] = out_dir / c.file
    final_arch = result.final.arch.renamed("expand-final", f"xnas expand: {result.final.gflops:.4f} GFLOPs"
                                           + (f", {result.final.cost:.3f} ms predicted" if result.target_ms else ""))
    result.final.file = _save(final_arch, "expand-final")
    paths["final"] = out_dir / result.final.file
    traj = out_dir / "trajectory.csv"
    with traj.open("w", newline="") as fh:
        writer = csv.DictWriter(fh, fieldnames=TRAJECTORY_COLUMNS)
        writer.writeheader()
        for c in result.rows():
            writer.writerow(_row(c))
    paths["trajectory"] = traj
    summary = out_dir / "expand.json"
    summary.write_text(json.dumps(summary_dict(result), indent=2))
    paths["summary"] = summary
    return paths


def summary_dict(result: ExpansionResult) -> dict[str, Any]:
    """The run's outcome as plain data (written to ``expand.json``)."""
    f = result.final
    return {
        "target_gflops": result.target_gflops, "target_ms": result.target_ms, "rate": result.rate, "criterion": result.criterion,
        "tolerance": result.tolerance, "landed": result.landed, "stop_reason": result.stop_reason,
        "chance_top1": result.chance_top1, "val_clips": result.val_clips,
        "decisions": [{"step": c.step, "axis": c.axis, "margin_se": c.margin_se if c.margin_se == c.margin_se else None}
                      for step in result.steps for c in step if c.chosen],
        "path": [{"step": c.step, "role": c.role, "axis": c.axis, "gflops": c.gflops, "params": c.params,
                  "top1": c.top1 if c.top1 == c.top1 else None, "factors": c.factors, "note": c.note}
                 for c in result.path()],
        "final": {"gflops": f.gflops, "params": f.params, "top1": f.top1 if f.top1 == f.top1 else None,
                  "factors": f.factors, "clip": {"frames": f.arch.clip.frames, "frame_stride": f.arch.clip.frame_stride,
                                                 "crop": f.arch.clip.crop},
                  "error_vs_target": result.in_unit(f) / result.target - 1, "file": f.file, "hash": f.arch.hash,
                  **({"latency_ms": f.cost} if result.target_ms else {})},
        "contraction": [c.note for c in result.contraction],
        "trials": sum(1 for c in result.rows() if c.result is not None),
        "gflops_convention": GFLOPS_NOTE,
    }


def summary_text(result: ExpansionResult, paths: dict[str, Path] | None = None) -> str:
    """The human summary printed at the end of ``xnas expand``."""
    f = result.final
    clip = f.arch.clip
    lines = ["", "expansion path:"]
    for c in result.path():
        label = "start" if c.role == "start" else (c.role if c.role != "candidate" else f"step {c.step}")
        axis = f"{c.axis} {PAPER_SYMBOLS.get(c.axis, '')}".strip() or c.arch.name
        top1 = f"{c.top1:6.2f} %" if c.top1 == c.top1 else "   -   "
        lines.append(f"  {label:<12} {axis:<26} {c.gflops:9.4f} GFLOPs  {c.params:>11,} params  top-1 {top1}")
    if result.contraction:
        lines.append("contraction: " + "; ".join(c.note for c in result.contraction))
    factors = ", ".join(f"{a} {v:g}" for a, v in f.factors.items())
    lines += [
        (f"final: {f.gflops:.4f} GFLOPs, {f.cost:.3f} ms predicted ({100 * (f.cost / result.target - 1):+.1f} % vs "
         f"target {result.target:g} ms; " if result.target_ms else
         f"final: {f.gflops:.4f} GFLOPs ({100 * (f.gflops / result.target - 1):+.1f} % vs target "
         f"{result.target:g}; ")
        + f"{'within' if result.landed else 'NOT within'} ±{100 * result.tolerance:g} %), "
        f"{f.params:,} params, proxy top-1 {f.top1:.2f} %"
        + (f" (chance {result.chance_top1:.1f} %)" if result.chance_top1 else ""),
        f"  factors: {factors}",
        f"  clip: {clip.frames} frames x stride {clip.frame_stride}, {clip.crop}²",
    ]
    if result.stop_reason:
        lines.append(f"  note: {result.stop_reason}")
    if paths:
        for key in ("trajectory", "final", "final_weights", "summary", "tradeoff_plot", "pareto_plot"):
            if key in paths:
                lines.append(f"  {key:<14} {paths[key]}")
    lines.append(f"  ({GFLOPS_NOTE}; full-size architecture cost, whatever size the proxy trained at)")
    return "\n".join(lines)
