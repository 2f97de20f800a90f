"""argparse value types shared by every ``xnas`` command: each rejects a bad value with one line that
says what was expected and what was given (argparse turns it into a usage error, exit status 2)."""
from __future__ import annotations

import argparse
import math

__all__ = ["positive_int", "non_negative_int", "positive_float", "non_negative_float", "fraction", "clip",
           "cpus_per_trial"]


def positive_int(text: str) -> int:
    """An integer >= 1."""
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a positive integer, got {text!r}") from None
    if value < 1:
        raise argparse.ArgumentTypeError(f"expected a positive integer, got {value}")
    return value


def non_negative_int(text: str) -> int:
    """An integer >= 0."""
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected an integer >= 0, got {text!r}") from None
    if value < 0:
        raise argparse.ArgumentTypeError(f"expected an integer >= 0, got {value}")
    return value


def positive_float(text: str) -> float:
    """A finite number > 0."""
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a positive number, got {text!r}") from None
    if not (value > 0 and math.isfinite(value)):
        raise argparse.ArgumentTypeError(f"expected a positive number, got {value}")
    return value


def non_negative_float(text: str) -> float:
    """A number >= 0."""
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a number >= 0, got {text!r}") from None
    if not value >= 0:
        raise argparse.ArgumentTypeError(f"expected a number >= 0, got {value}")
    return value


def fraction(text: str) -> float:
    """A number in (0, 1]."""
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a number in (0, 1], got {text!r}") from None
    if not 0 < value <= 1:
        raise argparse.ArgumentTypeError(f"expected a number in (0, 1], got {value}")
    return value


def clip(text: str) -> tuple[int, int, int]:
    """A clip written FRAMESxSTRIDExCROP (``8x5x112``) as ``(frames, frame_stride, crop)``."""
    parts = text.lower().split("x")
    try:
        frames, stride, crop = (int(p) for p in parts)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected FRAMESxSTRIDExCROP like 8x5x112, got {text!r}") from None
    return frames, stride, crop


def cpus_per_trial(text: str) -> float | str:
    """``auto`` or a number >= 0 (``--cpus-per-trial``)."""
    if text.strip().lower() == "auto":
        return "auto"
    try:
        return non_negative_float(text)
    except argparse.ArgumentTypeError:
        raise argparse.ArgumentTypeError(f"expected 'auto' or a number >= 0, got {text!r}") from None
