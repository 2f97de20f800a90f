"""The training input pipeline (issue 19): batches read ahead by worker processes are the batches the
training process would read itself, epoch by epoch, so a loader setting never changes a result."""
from __future__ import annotations

import numpy as np
import pytest

from nas import load_arch
from nas.data.loader import Batches, epoch_batches
from nas.proxy import Proxy
from nas.train import batch_indices, evaluate


class _EpochData:
    """Items that depend on the epoch, as real-video training clips do (scale, crop, clip start)."""

    num_classes = 3

    def __init__(self, n: int) -> None:
        self.n, self.epoch = n, 0

    def set_epoch(self, epoch: int) -> None:
        self.epoch = epoch

    def __len__(self) -> int:
        return self.n

    def __getitem__(self, i: int):
        clip = np.full((1, 2, 4, 4, 3), self.epoch * 20 + i, dtype=np.uint8)
        return clip, i % 3


def _take(workers: int, steps: int, start: int = 0):
    data = _EpochData(10)
    keys = epoch_batches(batch_indices(len(data), 4, seed=3, start_step=start), len(data), 4, start)
    loader = Batches(data, keys, workers=workers, prefetch=2)
    try:
        return [next(loader) for _ in range(steps)]
    finally:
        loader.close()


def test_worker_processes_deliver_the_training_processs_batches_in_step_order() -> None:
    inline, ahead = _take(0, 7), _take(2, 7)
    for (c0, l0), (c1, l1) in zip(inline, ahead):
        np.testing.assert_array_equal(c0, c1)
        np.testing.assert_array_equal(l0, l1)
    assert inline[0][0].shape == (4, 2, 4, 4, 3) and inline[0][1].dtype == np.int64
    # 10 items, batches of 4: 2 steps per epoch, so step 2 is the first of epoch 1 and draws new clips
    values = [int(c[0, 0, 0, 0, 0]) for c, _ in inline]
    assert [v // 20 for v in values] == [0, 0, 1, 1, 2, 2, 3]


def test_a_resumed_stream_continues_where_the_full_one_was() -> None:
    full, resumed = _take(0, 6), _take(1, 3, start=3)
    for (c0, _), (c1, _) in zip(full[3:], resumed):
        np.testing.assert_array_equal(c0, c1)


def test_bad_loader_settings_name_the_field() -> None:
    with pytest.raises(ValueError, match="loader_workers: got -1"):
        Batches(_EpochData(4), iter([]), workers=-1)
    with pytest.raises(ValueError, match="prefetch: got 0"):
        Batches(_EpochData(4), iter([]), workers=1, prefetch=0)


def test_a_trial_trains_the_same_with_a_reader_process() -> None:
    proxy = Proxy(steps=6, batch_size=4, size_scale=0.1, train_clips=16, val_clips=16, layout="channels_first",
                  checkpoint_every=0)
    arch = load_arch("x3d-xs")
    a = evaluate(arch, "synthetic", proxy, seed=1, progress=False)
    b = evaluate(arch, "synthetic", proxy, seed=1, progress=False, loader_workers=1)
    assert a.status == b.status == "ok"
    assert (a.top1, a.loss) == (b.top1, b.loss)


class _FlakyData(_EpochData):
    """Item 3 is undecodable: reading it records it (as VideoClips does) and serves the next item."""

    def __init__(self, n: int) -> None:
        super().__init__(n)
        self.bad: dict[int, str] = {}

    def unusable(self) -> dict[int, str]:
        return dict(self.bad)

    def note_unusable(self, found: dict[int, str]) -> None:
        self.bad.update(found)

    def __getitem__(self, i: int):
        if i == 3:
            self.bad[3] = "truncated"
            i = 4
        return super().__getitem__(i)


def test_what_a_reader_process_finds_undecodable_reaches_the_training_process() -> None:
    data = _FlakyData(6)
    loader = Batches(data, iter([[(0, 2), (0, 3)], [(0, 5), (0, 0)]]), workers=1)
    try:
        next(loader)
    finally:
        loader.close()
    assert data.unusable() == {3: "truncated"}  # found in the worker's copy, noted in this one
