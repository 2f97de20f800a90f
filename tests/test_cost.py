"""The analytic cost model against the published tables (torch-free; the measured-count checks are in
test_models.py)."""
from __future__ import annotations

import sys

import pytest

from nas import load_arch, load_space

# Oracles: shared/reference/x3d.md §2 ("meas. GMACs conv+fc", "meas. params all") and
# shared/reference/movinet_specs.json (code-derived params and GMACs at the evaluation clip).
PUBLISHED = {
    "x2d": (0.020662, 1_633_512),
    "x3d-xs": (0.6053, 3_794_274),
    "x3d-s": (1.9629, 3_794_274),
    "x3d-m": (4.7325, 3_794_274),
    "x3d-l": (18.3677, 6_153_384),
    "movinet-a0": (2.631, 3_111_799),
    "movinet-a1": (5.866, 4_690_296),
    "movinet-a2": (11.558, 5_249_562),
    "movinet-a3": (55.593, 7_397_545),
    "movinet-a4": (103.339, 11_349_463),
    "movinet-a5": (276.334, 18_650_523),
    # stream variants: the code-derived counts in shared/reference/movinet_specs.json (`streaming`)
    "movinet-a0-stream": (2.426, 3_748_031),
    "movinet-a1-stream": (5.540, 6_447_352),
    "movinet-a2-stream": (10.700, 7_326_962),
    "movinet-a3-stream": (52.134, 10_986_618),
    "movinet-a4-stream": (96.741, 18_136_182),
    "movinet-a5-stream": (261.710, 31_495_934),
}

# tsn2d references have no published figure: these pins come from the cost model, whose MobileNetV2
# backbone equals the published one (3,504,872 params, 300.8M multiply-adds at 224², 1000 classes;
# tests/test_tsn2d.py) and whose counts equal FlopCounterMode (tests/test_models.py). They pin the
# temporal modules' extra cost: shift / shuffle 0, TAM its depthwise taps, STH its grouped kernels.
DERIVED = {
    "tsn-mbv2": (2.396466, 2_736_272),
    "tsm-mbv2": (2.396466, 2_736_272),
    "tsm-online-mbv2": (2.396466, 2_736_272),
    "tam-mbv2": (2.401659, 2_738_648),
    "shuffle-mbv2": (2.396466, 2_736_272),
    "sth-mbv2": (2.380887, 2_729_144),
    "blvnet-tam-mbv2": (2.065857, 2_759_368),
}


@pytest.mark.parametrize("name", sorted(PUBLISHED) + sorted(DERIVED))
def test_reference_costs_match_published(name: str) -> None:
    gflops, params = {**PUBLISHED, **DERIVED}[name]
    cost = load_arch(name).cost()
    assert cost.params == params
    assert cost.gflops == pytest.approx(gflops, rel=1e-3)


def test_every_reference_architecture_has_a_published_cost(arch_name: str) -> None:
    assert arch_name in PUBLISHED or arch_name in DERIVED, \
        f"add the published cost of {arch_name} to PUBLISHED (or a derived pin to DERIVED)"


@pytest.mark.parametrize("name, crop, gflops", [
    ("x3d-xs", 182, 0.839), ("x3d-s", 182, 2.722), ("x3d-m", 256, 6.181), ("x3d-l", 356, 24.764),
])
def test_x3d_at_test_crop(name: str, crop: int, gflops: float) -> None:
    """x3d.md §2 'meas. at test crop' (global pooling, as in the paper's Table 3)."""
    assert load_arch(name).cost(size=crop).gflops == pytest.approx(gflops, rel=1e-3)


def test_x3d_paper_expansion_path() -> None:
    """x3d.md §3: replaying the paper's first five expansion steps from X2D lands on X3D-XS."""
    space = load_space("x3d")
    sample = {f"factors/{k}": 1.0 for k in ("frame_stride", "frames", "spatial", "width", "bottleneck", "depth")}
    steps = [
        ({"factors/bottleneck": 2.25}, 0.0410),
        ({"factors/frames": 2.0}, 0.0802),
        ({"factors/spatial": 2**0.5}, 0.1534),
        ({"factors/depth": 2.2}, 0.3036),
        ({"factors/frames": 4.0, "factors/frame_stride": 12.0}, 0.6053),
    ]
    for change, gflops in steps:
        sample.update(change)
        assert space.freeze(sample).cost().gflops == pytest.approx(gflops, rel=2e-3)
    assert space.freeze(sample) == load_arch("x3d-xs")


def test_x3d_rounding_rules() -> None:
    from nas.families.x3d import resolve

    doc = load_arch("x3d-l").to_dict()
    net = resolve(doc)
    assert [s.depth for s in net.stages] == [5, 10, 25, 15]
    assert [s.width for s in net.stages] == [24, 48, 96, 192]
    assert [s.inner for s in net.stages] == [54, 108, 216, 432]
    assert [s.se_dim for s in net.stages] == [8, 8, 16, 32]
    assert (net.clip.frames, net.clip.frame_stride, net.clip.crop) == (16, 5, 312)
    doc["factors"].update(width=1.3, depth=2.2, spatial=1.4142135623730951, frames=12.6)
    net = resolve(doc)
    assert [s.width for s in net.stages] == [32, 64, 128, 248]  # round8(1.3 * w)
    assert [s.depth for s in net.stages] == [3, 5, 11, 7]  # ceil(2.2 * d), 2.2 * 5 stays 11
    assert (net.clip.frames, net.clip.crop) == (13, 160)


def test_cost_overrides_and_monotonicity() -> None:
    arch = load_arch("movinet-a0")
    base = arch.cost()
    assert arch.cost(frames=100).macs > base.macs
    assert arch.cost(size=224).macs > base.macs
    assert arch.cost(frames=100).params == base.params
    assert (arch.cost(frames=8, size=64).frames, arch.cost(frames=8, size=64).size) == (8, 64)


def test_cost_model_imports_no_torch() -> None:
    import subprocess

    code = "import sys, nas; nas.load_arch('x3d-m').cost(); nas.load_space('movinet').size(); print('torch' in sys.modules)"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert out.strip() == "False"
