"""``--cpus-per-trial auto``: one thread for a trial whose proxy step is small, two for a larger one."""
from __future__ import annotations

import argparse

import pytest

from nas import load_arch
from nas.commands.argtypes import cpus_per_trial
from nas.proxy import AUTO_CPUS, TWO_THREAD_STEP_GMACS, Proxy, auto_cpus_per_trial


def test_step_gmacs_is_batch_times_the_clip_cost_at_the_proxy_crop() -> None:
    arch = load_arch("x3d-s")
    proxy = Proxy(batch_size=8, size_scale=0.25)
    crop = proxy.train_crop(arch.clip.crop)
    assert crop == round(arch.clip.crop * 0.25)
    assert proxy.step_gmacs(arch) == pytest.approx(8 * arch.cost(size=crop).macs / 1e9)
    assert Proxy(size_scale=0.01).train_crop(160) == 8  # never below 8 px


def test_small_steps_take_one_cpu_large_ones_two() -> None:
    arch = load_arch("x3d-s")
    small = Proxy(batch_size=1, size_scale=0.1)
    large = Proxy(batch_size=16, size_scale=0.5)
    assert small.step_gmacs(arch) < TWO_THREAD_STEP_GMACS["x3d"] < large.step_gmacs(arch)
    assert auto_cpus_per_trial(arch, small, cores=2) == 1
    assert auto_cpus_per_trial(arch, large, cores=2) == 2
    assert auto_cpus_per_trial(arch, large, cores=1) == 1  # never more than the machine has


def test_the_bound_is_per_family() -> None:
    """A MoViNet step of the same size as an X3D one that takes two threads still takes one (measured:
    MoViNet gains from a second thread only from about 1 GMAC per step)."""
    movinet, x3d = load_arch("movinet-a0"), load_arch("x3d-s")
    proxy = Proxy(batch_size=8, size_scale=0.1)
    assert TWO_THREAD_STEP_GMACS["x3d"] < proxy.step_gmacs(movinet) < TWO_THREAD_STEP_GMACS["movinet"]
    assert auto_cpus_per_trial(movinet, proxy, cores=2) == 1
    assert auto_cpus_per_trial(x3d, Proxy(batch_size=16, size_scale=0.5), cores=2) == 2
    assert auto_cpus_per_trial(movinet, Proxy(batch_size=8, size_scale=0.2), cores=2) == 2


def test_the_flag_takes_auto_or_a_number() -> None:
    assert cpus_per_trial("auto") == AUTO_CPUS == cpus_per_trial(" AUTO ")
    assert cpus_per_trial("1.5") == 1.5
    for bad in ("-1", "two", "nan"):
        with pytest.raises(argparse.ArgumentTypeError, match=f"expected 'auto' or a number >= 0, got '{bad}'"):
            cpus_per_trial(bad)


def test_ray_jobs_carry_each_trials_cpus_and_threads(tmp_path) -> None:
    pytest.importorskip("ray")
    from nas.integrations.ray_tune import RayEvaluator

    small, large = Proxy(batch_size=1, size_scale=0.1), Proxy(batch_size=16, size_scale=0.5)
    arch = load_arch("x3d-s")
    for proxy, cpus in ((small, 1), (large, 2)):
        ev = RayEvaluator("synthetic", proxy, 0, cpus_per_trial="auto", log_dir=tmp_path, progress=False)
        ev._cores = lambda: 2  # as on a 2-core machine, whatever this one has
        (job,) = ev._jobs([arch])
        assert (job["trial_cpus"], job["threads"]) == (cpus, cpus)
    # a fixed number is kept; a formula trial under auto takes the fixed 2
    (job,) = RayEvaluator("synthetic", small, 0, cpus_per_trial=1.5, log_dir=tmp_path, progress=False)._jobs([arch])
    assert (job["trial_cpus"], job["threads"]) == (1.5, 1)
    formula = RayEvaluator("synthetic", small, 0, cpus_per_trial="auto", log_dir=tmp_path, progress=False,
                           evaluator_spec={"kind": "formula", "name": "saturating"})
    formula._cores = lambda: 2
    (job,) = formula._jobs([arch])
    assert job["trial_cpus"] == 2
    with pytest.raises(ValueError, match="cpus_per_trial, gpus_per_trial: got 'many'"):
        RayEvaluator("synthetic", small, 0, cpus_per_trial="many", log_dir=tmp_path)
