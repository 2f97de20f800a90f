"""Supernet search-step time in the two memory layouts, side by side (issue 20).

The stand-alone proxy trainer picks the faster of ``channels_first`` and ``channels_last_3d`` per
architecture (for MoViNets at the retrain's 17 px, channels_last_3d: 1.9x faster at 1 thread); the
supernet always ran ``channels_first``. This times the search's own step (``--batch`` training clips
forward + backward + masked L2, then the held-out forward of ``--val-multiplier`` x the batch) at the
search's shapes on one supernet per layout (same initial weights), for the warm-up path and
``--archs`` draws near the 0.18 GFLOPs target (``bench_supernet_conv._paths``): the first call, then
the mean of ``--reps`` later calls, alternating layouts. Run on an idle machine::

    .venv/bin/python experiments/tunas/bench_supernet_layout.py --out experiments/tunas/results/supernet_layout.json
"""
from __future__ import annotations

import copy
import sys
from pathlib import Path

import torch

from nas.drivers.tunas.supernet import Supernet

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
sys.path.insert(0, str(Path(__file__).resolve().parent))
from bench_supernet_conv import compare, step_inputs, step_parser, timed_step  # noqa: E402
from bench_train import matmul_peak  # noqa: E402

FORMATS = {"channels_first": torch.contiguous_format, "channels_last_3d": torch.channels_last_3d}


def main() -> None:
    args = step_parser(__doc__.split("\n")[0]).parse_args()
    peak = matmul_peak()
    space, cfg, x, y, xv = step_inputs(args)
    torch.manual_seed(args.seed)
    base = Supernet(space, classes=args.classes).train()
    nets = {name: copy.deepcopy(base).to(memory_format=fmt) for name, fmt in FORMATS.items()}
    inputs = {name: (x.contiguous(memory_format=fmt), xv.contiguous(memory_format=fmt)) for name, fmt in FORMATS.items()}

    def step(layout: str, path) -> tuple[float, float]:
        xt, xh = inputs[layout]
        return timed_step(nets[layout], path, xt, y, xh, cfg, args.seed)

    compare(args, space, step, ("channels_first", "channels_last_3d"), peak)


if __name__ == "__main__":
    main()
