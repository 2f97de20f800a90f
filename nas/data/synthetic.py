"""Procedural synthetic video tasks where temporal modelling matters (numpy only, no torch).

This is the toolkit's embedded default dataset: every clip is generated on the fly from an integer
seed, deterministically (about 1.5 ms for 16 x 64 x 64 and 6 ms for 16 x 160 x 160 on 2 CPU cores),
so proxy trainers need no download and no disk.

**Continuous time.** Every clip is one *event* defined on a fixed timeline of ``EVENT_FRAMES = 96``
*source* frames at ``SOURCE_FPS = 30`` (3.2 s; source frame ``t`` is at ``t / 30`` s). A model never
sees the timeline directly: :func:`render_clip` samples ``frames`` frames every ``frame_stride``
source frames from a start ``offset`` (the X3D convention, ``T x tau`` at 30 fps), and renders each
at ``crop`` x ``crop`` pixels with object sizes, positions and speeds given as fractions of the
crop. So each X3D axis changes what can be seen: the frame count and stride decide how much of the
event is covered and how finely (4 x 12 covers 37 source frames, 16 x 5 covers 76, 16 x 8 covers
all 96), and the crop decides the spatial detail (edges are anti-aliased analytically from a signed
distance, so small crops blur rather than alias). Sample times outside the event are clamped: frames
before or after it show the static first or last state.

**Tasks** (label ranges are disjoint in ``mixed``: 0-5, 6-13, 14-25):

* ``graded`` (6 classes, the proxy's default; pure temporal, *graded* difficulty): three identities
  (a red circle, a green square, a blue triangle) appear one at a time at one place; the class is
  their order, ``>``-joined (``red-circle>green-square>blue-triangle``, ... in ``permutations``
  order), as in ``event_order``. Two of a clip's identities are event_order's objects; the third, the
  clip's *hard* identity, is drawn at the clip's own level ``d``, uniform in ``[0, difficulty]``
  (``difficulty=1`` by default): its duration goes from 16-20 down to 3 source frames, its radius from
  0.10-0.15 down to 0.05 of the crop, its saturation from 1 down to 0.25 (nearly grey), and it brings
  a companion (a notched object of any hue elsewhere, during its segment) with probability ``d / 2``.
  The objects keep event_order's spread over the timeline (a brief object leaves a longer gap). So
  every network that sees the two easy identities learns as fast as on ``event_order`` and is right on
  at least a third of what it sees, and each X3D axis pays off on the clips whose hard identity it
  resolves: a longer span sees more of the event (X-Temporal), a finer stride catches a brief object
  (X-Fast), a larger crop a small or grey one (X-Spatial), capacity tells it from its companion.
  Rendering costs about 2 ms a clip at 17-64 px and 6 ms at 160 px.
* ``event_order`` (6 classes, pure temporal): a red, a green and a blue object appear one at a time
  at one place; the class is the colour order, in ``itertools.permutations`` order:
  ``red-green-blue, red-blue-green, green-red-blue, green-blue-red, blue-red-green, blue-green-red``.
  Each colour keeps its own shape, size, angle, colour jitter and duration (16-20 source frames, >=
  ``MIN_SEGMENT = 16``, so any stride <= 16 that spans the event samples every object), whatever the
  order. Objects are 2-6 blank frames apart, after a blank lead-in and before a blank lead-out of
  >= 8 frames each (the objects occupy 52-72 of the 96 source frames: 4 x 12 sees about half of
  that, 16 x 5 nearly all).
* ``chiral_motion`` (8 classes, pure temporal) in 4 time-reversal pairs: ``move-right/move-left,
  move-down/move-up, rotate-ccw/rotate-cw, grow/shrink``. Objects are notched (circle, square or
  triangle with a bite out of one side), so rotation is visible and they never look like
  ``shape_direction`` objects in ``mixed``.
* ``shape_direction`` (12 classes, appearance + motion): ``{circle, square, triangle} x {right,
  left, down, up}``, label ``4 * shape + direction``; right/left and down/up are reversal pairs.

**Invariants the design guarantees** (and tests/test_synthetic.py checks):

* All nuisances (background level and texture, object colour, size, angle, start position, speed,
  segment and gap lengths, the random offset) are drawn from ``seed`` alone, never from the label,
  so ``render_clip(task, a, s, ...)`` and ``render_clip(task, b, s, ...)`` share one nuisance draw.
* Reversal pairs: with ``offset=None``, ``render_clip(task, 2k + 1, s, ...)`` equals
  ``render_clip(task, 2k, s, ...)[::-1]`` exactly (the odd class samples the mirrored offset
  ``lo + hi - o``; see :func:`offset_range`). So the multiset of frames carries no label
  information within a pair.
* ``event_order`` and ``graded``: at ``frames=EVENT_FRAMES, frame_stride=1, offset=0`` the six classes of one seed
  are permutations of the same multiset of frames (a colour keeps its duration and appearance; only
  the order of the segments changes). Strided clips keep it up to where samples fall (+-1 frame
  per object), and the blank margins keep windows shorter than the event from cutting the first or
  last object more than the middle one (a colour-count probe at 16 x 5 stays at chance).
* Frame-average (any order-invariant) classifiers are therefore capped at ``ORDERLESS_CEILING``:
  chance (1/6) on ``graded`` and ``event_order``, the pair (1/2) on ``chiral_motion``, shape and axis (1/2) on
  ``shape_direction``, and 11/26 on ``mixed``. A single frame shows no label beyond that, except
  through *where* it falls in the clip (an object left of centre in frame 0 hints "move-right"),
  which is temporal information.

Unlike data.md §2's note, the ``shape_direction`` ceiling is 1/2, not 1/4: an average frame shows a
horizontal or vertical streak, so it finds the axis as well as the shape.
"""
from __future__ import annotations

import itertools
import math
import struct
import zlib
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path

import numpy as np

__all__ = [
    "DEFAULT_TASK", "EVENT_FRAMES", "MIN_SEGMENT", "ORDERLESS_CEILING", "SOURCE_FPS", "TASKS", "SyntheticVideo",
    "class_names", "contact_sheet", "num_classes", "offset_range", "render_clip", "sample_times", "write_png",
]

EVENT_FRAMES = 96
SOURCE_FPS = 30
MIN_SEGMENT = 16
_MARGIN = 8          # event_order: least blank lead-in / lead-out, source frames
TASKS = ("graded", "event_order", "chiral_motion", "shape_direction", "mixed")
DEFAULT_TASK = "graded"

_COLOUR_NAMES = ("red", "green", "blue")
_ORDERS = tuple(itertools.permutations(range(3)))
_SHAPES = ("circle", "square", "triangle")
_DIRECTIONS = ("right", "left", "down", "up")
_CLASS_NAMES: dict[str, tuple[str, ...]] = {
    "event_order": tuple("-".join(_COLOUR_NAMES[c] for c in order) for order in _ORDERS),
    "chiral_motion": ("move-right", "move-left", "move-down", "move-up",
                      "rotate-ccw", "rotate-cw", "grow", "shrink"),
    "shape_direction": tuple(f"{s}-{d}" for s in _SHAPES for d in _DIRECTIONS),
}
_SUBTASKS = ("event_order", "chiral_motion", "shape_direction")
_IDENTITIES = ("red-circle", "green-square", "blue-triangle")
_CLASS_NAMES["graded"] = tuple(">".join(_IDENTITIES[i] for i in order) for order in _ORDERS)
_CLASS_NAMES["mixed"] = tuple(f"{t}/{n}" for t in _SUBTASKS for n in _CLASS_NAMES[t])

ORDERLESS_CEILING = {"graded": 1 / 6, "event_order": 1 / 6, "chiral_motion": 1 / 2, "shape_direction": 1 / 2,
                     "mixed": (6 * (1 / 6) + 8 * (1 / 2) + 12 * (1 / 2)) / 26}

# Shape geometry relative to the object's size r (the radius of the equal-area circle), so size
# alone never tells shapes apart: square half-side sqrt(pi)/2 r, triangle inradius 0.778 r.
_HALF_SIDE = math.sqrt(math.pi) / 2
_INRADIUS = math.sqrt(math.pi / (3 * math.sqrt(3)))
_NOTCH = 0.45
# Farthest point of any shape from its centre (the triangle's circumradius, 2 x inradius); placement
# uses it for every shape so positions never depend on the shape (a label in shape_direction).
_EXTENT = 2 * _INRADIUS
_SQRT3_2 = math.sqrt(3) / 2

# Base colours of event_order; each clip jitters them by up to +-_COLOUR_JITTER per channel.
_RGB = np.array([[0.92, 0.12, 0.10], [0.10, 0.78, 0.16], [0.12, 0.28, 0.95]])
_COLOUR_JITTER = 0.06


def _fail(name: str, value: object, allowed: str) -> ValueError:
    return ValueError(f"{name}: got {value!r}; allowed: {allowed}")


def _check_int(name: str, value: object, low: int, high: int | None = None) -> int:
    ok = isinstance(value, (int, np.integer)) and not isinstance(value, bool)
    if not ok or value < low or (high is not None and value > high):
        span = f"an integer >= {low}" if high is None else f"an integer in [{low}, {high}]"
        raise _fail(name, value, span)
    return int(value)


def _check_task(task: object) -> str:
    if task not in TASKS:
        raise _fail("task", task, "one of " + ", ".join(TASKS))
    return task  # type: ignore[return-value]


def class_names(task: str = "mixed") -> tuple[str, ...]:
    """The class names of ``task``, indexed by label (``mixed`` names are ``subtask/name``).

    Raises:
        ValueError: ``task`` is not one of :data:`TASKS`.
    """
    return _CLASS_NAMES[_check_task(task)]


def num_classes(task: str = "mixed") -> int:
    """Number of classes of ``task`` (6, 8, 12 or 26 for ``mixed``)."""
    return len(class_names(task))


def offset_range(frames: int, frame_stride: int) -> tuple[int, int]:
    """The valid start offsets ``(lo, hi)``, inclusive, of a clip of ``frames`` x ``frame_stride``.

    The clip spans ``span = (frames - 1) * frame_stride + 1`` source frames. If it fits in the event,
    ``(0, EVENT_FRAMES - span)``: every start keeps it inside. If it is longer, ``(EVENT_FRAMES - span,
    0)``: every start keeps the whole event inside it. Either way ``lo + hi = EVENT_FRAMES - span``,
    so ``o -> lo + hi - o`` mirrors a clip in time.

    Raises:
        ValueError: ``frames`` or ``frame_stride`` is not a positive integer.
    """
    frames = _check_int("frames", frames, 1)
    frame_stride = _check_int("frame_stride", frame_stride, 1)
    slack = EVENT_FRAMES - ((frames - 1) * frame_stride + 1)
    return min(0, slack), max(0, slack)


def sample_times(frames: int, frame_stride: int, offset: int) -> np.ndarray:
    """Source-frame indices a clip shows: ``offset + k * frame_stride`` clamped to the event.

    Returns:
        int64 array of shape ``(frames,)`` with values in ``[0, EVENT_FRAMES - 1]``.
    """
    frames = _check_int("frames", frames, 1)
    frame_stride = _check_int("frame_stride", frame_stride, 1)
    times = int(offset) + frame_stride * np.arange(frames, dtype=np.int64)
    return np.clip(times, 0, EVENT_FRAMES - 1)


# --------------------------------------------------------------------------------------------
# Timelines: the state of the scene at every source frame, computed once per clip on the 96-frame
# grid and then indexed by the sample times. Computing trig on the grid (not on the sampled frames)
# keeps a frame's pixels a function of its source time alone, which is what makes reversal exact.


@dataclass(frozen=True)
class _Timeline:
    cx: np.ndarray       # (EVENT_FRAMES,) object centre, fraction of the crop (x to the right)
    cy: np.ndarray       # (EVENT_FRAMES,) object centre (y downwards)
    r: np.ndarray        # (EVENT_FRAMES,) equal-area radius
    cos: np.ndarray      # (EVENT_FRAMES,) cos / sin of the angle (counter-clockwise on screen)
    sin: np.ndarray
    shape: np.ndarray    # (EVENT_FRAMES,) index into _SHAPES
    visible: np.ndarray  # (EVENT_FRAMES,) bool
    colour: np.ndarray   # (EVENT_FRAMES, 3) RGB in [0, 1]
    notched: bool

    def reversed(self) -> _Timeline:
        return _Timeline(self.cx[::-1], self.cy[::-1], self.r[::-1], self.cos[::-1], self.sin[::-1],
                         self.shape[::-1], self.visible[::-1], self.colour[::-1], self.notched)


def _timeline(cx, cy, r, angle, shape, visible, colour, notched: bool) -> _Timeline:
    def grid(x, dtype=np.float32) -> np.ndarray:
        return np.ascontiguousarray(np.broadcast_to(np.asarray(x), (EVENT_FRAMES,)), dtype=dtype)

    angle = grid(angle, np.float64)
    colour = np.ascontiguousarray(np.broadcast_to(colour, (EVENT_FRAMES, 3)), dtype=np.float32)
    return _Timeline(grid(cx), grid(cy), grid(r), grid(np.cos(angle)), grid(np.sin(angle)),
                     grid(shape, np.int64), grid(visible, bool), colour, notched)


def _hsv_colour(rng: np.random.Generator) -> np.ndarray:
    """A saturated, bright colour of random hue (the colour jitter of the non-colour-coded tasks)."""
    h, s, v = rng.random(), rng.uniform(0.5, 0.9), rng.uniform(0.8, 1.0)
    k = (np.array([5.0, 3.0, 1.0]) + 6 * h) % 6
    return v - v * s * np.clip(np.minimum(k, 4 - k), 0, 1)


def _event_order(rng: np.random.Generator, label: int) -> _Timeline:
    # Everything attached to a colour (duration, shape, size, angle, jitter) is drawn per colour, so
    # reordering the colours permutes the frames without changing them.
    lengths = rng.integers(MIN_SEGMENT, MIN_SEGMENT + 5, size=3)  # 16..20 source frames each
    shapes = rng.integers(0, 3, size=3)
    sizes = rng.uniform(0.10, 0.15, size=3)
    angles = rng.uniform(0, 2 * np.pi, size=3)
    colours = np.clip(_RGB + rng.uniform(-_COLOUR_JITTER, _COLOUR_JITTER, size=(3, 3)), 0, 1)
    # Blank gaps: 2-6 frames between objects; the rest is a lead-in and a lead-out of >= _MARGIN.
    # Blank first and last states mean the clamped frames outside the event favour no colour, and
    # wide margins mean a window shorter than the event mostly cuts blanks, not the first or last
    # object (whose shortened count would tell an orderless model which colour came in the middle).
    inner = rng.integers(2, 7, size=2)
    margins = EVENT_FRAMES - int(lengths.sum()) - int(inner.sum())  # 24..44
    lead = rng.integers(_MARGIN, margins - _MARGIN + 1)
    gaps = [lead, *inner, margins - lead]
    e = _EXTENT * sizes.max()
    cx, cy = rng.uniform(e, 1 - e, size=2)

    idx = np.full(EVENT_FRAMES, -1)
    t = int(gaps[0])
    for slot, c in enumerate(_ORDERS[label]):
        idx[t:t + lengths[c]] = c
        t += int(lengths[c] + gaps[slot + 1])
    on = idx >= 0
    c = np.where(on, idx, 0)
    return _timeline(cx, cy, sizes[c], angles[c], shapes[c], on, colours[c], notched=False)


def _path(rng: np.random.Generator, size: float) -> tuple[float, float, float]:
    """A straight path: start ``a`` and length ``d`` along the axis, position ``c`` across it."""
    e = _EXTENT * size
    d = rng.uniform(0.30, 0.50)                                    # 0.0032-0.0053 crop per source frame
    return rng.uniform(e, 1 - e - d), d, rng.uniform(e, 1 - e)


def _chiral_motion(rng: np.random.Generator, label: int) -> _Timeline:
    u = np.arange(EVENT_FRAMES) / (EVENT_FRAMES - 1)              # event time in [0, 1]
    shape, colour, angle0 = rng.integers(0, 3), _hsv_colour(rng), rng.uniform(0, 2 * np.pi)
    size = rng.uniform(0.09, 0.13)
    a, d, c = _path(rng, size)
    turn = rng.uniform(np.pi / 2, np.pi)                           # total rotation over the event
    p, q = rng.uniform(_EXTENT * size, 1 - _EXTENT * size, size=2)
    r0, growth = rng.uniform(0.065, 0.09), rng.uniform(1.7, 2.1)
    g0, g1 = rng.uniform(_EXTENT * r0 * growth, 1 - _EXTENT * r0 * growth, size=2)

    pair = label // 2
    if pair == 0:
        tl = _timeline(a + d * u, c, size, angle0, shape, True, colour, notched=True)
    elif pair == 1:
        tl = _timeline(c, a + d * u, size, angle0, shape, True, colour, notched=True)
    elif pair == 2:
        tl = _timeline(p, q, size, angle0 + turn * u, shape, True, colour, notched=True)
    else:
        tl = _timeline(g0, g1, r0 * growth ** u, angle0, shape, True, colour, notched=True)
    return tl.reversed() if label % 2 else tl


def _shape_direction(rng: np.random.Generator, label: int) -> _Timeline:
    u = np.arange(EVENT_FRAMES) / (EVENT_FRAMES - 1)
    colour, angle0, size = _hsv_colour(rng), rng.uniform(0, 2 * np.pi), rng.uniform(0.09, 0.13)
    a, d, c = _path(rng, size)
    shape, direction = divmod(label, 4)
    # down is right with the path transposed, so the four directions share one nuisance draw
    cx, cy = (a + d * u, c) if direction < 2 else (c, a + d * u)
    tl = _timeline(cx, cy, size, angle0, shape, True, colour, notched=False)
    return tl.reversed() if direction % 2 else tl


# graded: two of the three identities of a clip are event_order's (16-20 source frames, radius
# 0.10-0.15, saturated); the third, the clip's *hard* one, is drawn at the clip's level d: its
# duration, size and saturation reach d of the way to these hard ends, and it brings a companion with
# probability d / 2. Durations and sizes are log-uniform.
_GRADED_BRIEFEST = 3                             # source frames the hard identity stays visible, at level 1
_GRADED_SMALLEST = 0.05                          # its equal-area radius, fraction of the crop, at level 1
_GRADED_LEAST_SATURATION = 0.25                  # colour = grey + s (hue - grey): at 0.25 it nearly merges with grey
_GRADED_GREY = 0.75


def _lerp_log(rng: np.random.Generator, easy: tuple[float, float], hard: float, level: float) -> float:
    """A log-uniform draw in ``easy`` = (lo, hi) with its lower end moved ``level`` of the way to ``hard``."""
    lo = easy[0] * (hard / easy[0]) ** level
    return float(np.exp(rng.uniform(math.log(lo), math.log(easy[1]))))


def _graded(rng: np.random.Generator, label: int, difficulty: float = 1.0) -> list[_Timeline]:
    """The layers of one ``graded`` clip: the three identities (at one place, as in ``event_order``) and
    the hard one's companion. Everything is drawn per identity in identity order before the label is
    used; the label only decides which identity fills which time slot, so the classes of one seed
    permute the same segments.

    Each clip draws its level ``d`` uniformly in ``[0, difficulty]`` and which identity is hard. The two
    easy identities always show their order, so every network that sees them learns as fast as on
    ``event_order``, and is then right on at least a third of the clips it cannot resolve fully; where
    the hard identity fits is what grades networks: a coarse stride misses it when it is brief
    (X-Fast), a low crop loses it when it is small or grey (X-Spatial), its companion (a notched object
    of any hue elsewhere, during its segment) is a distractor (capacity). The objects keep event_order's
    spread over the timeline whatever their durations (a brief object leaves a longer gap), so a short
    clip sees part of every event (X-Temporal).
    """
    d = difficulty * rng.random()
    hard = int(rng.integers(0, 3))
    level = [d if i == hard else 0.0 for i in range(3)]
    lengths = np.array([max(1, round(_lerp_log(rng, (MIN_SEGMENT, MIN_SEGMENT + 4), _GRADED_BRIEFEST, v)))
                        for v in level])
    sizes = np.array([_lerp_log(rng, (0.10, 0.15), _GRADED_SMALLEST, v) for v in level])
    angles = rng.uniform(0, 2 * np.pi, size=3)
    e = _EXTENT * sizes.max()
    cx, cy = rng.uniform(e, 1 - e, size=2)
    saturation = np.array([rng.uniform(1 - (1 - _GRADED_LEAST_SATURATION) * v, 1.0) for v in level])
    hues = np.clip(_RGB + rng.uniform(-_COLOUR_JITTER, _COLOUR_JITTER, size=(3, 3)), 0, 1)
    colours = _GRADED_GREY + saturation[:, None] * (hues - _GRADED_GREY)
    companion = _clutter_object(rng, d) if rng.random() < d / 2 else None
    # event_order's layout: 2-6 blank frames between objects plus what a brief object leaves of 18
    # frames, so the event keeps its extent; a blank lead-in and lead-out of >= _MARGIN each
    inner = rng.integers(2, 7, size=2)
    spare = max(0, 3 * (MIN_SEGMENT + 2) - int(lengths.sum()))
    inner = inner + np.floor(rng.dirichlet(np.ones(2)) * spare).astype(int)
    margins = EVENT_FRAMES - int(lengths.sum()) - int(inner.sum())
    lead = int(rng.integers(_MARGIN, margins - _MARGIN + 1))
    gaps = [lead, *inner]

    visible = np.zeros((3, EVENT_FRAMES), bool)
    t = 0
    for slot, identity in enumerate(_ORDERS[label]):
        t += int(gaps[slot])
        visible[identity, t:t + lengths[identity]] = True
        t += int(lengths[identity])
    layers = [_timeline(cx, cy, sizes[i], angles[i], i, visible[i], colours[i], notched=False) for i in range(3)]
    if companion is not None:
        x, y, r, a, shape, colour = companion
        layers.append(_timeline(x, y, r, a, shape, visible[hard], colour, notched=True))
    return layers


def _clutter_object(rng: np.random.Generator, level: float) -> tuple:
    """A notched object of random hue, size, place and angle: ``(cx, cy, r, angle, shape, colour)``."""
    r = _lerp_log(rng, (0.10, 0.15), _GRADED_SMALLEST, level)
    cx, cy = rng.uniform(_EXTENT * r, 1 - _EXTENT * r, size=2)
    return cx, cy, r, rng.uniform(0, 2 * np.pi), int(rng.integers(0, 3)), _hsv_colour(rng)


_BUILDERS = {"event_order": _event_order, "chiral_motion": _chiral_motion, "shape_direction": _shape_direction}
_STREAM = {name: i for i, name in enumerate(_SUBTASKS)}
_STREAM["graded"] = len(_SUBTASKS)


# --------------------------------------------------------------------------------------------
# Rendering


@lru_cache(maxsize=32)
def _pixel_centres(crop: int) -> np.ndarray:
    return ((np.arange(crop) + 0.5) / crop).astype(np.float32)


@lru_cache(maxsize=32)
def _upsampler(crop: int, n: int) -> np.ndarray:
    """(crop, n) bilinear weights taking an n-point grid over [0, 1] to the crop's pixel centres."""
    pos = np.clip(_pixel_centres(crop).astype(np.float64) * (n - 1), 0, n - 1)
    lo = np.minimum(np.floor(pos).astype(int), n - 2)
    w = np.zeros((crop, n))
    w[np.arange(crop), lo] = 1 - (pos - lo)
    w[np.arange(crop), lo + 1] = pos - lo
    return w


def _background(rng: np.random.Generator, crop: int) -> np.ndarray:
    """Grey level + tint + smooth texture (drawn on a 6 x 6 grid, so crop-independent) + fine grain."""
    level = rng.uniform(0.15, 0.45) + rng.uniform(-0.04, 0.04, size=3)
    texture = rng.normal(0, 0.05, size=(6, 6, 1)) + rng.normal(0, 0.015, size=(6, 6, 3))
    w = _upsampler(crop, 6)
    rows = np.einsum("hi,ijc->chj", w, texture)                     # upsample down the columns,
    smooth = (rows @ w.T).transpose(1, 2, 0)                        # then along the rows (BLAS)
    grain = rng.standard_normal(size=(crop, crop, 1), dtype=np.float32) * 0.015
    return np.clip(level + smooth + grain, 0, 1).astype(np.float32)


def _signed_distance(tl: _Timeline, t: np.ndarray, shape: int, dx: np.ndarray, dy: np.ndarray) -> np.ndarray:
    """Signed distance (fraction of the crop; negative inside) to the edge of ``shape`` at times ``t``.

    ``dx`` (n, 1, B) and ``dy`` (n, B, 1) are pixel offsets from the centre, x right and y up. Square
    and triangle use the max of their edges' half-plane distances: exact inside and along the edges,
    slightly short outside the corners, which only matters within a pixel of them.
    """
    def col(a: np.ndarray) -> np.ndarray:                          # per-frame scalar, broadcastable
        return a[t][:, None, None]

    r = col(tl.r)
    if shape == 0 and not tl.notched:
        return np.sqrt(dx * dx + dy * dy) - r                      # a circle needs no rotation
    c, s = col(tl.cos), col(tl.sin)
    u = c * dx + s * dy                                            # rotate into the object's frame
    v = c * dy - s * dx
    if shape == 0:
        edge = r
        dist = np.sqrt(u * u + v * v) - r
    elif shape == 1:
        edge = _HALF_SIDE * r
        dist = np.maximum(np.abs(u), np.abs(v)) - edge
    else:                                                          # edge normals at 0, 120, 240 degrees
        edge = _INRADIUS * r
        hu, hv = 0.5 * u, _SQRT3_2 * v
        dist = np.maximum(u, np.maximum(hv - hu, -hu - hv)) - edge
    if tl.notched:                                                 # bite a disc out of the edge at angle 0
        du = u - edge
        dist = np.maximum(dist, _NOTCH * r - np.sqrt(du * du + v * v))
    return dist


def _composite(layers: list[_Timeline], times: np.ndarray, background: np.ndarray) -> np.ndarray:
    """Draw the objects of ``layers`` (first is bottom) over ``background`` at each of ``times``:
    uint8 (T, crop, crop, 3).

    Coverage is ``clip(0.5 - distance / pixel, 0, 1)``, a one-pixel linear ramp across the edge
    (analytic anti-aliasing, no supersampling). It is only evaluated in a per-frame box around the
    object (all boxes of a shape the same size, so frames stay vectorised); outside it is exactly 0.
    Blending happens on a float canvas, rounded once at the end.
    """
    # +0.5 folded into both blend ends, so the uint8 cast (truncation) rounds to nearest
    bg = background * 255 + 0.5
    canvas = np.broadcast_to(bg, (len(times),) + bg.shape).copy()
    for tl in layers:
        _draw(tl, times, canvas)
    return canvas.astype(np.uint8)


def _draw(tl: _Timeline, times: np.ndarray, canvas: np.ndarray) -> None:
    """Blend one object into ``canvas`` (float (T, crop, crop, 3), in place) at each of ``times``."""
    crop = canvas.shape[1]
    xs = _pixel_centres(crop)
    shapes = tl.shape[times]
    for shape in range(len(_SHAPES)):
        k = np.nonzero(tl.visible[times] & (shapes == shape))[0]
        if not len(k):
            continue
        t = times[k]
        # support radius in pixels: farthest shape point, +1 px for the ramp and the corner slack
        reach = _EXTENT * tl.r[t] * crop + 1
        box = min(crop, int(np.ceil(2 * reach.max())) + 4)
        x0 = np.clip(np.floor(tl.cx[t] * crop - reach).astype(np.int64) - 1, 0, crop - box)
        y0 = np.clip(np.floor(tl.cy[t] * crop - reach).astype(np.int64) - 1, 0, crop - box)
        cols = x0[:, None, None] + np.arange(box)[None, None, :]   # (n, 1, B)
        rows = y0[:, None, None] + np.arange(box)[None, :, None]   # (n, B, 1)
        dx = xs[cols] - tl.cx[t][:, None, None]
        dy = tl.cy[t][:, None, None] - xs[rows]                    # y up
        alpha = np.clip(0.5 - _signed_distance(tl, t, shape, dx, dy) * crop, 0, 1)[..., None]
        index = (k[:, None, None], rows, cols)
        under = canvas[index]                                      # (n, B, B, 3)
        fg = tl.colour[t][:, None, None, :] * 255 + 0.5
        canvas[index] = under + alpha * (fg - under)


def render_clip(task: str, label: int, seed: int, frames: int, frame_stride: int, crop: int,
                *, offset: int | None = None, difficulty: float = 1.0) -> np.ndarray:
    """Render one clip of ``task`` / ``label`` from nuisance draw ``seed``.

    Args:
        task: one of :data:`TASKS`.
        label: class index in ``[0, num_classes(task))``.
        seed: non-negative integer; with the task it fixes every nuisance and the random offset.
        frames: number of frames ``T`` to sample.
        frame_stride: source frames between samples (``tau``, at ``SOURCE_FPS``).
        crop: output height and width in pixels (8 to 1024).
        offset: source frame of the first sample, in :func:`offset_range`; ``None`` draws it from
            ``seed`` (mirrored for the odd class of a reversal pair, so the pair is exactly reversed).
        difficulty: ``graded`` only: how far each nuisance range reaches from its easy end (0: long,
            large, saturated objects and no clutter; 1, the default: the ranges of the module docstring).

    Returns:
        uint8 array ``(frames, crop, crop, 3)``.

    Raises:
        ValueError: an argument is out of range (the message names it and what is allowed).
    """
    task = _check_task(task)
    label = _check_int("label", label, 0, num_classes(task) - 1)
    seed = _check_int("seed", seed, 0)
    crop = _check_int("crop", crop, 8, 1024)
    difficulty = _check_difficulty(difficulty)
    lo, hi = offset_range(frames, frame_stride)
    sub = task
    if task == "mixed":
        for sub in _SUBTASKS:                                      # labels run 0-5, 6-13, 14-25
            if label < num_classes(sub):
                break
            label -= num_classes(sub)
    reversed_class = sub not in ("event_order", "graded") and label % 2 == 1
    if offset is None:
        draw = np.random.default_rng([seed, _STREAM[sub], 1])
        offset = lo + min(int(draw.random() * (hi - lo + 1)), hi - lo)
        if reversed_class:
            offset = lo + hi - offset
    else:
        offset = _check_int("offset", offset, lo, hi)

    nuisance = np.random.default_rng([seed, _STREAM[sub], 0])
    layers = _graded(nuisance, label, difficulty) if sub == "graded" else [_BUILDERS[sub](nuisance, label)]
    background = _background(np.random.default_rng([seed, _STREAM[sub], 2]), crop)
    return _composite(layers, sample_times(frames, frame_stride, offset), background)


def _check_difficulty(value: object) -> float:
    ok = isinstance(value, (int, float, np.floating)) and not isinstance(value, bool) and 0 <= value <= 1
    if not ok:
        raise _fail("difficulty", value, "a number in [0, 1]")
    return float(value)


# --------------------------------------------------------------------------------------------
# Dataset


_SPLITS = ("train", "val")


class SyntheticVideo:
    """A deterministic synthetic video dataset: ``dataset[i] -> (clip, label)``, no torch needed.

    Item ``i`` renders the nuisance draw ``clip_seed = ((2 * seed + split) << 32) + i`` (``split`` 0
    for train, 1 for val), so train and val never share a draw, and the same item shows the same
    event at every ``frames``, ``frame_stride`` and ``crop``. Labels are balanced: every block of
    ``num_classes`` consecutive items holds each class once, in an order drawn from ``(seed, split,
    block)``.

    Args:
        task: one of :data:`TASKS` (default ``mixed``, 26 classes).
        split: ``train`` or ``val``.
        size: number of items.
        frames: frames per clip.
        frame_stride: source frames between samples.
        crop: height and width in pixels.
        seed: dataset seed (non-negative).
        difficulty: ``graded`` only, see :func:`render_clip`.

    Raises:
        ValueError: an argument is out of range.
    """

    def __init__(self, task: str = "mixed", split: str = "train", size: int = 1000, frames: int = 16,
                 frame_stride: int = 5, crop: int = 64, seed: int = 0, difficulty: float = 1.0) -> None:
        self.task = _check_task(task)
        self.difficulty = _check_difficulty(difficulty)
        if split not in _SPLITS:
            raise _fail("split", split, "'train' or 'val'")
        self.split = split
        self.size = _check_int("size", size, 1, 2**32)
        offset_range(frames, frame_stride)                         # validates both
        self.frames, self.frame_stride = int(frames), int(frame_stride)
        self.crop = _check_int("crop", crop, 8, 1024)
        self.seed = _check_int("seed", seed, 0)

    @property
    def num_classes(self) -> int:
        """Number of classes of the task."""
        return num_classes(self.task)

    @property
    def class_names(self) -> tuple[str, ...]:
        """Class names, indexed by label."""
        return class_names(self.task)

    def __len__(self) -> int:
        return self.size

    def clip_seed(self, i: int) -> int:
        """The nuisance seed item ``i`` is rendered from."""
        return ((2 * self.seed + _SPLITS.index(self.split)) << 32) + self._index(i)

    def label(self, i: int) -> int:
        """The label of item ``i`` (cheap: renders nothing)."""
        i = self._index(i)
        block, slot = divmod(i, self.num_classes)
        order = np.random.default_rng([self.seed, _SPLITS.index(self.split), block, 7]).permutation(self.num_classes)
        return int(order[slot])

    @property
    def labels(self) -> np.ndarray:
        """Labels of all items, int64 ``(size,)``."""
        return np.array([self.label(i) for i in range(self.size)], dtype=np.int64)

    def __getitem__(self, i: int) -> tuple[np.ndarray, int]:
        label = self.label(i)
        clip = render_clip(self.task, label, self.clip_seed(i), self.frames, self.frame_stride, self.crop,
                           difficulty=self.difficulty)
        return clip, label

    def _index(self, i: int) -> int:
        if not isinstance(i, (int, np.integer)) or isinstance(i, bool):
            raise TypeError(f"index: got {i!r}; allowed: an integer")
        if not -self.size <= i < self.size:
            raise IndexError(f"index: got {i}; allowed: -{self.size} <= index < {self.size}")
        return int(i) % self.size

    def __repr__(self) -> str:
        return (f"SyntheticVideo(task={self.task!r}, split={self.split!r}, size={self.size}, frames={self.frames}, "
                f"frame_stride={self.frame_stride}, crop={self.crop}, seed={self.seed}, difficulty={self.difficulty})")


# --------------------------------------------------------------------------------------------
# Looking at it


def write_png(path: str | Path, image: np.ndarray) -> Path:
    """Write a uint8 ``(H, W, 3)`` RGB or ``(H, W)`` grey image as a PNG (zlib + struct, no PIL).

    Raises:
        ValueError: ``image`` is not a uint8 array of one of those shapes.
    """
    image = np.asarray(image)
    if image.dtype != np.uint8 or not (image.ndim == 2 or (image.ndim == 3 and image.shape[2] == 3)):
        raise _fail("image", f"{image.dtype} array of shape {image.shape}", "uint8 (H, W, 3) or (H, W)")
    h, w = image.shape[:2]
    colour_type = 2 if image.ndim == 3 else 0

    def chunk(kind: bytes, data: bytes) -> bytes:
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))

    # every scanline starts with filter byte 0 (none)
    rows = np.concatenate([np.zeros((h, 1), np.uint8), image.reshape(h, -1)], axis=1)
    png = (b"\x89PNG\r\n\x1a\n"
           + chunk(b"IHDR", struct.pack(">IIBBBBB", w, h, 8, colour_type, 0, 0, 0))
           + chunk(b"IDAT", zlib.compress(rows.tobytes(), 6))
           + chunk(b"IEND", b""))
    path = Path(path)
    path.write_bytes(png)
    return path


def contact_sheet(task: str, path: str | Path, frames: int = 8, crop: int = 64, seed: int = 0) -> Path:
    """Write a PNG grid of ``task``: one row per class (label order), ``frames`` columns.

    The stride is chosen so the clip spans the whole event, and every row uses the same ``seed``, so
    rows differ only by class (reversal pairs are mirror images in time).

    Returns:
        The path written.
    """
    frames = _check_int("frames", frames, 2, 64)
    stride = math.ceil((EVENT_FRAMES - 1) / (frames - 1))
    gap = 2
    rows = [render_clip(task, label, seed, frames, stride, crop) for label in range(num_classes(task))]
    sheet = np.full((len(rows) * (crop + gap) + gap, frames * (crop + gap) + gap, 3), 255, np.uint8)
    for i, clip in enumerate(rows):
        for j, frame in enumerate(clip):
            y, x = gap + i * (crop + gap), gap + j * (crop + gap)
            sheet[y:y + crop, x:x + crop] = frame
    return write_png(path, sheet)
