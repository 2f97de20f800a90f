"""The DSL: choices, shared labels, repetition, the sampler contract, serialisation and errors."""
from __future__ import annotations

import json
import math
import random

import pytest
import yaml

from nas import DSLError, Space, load_arch, load_space
from nas.dsl import Arch

# A small MoViNet-family space exercising every DSL construct: categorical, grid and shared choices,
# and a repeat whose count is a choice.
SMALL = """
xnas: 1
kind: space
name: tiny
family: movinet
classes: 5
clip: {frames: 4, frame_stride: {choice: [1, 2]}, crop: 32}
activation: swish
gating: sigmoid
stem: {width: {choice: [8, 16], label: narrow}, kernel: 1x3x3, stride: [1, 2, 2]}
blocks:
  - width: {choice: [8, 16], label: narrow}
    stride: [1, 2, 2]
    layers:
      repeat: {choice: [1, 2, 3]}
      each: {kernel: {choice: [1x3x3, 3x3x3]}, expand: {range: [16, 32], step: 8}}
head: {project: 32, width: 64, dropout: 0.0}
"""


@pytest.fixture
def tiny() -> Space:
    return Space.from_yaml(SMALL, file="tiny.yaml")


def test_dims_are_path_labelled_static_and_shared(tiny: Space) -> None:
    dims = tiny.dims()
    assert list(dims) == [
        "clip/frame_stride", "narrow", "blocks/0/layers/repeat",
        "blocks/0/layers/0/kernel", "blocks/0/layers/0/expand",
        "blocks/0/layers/1/kernel", "blocks/0/layers/1/expand",
        "blocks/0/layers/2/kernel", "blocks/0/layers/2/expand",
    ]
    assert dims["narrow"].paths == ["stem/width", "blocks/0/width"]
    assert dims["blocks/0/layers/0/expand"].values == (16, 24, 32)


def test_size_counts_only_active_repeat_slots(tiny: Space) -> None:
    per_layer = 2 * 3
    expected = 2 * 2 * (per_layer + per_layer**2 + per_layer**3)
    assert tiny.size() == expected


def test_size_brute_force_matches(tiny: Space) -> None:
    """Enumerate distinct frozen architectures by hash and compare with size()."""
    import itertools

    dims = tiny.dims()
    hashes = {tiny.freeze(dict(zip(dims, values))).hash for values in itertools.product(*(d.values for d in dims.values()))}
    assert len(hashes) == tiny.size()


def test_freeze_applies_sample_and_drops_unused_slots(tiny: Space) -> None:
    sample = tiny.default()
    sample["blocks/0/layers/repeat"] = 2
    sample["narrow"] = 16
    arch = tiny.freeze(sample)
    assert arch.doc["kind"] == "architecture" and arch.space == "tiny"
    assert arch.doc["stem"]["width"] == arch.doc["blocks"][0]["width"] == 16
    assert len(arch.doc["blocks"][0]["layers"]) == 2
    assert tiny.contains(arch)
    assert tiny.sample_of(arch) == {k: v for k, v in sample.items() if not k.startswith("blocks/0/layers/2/")}


def test_random_samples_are_points_and_round_trip(tiny: Space) -> None:
    rng = random.Random(0)
    for _ in range(50):
        sample = tiny.random(rng)
        assert set(sample) == set(tiny.dims())
        tiny.check(sample)
        arch = tiny.freeze(sample)
        assert tiny.contains(arch)
        assert tiny.freeze(tiny.sample_of(arch)) == arch


def test_tilted_draws_lean_to_one_end_of_numeric_choices_only(tiny: Space) -> None:
    assert tiny.random(random.Random(3), tilt=0.0) == tiny.random(random.Random(3))  # 0: the uniform draw
    rng = random.Random(0)
    low = [tiny.random(rng, tilt=-8.0) for _ in range(200)]
    high = [tiny.random(rng, tilt=8.0) for _ in range(200)]
    for label in ("blocks/0/layers/repeat", "blocks/0/layers/0/expand", "narrow"):
        smallest, largest = min(tiny.dims()[label].values), max(tiny.dims()[label].values)
        assert sum(s[label] == smallest for s in low) > 0.9 * len(low)  # P(rank 0) >= 1 / (1 + 2 e^-4) at tilt -8
        assert sum(s[label] == largest for s in high) > 0.9 * len(high)
    for draws in (low, high):  # kernels are not numbers: still uniform
        share = sum(s["blocks/0/layers/0/kernel"] == "1x3x3" for s in draws) / len(draws)
        assert 0.35 < share < 0.65
        for sample in draws:
            tiny.check(sample)
    cheap = sum(tiny.freeze(s).cost().gflops for s in low) / len(low)
    dear = sum(tiny.freeze(s).cost().gflops for s in high) / len(high)
    assert dear > 2 * cheap


def test_tilted_draws_of_a_continuous_range_stay_in_it() -> None:
    from nas.dsl.choice import Choice

    rng = random.Random(0)
    for log in (False, True):
        c = Choice(label="lr", paths=["lr"], low=1e-4, high=1e-1, log=log)
        for tilt, side in ((6.0, "high"), (-6.0, "low")):
            draws = [c.sample(rng, tilt) for _ in range(300)]
            assert all(1e-4 <= d <= 1e-1 for d in draws)
            mid = math.sqrt(1e-4 * 1e-1) if log else (1e-4 + 1e-1) / 2
            above = sum(d > mid for d in draws) / len(draws)
            assert above > 0.9 if side == "high" else above < 0.1


def test_check_names_label_value_and_allowed(tiny: Space) -> None:
    sample = tiny.default()
    sample["blocks/0/layers/0/kernel"] = "5x5x5"
    with pytest.raises(DSLError) as err:
        tiny.check(sample)
    assert err.value.path == "blocks/0/layers/0/kernel"
    assert err.value.value == "5x5x5"
    assert "'1x3x3', '3x3x3'" in err.value.allowed


def test_check_rejects_unknown_and_missing_labels(tiny: Space) -> None:
    with pytest.raises(DSLError, match="unknown label"):
        tiny.check({**tiny.default(), "blocks/9/width": 8})
    sample = tiny.default()
    del sample["narrow"]
    with pytest.raises(DSLError, match="narrow: missing from the sample"):
        tiny.check(sample)
    # labels of slots past the chosen count may be left out
    sample = tiny.default()
    sample["blocks/0/layers/repeat"] = 1
    for key in [k for k in sample if k.startswith(("blocks/0/layers/1/", "blocks/0/layers/2/"))]:
        del sample[key]
    tiny.check(sample)


def test_contains_rejects_points_outside(tiny: Space) -> None:
    arch = tiny.freeze(tiny.default())
    doc = arch.to_dict()
    doc["blocks"][0]["layers"][0]["expand"] = 40
    assert not tiny.contains(Arch.from_dict(doc))
    doc = arch.to_dict()
    doc["stem"]["width"] = 8
    doc["blocks"][0]["width"] = 16  # a shared label must take one value
    with pytest.raises(DSLError, match="shared label 'narrow'"):
        tiny.sample_of(Arch.from_dict(doc))
    assert not load_space("x3d").contains(arch)


def test_shared_label_must_have_same_values() -> None:
    bad = SMALL.replace("{choice: [8, 16], label: narrow}, kernel", "{choice: [8, 24], label: narrow}, kernel")
    with pytest.raises(DSLError, match="a shared label must have the same choices everywhere"):
        Space.from_yaml(bad)


def test_arch_yaml_and_json_round_trip_losslessly(arch_name: str) -> None:
    arch = load_arch(arch_name)
    again_yaml = Arch.from_yaml(arch.to_yaml())
    again_json = Arch.from_json(arch.to_json())
    assert again_yaml.doc == arch.doc == again_json.doc
    assert again_yaml.hash == arch.hash == again_json.hash
    assert json.loads(arch.to_json()) == yaml.safe_load(arch.to_yaml())


def test_save_and_load_files(tmp_path) -> None:
    arch = load_arch("movinet-a0")
    for suffix in (".yaml", ".json"):
        path = arch.save(tmp_path / f"a0{suffix}")
        loaded = Arch.load(path)
        assert loaded.doc == arch.doc and loaded.hash == arch.hash


def test_hash_is_stable_and_ignores_names_and_key_order() -> None:
    arch = load_arch("x3d-m")
    doc = arch.to_dict()
    reordered = dict(reversed(list(doc.items())))
    assert Arch.from_dict(reordered).hash == arch.hash
    assert arch.renamed("my-x3d", "same network").hash == arch.hash
    doc["factors"]["frames"] = 13
    assert Arch.from_dict(doc).hash != arch.hash
    # ints where floats are expected are the same value, hence the same hash
    doc = arch.to_dict()
    doc["factors"]["width"] = 1
    assert Arch.from_dict(doc).hash == arch.hash
    # pinned: a change of the canonical form must be deliberate (it invalidates result caches)
    assert arch.hash == "83a2a08166075d40"


def test_space_yaml_round_trip(space_name: str) -> None:
    space = load_space(space_name)
    again = Space.from_yaml(space.to_yaml())
    assert list(again.dims()) == list(space.dims())
    assert again.size() == space.size()


def test_fixed_repeat_expands_into_a_list() -> None:
    doc = load_arch("movinet-a0").to_dict()
    doc["blocks"][1]["layers"] = {"repeat": 3, "each": {"kernel": "3x3x3", "expand": 80}}
    assert Arch.from_dict(doc) == load_arch("movinet-a0")


def test_architecture_holds_no_choice() -> None:
    doc = load_arch("movinet-a0").to_dict()
    doc["blocks"][2]["layers"][0]["kernel"] = {"choice": ["3x3x3", "5x3x3"]}
    with pytest.raises(DSLError) as err:
        Arch.from_dict(doc, file="a0.yaml")
    assert err.value.path == "blocks/2/layers/0/kernel"
    assert "an architecture holds no choices" in str(err.value)


@pytest.mark.parametrize(
    "edit, path, fragment",
    [
        (lambda d: d["blocks"][2]["layers"][0].update(kernel="4x3x3"), "blocks/2/layers/0/kernel", "kernel 'TxHxW'"),
        (lambda d: d["blocks"][0].update(depth=3), "blocks/0/depth", "known keys: width, stride, layers"),
        (lambda d: d["head"].pop("project"), "head/project", "missing required key"),
        (lambda d: d.update(classes=0), "classes", "an integer in [1, 100000]"),
        (lambda d: d.update(classes=True), "classes", "an integer"),
        (lambda d: d.update(family="resnet"), "family", "one of x3d, movinet"),
        (lambda d: d["stem"].update(stride=[1, 2, 1]), "stem/stride", "one of [1, 1, 1], [1, 2, 2]"),
        (lambda d: d["clip"].update(crop=float("nan")), "clip/crop", "an integer"),
        (lambda d: d.update(xnas=2), "xnas", "an integer in [1, 1]"),
    ],
)
def test_errors_name_file_path_value_and_allowed(edit, path, fragment) -> None:
    doc = load_arch("movinet-a0").to_dict()
    edit(doc)
    with pytest.raises(DSLError) as err:
        Arch.from_dict(doc, file="spaces/movinet/movinet-a0.yaml")
    message = str(err.value)
    assert err.value.path == path
    assert message.startswith(f"spaces/movinet/movinet-a0.yaml: {path}: ")
    assert fragment in message
    assert "\n" not in message


def test_yaml_syntax_errors_and_duplicate_keys_are_dsl_errors() -> None:
    with pytest.raises(DSLError, match="syntax error"):
        Space.from_yaml("xnas: [1,\n", file="broken.yaml")
    with pytest.raises(DSLError, match="duplicate key at line 3"):
        Space.from_yaml("xnas: 1\nkind: space\nkind: space\n")


def test_choice_syntax_errors() -> None:
    for bad, fragment in [
        ("{choice: []}", "a non-empty list"),
        ("{choice: [8, 8]}", "without repeated values"),
        ("{range: [16, 8], step: 8}", "low <= high"),
        ("{range: [8, 16]}", "a grid with 'step'"),  # integer field: continuous not allowed
        ("{choice: [8], colour: red}", "unknown key"),
        ("{choice: [8], default: 16}", "one of 8"),
    ]:
        with pytest.raises(DSLError, match=fragment.replace("[", r"\[").replace("(", r"\(")):
            Space.from_yaml(SMALL.replace("project: 32", f"project: {bad}"))


def test_continuous_choices_in_x3d() -> None:
    space = load_space("x3d")
    assert space.size() == math.inf
    dims = space.dims()
    assert list(dims) == [f"factors/{a}" for a in ("frame_stride", "frames", "spatial", "width", "bottleneck", "depth")]
    assert all(d.is_continuous for d in dims.values())
    arch = space.freeze(space.random(3))
    assert space.contains(arch)
    sample = space.default()
    sample["factors/depth"] = 9.0
    with pytest.raises(DSLError, match=r"factors/depth: got 9.0; allowed: a number in \[1.0, 8.0\]"):
        space.check(sample)


def test_reference_is_a_point_of_its_space(arch_name: str) -> None:
    arch = load_arch(arch_name)
    space = load_space(arch.space)
    assert space.contains(arch)
    assert space.freeze(space.sample_of(arch)) == arch  # same content; the name is the sampled one


def test_random_points_of_every_space(space_name: str) -> None:
    space = load_space(space_name)
    rng = random.Random(7)
    for _ in range(20):
        arch = space.freeze(space.random(rng))
        assert space.contains(arch)
        assert Arch.from_yaml(arch.to_yaml()) == arch
        assert arch.name == f"{space.name}-{arch.hash[:8]}"


def test_fix_sets_choices_and_keeps_the_rest() -> None:
    space = load_space("movinet")
    clip = {"clip/frames": 8, "clip/frame_stride": 5, "clip/crop": 112}
    fixed = space.fix(clip, name="movinet-8x5x112")
    assert fixed.name == "movinet-8x5x112"
    assert set(fixed.dims()) == set(space.dims()) - set(clip)
    sample = fixed.random(3)
    arch = fixed.freeze(sample)
    assert arch.doc["clip"] == {"frames": 8, "frame_stride": 5, "crop": 112}
    # the same point of the full space, with the same cost
    assert space.freeze({**sample, **clip}).cost() == arch.cost()


def test_with_clip_accepts_a_clip_outside_the_choices_that_the_family_allows() -> None:
    space = load_space("movinet")
    assert 10 not in space.dims()["clip/frame_stride"].values
    at_clip = space.with_clip((8, 10, 112))
    assert at_clip.name == "movinet" and at_clip.file == space.file
    assert set(at_clip.dims()) == set(space.dims()) - {"clip/frames", "clip/frame_stride", "clip/crop"}
    sample = at_clip.random(4)
    arch = at_clip.freeze(sample)
    assert arch.doc["clip"] == {"frames": 8, "frame_stride": 10, "crop": 112}
    # the stride changes which frames are read, not the network or its cost
    assert arch.cost() == at_clip.with_clip((8, 5, 112)).freeze(sample).cost()
    assert space.with_clip((8, 5, 112), name="m-8x5").name == "m-8x5"
    with pytest.raises(DSLError, match=r"^clip/crop: got 4; allowed: an integer in \[8, 4096\]$"):
        space.with_clip((8, 5, 4))
    with pytest.raises(DSLError, match="family 'x3d' has none"):
        load_space("x3d").with_clip((8, 5, 112))


def test_with_classes_changes_only_the_class_count() -> None:
    arch = load_arch("x3d-xs")
    six = arch.with_classes(6)
    assert six.doc["classes"] == 6 and arch.doc["classes"] == 400
    assert {k: v for k, v in six.doc.items() if k != "classes"} == {k: v for k, v in arch.doc.items() if k != "classes"}
    assert arch.with_classes(400) is arch
    with pytest.raises(DSLError, match=r"^classes: got 0; allowed: an integer in \[1, 100000\]$"):
        arch.with_classes(0)


def test_fix_names_label_value_and_allowed() -> None:
    space = load_space("movinet")
    with pytest.raises(DSLError, match=r"clip/crop: got 113; allowed: one of 112"):
        space.fix({"clip/crop": 113})
    with pytest.raises(DSLError, match="unknown label"):
        space.fix({"clip/fps": 30})
    per_slot = next(label for label in space.dims() if "/layers/" in label)
    with pytest.raises(DSLError, match="per-slot choice"):
        space.fix({per_slot: space.dims()[per_slot].default})
