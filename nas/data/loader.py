"""Training batches from worker processes: the trainer's index batches, read ahead by a torch DataLoader.

The trainer decides *which* clips each step trains on (:func:`nas.train.batch_indices`: a permutation
per epoch, a function of the seed alone, so a resumed trial sees the batches it would have seen). This
module only decides *where* they are read: in the training process (``workers=0``) or in ``workers``
processes that prefetch ``prefetch`` batches each, so decoding, resizing and cropping real video overlap
the model's steps. Every item is a function of ``(seed, epoch, item)`` (:class:`nas.data.video.VideoClips`,
synthetic clips), so the batches are identical whatever the worker count: a loader setting never changes
a result.

Each batch key carries its epoch, and the dataset's epoch is set per item in whichever process reads it
(workers hold their own copy of the dataset, so a ``set_epoch`` in the trainer would not reach them):
real-video training draws new clips, crops and scales every epoch.
"""
from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import numpy as np

__all__ = ["EpochItems", "stack_items", "epoch_batches", "Batches"]


class EpochItems:
    """``dataset[(epoch, i)]``: item ``i`` of ``data`` as drawn in ``epoch`` (datasets without epochs
    ignore it). The first (only) view of a training clip: ``(T, H, W, 3)`` uint8 and its label."""

    def __init__(self, data: Any) -> None:
        self.data = data

    def __len__(self) -> int:
        return len(self.data)

    def __getitem__(self, key: tuple[int, int]) -> tuple[np.ndarray, int, dict[int, str]]:
        epoch, i = key
        set_epoch = getattr(self.data, "set_epoch", None)
        if set_epoch is not None and getattr(self.data, "epoch", None) != epoch:
            set_epoch(epoch)
        clips, label = self.data[i]
        unusable = getattr(self.data, "unusable", None)
        return clips[0], label, (unusable() if unusable is not None else {})


def stack_items(items: list[tuple[np.ndarray, int, dict[int, str]]]) -> tuple[np.ndarray, np.ndarray, dict[int, str]]:
    """Collate: ``(B, T, H, W, 3)`` uint8 clips, ``(B,)`` int64 labels (numpy: the trainer moves them) and
    the items the reading process has found undecodable so far."""
    unusable: dict[int, str] = {}
    for _, _, found in items:
        unusable.update(found)
    return np.stack([c for c, _, _ in items]), np.asarray([lab for _, lab, _ in items], dtype=np.int64), unusable


def epoch_batches(indices: Iterator[np.ndarray], n: int, batch_size: int, start_step: int) -> Iterator[list[tuple[int, int]]]:
    """Tag each index batch of :func:`nas.train.batch_indices` (started at ``start_step``) with its epoch."""
    per_epoch = max(1, n // batch_size)
    for step, batch in enumerate(indices, start_step):
        epoch = step // per_epoch
        yield [(epoch, int(i)) for i in batch]


class Batches:
    """An endless iterator of training batches ``(clips, labels)`` (numpy) for the given keys.

    Args:
        data: the training split (indexable ``(clips, label)``, optionally with ``set_epoch``).
        keys: batches of ``(epoch, item)`` keys, one per step (:func:`epoch_batches`).
        workers: reader processes (0: read in this process, one batch at a time, nothing ahead).
        prefetch: batches each worker reads ahead.

    Raises:
        ValueError: ``workers`` < 0 or ``prefetch`` < 1 (the message names the field).
    """

    def __init__(self, data: Any, keys: Iterator[list[tuple[int, int]]], *, workers: int = 0,
                 prefetch: int = 2) -> None:
        if not isinstance(workers, int) or workers < 0:
            raise ValueError(f"loader_workers: got {workers!r}; allowed: an integer >= 0 (0 reads in the "
                             "training process)")
        if not isinstance(prefetch, int) or prefetch < 1:
            raise ValueError(f"prefetch: got {prefetch!r}; allowed: an integer >= 1 (batches each worker reads ahead)")
        self.workers = workers
        self.data = data
        items = EpochItems(data)
        if workers == 0:
            self._it: Iterator[tuple[np.ndarray, np.ndarray, dict[int, str]]] = (
                stack_items([items[k] for k in batch]) for batch in keys)
            return
        import torch
        from torch.utils.data import DataLoader

        # the batch sampler is the trainer's endless key stream; the DataLoader pulls from it as far
        # ahead as its workers prefetch, in order, so the trainer sees the batches in step order. Its own
        # generator: seeding the workers must not draw from the global torch RNG the training uses.
        self._loader = DataLoader(items, batch_sampler=_KeyStream(keys), num_workers=workers,
                                  collate_fn=stack_items, prefetch_factor=prefetch, persistent_workers=False,
                                  generator=torch.Generator().manual_seed(0))
        self._it = iter(self._loader)

    def __iter__(self) -> "Batches":
        return self

    def __next__(self) -> tuple[np.ndarray, np.ndarray]:
        clips, labels, unusable = next(self._it)
        note = getattr(self.data, "note_unusable", None)
        if unusable and note is not None and self.workers:
            note(unusable)  # what the workers found, so the training process's report lists it
        return clips, labels

    def close(self) -> None:
        """Stop the worker processes (also done when the iterator is garbage-collected)."""
        shutdown = getattr(self._it, "_shutdown_workers", None)
        if shutdown is not None:
            shutdown()


class _KeyStream:
    """A batch sampler over an endless iterator (a DataLoader iterates it once)."""

    def __init__(self, keys: Iterator[list[tuple[int, int]]]) -> None:
        self.keys = keys

    def __iter__(self) -> Iterator[list[tuple[int, int]]]:
        return iter(self.keys)
