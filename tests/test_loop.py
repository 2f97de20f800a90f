"""The shared training loop (``nas.loop.run_steps``) and atomic writes (``nas.files``)."""
from __future__ import annotations

import math

import pytest
import torch

from nas.files import atomic_path, atomic_write_text
from nas.loop import run_steps
from nas.optim import warmup_cosine


def _setup():
    w = torch.nn.Parameter(torch.tensor([1.0]))
    return w, torch.optim.SGD([w], lr=0.0)


def test_schedule_checkpoints_and_hooks_in_order() -> None:
    w, opt = _setup()
    events, lrs = [], []

    def step_fn(step):
        lrs.append(opt.param_groups[0]["lr"])
        loss = (w * w).sum()
        loss.backward()
        return {"loss": float(loss)}

    out = run_steps(opt, step_fn, start=0, end=6, total=10, base_lr=0.1, warmup=2, checkpoint_every=2,
                    save=lambda done, so_far: events.append(("save", done, so_far.steps_done)),
                    checkpoint_at_end=True, after_step=lambda done, m: events.append(("after", done)))
    assert lrs == pytest.approx([0.1 * warmup_cosine(s, 10, 2) for s in range(6)])
    assert lrs[0] == pytest.approx(0.05) and lrs[1] == pytest.approx(0.1)
    assert [e for e in events if e[0] == "save"] == [("save", 2, 2), ("save", 4, 4), ("save", 6, 6)]
    assert events.index(("after", 2)) < events.index(("save", 2, 2))  # the step's hook runs before its checkpoint
    assert out.steps_done == 6 and not out.failure and out.train_s > 0


def test_a_non_finite_loss_stops_before_the_update() -> None:
    w, opt = _setup()

    def step_fn(step):
        if step == 3:
            return {"loss": math.nan}
        (w * w).sum().backward()
        return {"loss": 1.0}

    before = []
    out = run_steps(opt, step_fn, start=0, end=10, total=10, base_lr=0.1, warmup=0,
                    after_step=lambda done, m: before.append(float(w)))
    assert out.failure == "non-finite loss (nan) at step 3" and out.steps_done == 3
    assert len(before) == 3


def test_resumed_steps_continue_the_schedule() -> None:
    """Steps 4.. of a resumed run get the learning rates the uninterrupted run gave them."""
    w, opt = _setup()
    seen = []

    def step_fn(step):
        seen.append((step, opt.param_groups[0]["lr"]))
        (w * w).sum().backward()
        return {"loss": 0.0}

    run_steps(opt, step_fn, start=4, end=6, total=10, base_lr=1.0, warmup=2)
    assert seen == [(4, pytest.approx(warmup_cosine(4, 10, 2))), (5, pytest.approx(warmup_cosine(5, 10, 2)))]


def test_atomic_writes_leave_the_old_file_or_the_new_one(tmp_path) -> None:
    target = tmp_path / "sub" / "a.json"
    atomic_write_text(target, "old")
    with pytest.raises(RuntimeError):
        with atomic_path(target) as tmp:
            tmp.write_text("half")
            raise RuntimeError("killed mid-write")
    assert target.read_text() == "old" and sorted(p.name for p in target.parent.iterdir()) == ["a.json"]
    atomic_write_text(target, "new")
    assert target.read_text() == "new"
