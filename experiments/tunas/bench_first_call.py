"""Supernet step on a fixed path against the extracted child's stand-alone step: the first call (new
shapes, new oneDNN primitives) and the steady state (mean of 3 steps after one), 3 uniform children at
the default search's batch (16 clips, 8 x 14², 6 classes, ``channels_last_3d``, 2 threads).

    .venv/bin/python experiments/tunas/bench_first_call.py
"""
from __future__ import annotations

import statistics
import sys
import time
from pathlib import Path

import torch
import torch.nn.functional as F

import nas
from nas.drivers.tunas.supernet import Path as NetPath, Supernet

sys.path.insert(0, str(Path(__file__).resolve().parent))
import bench_step_ratio as b  # noqa: E402


def main() -> None:
    space = nas.load_space("movinet")
    cl = torch.channels_last_3d
    torch.manual_seed(0)
    x = torch.randn(16, 3, 8, 14, 14).contiguous(memory_format=cl)
    y = torch.randint(0, 6, (16,))
    supernet = Supernet(space, classes=6).train().to(memory_format=cl)
    for i in (1, 2, 3):
        arch = b._child(space, i, 6)[1]
        path = NetPath.of(arch)
        model = supernet.extract(arch).train().to(memory_format=cl)

        def supernet_step() -> None:
            supernet.zero_grad(set_to_none=True)
            b.supernet_backward(supernet, path, x, y, b.SEARCH)

        def standalone_step() -> None:
            model.zero_grad(set_to_none=True)
            F.cross_entropy(model(x), y, label_smoothing=0.1).backward()

        t0 = time.perf_counter()
        supernet_step()
        first = time.perf_counter() - t0
        sn, sa = [], []
        for _ in range(4):
            t0 = time.perf_counter()
            supernet_step()
            sn.append(time.perf_counter() - t0)
            t0 = time.perf_counter()
            standalone_step()
            sa.append(time.perf_counter() - t0)
        print(f"child {i}: supernet first {first:.3f} s, steady {statistics.mean(sn[1:]):.3f} s; "
              f"stand-alone steady {statistics.mean(sa[1:]):.3f} s")


if __name__ == "__main__":
    main()
