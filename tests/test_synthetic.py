"""The synthetic video tasks: determinism, shapes, splits, and the invariants that make them temporal.

Everything here uses fixed seeds (hypothesis runs derandomised), so no test is flaky.
"""
from __future__ import annotations

import struct
import subprocess
import sys
import zlib

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from nas.data import (
    EVENT_FRAMES,
    MIN_SEGMENT,
    ORDERLESS_CEILING,
    TASKS,
    SyntheticVideo,
    class_names,
    contact_sheet,
    num_classes,
    offset_range,
    render_clip,
    sample_times,
    synthetic,
    write_png,
)

PAIRED = {"chiral_motion": range(0, 8, 2), "shape_direction": range(0, 12, 2), "mixed": range(6, 26, 2)}


# ------------------------------------------------------------------------------------------------
# API basics


def test_class_lists() -> None:
    assert [num_classes(t) for t in TASKS] == [6, 6, 8, 12, 26]
    assert class_names("graded")[1] == "red-circle>blue-triangle>green-square"
    assert class_names("event_order")[:2] == ("red-green-blue", "red-blue-green")
    assert class_names("chiral_motion")[4:6] == ("rotate-ccw", "rotate-cw")
    assert class_names("shape_direction")[5] == "square-left"
    assert class_names("mixed")[14] == "shape_direction/circle-right"
    assert len(set(class_names("mixed"))) == 26


@pytest.mark.parametrize("frames, stride, crop", [(1, 1, 8), (4, 12, 32), (13, 6, 40), (16, 5, 64), (32, 8, 17)])
def test_shape_and_dtype(frames: int, stride: int, crop: int) -> None:
    for task in TASKS:
        clip = render_clip(task, num_classes(task) - 1, 3, frames, stride, crop)
        assert clip.shape == (frames, crop, crop, 3)
        assert clip.dtype == np.uint8


def test_deterministic_per_seed() -> None:
    for task in TASKS:
        a = render_clip(task, 1, 11, 16, 5, 32)
        assert np.array_equal(a, render_clip(task, 1, 11, 16, 5, 32))
        assert not np.array_equal(a, render_clip(task, 1, 12, 16, 5, 32))
    ds = SyntheticVideo("mixed", "train", size=40, frames=8, frame_stride=6, crop=32, seed=5)
    again = SyntheticVideo("mixed", "train", size=40, frames=8, frame_stride=6, crop=32, seed=5)
    for i in (0, 7, 39):
        assert ds[i][1] == again[i][1]
        assert np.array_equal(ds[i][0], again[i][0])


def test_mixed_is_the_union_of_the_subtasks() -> None:
    start = 0
    for sub in ("event_order", "chiral_motion", "shape_direction"):
        for label in range(num_classes(sub)):
            assert np.array_equal(render_clip("mixed", start + label, 4, 8, 6, 24),
                                  render_clip(sub, label, 4, 8, 6, 24))
        start += num_classes(sub)


def test_offset_range_and_clamping() -> None:
    assert offset_range(16, 5) == (0, EVENT_FRAMES - 76)
    assert offset_range(16, 8) == (EVENT_FRAMES - 121, 0)
    assert list(sample_times(4, 12, 0)) == [0, 12, 24, 36]
    assert list(sample_times(4, 40, -30)) == [0, 10, 50, 90]          # clamped at both ends
    # A clip longer than the event starts and ends on the static first / last state.
    clip = render_clip("chiral_motion", 0, 2, 16, 8, 32, offset=-25)  # times -25..95: 4 frames at t=0
    assert all(np.array_equal(clip[0], clip[i]) for i in (1, 2, 3))
    clip = render_clip("chiral_motion", 0, 2, 16, 8, 32, offset=0)    # times 0..120: 4 frames at t=95
    assert all(np.array_equal(clip[12], clip[i]) for i in (13, 14, 15))
    assert not np.array_equal(clip[0], clip[12])


@pytest.mark.parametrize("kwargs, name", [
    ({"task": "moving_mnist"}, "task"),
    ({"label": 6}, "label"),
    ({"label": -1}, "label"),
    ({"seed": -1}, "seed"),
    ({"frames": 0}, "frames"),
    ({"frame_stride": 0}, "frame_stride"),
    ({"crop": 4}, "crop"),
    ({"offset": 30}, "offset"),       # 16 x 5 leaves offsets 0..20
    ({"label": True}, "label"),
    ({"difficulty": 1.5}, "difficulty"),
    ({"difficulty": "hard"}, "difficulty"),
])
def test_bad_arguments_raise_value_error_naming_them(kwargs: dict, name: str) -> None:
    args = {"task": "event_order", "label": 0, "seed": 0, "frames": 16, "frame_stride": 5, "crop": 32}
    args.update(kwargs)
    offset = args.pop("offset", None)
    with pytest.raises(ValueError, match=f"^{name}: got .*; allowed: "):
        render_clip(**args, offset=offset)
    if name != "task":
        with pytest.raises(ValueError, match=f"^{name}: got .*; allowed: "):
            render_clip(**{**args, "task": "graded"}, offset=offset)


def test_dataset_argument_errors() -> None:
    with pytest.raises(ValueError, match="^split: "):
        SyntheticVideo(split="test")
    with pytest.raises(ValueError, match="^size: "):
        SyntheticVideo(size=0)
    with pytest.raises(IndexError):
        SyntheticVideo(size=3)[3]


def test_no_torch_import() -> None:
    code = "import sys, nas.data; sys.exit('torch' in sys.modules)"
    assert subprocess.run([sys.executable, "-c", code], check=False).returncode == 0


# ------------------------------------------------------------------------------------------------
# Reversal pairs: class 2k+1 is exactly class 2k played backwards, so frame multisets carry no label


@pytest.mark.parametrize("task", sorted(PAIRED))
@pytest.mark.parametrize("frames, stride, crop", [(16, 5, 32), (4, 12, 24), (16, 8, 16), (7, 3, 40)])
def test_reversal_pairs_are_exact(task: str, frames: int, stride: int, crop: int) -> None:
    for even in PAIRED[task]:
        for seed in (0, 1, 2):
            forward = render_clip(task, even, seed, frames, stride, crop)
            backward = render_clip(task, even + 1, seed, frames, stride, crop)
            assert np.array_equal(backward, forward[::-1])
            assert not np.array_equal(backward, forward)


@settings(derandomize=True, max_examples=40, deadline=None)
@given(pair=st.integers(0, 3), seed=st.integers(0, 2**40), frames=st.integers(1, 24),
       stride=st.integers(1, 16), crop=st.integers(8, 48), where=st.floats(0, 1))
def test_reversal_with_explicit_mirrored_offset(pair: int, seed: int, frames: int, stride: int, crop: int,
                                                where: float) -> None:
    lo, hi = offset_range(frames, stride)
    offset = lo + round(where * (hi - lo))
    forward = render_clip("chiral_motion", 2 * pair, seed, frames, stride, crop, offset=offset)
    backward = render_clip("chiral_motion", 2 * pair + 1, seed, frames, stride, crop, offset=lo + hi - offset)
    assert np.array_equal(backward, forward[::-1])


def _full_frame_render(layers: list, times: np.ndarray, background: np.ndarray) -> np.ndarray:
    """The reference renderer: every pixel of every frame, layer after layer, no boxes."""
    crop = background.shape[0]
    xs = synthetic._pixel_centres(crop)
    canvas = np.broadcast_to(background * 255 + 0.5, (len(times), crop, crop, 3)).copy()
    for tl in layers:
        for shape in range(3):
            k = np.nonzero(tl.visible[times] & (tl.shape[times] == shape))[0]
            t = times[k]
            dx = xs[None, None, :] - tl.cx[t][:, None, None]
            dy = tl.cy[t][:, None, None] - xs[None, :, None]
            alpha = np.clip(0.5 - synthetic._signed_distance(tl, t, shape, dx, dy) * crop, 0, 1)
            fg = tl.colour[t][:, None, None, :] * 255 + 0.5
            canvas[k] = canvas[k] + alpha[..., None] * (fg - canvas[k])
    return canvas.astype(np.uint8)


def test_box_rendering_equals_full_frame_rendering() -> None:
    """The per-frame box an object is drawn in never clips it (checked against a full-frame render),
    for one-object tasks and for graded's layers (clutter, identities, companions)."""
    builders = {**{sub: (lambda b: lambda rng, label: [b(rng, label)])(b) for sub, b in synthetic._BUILDERS.items()},
                "graded": synthetic._graded}
    for sub, build in builders.items():
        for label in range(num_classes(sub)):
            for seed, crop in [(0, 8), (1, 13), (2, 32)]:
                layers = build(np.random.default_rng([seed, 9, 0]), label)
                background = synthetic._background(np.random.default_rng(seed), crop)
                times = sample_times(24, 4, 0)
                expected = _full_frame_render(layers, times, background)
                assert np.array_equal(synthetic._composite(layers, times, background), expected)


# ------------------------------------------------------------------------------------------------
# event_order: classes differ only by the order of the same frames


def _frame_multiset(clip: np.ndarray) -> list[bytes]:
    return sorted(frame.tobytes() for frame in clip)


def test_event_order_classes_are_permutations_of_one_frame_multiset() -> None:
    """The invariant: at source resolution (every source frame, offset 0) the six classes of one seed
    show exactly the same multiset of frames (each colour keeps its duration and look), in different
    orders."""
    for seed in (0, 1, 2, 3):
        clips = [render_clip("event_order", label, seed, EVENT_FRAMES, 1, 24, offset=0) for label in range(6)]
        reference = _frame_multiset(clips[0])
        for clip in clips[1:]:
            assert _frame_multiset(clip) == reference
            assert not np.array_equal(clip, clips[0])


def _colours_seen(clip: np.ndarray) -> list[int]:
    """Colour (0 red, 1 green, 2 blue) of each frame's object in order, blanks and repeats dropped."""
    f = clip.astype(np.float32) / 255
    seen: list[int] = []
    for frame in f:
        dominance = [np.max(frame[..., c] - np.max(np.delete(frame, c, axis=-1), axis=-1)) for c in range(3)]
        c = int(np.argmax(dominance))
        if dominance[c] > 0.35 and (not seen or seen[-1] != c):
            seen.append(c)
    return seen


def test_event_order_full_coverage_shows_the_order_of_the_label() -> None:
    # 16 x 7 spans 106 >= 96 source frames, and 7 <= MIN_SEGMENT, so every object is sampled.
    assert 7 <= MIN_SEGMENT
    for seed in range(6):
        for label in range(6):
            clip = render_clip("event_order", label, seed, 16, 7, 32)
            assert _colours_seen(clip) == list(synthetic._ORDERS[label])


def test_frame_count_and_stride_decide_what_is_seen() -> None:
    # event_order: 4 frames 2 apart span 7 source frames, never more than 2 of the 3 objects.
    partial = [len(_colours_seen(render_clip("event_order", 0, seed, 4, 2, 32))) for seed in range(20)]
    assert max(partial) <= 2 and min(partial) <= 1
    # chiral_motion (move-right travels 0.30-0.50 crop over the event): over 3 source frames the object
    # moves about a pixel, over 90 source frames at least 0.28 crop.
    for seed in range(5):
        short = render_clip("chiral_motion", 0, seed, 4, 1, 64)
        long = render_clip("chiral_motion", 0, seed, 16, 6, 64)
        assert _centroid_x(short[-1]) - _centroid_x(short[0]) < 1.5
        assert _centroid_x(long[-1]) - _centroid_x(long[0]) > 0.28 * 64


def _centroid_x(frame: np.ndarray) -> float:
    """x centroid (pixels) of the object: the only saturated thing on a near-grey background."""
    f = frame.astype(np.float32) / 255
    saturated = (f.max(-1) - f.min(-1)) > 0.25
    return float(np.nonzero(saturated)[1].mean())


def test_event_order_frame_average_is_label_free() -> None:
    """At source resolution the mean frame is bit-identical across classes (integer sums), so a
    frame-average model is at chance (ORDERLESS_CEILING)."""
    assert ORDERLESS_CEILING["event_order"] == pytest.approx(1 / 6)
    sums = [render_clip("event_order", label, 7, EVENT_FRAMES, 1, 16, offset=0).sum(0, dtype=np.int64)
            for label in range(6)]
    assert all(np.array_equal(s, sums[0]) for s in sums)


# ------------------------------------------------------------------------------------------------
# Dataset


def test_label_balance_and_size_independence() -> None:
    ds = SyntheticVideo("mixed", "train", size=260, seed=3)
    assert ds.num_classes == 26 and len(ds.class_names) == 26 and len(ds) == 260
    assert np.array_equal(np.bincount(ds.labels, minlength=26), np.full(26, 10))
    odd = SyntheticVideo("chiral_motion", "val", size=21, seed=3)
    counts = np.bincount(odd.labels, minlength=8)
    assert counts.max() - counts.min() <= 1
    # an item does not depend on the dataset's size
    assert np.array_equal(SyntheticVideo("mixed", size=30, seed=3).labels, ds.labels[:30])
    assert ds[-1][1] == ds.labels[-1]


def test_train_and_val_are_disjoint() -> None:
    kw = {"task": "mixed", "size": 50, "frames": 4, "frame_stride": 8, "crop": 16, "seed": 0}
    train, val = SyntheticVideo(split="train", **kw), SyntheticVideo(split="val", **kw)
    assert not {train.clip_seed(i) for i in range(50)} & {val.clip_seed(i) for i in range(50)}
    train_clips = {train[i][0].tobytes() for i in range(50)}
    assert not train_clips & {val[i][0].tobytes() for i in range(50)}
    # another dataset seed is another stream too
    other = SyntheticVideo(split="train", **{**kw, "seed": 1})
    assert not {train.clip_seed(i) for i in range(50)} & {other.clip_seed(i) for i in range(50)}


def test_item_is_the_same_event_at_every_sampling() -> None:
    coarse = SyntheticVideo("shape_direction", size=5, frames=4, frame_stride=12, crop=32, seed=2)
    fine = SyntheticVideo("shape_direction", size=5, frames=16, frame_stride=5, crop=64, seed=2)
    for i in range(5):
        assert coarse.label(i) == fine.label(i) and coarse.clip_seed(i) == fine.clip_seed(i)


# ------------------------------------------------------------------------------------------------
# Looking at it: PNG output


def _png_chunks(data: bytes) -> dict[bytes, bytes]:
    assert data[:8] == b"\x89PNG\r\n\x1a\n"
    chunks, pos = {}, 8
    while pos < len(data):
        (length,) = struct.unpack(">I", data[pos:pos + 4])
        kind, body = data[pos + 4:pos + 8], data[pos + 8:pos + 8 + length]
        (crc,) = struct.unpack(">I", data[pos + 8 + length:pos + 12 + length])
        assert crc == zlib.crc32(kind + body)
        chunks[kind] = body
        pos += 12 + length
    return chunks


def test_contact_sheet_is_a_valid_png(tmp_path) -> None:
    path = contact_sheet("chiral_motion", tmp_path / "sheet.png", frames=6, crop=24)
    chunks = _png_chunks(path.read_bytes())
    width, height, depth, colour, *_ = struct.unpack(">IIBBBBB", chunks[b"IHDR"])
    assert (width, height, depth, colour) == (6 * 26 + 2, 8 * 26 + 2, 8, 2)   # tiles + 2 px gaps
    assert len(zlib.decompress(chunks[b"IDAT"])) == height * (1 + 3 * width)
    assert b"IEND" in chunks


def test_write_png_round_trips_pixels(tmp_path) -> None:
    image = np.random.default_rng(0).integers(0, 256, size=(5, 7, 3), dtype=np.uint8)
    raw = zlib.decompress(_png_chunks(write_png(tmp_path / "x.png", image).read_bytes())[b"IDAT"])
    rows = np.frombuffer(raw, np.uint8).reshape(5, 1 + 21)
    assert not rows[:, 0].any()
    assert np.array_equal(rows[:, 1:].reshape(5, 7, 3), image)
    with pytest.raises(ValueError, match="^image: "):
        write_png(tmp_path / "y.png", image.astype(np.float32))


# ------------------------------------------------------------------------------------------------
# Learnability without a neural net


def _motion_feature(clip: np.ndarray) -> np.ndarray:
    """Where the object is late minus where it is early: a ramp-weighted sum of per-frame object maps,
    reduced to its x / y moments. Reversing the clip negates it."""
    f = clip.astype(np.float32)
    objectness = np.abs(f - f.mean(0)).sum(-1)                     # (T, H, W)
    ramp = np.arange(len(f)) - (len(f) - 1) / 2
    late_minus_early = np.tensordot(ramp, objectness, axes=1)
    grid = np.arange(f.shape[1]) / f.shape[1]
    mass = np.abs(late_minus_early).sum()
    return np.array([(late_minus_early.sum(0) * grid).sum(), (late_minus_early.sum(1) * grid).sum()]) / mass


def _nearest_centroid(train_x: np.ndarray, train_y: np.ndarray, test_x: np.ndarray) -> np.ndarray:
    classes = np.unique(train_y)
    centroids = np.stack([train_x[train_y == c].mean(0) for c in classes])
    return classes[np.argmin(((test_x[:, None, :] - centroids[None]) ** 2).sum(-1), axis=1)]


def test_direction_is_learnable_from_time_but_not_from_the_frame_average() -> None:
    """shape_direction, 4-way direction: a nearest-centroid classifier on a temporal-difference feature
    is near perfect; on the (exact, integer) frame average it cannot beat 1/2 on an eval set holding
    both members of every reversal pair, because both members have the same frame average."""
    sampling = {"frames": 8, "frame_stride": 12, "crop": 32}
    train = SyntheticVideo("shape_direction", "train", size=96, seed=0, **sampling)
    clips, labels = zip(*(train[i] for i in range(len(train))), strict=True)
    train_dir = np.array(labels) % 4
    eval_clips, eval_dir = [], []
    for seed in range(10**6, 10**6 + 24):
        shape = seed % 3
        for direction in range(4):
            eval_clips.append(render_clip("shape_direction", 4 * shape + direction, seed, **sampling))
            eval_dir.append(direction)
    eval_dir = np.array(eval_dir)

    motion = _nearest_centroid(np.stack([_motion_feature(c) for c in clips]), train_dir,
                               np.stack([_motion_feature(c) for c in eval_clips]))
    assert (motion == eval_dir).mean() >= 0.9

    def average(clip: np.ndarray) -> np.ndarray:                    # integer sum: exact in any order
        return clip.sum(0, dtype=np.int64).ravel() / len(clip)

    pred = _nearest_centroid(np.stack([average(c) for c in clips]), train_dir,
                             np.stack([average(c) for c in eval_clips]))
    assert np.array_equal(pred[0::2], pred[1::2])                   # right == left, down == up
    assert (pred == eval_dir).mean() <= ORDERLESS_CEILING["shape_direction"]


# ------------------------------------------------------------------------------------------------
# graded: event order of three identities, with per-clip difficulty on every X3D axis


def _graded_layers(seed: int, label: int = 0, difficulty: float = 1.0) -> list:
    return synthetic._graded(np.random.default_rng([seed, synthetic._STREAM["graded"], 0]), label, difficulty)


def _identities(layers: list) -> list:
    """The three identity layers (un-notched, shapes 0, 1, 2), in identity order."""
    return [tl for tl in layers if not tl.notched]


def test_graded_classes_permute_one_frame_multiset_and_average() -> None:
    """Clutter and companions included, at source resolution the six classes of a seed show the same
    frames in different orders, so their integer frame sums are equal: an order-blind model is at chance."""
    assert ORDERLESS_CEILING["graded"] == pytest.approx(1 / 6)
    for seed in range(6):
        clips = [render_clip("graded", label, seed, EVENT_FRAMES, 1, 20, offset=0) for label in range(6)]
        reference = _frame_multiset(clips[0])
        for clip in clips[1:]:
            assert _frame_multiset(clip) == reference
            assert np.array_equal(clip.sum(0, dtype=np.int64), clips[0].sum(0, dtype=np.int64))
            assert not np.array_equal(clip, clips[0])


def test_graded_label_only_orders_the_identities() -> None:
    for seed in range(10):
        for label in range(6):
            ids = _identities(_graded_layers(seed, label))
            starts = [int(np.argmax(tl.visible)) for tl in ids]
            assert list(np.argsort(starts)) == list(synthetic._ORDERS[label])
            assert [int(tl.shape[0]) for tl in ids] == [0, 1, 2]


def test_graded_difficulty_zero_is_the_easy_end() -> None:
    """At difficulty 0 a graded clip has event_order's ranges: 16-20 frame objects of radius 0.10-0.15,
    saturated, spread over 52-72 source frames, no clutter."""
    for seed in range(20):
        layers = _graded_layers(seed, difficulty=0.0)
        assert len(layers) == 3                                      # no clutter, no companions
        on = np.zeros(EVENT_FRAMES, bool)
        for tl in layers:
            assert MIN_SEGMENT <= tl.visible.sum() <= MIN_SEGMENT + 4
            assert 0.10 <= tl.r[0] <= 0.15
            on |= tl.visible
        first, last = int(np.argmax(on)), EVENT_FRAMES - int(np.argmax(on[::-1]))
        assert 52 <= last - first <= 72 and first >= 8 and last <= EVENT_FRAMES - 8


def _seen(tl, frames: int, stride: int, offset: int) -> bool:
    return bool(tl.visible[sample_times(frames, stride, offset)].any())


def test_graded_every_axis_changes_what_can_be_seen() -> None:
    """Over 300 clips at difficulty 1: a finer stride over the same span sees brief identities a coarse
    one misses (X-Fast), a longer span at the same stride sees more identities (X-Temporal), the hard
    identity ranges down to a few pixels at a low crop (X-Spatial), and some clips carry a companion
    distractor (capacity). The two easy identities of every clip are event_order's."""
    brief = fast = slow = long = short = 0
    small, clutter = [], 0
    for seed in range(300):
        layers = _graded_layers(seed, seed % 6)
        ids = _identities(layers)
        assert sum(MIN_SEGMENT <= tl.visible.sum() <= MIN_SEGMENT + 4 for tl in ids) >= 2
        for tl in ids:
            if tl.visible.sum() < 12:                                # brief: a stride of 12 can miss it
                brief += 1
                fast += _seen(tl, 32, 3, 0)                          # 32 x 3: span 94
                slow += _seen(tl, 8, 12, 0)                          # 8 x 12: span 85
        lo, hi = offset_range(4, 6)
        offset = lo + seed % (hi - lo + 1)
        short += sum(_seen(tl, 4, 6, offset) for tl in ids)          # 4 x 6: span 19
        long += sum(_seen(tl, 16, 6, 0) for tl in ids)               # 16 x 6: span 91
        small += [float(tl.r[0]) for tl in ids]
        clutter += len(layers) > 3
    assert brief > 60 and fast == brief and slow < 0.75 * brief
    assert long > 2 * short
    assert min(small) < 0.06 and max(small) > 0.14                    # radius 0.05 of 17 px: under 1 px
    assert clutter > 50
