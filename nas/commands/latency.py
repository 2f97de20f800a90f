"""``xnas latency``: measured latency beside the latency model's prediction.

    xnas latency x3d-s                         # measure on this CPU (1 thread), predict, compare
    xnas latency movinet-a0-stream --mode stream --threads 2 --json
    xnas latency profile --space x3d --archs 24   # fill the table of a whole space ahead of a search

The model (:mod:`nas.latency`) is a table of weights per family and mode, fitted to latencies measured
on this machine; ``xnas latency ARCH`` profiles the family's space the first time it is needed
(``--profile-archs`` architectures spanning its cost range, under ``--profile-max-gflops``).
"""
from __future__ import annotations

import argparse
import json
import sys
import time
from typing import Any, Callable

from nas.commands.argtypes import positive_int
from nas.cost import GFLOPS_NOTE
from nas.errors import UsageError

__all__ = ["register", "cmd_latency", "profile", "latency_cost"]


def register(subparsers: Any) -> None:
    """Add ``xnas latency``."""
    p = subparsers.add_parser("latency", help="measured latency of an architecture beside the latency model's prediction",
                              description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("arch", metavar="ARCH", help="an architecture (name or document), or 'profile' with --space")
    p.add_argument("--space", help="with 'profile': the space whose random architectures fill the table")
    p.add_argument("--device", default="cpu", choices=("cpu", "cuda"), help="where to run (default cpu)")
    p.add_argument("--threads", type=positive_int, default=1, help="torch intra-op threads (default 1)")
    p.add_argument("--batch", type=positive_int, default=1, help="clips per call (default 1)")
    p.add_argument("--mode", default="clip", choices=("clip", "stream"),
                   help="clip: one forward of the whole clip (default); stream: one frame step of a causal MoViNet")
    p.add_argument("--archs", type=positive_int, default=16, help="with 'profile': architectures to measure (default 16)")
    p.add_argument("--profile-archs", type=positive_int, default=12,
                   help="architectures measured when ARCH's family has no table yet (default 12)")
    p.add_argument("--profile-max-gflops", type=float, default=8.0,
                   help="calibration draws costlier than this are skipped (default 8; a CPU forward of more takes seconds)")
    p.add_argument("--no-measure", action="store_true", help="print the prediction only")
    p.add_argument("--json", action="store_true", help="print one JSON object")
    p.add_argument("--seed", type=int, default=0, help="seeds the calibration draws")
    p.set_defaults(func=cmd_latency)


def _check_device(device: str) -> None:
    if device == "cuda":
        import torch

        if not torch.cuda.is_available():
            raise UsageError("--device: got 'cuda'; allowed: cpu (no CUDA device is visible here)")


def profile(space_name: str, *, device: str, threads: int, batch: int, mode: str, archs: int, max_gflops: float,
            seed: int = 0, log=print) -> Any:
    """Measure ``archs`` random architectures of ``space_name`` (spanning its cost range, each at most
    ``max_gflops``), add them to this machine's table and refit; returns the table."""
    from nas.latency import LatencyTable, calibration_draws
    from nas.measure import measure_latency
    from nas.registry import load_space

    space = load_space(space_name)
    chosen = [a.renamed(f"{space.name}-lat{i + 1:02d}")
              for i, a in enumerate(calibration_draws(space, archs, seed, max_gflops))]
    if len(chosen) < 2:
        raise UsageError(f"--profile-max-gflops: got {max_gflops:g}; allowed: a cap that at least 2 random "
                         f"architectures of {space.name} fit under")
    table = LatencyTable.load(device, threads)
    for i, arch in enumerate(chosen):
        m = measure_latency(arch, device=device, threads=threads, batch=batch, mode=mode)
        table.add(arch, mode, batch, m["median_ms"], m["iqr_ms"])
        log(f"profile {space.name} {i + 1}/{len(chosen)}: {arch.cost().gflops:.3f} GFLOPs  "
            f"{m['median_ms']:.2f} ms (IQR {m['iqr_ms']:.2f})")
    table.refit([table.key(chosen[0], mode)])
    path = table.save()
    log(f"table: {path}")
    return table


def table_for(arch: Any, *, device: str, threads: int, mode: str, batch: int, archs: int, max_gflops: float,
              flag: str, seed: int = 0, log=print) -> Any:
    """This machine's latency table, able to predict ``arch`` in ``mode``: the family's entries are
    measured first when missing (``archs`` architectures of its shipped space). ``flag`` names the
    command-line input an unsupported family is reported against."""
    from nas.latency import LatencyError, LatencyTable, profile_space_for

    table = LatencyTable.load(device, threads)
    if table.has(arch, mode):
        return table
    try:
        calibration = profile_space_for(arch, mode)
    except LatencyError as err:
        raise UsageError(f"{flag}: {err}") from None
    log(f"no latency table for {arch.family}/{mode} on {device} at {threads} thread(s): measuring {archs} "
        f"architectures of {calibration} first (xnas latency profile --space {calibration} does it ahead)")
    return profile(calibration, device=device, threads=threads, batch=batch, mode=mode, archs=archs,
                   max_gflops=max_gflops, seed=seed, log=log)


def latency_cost(space: Any, *, threads: int, device: str = "cpu", archs: int = 12, max_gflops: float = 8.0,
                 log=print) -> "Callable[[Any], float]":
    """The predicted clip latency (ms, batch 1) of an architecture of ``space`` on this machine: what a
    driver's ``--target-ms`` measures cost in (the family's table measured first if missing)."""
    import random

    probe = space.freeze(space.random(random.Random(0)))
    table = table_for(probe, device=device, threads=threads, mode="clip", batch=1, archs=archs,
                      max_gflops=max_gflops, flag="--target-ms", log=log)
    return lambda arch: table.predict_ms(arch, "clip", 1)


def cmd_latency(args: argparse.Namespace) -> int:
    """Predict and measure (see the module docstring)."""
    from nas.errors import DSLError
    from nas.latency import LatencyError, features, table_path
    from nas.registry import load_arch

    _check_device(args.device)
    err_log = (lambda m: print(m, file=sys.stderr, flush=True))
    if args.arch == "profile":
        if not args.space:
            raise UsageError("--space: required with 'xnas latency profile'; allowed: a space name or file")
        profile(args.space, device=args.device, threads=args.threads, batch=args.batch, mode=args.mode,
                archs=args.archs, max_gflops=args.profile_max_gflops, seed=args.seed, log=err_log)
        return 0
    try:
        arch = load_arch(args.arch)
        features(arch, args.mode, args.batch)
    except (DSLError, FileNotFoundError, OSError) as err:
        raise UsageError(f"ARCH: {err}") from None
    except LatencyError as err:
        raise UsageError(f"--{err}") from None
    table = table_for(arch, device=args.device, threads=args.threads, mode=args.mode, batch=args.batch,
                      archs=args.profile_archs, max_gflops=args.profile_max_gflops, flag="ARCH", seed=args.seed,
                      log=err_log)
    t0 = time.perf_counter()
    predicted = table.predict_ms(arch, args.mode, args.batch)
    predict_us = (time.perf_counter() - t0) * 1e6
    out: dict[str, Any] = {"arch": arch.name, "hash": arch.hash, "gflops": arch.cost().gflops, "device": args.device,
                           "threads": args.threads, "batch": args.batch, "mode": args.mode, "predicted_ms": predicted,
                           "prediction_us": predict_us, "table": str(table_path(args.device, args.threads)),
                           "measured_ms": None, "iqr_ms": None, "error_pct": None}
    if not args.no_measure:
        from nas.measure import measure_latency

        m = measure_latency(arch, device=args.device, threads=args.threads, batch=args.batch, mode=args.mode)
        out.update(measured_ms=m["median_ms"], iqr_ms=m["iqr_ms"], runs=int(m["runs"]),
                   error_pct=100.0 * (predicted / m["median_ms"] - 1))
    if args.json:
        print(json.dumps(out, indent=2))
        return 0
    unit = "per frame step" if args.mode == "stream" else "per clip"
    print(f"{arch.name}: {out['gflops']:.3f} GFLOPs ({GFLOPS_NOTE}), batch {args.batch}, {args.device}, "
          f"{args.threads} thread(s), {unit}")
    print(f"  predicted  {predicted:9.2f} ms   (latency model, {predict_us:.0f} µs to predict)")
    if out["measured_ms"] is not None:
        print(f"  measured   {out['measured_ms']:9.2f} ms   (median of {out['runs']} runs, IQR {out['iqr_ms']:.2f} ms)")
        print(f"  error      {out['error_pct']:+9.1f} %")
    return 0
