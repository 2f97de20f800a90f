"""Stand-alone training steps of the default search's argmax and 5 random MoViNet children against
oneDNN's primitive cache capacity (1024, oneDNN's default, and 4096, xnas's), in alternating fresh
processes: 1 thread (as a retraining trial), 16 clips of 8 x 17² (the retraining proxy's crop),
``channels_last_3d``, AdamW; the mean of 6 steps after a warm-up step. Prints per capacity and round
the step time of [argmax, child 0..4]. The argmax is read from the seed-0 search of
``experiments/tunas/results/cache_search/cap1024``.

    ROUNDS=2 .venv/bin/python experiments/bench_primitive_cache_children.py
"""
from __future__ import annotations

import json
import os
import subprocess
import sys

from bench_primitive_cache import training_step_s  # the same step, beside it in experiments/

ARGMAX = "experiments/tunas/results/cache_search/cap1024/argmax.yaml"


def _child() -> list[float]:
    """Step times in this process (its capacity is fixed for its life)."""
    import torch

    import nas
    from nas.drivers.tunas.search import default_fixed
    from nas.models import build_model

    torch.set_num_threads(1)
    space = nas.load_space("movinet").with_clip((8, 10, 112))
    archs = [nas.load_arch(ARGMAX)] + [space.freeze({**space.random(i), **default_fixed(space)}) for i in range(5)]
    cl = torch.channels_last_3d
    out = []
    for arch in archs:
        model = build_model(arch.with_classes(6), zero_init_residual=False).train().to(memory_format=cl)
        x = torch.randn(16, 3, 8, 17, 17).contiguous(memory_format=cl)
        out.append(round(training_step_s(model, x, torch.randint(0, 6, (16,)), 6), 4))
    return out


def main() -> None:
    if sys.argv[1:] == ["child"]:
        print(json.dumps(_child()))
        return
    for _ in range(int(os.environ.get("ROUNDS", 2))):
        for cap in ("1024", "4096"):
            env = dict(os.environ, ONEDNN_PRIMITIVE_CACHE_CAPACITY=cap)
            run = subprocess.run([sys.executable, __file__, "child"], env=env, capture_output=True, text=True, check=True)
            print(cap, json.loads(run.stdout), flush=True)


if __name__ == "__main__":
    main()
