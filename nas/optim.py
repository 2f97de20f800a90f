"""TensorFlow's RMSProp in PyTorch: the one the MoViNet and TuNAS recipes were tuned with.

TF (``tf.raw_ops.ApplyRMSProp``, used by both ``tf.compat.v1.train.RMSPropOptimizer`` and Keras'
``RMSprop`` with momentum) updates::

    ms  <- rho * ms + (1 - rho) * g^2
    mom <- momentum * mom + lr * g / sqrt(ms + eps)
    w   <- w - mom

with epsilon **inside** the square root. ``torch.optim.RMSprop`` divides by ``sqrt(ms) + eps``
instead: with the recipes' ``eps = 1.0`` the two differ by far more than rounding (for a gradient
of 0.1 the first step is ``lr * 0.1 / sqrt(0.001 + 1) ~ 0.1 lr`` in TF and ``lr * 0.1 / (0.032 + 1)
~ 0.097 lr`` in torch, and the gap grows with the gradient). The ``ms`` slot starts at 1 in TF 1.x
(TuNAS) and at 0 in Keras (MoViNet's TF2 Model Garden recipe): ``ms_init`` chooses.
"""
from __future__ import annotations

import math
from typing import Any, Callable

import torch

__all__ = ["RMSpropTF", "warmup_cosine"]


class RMSpropTF(torch.optim.Optimizer):
    """TF's RMSProp (see the module docstring).

    Args:
        params: parameters or parameter groups (a group may set its own ``weight_decay``).
        lr: learning rate.
        rho: decay of the mean square (TF ``decay`` / Keras ``rho``).
        momentum: momentum of the update.
        eps: added to the mean square inside the square root.
        ms_init: the mean square's initial value: 0 (Keras, MoViNet) or 1 (TF 1.x, TuNAS).
        weight_decay: L2 coefficient added to the gradient (``g + wd * w``, i.e. ``wd / 2 * |w|^2`` in
            the loss).
    """

    def __init__(self, params: Any, lr: float, rho: float = 0.9, momentum: float = 0.9, eps: float = 1.0,
                 ms_init: float = 0.0, weight_decay: float = 0.0) -> None:
        for name, value, ok in (("lr", lr, lr >= 0), ("rho", rho, 0 <= rho < 1), ("momentum", momentum, momentum >= 0),
                                ("eps", eps, eps > 0), ("ms_init", ms_init, ms_init >= 0),
                                ("weight_decay", weight_decay, weight_decay >= 0)):
            if not ok:
                raise ValueError(f"RMSpropTF.{name}: got {value!r}; allowed: a number in its range (see the docstring)")
        super().__init__(params, {"lr": lr, "rho": rho, "momentum": momentum, "eps": eps, "ms_init": ms_init,
                                  "weight_decay": weight_decay})

    @torch.no_grad()
    def step(self, closure: Callable[[], Any] | None = None) -> Any:  # type: ignore[override]
        """One update of every parameter that has a gradient."""
        loss = None
        if closure is not None:
            with torch.enable_grad():
                loss = closure()
        for group in self.param_groups:
            for p in group["params"]:
                if p.grad is None:
                    continue
                grad = p.grad
                if group["weight_decay"]:
                    grad = grad.add(p, alpha=group["weight_decay"])
                state = self.state[p]
                if not state:
                    state["ms"] = torch.full_like(p, group["ms_init"])
                    state["mom"] = torch.zeros_like(p)
                ms, mom = state["ms"], state["mom"]
                ms.mul_(group["rho"]).addcmul_(grad, grad, value=1 - group["rho"])
                mom.mul_(group["momentum"]).addcdiv_(grad, (ms + group["eps"]).sqrt(), value=group["lr"])
                p.sub_(mom)
        return loss


def warmup_cosine(step: int, total: int, warmup: int) -> float:
    """The learning-rate factor at ``step`` of ``total``: linear warm-up over ``warmup`` steps to 1,
    then a cosine to 0 at ``total`` (the proxy trainer's schedule, and TuNAS's with 2.5 % warm-up)."""
    if step < warmup:
        return (step + 1) / warmup
    return 0.5 * (1 + math.cos(math.pi * min(1.0, (step - warmup) / max(1, total - warmup))))
