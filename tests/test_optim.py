"""TF's RMSProp (``nas.optim.RMSpropTF``) against steps computed by hand from TF's update rule."""
from __future__ import annotations

import math

import pytest
import torch

from nas.optim import RMSpropTF


def _two_steps(ms_init: float, weight_decay: float = 0.0) -> list[float]:
    w = torch.nn.Parameter(torch.tensor([2.0]))
    opt = RMSpropTF([w], lr=0.5, rho=0.9, momentum=0.9, eps=1.0, ms_init=ms_init, weight_decay=weight_decay)
    out = []
    for g in (0.1, -0.3):
        w.grad = torch.tensor([g])
        opt.step()
        out.append(float(w))
    return out


def test_keras_step_by_hand() -> None:
    """Keras (MoViNet's recipe): the mean square starts at 0, epsilon inside the square root."""
    ms = 0.9 * 0 + 0.1 * 0.1**2                                  # 0.001
    mom = 0.5 * 0.1 / math.sqrt(ms + 1.0)                        # 0.0499750...
    w1 = 2.0 - mom
    ms = 0.9 * ms + 0.1 * 0.09                                   # 0.0099
    mom = 0.9 * mom + 0.5 * -0.3 / math.sqrt(ms + 1.0)
    w2 = w1 - mom
    assert _two_steps(0.0) == pytest.approx([w1, w2], rel=1e-6)
    # torch's RMSprop puts epsilon outside the square root: a different first step at eps 1
    torch_first = 2.0 - 0.5 * 0.1 / (math.sqrt(0.001) + 1.0)
    assert abs(torch_first - w1) > 1e-3


def test_tf1_step_by_hand() -> None:
    """TF 1.x (TuNAS): the mean square starts at 1."""
    ms = 0.9 * 1.0 + 0.1 * 0.01
    w1 = 2.0 - 0.5 * 0.1 / math.sqrt(ms + 1.0)
    assert _two_steps(1.0)[0] == pytest.approx(w1, rel=1e-6)


def test_weight_decay_is_added_to_the_gradient() -> None:
    g = 0.1 + 0.01 * 2.0
    w1 = 2.0 - 0.5 * g / math.sqrt(0.1 * g * g + 1.0)
    assert _two_steps(0.0, weight_decay=0.01)[0] == pytest.approx(w1, rel=1e-6)


def test_bad_settings_name_the_field() -> None:
    with pytest.raises(ValueError, match="RMSpropTF.rho: got 1.5"):
        RMSpropTF([torch.nn.Parameter(torch.zeros(1))], lr=0.1, rho=1.5)
