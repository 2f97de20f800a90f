"""A latency model measured on this machine: predicted milliseconds of any architecture, torch-free.

FLOPs are a poor stand-in for speed: on a CPU a depthwise multiply-add costs many times a dense one,
BN, activations and adds cost time but no FLOPs, and every layer is a kernel call with its own
overhead. The model weighs each kind of work separately. The analytic cost walk of every family
(:class:`nas.cost.Tally`) already visits each layer, so it also totals, per architecture
(``Cost.profile``): multiply-adds of dense, pointwise, depthwise and linear layers, the output elements
of every conv (what BN, activations and adds then read and write), and the number of kernel calls;
the parameter count stands for the weights every call reads.
Latency is predicted as a weighted sum of those totals (times the batch, except the calls) plus a
constant per forward::

    t = a_dense MACs_dense + a_pw MACs_pw + a_dw MACs_dw + a_lin MACs_lin + b elems + p params + c calls + d

The weights are a **table measured on this machine**, per family and mode, fitted (non-negative,
minimising the *relative* error) to real latencies of architectures drawn from the family's space
(``xnas latency profile --space S``, or automatically on first use). Tables live as plain JSON under a
cache folder keyed by device, threads and torch version (:func:`table_path`), with every measurement
they were fitted on. Prediction imports no torch and takes microseconds (one cost walk).

Modes: ``clip`` (one forward of a whole clip) and ``stream`` (one ``step`` of a causal MoViNet: one
frame; its totals are the cost walk at one frame).
"""
from __future__ import annotations

import json
import math
import os
from dataclasses import dataclass, field
from importlib import metadata
from pathlib import Path
from typing import Any, Iterable, Mapping, Sequence

from nas.cost import Cost
from nas.dsl.arch import Arch
from nas.files import atomic_write_text

__all__ = ["MODES", "FEATURES", "LatencyError", "features", "fit", "LatencyTable", "table_path", "cache_root",
           "profile_space_for", "calibration_draws"]

MODES = ("clip", "stream")
FEATURES = ("dense_macs", "pointwise_macs", "depthwise_macs", "linear_macs", "conv_out_elems", "params", "calls",
            "constant")
_PER_CLIP = ("dense_macs", "pointwise_macs", "depthwise_macs", "linear_macs", "conv_out_elems")


class LatencyError(ValueError):
    """A latency request the model cannot serve (message names the field, the value and what is allowed)."""


def cache_root() -> Path:
    """Where latency tables live: ``$XNAS_LATENCY_CACHE``, else ``~/.cache/xnas/latency``."""
    env = os.environ.get("XNAS_LATENCY_CACHE")
    return Path(env) if env else Path.home() / ".cache" / "xnas" / "latency"


def _torch_version() -> str:
    try:
        return metadata.version("torch")
    except metadata.PackageNotFoundError:
        return "none"


def table_path(device: str, threads: int, root: Path | None = None) -> Path:
    """The table file for ``device`` (``cpu`` / ``cuda``) at ``threads`` threads under this torch version."""
    return (root or cache_root()) / f"{device}-{threads}t-torch{_torch_version()}.json"


def _cost(arch: Arch, mode: str) -> Cost:
    from nas.families import count_cost

    if mode == "clip":
        return arch.cost()
    if mode == "stream":
        if not arch.doc.get("causal"):
            raise LatencyError(f"mode: got 'stream' for {arch.name}, which is not causal; allowed: clip "
                               "(stream needs a causal MoViNet)")
        return count_cost(arch, frames=1)
    raise LatencyError(f"mode: got {mode!r}; allowed: {', '.join(MODES)}")


def features(arch: Arch, mode: str = "clip", batch: int = 1) -> dict[str, float]:
    """The model's inputs for ``arch`` (:data:`FEATURES`): per-kind totals of one forward (``clip``)
    or one frame step (``stream``) at ``batch`` clips."""
    if batch < 1:
        raise LatencyError(f"batch: got {batch}; allowed: an integer >= 1")
    cost = _cost(arch, mode)
    profile = cost.profile
    out = {k: float(profile.get(k, 0)) * batch for k in _PER_CLIP}
    out["params"] = float(cost.params)  # weights read once per call, whatever the batch
    out["calls"] = float(profile.get("convs", 0) + profile.get("bns", 0) + profile.get("linears", 0))
    out["constant"] = 1.0
    return out


def _solve(rows: Sequence[Sequence[float]], targets: Sequence[float]) -> list[float]:
    """Non-negative least squares of ``rows @ w ~ targets`` by active-set elimination: solve, drop the
    most negative weight, repeat (few features, so exact enough and dependency-free)."""
    import numpy as np

    a = np.asarray(rows, dtype=float)
    y = np.asarray(targets, dtype=float)
    scale = np.where(a.max(axis=0) > 0, a.max(axis=0), 1.0)  # columns of very different magnitudes
    a = a / scale
    active = list(range(a.shape[1]))
    w = np.zeros(a.shape[1])
    while active:
        sol, *_ = np.linalg.lstsq(a[:, active], y, rcond=None)
        if (sol >= 0).all():
            w[:] = 0
            w[active] = sol
            break
        active.pop(int(np.argmin(sol)))
    return list(w / scale)


def fit(samples: Sequence[Mapping[str, Any]]) -> dict[str, float]:
    """Weights (:data:`FEATURES` -> milliseconds per unit) fitted to measured ``samples`` (each with
    ``features`` and ``measured_ms``), minimising the squared *relative* error, weights >= 0."""
    if len(samples) < 2:
        raise LatencyError(f"samples: got {len(samples)}; allowed: at least 2 measured architectures to fit")
    rows = [[s["features"][k] / s["measured_ms"] for k in FEATURES] for s in samples]
    return dict(zip(FEATURES, _solve(rows, [1.0] * len(samples))))


@dataclass
class LatencyTable:
    """Measured latencies and the weights fitted to them, per ``family/mode`` (one file per device,
    threads and torch version)."""

    device: str
    threads: int
    torch: str = field(default_factory=_torch_version)
    samples: list[dict[str, Any]] = field(default_factory=list)
    weights: dict[str, dict[str, float]] = field(default_factory=dict)

    @classmethod
    def load(cls, device: str, threads: int, root: Path | None = None) -> "LatencyTable":
        """The table on file, or an empty one."""
        path = table_path(device, threads, root)
        if not path.is_file():
            return cls(device, threads)
        doc = json.loads(path.read_text())
        return cls(doc["device"], int(doc["threads"]), doc["torch"], doc.get("samples", []), doc.get("weights", {}))

    def save(self, root: Path | None = None) -> Path:
        """Write the table atomically; returns its path."""
        path = table_path(self.device, self.threads, root)
        path.parent.mkdir(parents=True, exist_ok=True)
        doc = {"device": self.device, "threads": self.threads, "torch": self.torch, "weights": self.weights,
               "samples": self.samples, "features": list(FEATURES),
               "units": "weights in milliseconds per unit of each feature (MACs, elements, calls, 1)"}
        atomic_write_text(path, json.dumps(doc, indent=1, sort_keys=True) + "\n")
        return path

    @staticmethod
    def key(arch: Arch, mode: str) -> str:
        """The ``family/mode`` a table entry is for."""
        return f"{arch.family}/{mode}"

    def add(self, arch: Arch, mode: str, batch: int, measured_ms: float, iqr_ms: float) -> None:
        """Record one measurement (replacing an older one of the same architecture, mode and batch)."""
        self.samples = [s for s in self.samples
                        if not (s["hash"] == arch.hash and s["mode"] == mode and s["batch"] == batch)]
        self.samples.append({"hash": arch.hash, "name": arch.name, "family": arch.family, "mode": mode,
                             "batch": batch, "measured_ms": measured_ms, "iqr_ms": iqr_ms,
                             "gflops": arch.cost().gflops, "features": features(arch, mode, batch)})

    def samples_for(self, key: str) -> list[dict[str, Any]]:
        """The measurements of one ``family/mode``."""
        return [s for s in self.samples if f"{s['family']}/{s['mode']}" == key]

    def refit(self, keys: Iterable[str] | None = None) -> None:
        """Fit the weights of ``keys`` (default: every ``family/mode`` with measurements)."""
        keys = list(keys) if keys is not None else sorted({f"{s['family']}/{s['mode']}" for s in self.samples})
        for key in keys:
            self.weights[key] = fit(self.samples_for(key))

    def has(self, arch: Arch, mode: str) -> bool:
        """Whether this table can predict ``arch`` in ``mode``."""
        return self.key(arch, mode) in self.weights

    def predict_ms(self, arch: Arch, mode: str = "clip", batch: int = 1) -> float:
        """Predicted latency in milliseconds (no torch, one cost walk)."""
        key = self.key(arch, mode)
        if key not in self.weights:
            raise LatencyError(f"{key}: no measured table for {self.device} at {self.threads} thread(s) "
                               f"(torch {self.torch}); allowed: a profiled family/mode (xnas latency profile)")
        w = self.weights[key]
        f = features(arch, mode, batch)
        return math.fsum(w[k] * f[k] for k in FEATURES)


def profile_space_for(arch: Arch, mode: str) -> str:
    """The shipped space whose random architectures calibrate ``arch``'s family and mode."""
    if arch.family == "x3d":
        return "x3d"
    if arch.family == "tsn2d":
        return "tsn2d"
    if arch.family == "movinet":
        return "movinet-stream" if (mode == "stream" or arch.doc.get("causal")) else "movinet"
    raise LatencyError(f"family: got {arch.family!r}; allowed: x3d, movinet, tsn2d (families with a shipped space)")


def calibration_draws(space: Any, n: int, seed: int, max_gflops: float, exclude: Iterable[str] = (),
                      pool: int = 40) -> list[Arch]:
    """``n`` random architectures of ``space`` spanning its cost range (``pool x n`` draws, those over
    ``max_gflops`` or with a hash in ``exclude`` left out, then :func:`nas.cost.spread_by_cost`)."""
    import random

    from nas.cost import spread_by_cost

    rng = random.Random(seed)
    skip = set(exclude)
    draws = (space.freeze(space.random(rng)) for _ in range(pool * n))
    return spread_by_cost((a for a in draws if a.hash not in skip and a.cost().gflops <= max_gflops), n)
