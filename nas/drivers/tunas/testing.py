"""A reduced MoViNet-family space small enough for CPU tests and dry runs of the TuNAS search."""
from __future__ import annotations

from nas.dsl import Space

TINY_SPACE = """
xnas: 1
kind: space
name: tiny-movinet
family: movinet
classes: 5
clip: {frames: 4, frame_stride: 2, crop: 32}
activation: swish
gating: sigmoid
stem: {width: {choice: [8, 16]}, kernel: 1x3x3, stride: [1, 2, 2]}
blocks:
  - width: {choice: [8, 16]}
    stride: [1, 2, 2]
    layers:
      repeat: {choice: [1, 2, 3]}
      each: {kernel: {choice: [1x3x3, 3x3x3, 5x1x1]}, expand: {range: [16, 32], step: 8}}
  - width: {choice: [16, 24]}
    stride: [1, 1, 1]
    layers:
      repeat: {choice: [1, 2]}
      each: {kernel: {choice: [1x5x5, 3x3x3]}, expand: {choice: [24, 48]}}
head: {project: {choice: [32, 48]}, width: 64, dropout: 0.0}
"""


def tiny_space() -> Space:
    """The reduced space (4 frames x 32², 2 blocks, <= 5 layers)."""
    return Space.from_yaml(TINY_SPACE, file="tiny-movinet")
