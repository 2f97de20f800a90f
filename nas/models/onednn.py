"""oneDNN's primitive cache, sized for training many small networks on CPU.

Every conv of a CPU training step runs through oneDNN *primitives*: its forward, its two backward
passes and the weight reorders around them, about 1400 for one step of a MoViNet-sized network in
``channels_last_3d`` at the proxy clips, up to 3000 for a TuNAS op warm-up step that runs every kernel.
oneDNN keeps the most recently used ``ONEDNN_PRIMITIVE_CACHE_CAPACITY`` of them (1024 by default) and
creates any other anew. A step that needs more distinct primitives than the cache holds misses on
*every* one of them, on every step (an LRU cache read in a cycle longer than itself), and pays their
creation each time, as if each step were the first: 0.18-0.23 s of a 0.6-0.9 s step of a random
MoViNet child at the default search clip (``ONEDNN_VERBOSE=profile_create``).

A larger cache is not free either: oneDNN evicts by scanning every entry for the oldest, so once the
cache is full each miss costs time linear in the capacity. 4096 holds one MoViNet-sized network's step (a
warm-up step's 3000 primitives included), so a stand-alone training never misses after its first
step: random MoViNet children trained 0.81x the time per step (1 thread, 17 px; children that fit in
1024 unchanged). A TuNAS search, which meets new paths, gains little: the default search (seed 0) took
728 s at 4096 against 773 s at 1024, a tie within this machine's drift, bit for bit the same
trajectory; 80 steps on uniform new paths ran 0.97 s a step at 4096 against 0.91 at 1024, and at 16384, 0.55-0.7 s until the cache filled
and 1-2.5 s after. Measured in ``experiments/bench_primitive_cache.py``,
``bench_primitive_cache_children.py`` and ``tunas/results/cache_search/`` (``experiments/tunas/README.md``).

The TuNAS search process is the exception: one supernet meets many paths, but they share layers, and
the whole ``movinet`` space holds about 7 000 distinct conv shapes at the search clip. The search
(:func:`nas.drivers.tunas.search.run_search`) raises the capacity to :data:`SEARCH_PRIMITIVE_CACHE_CAPACITY`
before its first conv, so every primitive it creates stays cached and the cache does not fill in one
search (no eviction scans). The default search ran in 0.74x the time (563 s against 761 s at 4096),
with the same trajectory bit for bit, and 0.32 GB more peak memory
(``experiments/tunas/results/cache_search_32k/``). A process that trains other networks
after a search keeps that capacity; a full cache there costs a scan per miss, paid only on each new
network's first step.

oneDNN reads the variable when it creates its first primitive, so it is set when :mod:`nas.models`
is imported, before any model runs; a value already in the environment is kept.
"""
from __future__ import annotations

import os

__all__ = ["PRIMITIVE_CACHE_CAPACITY", "SEARCH_PRIMITIVE_CACHE_CAPACITY", "size_primitive_cache"]

# A warm-up step (up to 3000 primitives) or two or three plain ones; each cached primitive holds about
# 17 kB (RSS grew 170 MB over 10 000 of them), so a full cache costs about 70 MB.
PRIMITIVE_CACHE_CAPACITY = 4096
# The TuNAS search process: the movinet space holds about 7 000 distinct conv shapes at the search clip
# (6 710 over 600 uniform paths; about 4 primitives each), so 32768 keeps every primitive a search
# creates and a path's layers met before cost no creation again; it does not fill in one search, so
# the eviction scan never runs. Measured: experiments/tunas/results/cache_search_32k/.
SEARCH_PRIMITIVE_CACHE_CAPACITY = 32768
_VARIABLE = "ONEDNN_PRIMITIVE_CACHE_CAPACITY"
_set_here: str | None = None  # the value this process's xnas put in the environment (None: none yet)


def size_primitive_cache(capacity: int = PRIMITIVE_CACHE_CAPACITY) -> int:
    """Set ``ONEDNN_PRIMITIVE_CACHE_CAPACITY`` to ``capacity`` unless the environment already sets it
    (a value this process's xnas set itself is replaced: the search raises the import-time default).

    Takes effect only before oneDNN creates its first primitive in this process (and in the processes
    it starts, which inherit the environment: Ray's local workers among them); later calls change the
    environment and nothing else.

    Returns:
        The capacity now in the environment.

    Raises:
        ValueError: if the environment's value is not a non-negative integer (oneDNN would ignore it).
    """
    global _set_here
    current = os.environ.get(_VARIABLE)
    if current is None or current == _set_here:
        os.environ[_VARIABLE] = _set_here = str(capacity)
    value = os.environ[_VARIABLE]
    if not value.strip().isdigit():
        raise ValueError(f"{_VARIABLE}: got {value!r}; allowed: an integer >= 0 "
                         f"(primitives oneDNN keeps; 0 turns its cache off; xnas's default {capacity})")
    return int(value)
