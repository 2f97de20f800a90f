"""``xnas stream``: a causal MoViNet on a generated video, frame by frame, in constant memory."""
from __future__ import annotations

import json
from pathlib import Path

import pytest

pytest.importorskip("av")

from fixtures import write_test_video  # noqa: E402

from nas.cli import main  # noqa: E402


@pytest.fixture(scope="module")
def video(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return write_test_video(tmp_path_factory.mktemp("stream") / "clip.mp4", frames=24, width=48, height=40)


def test_stream_prints_running_topk_every_n_frames(video: Path, capsys: pytest.CaptureFixture) -> None:
    assert main(["stream", "movinet-a0-stream", str(video), "--size", "32", "--frame-stride", "2",
                 "--every", "5", "--topk", "3"]) == 0
    out = capsys.readouterr().out.splitlines()
    rows = [line for line in out if line.startswith("frame")]
    # 24 source frames at stride 2 -> 12 model frames; printed at 5 and 10, then the final one (12)
    assert [int(r.split()[1]) for r in rows] == [5, 10, 12]
    assert all(len(r.split(":", 1)[1].split()) == 6 for r in rows)  # 3 x (class, probability)


def test_stream_json_constant_state_and_equal_to_whole_clip(video: Path, capsys: pytest.CaptureFixture) -> None:
    """Every frame is reported; the state never grows; the last prediction is the whole clip's."""
    import numpy as np
    import torch

    from nas import load_arch
    from nas.data.transforms import center_crop, normalize, resize_short_side
    from nas.data.video import read_frames
    from nas.models import build_model

    assert main(["stream", "movinet-a0-stream", str(video), "--size", "32", "--frame-stride", "3",
                 "--topk", "2", "--json", "--seed", "5"]) == 0
    rows = [json.loads(line) for line in capsys.readouterr().out.splitlines()]
    assert [r["frame"] for r in rows] == list(range(1, 9))
    assert [r["source_frame"] for r in rows] == list(range(0, 24, 3))
    assert len({r["state_bytes"] for r in rows}) == 1 and rows[0]["state_bytes"] > 0
    # the same weights on the whole decoded clip give the same final top-2
    torch.manual_seed(5)
    model = build_model(load_arch("movinet-a0-stream")).eval()
    frames = read_frames(video, np.arange(0, 24, 3))
    clip = np.stack([center_crop(resize_short_side(f[None], 32), 32)[0] for f in frames])
    with torch.no_grad():
        probs = model(torch.from_numpy(normalize(clip))[None]).softmax(-1)[0]
    values, classes = probs.topk(2)
    assert [t["class"] for t in rows[-1]["topk"]] == classes.tolist()
    assert [t["prob"] for t in rows[-1]["topk"]] == pytest.approx(values.tolist(), abs=1e-5)


def test_stream_user_errors(video: Path, tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    assert main(["stream", "movinet-a0", str(video)]) == 2
    assert "arch: got 'movinet-a0'; allowed: a causal MoViNet" in capsys.readouterr().err
    bad = tmp_path / "bad.mp4"
    bad.write_bytes(b"not a video")
    assert main(["stream", "movinet-a0-stream", str(bad), "--size", "32"]) == 2
    assert "video: got" in capsys.readouterr().err
    assert main(["stream", "movinet-a0-stream", str(tmp_path / "missing.mp4")]) == 2
    assert "an existing video file" in capsys.readouterr().err


def test_stream_an_ensemble_of_causal_movinets(video: Path, tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    doc = tmp_path / "ens.yaml"
    doc.write_text("xnas: 1\nkind: architecture\nname: a0-stream-x2\nfamily: ensemble\nclasses: 600\n"
                   "clip: {frames: 10, frame_stride: 2, crop: 32}\nmembers: [movinet-a0-stream, movinet-a0-stream]\n")
    assert main(["stream", str(doc), str(video), "--json", "--topk", "1"]) == 0
    rows = [json.loads(line) for line in capsys.readouterr().out.splitlines()]
    assert [r["frame"] for r in rows] == list(range(1, 13))  # 24 source frames at the clip's stride 2
    assert len({r["state_bytes"] for r in rows}) == 1
