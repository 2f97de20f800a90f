"""The evaluator contract (``nas.evaluator``'s docstring), checked on every built-in evaluator.

One base class of tests, one subclass per evaluator (the way optuna's sampler test cases run one
suite over every sampler): a new evaluator joins by adding a subclass with ``make`` and ``archs``.
"""
from __future__ import annotations

import math
from pathlib import Path

import pytest

from nas.dsl.arch import Arch
from nas.evaluator import STATUSES, Evaluator, FormulaEvaluator, LocalEvaluator, OK
from nas.formulas import get_formula
from nas.proxy import Proxy
from nas.registry import load_arch

TINY_PROXY = Proxy(steps=2, batch_size=4, size_scale=0.25, train_clips=8, val_clips=8, warmup_steps=0,
                   checkpoint_every=1, layout="channels_first")


def _tiny_archs() -> list[Arch]:
    """Two small, different X3D networks (x2d and a copy of half its width)."""
    base = load_arch("x2d")
    doc = base.to_dict()
    return [base, Arch.from_dict({**doc, "name": "x2d-narrow", "factors": {**doc["factors"], "width": 0.5}})]


def _nan_for_narrow(arch: Arch) -> float:
    """A formula that fails one architecture, so the non-``ok`` path is part of the contract."""
    return math.nan if arch.name.endswith("narrow") else get_formula("saturating")(arch)


class EvaluatorContract:
    """Every evaluator: one result per architecture in order, ``on_result`` once per index, a str
    cache key, the same result for the same architecture, a clear error for mismatched tags."""

    def make(self, tmp_path: Path) -> Evaluator:
        raise NotImplementedError

    def archs(self) -> list[Arch]:
        return _tiny_archs()

    def test_is_an_evaluator_with_a_string_cache_key(self, tmp_path: Path) -> None:
        ev = self.make(tmp_path)
        assert isinstance(ev, Evaluator)
        assert isinstance(ev.cache_key, str) and ev.cache_key
        assert self.make(tmp_path / "again").cache_key == ev.cache_key

    def test_one_result_per_architecture_in_order_reported_once_each(self, tmp_path: Path) -> None:
        ev, archs = self.make(tmp_path), self.archs()
        seen: list[tuple[int, object]] = []
        results = ev.evaluate(archs, [{"driver": "test", "i": i} for i in range(len(archs))],
                              on_result=lambda i, r: seen.append((i, r)))
        assert [r.arch_hash for r in results] == [a.hash for a in archs]
        assert sorted(i for i, _ in seen) == list(range(len(archs)))
        for i, reported in seen:
            assert reported == results[i]
        for r in results:
            assert r.status in STATUSES
            if r.status == OK:
                assert math.isfinite(r.top1)
            else:
                assert r.reason

    def test_same_architecture_same_result(self, tmp_path: Path) -> None:
        ev, arch = self.make(tmp_path), self.archs()[0]
        first, second = ev.evaluate([arch])[0], ev.evaluate([arch])[0]
        assert (first.status, first.top1) == (second.status, second.top1)

    def test_empty_batch_and_mismatched_tags(self, tmp_path: Path) -> None:
        ev = self.make(tmp_path)
        assert ev.evaluate([]) == []
        with pytest.raises(ValueError, match="tags: got 0 entries for 1 architectures"):
            ev.evaluate(self.archs()[:1], [])


class TestFormulaEvaluator(EvaluatorContract):
    def make(self, tmp_path: Path) -> Evaluator:
        return FormulaEvaluator(_nan_for_narrow, "nan-for-narrow")


class TestLocalEvaluator(EvaluatorContract):
    def make(self, tmp_path: Path) -> Evaluator:
        return LocalEvaluator("synthetic", TINY_PROXY, seed=0, device="cpu")


class TestLocalEvaluatorWithCheckpoints(EvaluatorContract):
    """What ``--executor local`` runs: mid-trial checkpoints, deleted once each result is reported."""

    def make(self, tmp_path: Path) -> Evaluator:
        return LocalEvaluator("synthetic", TINY_PROXY, 0, checkpoint_dir=tmp_path / "checkpoints")

    def test_checkpoints_live_until_the_result_is_reported(self, tmp_path: Path) -> None:
        ev, archs = self.make(tmp_path), self.archs()
        seen = []
        ev.evaluate(archs, on_result=lambda i, r: seen.append([p.name for p in (tmp_path / "checkpoints").glob("*.pt")]))
        # the trial's own checkpoint exists when its result is reported (a crash then loses nothing) ...
        assert seen == [[f"{a.hash}-{TINY_PROXY.hash}-0.pt"] for a in archs]
        assert not list((tmp_path / "checkpoints").glob("*.pt"))  # ... and is deleted right after


class TestRecordingEvaluator(EvaluatorContract):
    """A run's caching, recording wrapper keeps the contract, cache hits included."""

    def make(self, tmp_path: Path) -> Evaluator:
        from nas.runs import Run

        run = Run.open("r", driver="test", config={}, root=tmp_path)
        return run.evaluator(FormulaEvaluator(_nan_for_narrow, "nan-for-narrow"))

    def test_cache_hits_are_reported_too(self, tmp_path: Path) -> None:
        ev, archs = self.make(tmp_path), self.archs()
        ev.evaluate(archs)
        seen: list[int] = []
        again = ev.evaluate(archs + archs[:1], on_result=lambda i, r: seen.append(i))
        assert sorted(seen) == [0, 1, 2] and again[0] == again[2]
        assert ev.inner.calls == [a.hash for a in archs]  # the second batch trained nothing


class TestRecordingOverAnOldStyleEvaluator(EvaluatorContract):
    """An evaluator whose ``evaluate`` takes no ``on_result`` is called one architecture at a time,
    so every result is still recorded as it finishes."""

    def make(self, tmp_path: Path) -> Evaluator:
        from nas.runs import Run

        class OldStyle:
            cache_key = "formula:old-style"

            def __init__(self) -> None:
                self.batches: list[int] = []
                self.formula = FormulaEvaluator(_nan_for_narrow, "old-style")

            def evaluate(self, archs, tags=None):
                self.batches.append(len(archs))
                return self.formula.evaluate(archs, tags)

        run = Run.open("r", driver="test", config={}, root=tmp_path)
        return run.evaluator(OldStyle())

    def test_called_one_architecture_at_a_time(self, tmp_path: Path) -> None:
        ev = self.make(tmp_path)
        ev.evaluate(self.archs())
        assert ev.inner.batches == [1, 1]




@pytest.mark.usefixtures("ray_session")
class TestRayEvaluator(EvaluatorContract):
    """The Ray dispatch, scoring with a formula inside the trials (the proxy path is in test_ray_dispatch)."""

    def make(self, tmp_path: Path) -> Evaluator:
        from nas.integrations.ray_tune import RayEvaluator

        return RayEvaluator("synthetic", TINY_PROXY, 0, log_dir=tmp_path / "ray", progress=False,
                            evaluator_spec={"kind": "formula", "name": "saturating"})
