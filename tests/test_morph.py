"""Network morphism (``nas.models.morph``): a child built from its parent's weights computes the parent's
function exactly (width, bottleneck, depth) or loads every weight unchanged (spatial, frames, stride)."""
from __future__ import annotations

import pytest
import torch

from nas import load_arch
from nas.drivers.expand import build_candidates
from nas.models import build_model
from nas.models.morph import MorphError, inherit, reestimate_bn

PARENT = "x3d-xs"


def _trained_like(arch, classes=6, seed=0):
    """A parent with non-trivial weights and BN statistics everywhere (as after training)."""
    torch.manual_seed(seed)
    model = build_model(load_arch(arch) if isinstance(arch, str) else arch)
    model.head.classifier = torch.nn.Linear(model.head.classifier.in_features, classes)
    for m in model.modules():
        if isinstance(m, torch.nn.BatchNorm3d):
            torch.nn.init.uniform_(m.weight, 0.5, 1.5)
            torch.nn.init.uniform_(m.bias, -0.2, 0.2)
            m.running_mean.uniform_(-0.1, 0.1)
            m.running_var.uniform_(0.5, 2.0)
        if isinstance(m, torch.nn.Conv3d) and m.bias is not None:
            torch.nn.init.uniform_(m.bias, -0.1, 0.1)
    return model.eval()


def _children():
    parent = load_arch(PARENT)
    cands, _ = build_candidates(parent, step=1, rate=2.0)
    return parent, {c.axis: c.arch for c in cands}


@pytest.mark.parametrize("axis", ["width", "bottleneck", "depth"])
def test_function_preserving_axes_compute_the_parents_logits(axis: str) -> None:
    parent, children = _children()
    pmodel = _trained_like(parent)
    child = inherit(pmodel, parent, children[axis], seed=1).eval()
    assert sum(p.numel() for p in child.parameters()) > sum(p.numel() for p in pmodel.parameters())
    x = torch.randn(2, 3, parent.clip.frames, 32, 32)
    with torch.no_grad():
        assert torch.allclose(child(x), pmodel(x), atol=1e-5, rtol=0)
    # symmetry-breaking noise, a parameter, changes the function only after that check
    noisy = inherit(pmodel, parent, children[axis], seed=1, noise=0.1).eval()
    if axis != "depth":
        with torch.no_grad():
            assert not torch.allclose(noisy(x), pmodel(x), atol=1e-5, rtol=0)


@pytest.mark.parametrize("axis", ["spatial", "frames", "frame_stride"])
def test_input_axes_load_every_weight_unchanged(axis: str) -> None:
    parent, children = _children()
    pmodel = _trained_like(parent)
    child = inherit(pmodel, parent, children[axis])
    got, want = child.state_dict(), pmodel.state_dict()
    assert got.keys() == want.keys()
    for key, value in want.items():
        assert torch.equal(got[key].to(value.dtype), value), key
    clip = children[axis].clip
    batches = [torch.randn(2, 3, clip.frames, 32, 32) for _ in range(3)]
    reestimate_bn(child, batches)
    assert not child.training
    assert not torch.equal(child.stem.bn.running_mean, pmodel.stem.bn.running_mean)  # statistics re-estimated


def test_a_shrinking_child_is_refused() -> None:
    parent, children = _children()
    pmodel = _trained_like(children["width"])
    with pytest.raises(MorphError, match="a growth"):
        inherit(pmodel, children["width"], parent)
    with pytest.raises(MorphError, match="family"):
        inherit(pmodel, parent, load_arch("movinet-a0"))
