"""Named formulas: a known score of an architecture, used instead of training (``--evaluator formula``).

A formula maps a frozen :class:`~nas.dsl.arch.Arch` to a "top-1" in percent. Tests and dry runs use
them to exercise a driver, the Ray dispatch, the results table and resume in milliseconds. They are
looked up **by name**, so a Ray trial (which receives only plain JSON) can resolve the same function
in its own process: ``{"kind": "formula", "name": "saturating"}``.

Drivers add their own formulas in a module ``nas/drivers/<x>_formula.py`` that calls
:func:`register_formula`; :func:`get_formula` imports every such module that exists the first time a
name is not found.

Built-in formulas (all deterministic, no randomness beyond the architecture's hash):

* ``saturating`` -- ``100 · (1 − exp(−(GFLOPs / 0.5)^0.35))`` minus a hash-derived jitter in [0, 3):
  more compute, more accuracy, with diminishing returns, so a Pareto front is non-trivial;
* ``saturating-nan`` -- like ``saturating`` but NaN (a failed trial) for about a quarter of the
  architectures (those whose hash starts with 0-3), to test that failures are recorded and runs go on.

Any formula has **noisy copies**: ``NAME+noise:S`` is ``NAME`` plus a deterministic Gaussian noise of
standard deviation ``S`` points, drawn from the architecture's hash (:func:`hash_normal`) -- a stand-in
for a cheaper, noisier proxy of the same ranking (``xnas fidelity`` is tested with it).
"""
from __future__ import annotations

import hashlib
import importlib
import importlib.util
import math
import pkgutil
from typing import Callable

from nas.dsl.arch import Arch

__all__ = ["FORMULAS", "register_formula", "get_formula", "formula_names", "hash_normal", "NOISE_SUFFIX"]

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


_LOADED_DRIVER_FORMULAS = False


def _load_driver_formulas() -> None:
    """Import every ``nas.drivers.*_formula`` module (they register themselves)."""
    global _LOADED_DRIVER_FORMULAS
    if _LOADED_DRIVER_FORMULAS:
        return
    _LOADED_DRIVER_FORMULAS = True
    spec = importlib.util.find_spec("nas.drivers")
    if spec is None or not spec.submodule_search_locations:
        return
    for info in pkgutil.iter_modules(list(spec.submodule_search_locations)):
        if info.name.endswith("_formula"):
            importlib.import_module(f"nas.drivers.{info.name}")


def formula_names() -> list[str]:
    """Every registered formula name (driver formulas included), sorted."""
    _load_driver_formulas()
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
        _load_driver_formulas()
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
