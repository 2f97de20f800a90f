"""oneDNN's primitive cache, sized for training many small networks on CPU.

Every conv of a CPU training step runs through oneDNN *primitives*: its forward, its two backward
passes and the weight reorders around them, about 1400 for one step of a MoViNet-sized network in
``channels_last_3d`` at the proxy clips. oneDNN keeps the most recently used
``ONEDNN_PRIMITIVE_CACHE_CAPACITY`` of them (1024 by default) and creates any other anew. A step that
needs more distinct primitives than the cache holds misses on *every* one of them, on every step (an
LRU cache read in a cycle longer than itself), so it pays their creation each time, as if each step
were the first: 0.18-0.23 s of a 0.6-0.9 s TuNAS supernet step at the default search clip
(``ONEDNN_VERBOSE=profile_create``). A TuNAS search also revisits the paths its policy narrows to,
whose primitives a larger cache still holds. ``experiments/bench_primitive_cache.py`` measures the
gain side by side (``experiments/results/primitive_cache.json``).

oneDNN reads the variable when it creates its first primitive, so it is set when :mod:`nas.models`
is imported, before any model runs; a value already in the environment is kept.
"""
from __future__ import annotations

import os

__all__ = ["PRIMITIVE_CACHE_CAPACITY", "size_primitive_cache"]

# Enough for about ten distinct MoViNet-sized training steps; each cached primitive holds about 17 kB
# (RSS grew 170 MB over 10 000 cached primitives), so a full cache costs under 300 MB.
PRIMITIVE_CACHE_CAPACITY = 16384


def size_primitive_cache(capacity: int = PRIMITIVE_CACHE_CAPACITY) -> int:
    """Set ``ONEDNN_PRIMITIVE_CACHE_CAPACITY`` to ``capacity`` unless the environment already sets it.

    Takes effect only before oneDNN creates its first primitive in this process (and in the processes
    it starts, which inherit the environment: Ray's local workers among them).

    Returns:
        The capacity now in the environment.
    """
    return int(os.environ.setdefault("ONEDNN_PRIMITIVE_CACHE_CAPACITY", str(capacity)))
