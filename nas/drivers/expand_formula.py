"""``x3d-factors``: a known score of an X3D architecture's factors, for testing ``xnas expand`` without training.

    top1 = 20 + sum over axes of  weight[a] * sqrt(ln(gain[a]))

where ``gain`` is what the rounding rules actually built, relative to X2D: frames, the frame rate
(``32 / stride`` for a multi-frame clip, 1 for one frame: X-Fast raises it), crop / 112, stage-width
ratio, bottleneck ratio (inner / width) and total depth ratio. The square root gives diminishing returns
per axis, so the best trade-off moves from axis to axis as a coordinate descent should, and the path
is fully determined (tests pin it). Architectures without the X3D factors are a failed trial.
"""
from __future__ import annotations

import math

from nas.dsl.arch import Arch
from nas.formulas import register_formula

__all__ = ["x3d_factors", "WEIGHTS"]

# Per-axis weights (percent per sqrt(ln ratio)); temporal axes weigh most, as on a temporal task.
WEIGHTS = {"frame_stride": 4.0, "frames": 9.0, "spatial": 7.0, "width": 3.0, "bottleneck": 5.0, "depth": 4.0}
_BASE_DEPTH = 11      # X2D: 1 + 2 + 5 + 3 blocks
_BASE_WIDTH = 360     # X2D: 24 + 48 + 96 + 192 channels
_SPAN = 32            # the frame rate term is 32 / stride, so stride 32 counts as X2D's rate


@register_formula("x3d-factors")
def x3d_factors(arch: Arch) -> float:
    """Score an X3D architecture by the formula of the module docstring (percent)."""
    from nas.families.x3d import resolve

    if "factors" not in arch.doc:
        raise ValueError(f"{arch.name}: not an X3D architecture (no factors)")
    net = resolve(arch.doc)
    clip = net.clip
    rate = _SPAN / clip.frame_stride if clip.frames > 1 else 1.0
    gains = {
        "frame_stride": max(1.0, rate),
        "frames": clip.frames,
        "spatial": clip.crop / 112,
        "width": sum(s.width for s in net.stages) / _BASE_WIDTH,
        "bottleneck": sum(s.inner for s in net.stages) / sum(s.width for s in net.stages),
        "depth": sum(s.depth for s in net.stages) / _BASE_DEPTH,
    }
    return 20.0 + sum(w * math.sqrt(max(0.0, math.log(gains[a]))) for a, w in WEIGHTS.items())
