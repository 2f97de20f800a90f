"""Spatial transforms of uint8 clips ``(T, H, W, 3)`` (numpy only): resize, crops, normalisation.

The X3D / SlowFast recipe (data.md §4): training resizes the short side to a random ``S`` in
``[lo, hi]`` and takes a random ``crop`` x ``crop`` window; testing resizes to a fixed ``S`` and takes
the centre crop or three crops along the long side. There is no horizontal flip by default: it swaps
the labels of direction classes (SSv2 "left"/"right", the synthetic chiral tasks).

Resizing is separable: an integer box (area) reduction for whole downscale factors, then a triangle
filter (bilinear when upsampling, antialiased like PIL's bilinear when downsampling). It is all
elementwise numpy, so resizing a frame alone or inside a clip gives identical bytes (the decode
cache relies on this).
"""
from __future__ import annotations

from functools import lru_cache
from typing import NamedTuple

import numpy as np

__all__ = [
    "KINETICS_MEAN", "KINETICS_STD", "center_crop", "hflip", "normalize", "random_crop", "resize",
    "resize_short_side", "short_side_size", "three_crops",
]

_CHUNK_VALUES = 1 << 18     # float32 values per resize step (1 MiB)

# PySlowFast / pytorchvideo Kinetics constants, on pixel values scaled to [0, 1].
KINETICS_MEAN = (0.45, 0.45, 0.45)
KINETICS_STD = (0.225, 0.225, 0.225)


def _fail(name: str, value: object, allowed: str) -> ValueError:
    return ValueError(f"{name}: got {value!r}; allowed: {allowed}")


def _check_clip(clip: np.ndarray) -> np.ndarray:
    clip = np.asarray(clip)
    if clip.dtype != np.uint8 or clip.ndim != 4 or clip.shape[-1] != 3:
        raise _fail("clip", f"{clip.dtype} array of shape {clip.shape}", "uint8 (T, H, W, 3)")
    return clip


@lru_cache(maxsize=256)
def _taps(size_in: int, size_out: int) -> tuple[np.ndarray, np.ndarray]:
    """Sparse triangle-filter taps: input indices and float32 weights, both ``(K, size_out)``.

    Output pixel ``o`` is ``sum_k weights[k, o] * input[indices[k, o]]``; the weights of each
    output sum to 1 (border pixels lose taps and are renormalised). Used after the box reduction, so
    the factor is below 2 and ``K`` at most 5.
    """
    scale = size_in / size_out
    support = max(scale, 1.0)                      # widen the triangle when shrinking (antialias)
    centres = (np.arange(size_out) + 0.5) * scale  # output pixel centres in input coordinates
    first = np.floor(centres - support - 0.5).astype(np.int64)
    k = int(np.ceil(2 * support)) + 2
    idx = first[None, :] + np.arange(k)[:, None]   # (K, size_out) candidate taps
    w = np.maximum(0.0, 1.0 - np.abs(idx + 0.5 - centres[None, :]) / support)
    w[(idx < 0) | (idx >= size_in)] = 0.0
    w /= w.sum(axis=0, keepdims=True)
    keep = w.any(axis=1)                           # drop all-zero tap rows
    idx, w = np.clip(idx[keep], 0, size_in - 1), w[keep].astype(np.float32)
    for a in (idx, w):
        a.flags.writeable = False
    return idx, w


class _AxisPlan(NamedTuple):
    """How to compute outputs ``[start, start + count)`` of one axis resized ``size_in -> size_out``:
    read input ``span``, sum blocks of ``k`` samples, then apply ``taps`` (``None``: the identity)."""

    span: slice
    k: int
    taps: tuple[np.ndarray, np.ndarray] | None


def _plan(size_in: int, size_out: int, start: int, count: int) -> _AxisPlan:
    if size_in == size_out:
        return _AxisPlan(slice(start, start + count), 1, None)
    k = max(1, size_in // size_out)
    n = size_in // k
    off = (size_in - n * k) // 2                    # centred blocks: the < k leftover samples are the borders'
    idx, w = _taps(n, size_out)
    idx, w = idx[:, start:start + count], w[:, start:start + count]
    lo, hi = int(idx.min()), int(idx.max()) + 1     # the reduced samples this window reads
    return _AxisPlan(slice(off + lo * k, off + hi * k), k, (idx - lo, w))


def _box_sum(x: np.ndarray, axis: int, k: int, peak: int) -> np.ndarray:
    """Sum blocks of ``k`` consecutive samples along ``axis`` (its length is a multiple of ``k``), in
    the narrowest integer type that holds ``peak * k`` (``peak``: the largest value of ``x``)."""
    take = [slice(None)] * x.ndim
    take[axis] = slice(0, None, k)
    acc = x[tuple(take)].astype(np.uint16 if peak * k <= np.iinfo(np.uint16).max else np.uint32)
    for j in range(1, k):
        take[axis] = slice(j, None, k)
        acc += x[tuple(take)]
    return acc


def _filter(x: np.ndarray, axis: int, taps: tuple[np.ndarray, np.ndarray]) -> np.ndarray:
    """Apply triangle-filter taps to float32 ``x`` along ``axis``. Elementwise numpy, no BLAS (a
    threaded BLAS stalls badly when DataLoader workers share the cores); in place to spare memory."""
    idx, w = taps
    n, trail = idx.shape[1], x.shape[axis + 1:]

    def weight(k: int) -> np.ndarray:
        # spelled out over the trailing axes, so the multiply's inner loop is long and contiguous
        return np.ascontiguousarray(np.broadcast_to(w[k].reshape((n,) + (1,) * len(trail)), (n, *trail)))

    out = np.take(x, idx[0], axis=axis)
    out *= weight(0)
    tmp = np.empty_like(out)
    for k in range(1, len(idx)):
        np.take(x, idx[k], axis=axis, out=tmp)
        tmp *= weight(k)
        out += tmp
    return out


def resize(clip: np.ndarray, height: int, width: int, window: tuple[int, int, int, int] | None = None) -> np.ndarray:
    """Resize every frame of ``clip`` to ``height`` x ``width``, or compute only a window of the result.

    Shrinking by a factor ``s >= 2`` first averages ``floor(s)`` x ``floor(s)`` blocks (area
    reduction, in integers), then applies the triangle filter for the remaining factor in [1, 2), like
    Pillow's ``reducing_gap``: the same antialiasing at a fraction of the cost of a wide filter.
    With ``window`` only the output pixels inside it are computed (a training crop is a fraction of
    the frame), and they are bit-identical to cropping the full resize.

    Args:
        clip: uint8 ``(T, H, W, 3)``.
        height: output height (>= 1).
        width: output width (>= 1).
        window: ``(top, left, window_height, window_width)`` inside the ``height`` x ``width`` output.

    Returns:
        uint8 ``(T, height, width, 3)`` (``clip`` itself if the size is unchanged), or
        ``(T, window_height, window_width, 3)`` with ``window``.

    Raises:
        ValueError: ``clip`` is not uint8 ``(T, H, W, 3)``, a size is not a positive integer, or the
            window does not fit in the output.
    """
    clip = _check_clip(clip)
    for name, value in (("height", height), ("width", width)):
        if not isinstance(value, (int, np.integer)) or isinstance(value, bool) or value < 1:
            raise _fail(name, value, "an integer >= 1")
    top, left, wh, ww = (0, 0, height, width) if window is None else (int(v) for v in window)
    if not (0 <= top and 0 <= left and wh >= 1 and ww >= 1 and top + wh <= height and left + ww <= width):
        raise _fail("window", window, f"(top, left, height, width) inside the {height}x{width} output")
    h, w = clip.shape[1:3]
    if (h, w) == (height, width):
        return clip if window is None else clip[:, top:top + wh, left:left + ww]
    rows, cols = _plan(h, height, top, wh), _plan(w, width, left, ww)
    source = clip[:, rows.span, cols.span]
    # a few frames at a time keep the float intermediates in cache (about 2x faster than whole clips)
    step = max(1, _CHUNK_VALUES // (source.shape[1] * source.shape[2] * 3))
    return np.concatenate([_resize_chunk(source[i:i + step], rows, cols) for i in range(0, len(source), step)])


def _resize_chunk(out: np.ndarray, rows: _AxisPlan, cols: _AxisPlan) -> np.ndarray:
    if rows.k > 1:
        out = _box_sum(out, 1, rows.k, 255)
    if cols.k > 1:
        out = _box_sum(out, 2, cols.k, 255 * rows.k)
    out = out.astype(np.float32)
    if rows.k * cols.k > 1:
        out *= np.float32(1.0 / (rows.k * cols.k))
    if rows.taps is not None:
        out = _filter(out, 1, rows.taps)
    if cols.taps is not None:
        out = _filter(out, 2, cols.taps)
    return np.clip(np.rint(out), 0, 255).astype(np.uint8)


def short_side_size(height: int, width: int, short_side: int) -> tuple[int, int]:
    """Output ``(height, width)`` when the short side becomes ``short_side`` (aspect ratio kept)."""
    if height <= width:
        return short_side, max(1, round(width * short_side / height))
    return max(1, round(height * short_side / width)), short_side


def resize_short_side(clip: np.ndarray, short_side: int) -> np.ndarray:
    """Resize ``clip`` so its shorter side is ``short_side`` pixels, keeping the aspect ratio.

    Raises:
        ValueError: ``clip`` is not uint8 ``(T, H, W, 3)`` or ``short_side`` is not a positive integer.
    """
    clip = _check_clip(clip)
    if not isinstance(short_side, (int, np.integer)) or isinstance(short_side, bool) or short_side < 1:
        raise _fail("short_side", short_side, "an integer >= 1")
    return resize(clip, *short_side_size(clip.shape[1], clip.shape[2], int(short_side)))


def _check_crop(clip: np.ndarray, size: int) -> np.ndarray:
    clip = _check_clip(clip)
    h, w = clip.shape[1:3]
    if not isinstance(size, (int, np.integer)) or isinstance(size, bool) or not 1 <= size <= min(h, w):
        raise _fail("size", size, f"an integer in [1, {min(h, w)}] (the clip is {h}x{w})")
    return clip


def random_crop(clip: np.ndarray, size: int, rng: np.random.Generator) -> np.ndarray:
    """A ``size`` x ``size`` window at a uniformly random position (the same for every frame).

    Raises:
        ValueError: ``size`` exceeds the clip's shorter side.
    """
    clip = _check_crop(clip, size)
    y = int(rng.integers(0, clip.shape[1] - size + 1))
    x = int(rng.integers(0, clip.shape[2] - size + 1))
    return clip[:, y:y + size, x:x + size]


def center_crop(clip: np.ndarray, size: int) -> np.ndarray:
    """The centred ``size`` x ``size`` window.

    Raises:
        ValueError: ``size`` exceeds the clip's shorter side.
    """
    clip = _check_crop(clip, size)
    y, x = (clip.shape[1] - size) // 2, (clip.shape[2] - size) // 2
    return clip[:, y:y + size, x:x + size]


def three_crops(clip: np.ndarray, size: int) -> np.ndarray:
    """Three ``size`` x ``size`` windows along the long side (start, centre, end), centred across it.

    Left / centre / right for landscape clips, top / centre / bottom for portrait ones, as in the
    X3D / SlowFast 3-crop test.

    Returns:
        uint8 ``(3, T, size, size, 3)``.

    Raises:
        ValueError: ``size`` exceeds the clip's shorter side.
    """
    clip = _check_crop(clip, size)
    h, w = clip.shape[1:3]
    if w >= h:
        y = (h - size) // 2
        return np.stack([clip[:, y:y + size, x:x + size] for x in (0, (w - size) // 2, w - size)])
    x = (w - size) // 2
    return np.stack([clip[:, y:y + size, x:x + size] for y in (0, (h - size) // 2, h - size)])


def hflip(clip: np.ndarray) -> np.ndarray:
    """Mirror left-right. Not used by default: it swaps the labels of direction classes."""
    return _check_clip(clip)[:, :, ::-1]


def normalize(clip: np.ndarray, mean: tuple[float, float, float] = KINETICS_MEAN,
              std: tuple[float, float, float] = KINETICS_STD) -> np.ndarray:
    """Scale uint8 pixels to [0, 1], standardise per channel and move channels first.

    Args:
        clip: uint8 ``(..., T, H, W, 3)`` (one clip, or views / a batch in front).
        mean: per-channel mean on the [0, 1] scale.
        std: per-channel standard deviation on the [0, 1] scale (all > 0).

    Returns:
        float32 ``(..., 3, T, H, W)``, the layout video networks take.

    Raises:
        ValueError: ``clip`` is not uint8 with 3 channels last, or ``mean`` / ``std`` are not 3 numbers
            (``std`` positive).
    """
    clip = np.asarray(clip)
    if clip.dtype != np.uint8 or clip.ndim < 4 or clip.shape[-1] != 3:
        raise _fail("clip", f"{clip.dtype} array of shape {clip.shape}", "uint8 (..., T, H, W, 3)")
    mean_a, std_a = np.asarray(mean, np.float32), np.asarray(std, np.float32)
    if mean_a.shape != (3,):
        raise _fail("mean", mean, "3 numbers")
    if std_a.shape != (3,) or not np.all(std_a > 0):
        raise _fail("std", std, "3 positive numbers")
    # fold 1/255 into the scale so this is one multiply-add per pixel
    scale, shift = 1.0 / (255.0 * std_a), -mean_a / std_a
    out = clip.astype(np.float32) * scale + shift
    return np.ascontiguousarray(np.moveaxis(out, -1, -4))
