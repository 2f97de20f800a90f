"""Named formulas: a known score of an architecture, used instead of training (``--evaluator formula``).

A formula maps a frozen :class:`~nas.dsl.arch.Arch` to a "top-1" in percent. Tests and dry runs use
them to exercise a driver, the Ray dispatch, the results table and resume in milliseconds. They are
looked up **by name**, so a Ray trial (which receives only plain JSON) can resolve the same function
in its own process: ``{"kind": "formula", "name": "saturating"}``.

More formulas can be added with :func:`register_formula` (a module that registers its formulas must
be imported before the name is looked up, in the Ray workers too).

Built-in formulas (all deterministic, no randomness beyond the architecture's hash):

* ``saturating`` -- ``100 · (1 − exp(−(GFLOPs / 0.5)^0.35))`` minus a hash-derived jitter in [0, 3):
  more compute, more accuracy, with diminishing returns, so a Pareto front is non-trivial;
* ``saturating-nan`` -- like ``saturating`` but NaN (a failed trial) for about a quarter of the
  architectures (those whose hash starts with 0-3), to test that failures are recorded and runs go on;
* ``x3d-factors`` -- a known score of an X3D architecture's factors, for testing ``xnas expand``
  without training (:func:`x3d_factors`).

Any formula has **noisy copies**: ``NAME+noise:S`` is ``NAME`` plus a deterministic Gaussian noise of
standard deviation ``S`` points, drawn from the architecture's hash (:func:`hash_normal`) -- a stand-in
for a cheaper, noisier proxy of the same ranking (``xnas fidelity`` is tested with it).
"""
from __future__ import annotations

import hashlib
import math
from typing import Callable

from nas.dsl.arch import Arch

__all__ = ["FORMULAS", "register_formula", "get_formula", "formula_names", "hash_normal", "NOISE_SUFFIX", "x3d_factors",
           "X3D_FACTOR_WEIGHTS"]

NOISE_SUFFIX = "+noise:"

Formula = Callable[[Arch], float]

FORMULAS: dict[str, Formula] = {}


def register_formula(name: str) -> Callable[[Formula], Formula]:
    """Decorator: register ``fn(arch) -> top1 (percent)`` under ``name`` (names are unique)."""

    def decorate(fn: Formula) -> Formula:
        if name in FORMULAS and FORMULAS[name] is not fn:
            raise ValueError(f"formula {name!r}: already registered by {FORMULAS[name].__module__}")
        FORMULAS[name] = fn
        return fn

    return decorate


def formula_names() -> list[str]:
    """Every registered formula name, sorted."""
    return sorted(FORMULAS)


def hash_normal(arch_hash: str, salt: str = "noise") -> float:
    """A standard normal draw that is a function of ``arch_hash`` alone (Box-Muller on its SHA-256)."""
    digest = hashlib.sha256(f"{salt}:{arch_hash}".encode()).digest()
    u1 = (int.from_bytes(digest[:8], "big") + 1) / (2**64 + 1)
    u2 = int.from_bytes(digest[8:16], "big") / 2**64
    return math.sqrt(-2 * math.log(u1)) * math.cos(2 * math.pi * u2)


def _noisy(name: str) -> Formula:
    base_name, _, text = name.partition(NOISE_SUFFIX)
    try:
        sd = float(text)
    except ValueError:
        sd = float("nan")
    if not (sd >= 0 and math.isfinite(sd)):
        raise ValueError(f"evaluator.formula: got {name!r}; allowed: NAME{NOISE_SUFFIX}S with S a number >= 0")
    base = get_formula(base_name)

    def noisy(arch: Arch) -> float:
        return base(arch) + sd * hash_normal(arch.hash)

    return noisy


def get_formula(name: str) -> Formula:
    """The formula registered as ``name`` (or a noisy copy, ``NAME+noise:S``); ``ValueError`` naming
    the known ones if there is none."""
    if NOISE_SUFFIX in name:
        return _noisy(name)
    if name not in FORMULAS:
        raise ValueError(f"evaluator.formula: got {name!r}; allowed: {', '.join(sorted(FORMULAS))}")
    return FORMULAS[name]


def _jitter(arch: Arch, scale: float) -> float:
    """A deterministic pseudo-noise in [0, scale) from the architecture's hash."""
    return scale * int(arch.hash[:8], 16) / 16**8


@register_formula("saturating")
def saturating(arch: Arch) -> float:
    """Accuracy that grows with GFLOPs and saturates, minus a small hash-derived jitter."""
    gflops = arch.cost().gflops
    return 100.0 * (1.0 - math.exp(-((gflops / 0.5) ** 0.35))) - _jitter(arch, 3.0)


@register_formula("saturating-nan")
def saturating_nan(arch: Arch) -> float:
    """``saturating``, but NaN (a failed trial) when the hash starts with 0-3 (about 1 in 4)."""
    if arch.hash[0] in "0123":
        return float("nan")
    return saturating(arch)


# Per-axis weights (percent per sqrt(ln ratio)); temporal axes weigh most, as on a temporal task.
X3D_FACTOR_WEIGHTS = {"frame_stride": 4.0, "frames": 9.0, "spatial": 7.0, "width": 3.0, "bottleneck": 5.0, "depth": 4.0}
_BASE_DEPTH = 11      # X2D: 1 + 2 + 5 + 3 blocks
_BASE_WIDTH = 360     # X2D: 24 + 48 + 96 + 192 channels
_SPAN = 32            # the frame rate term is 32 / stride, so stride 32 counts as X2D's rate


@register_formula("x3d-factors")
def x3d_factors(arch: Arch) -> float:
    """``x3d-factors``: a known score of an X3D architecture's factors (percent)::

        top1 = 20 + sum over axes of  weight[a] * sqrt(ln(gain[a]))

    where ``gain`` is what the rounding rules actually built, relative to X2D: frames, the frame rate
    (``32 / stride`` for a multi-frame clip, 1 for one frame: X-Fast raises it), crop / 112,
    stage-width ratio, bottleneck ratio (inner / width) and total depth ratio. The square root gives
    diminishing returns per axis, so the best trade-off moves from axis to axis as a coordinate
    descent should, and the path is fully determined (tests pin it). Architectures without the X3D
    factors are a failed trial.
    """
    from nas.families.x3d import resolve

    if "factors" not in arch.doc:
        raise ValueError(f"{arch.name}: not an X3D architecture (no factors)")
    net = resolve(arch.doc)
    clip = net.clip
    rate = _SPAN / clip.frame_stride if clip.frames > 1 else 1.0
    gains = {
        "frame_stride": max(1.0, rate),
        "frames": clip.frames,
        "spatial": clip.crop / 112,
        "width": sum(s.width for s in net.stages) / _BASE_WIDTH,
        "bottleneck": sum(s.inner for s in net.stages) / sum(s.width for s in net.stages),
        "depth": sum(s.depth for s in net.stages) / _BASE_DEPTH,
    }
    return 20.0 + sum(w * math.sqrt(max(0.0, math.log(gains[a]))) for a, w in X3D_FACTOR_WEIGHTS.items())
