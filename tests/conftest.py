"""Shared fixtures: the registry of shipped spaces and reference architectures drives the tests."""
from __future__ import annotations

import os
import tempfile

import pytest

from nas import arch_names, load_arch, load_space, space_names


# Caches the library keeps under ~/.cache go to a folder of this test session (also seen by the
# subprocesses and Ray workers tests start, which inherit the environment).
os.environ.setdefault("XNAS_VIDEO_CACHE", tempfile.mkdtemp(prefix="xnas-test-video-cache-"))


def pytest_generate_tests(metafunc: pytest.Metafunc) -> None:
    """Parametrise ``space_name`` / ``arch_name`` arguments over everything the registry ships,
    so a new space or reference architecture is enrolled in the tests by adding its document."""
    if "space_name" in metafunc.fixturenames:
        metafunc.parametrize("space_name", space_names())
    if "arch_name" in metafunc.fixturenames:
        metafunc.parametrize("arch_name", arch_names())


@pytest.fixture
def space(space_name: str):
    return load_space(space_name)


@pytest.fixture
def arch(arch_name: str):
    return load_arch(arch_name)


@pytest.fixture(scope="module")
def ray_session():
    """A small local Ray for one test module (2 CPUs, no dashboard), shut down after it."""
    import os
    import shutil
    from pathlib import Path

    from nas.integrations import ray_tune  # noqa: F401  (sets Ray's environment before ray is imported)
    import ray

    if ray.is_initialized():
        yield ray
        return
    temp = Path(f"/tmp/xnas-test-ray-{os.getpid()}")
    ray.init(num_cpus=2, include_dashboard=False, log_to_driver=False, _temp_dir=str(temp),
             object_store_memory=100 * 1024**2, logging_level="error")
    yield ray
    ray.shutdown()
    shutil.rmtree(temp, ignore_errors=True)
