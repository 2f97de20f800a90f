"""The latency model (``nas.latency``), the latency measurement and ``xnas latency``."""
from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from nas import load_arch
from nas.cost import PROFILE_KEYS, spread_by_cost
from nas.latency import FEATURES, LatencyError, LatencyTable, features, fit
from nas.registry import load_space

ROOT = Path(__file__).resolve().parents[1]


@pytest.mark.parametrize("name", ["x3d-s", "movinet-a0", "movinet-a0-stream", "tsn-mbv2"])
def test_the_cost_profile_splits_the_multiply_adds_by_kind(name: str) -> None:
    cost = load_arch(name).cost()
    assert set(cost.profile) == set(PROFILE_KEYS)
    assert sum(v for k, v in cost.profile.items() if k.endswith("_macs")) == cost.macs
    assert cost.profile["convs"] > 0 and cost.profile["conv_out_elems"] > 0


def test_features_scale_with_the_batch_except_the_calls() -> None:
    arch = load_arch("x3d-xs")
    one, four = features(arch, "clip", 1), features(arch, "clip", 4)
    assert set(one) == set(FEATURES)
    assert four["depthwise_macs"] == 4 * one["depthwise_macs"] and four["calls"] == one["calls"]
    stream = features(load_arch("movinet-a0-stream"), "stream", 1)
    clip = features(load_arch("movinet-a0-stream"), "clip", 1)
    assert stream["pointwise_macs"] < clip["pointwise_macs"]  # one frame, not the clip
    with pytest.raises(LatencyError, match="mode: got 'stream'"):
        features(arch, "stream")
    with pytest.raises(LatencyError, match="batch: got 0"):
        features(arch, "clip", 0)


def test_the_fit_recovers_known_non_negative_weights() -> None:
    space = load_space("x3d")
    import random

    rng = random.Random(0)
    archs = spread_by_cost((space.freeze(space.random(rng)) for _ in range(200)), 12)
    true = {"dense_macs": 2e-9, "pointwise_macs": 1e-9, "depthwise_macs": 8e-9, "linear_macs": 0.0,
            "conv_out_elems": 3e-8, "params": 1e-7, "calls": 0.01, "constant": 0.2}
    samples = []
    for a in archs:
        f = features(a)
        samples.append({"features": f, "measured_ms": sum(true[k] * f[k] for k in FEATURES)})
    got = fit(samples)
    assert all(v >= 0 for v in got.values())
    for s in samples:  # exact data: the fit predicts it (weights may trade off between collinear features)
        pred = sum(got[k] * s["features"][k] for k in FEATURES)
        assert pred == pytest.approx(s["measured_ms"], rel=1e-3)
    with pytest.raises(LatencyError, match="at least 2"):
        fit(samples[:1])


def test_spread_by_cost_spans_the_range_in_cost_order() -> None:
    space = load_space("x3d")
    import random

    rng = random.Random(1)
    draws = [space.freeze(space.random(rng)) for _ in range(300)]
    picked = spread_by_cost(draws, 8)
    g = [a.cost().gflops for a in picked]
    assert len(picked) == 8 and g == sorted(g) and len({a.hash for a in picked}) == 8
    allg = sorted(a.cost().gflops for a in draws)
    assert g[0] <= allg[len(allg) // 10] and g[-1] >= allg[-len(allg) // 10]


def test_prediction_imports_no_torch(tmp_path: Path) -> None:
    table = LatencyTable("cpu", 1, samples=[], weights={"x3d/clip": dict.fromkeys(FEATURES, 1e-9)})
    table.save(tmp_path)
    code = ("import sys; from pathlib import Path; from nas import load_arch; from nas.latency import LatencyTable; "
            f"t = LatencyTable.load('cpu', 1, Path({str(tmp_path)!r})); "
            "print(t.predict_ms(load_arch('x3d-s'))); assert 'torch' not in sys.modules, 'torch imported'")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=ROOT,
                         env={**os.environ, "PYTHONPATH": str(ROOT)}, timeout=120)
    assert out.returncode == 0, out.stderr
    assert float(out.stdout) > 0


def test_measure_latency_in_both_modes() -> None:
    from nas.measure import measure_latency

    m = measure_latency(load_arch("x3d-xs"), min_runs=3, min_seconds=0.0, warmup=1)
    assert m["median_ms"] > 0 and m["iqr_ms"] >= 0 and m["runs"] == 3
    s = measure_latency(load_arch("movinet-a0-stream"), mode="stream", min_runs=3, min_seconds=0.0, warmup=1)
    assert s["median_ms"] > 0
    with pytest.raises(ValueError, match="not causal"):
        measure_latency(load_arch("x3d-xs"), mode="stream", min_runs=1, min_seconds=0.0, warmup=0)


@pytest.mark.skipif("not __import__('torch').cuda.is_available()", reason="no CUDA device here")
def test_measure_latency_on_cuda() -> None:
    from nas.measure import measure_latency

    m = measure_latency(load_arch("x3d-xs"), device="cuda", min_runs=3, min_seconds=0.0)
    assert m["median_ms"] > 0


def test_xnas_latency_json_with_a_table_on_file(tmp_path: Path, monkeypatch, capsys) -> None:
    from nas.cli import main

    monkeypatch.setenv("XNAS_LATENCY_CACHE", str(tmp_path))
    LatencyTable("cpu", 1, weights={"x3d/clip": {**dict.fromkeys(FEATURES, 0.0), "pointwise_macs": 2e-8}}).save()
    assert main(["latency", "x3d-xs", "--json"]) == 0
    out = json.loads(capsys.readouterr().out)
    for key in ("predicted_ms", "measured_ms", "iqr_ms", "device", "threads", "mode"):
        assert key in out
    expected = 2e-8 * load_arch("x3d-xs").cost().profile["pointwise_macs"]
    assert out["predicted_ms"] == pytest.approx(expected)
    assert out["device"] == "cpu" and out["threads"] == 1 and out["mode"] == "clip" and out["measured_ms"] > 0


def test_xnas_latency_profiles_a_missing_family_then_predicts(tmp_path: Path, monkeypatch, capsys) -> None:
    from nas.cli import main

    monkeypatch.setenv("XNAS_LATENCY_CACHE", str(tmp_path))
    assert main(["latency", "movinet-a0-stream", "--mode", "stream", "--profile-archs", "3", "--no-measure",
                 "--json"]) == 0
    out = json.loads(capsys.readouterr().out)
    assert out["predicted_ms"] > 0 and out["measured_ms"] is None
    table = LatencyTable.load("cpu", 1, tmp_path)
    assert len(table.samples_for("movinet/stream")) == 3 and "movinet/stream" in table.weights


@pytest.mark.parametrize("argv, message", [
    (["latency", "x3d-xs", "--mode", "stream"], "xnas: error: --mode: got 'stream' for x3d-xs"),
    (["latency", "profile"], "xnas: error: --space: required"),
    (["latency", "nope"], "xnas: error: ARCH: "),
])
def test_xnas_latency_user_mistakes(argv, message, capsys) -> None:
    from nas.cli import main

    assert main(argv) == 2
    err = capsys.readouterr().err
    assert err.startswith(message) and err.count("\n") == 1, err
