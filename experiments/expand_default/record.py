"""Record a finished ``xnas expand`` run here: copy its trade-off and Pareto plots, trajectory and summary
into ``experiments/expand_default/`` and write ``recorded_run.md`` (path table, contraction, final
architecture, trial count and wall time taken from the run's own log). Usage::

    .venv/bin/xnas expand --target-gflops 4                       # the default run (prints its run dir)
    .venv/bin/python experiments/expand_default/record.py runs/expand-<hash>

The wall time is the span between the run log's first and last timestamps (the whole run when it was
made in one invocation; a resumed run's span includes the pause, which the file then says).
"""
from __future__ import annotations

import argparse
import csv
import datetime as dt
import json
import platform
import shutil
from pathlib import Path

HERE = Path(__file__).resolve().parent


def _stamps(log: Path) -> tuple[dt.datetime, dt.datetime, int]:
    lines = [ln for ln in log.read_text().splitlines() if ln.strip()]
    times = [dt.datetime.fromisoformat(ln.split(" ", 1)[0].replace("Z", "+00:00")) for ln in lines]
    resumed = sum("resumed run" in ln for ln in lines)
    return times[0], times[-1], resumed


def _step_ends(results: Path) -> dict[int, dt.datetime]:
    """When the last trial of each step finished (the contraction's trial counts as the last step + 1)."""
    ends: dict[int, dt.datetime] = {}
    for row in csv.DictReader(results.open()):
        tags = json.loads(row["tags"]) if row["tags"] else {}
        step = int(tags.get("step", 0))
        step = step + 1 if tags.get("role") in ("contraction", "adjustment") else step
        t = dt.datetime.fromisoformat(row["finished_at"].replace("Z", "+00:00"))
        ends[step] = max(ends.get(step, t), t)
    return ends


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("run_dir", type=Path)
    args = parser.parse_args()
    run = args.run_dir
    summary = json.loads((run / "expand.json").read_text())
    rows = list(csv.DictReader((run / "trajectory.csv").open()))
    for name in ("plots/expansion.png", "plots/pareto.png", "trajectory.csv", "expand.json"):
        shutil.copy(run / name, HERE / Path(name).name)
    start, end, resumed = _stamps(run / "run.log")
    wall = (end - start).total_seconds()
    config = json.loads((run / "config.json").read_text())["config"]
    lines = [
        "# The recorded default run of `xnas expand --target-gflops 4`",
        "",
        f"Run `{run.name}`, {start:%Y-%m-%d %H:%M} UTC, on {platform.machine()} with "
        f"{__import__('os').cpu_count()} CPUs; proxy {json.dumps(config.get('proxy'))}.",
        f"Wall time: **{wall / 60:.1f} min** ({wall:.0f} s, first to last line of run.log"
        + (f"; resumed {resumed} time(s), so this includes the pause)" if resumed else ")") + ".",
        f"Trials: {len(rows)} ({summary['trials']} evaluated).",
        "",
        "| step | axis chosen | GFLOPs | params | proxy top-1 (%) | step wall time (s) |",
        "|---|---|---|---|---|---|",
    ]
    ends = _step_ends(run / "results.csv")
    for p in summary["path"]:
        top1 = f"{p['top1']:.2f}" if p["top1"] is not None else "-"
        label = p["step"] if p["role"] in ("start", "candidate") else p["role"]
        key = p["step"] if p["role"] in ("start", "candidate") else max(ends)
        took = ends[key] - ends[key - 1] if key - 1 in ends else ends[key] - start
        lines.append(f"| {label} | {p['axis'] or 'start'} | {p['gflops']:.4f} | {p['params']:,} | {top1} "
                     f"| {took.total_seconds():.0f} |")
    f = summary["final"]
    lines += [
        "",
        f"Contraction: {'; '.join(summary['contraction']) or 'none (the last step landed within the tolerance)'}.",
        f"Final: {f['gflops']:.4f} GFLOPs ({100 * f['error_vs_target']:+.2f} % vs {summary['target_gflops']:g}), "
        f"{f['params']:,} params, proxy top-1 {f['top1']:.2f} %, clip {f['clip']['frames']} x "
        f"{f['clip']['frame_stride']}, {f['clip']['crop']}²; factors {json.dumps(f['factors'])}.",
        "",
        "![expansion trade-off](expansion.png)",
        "",
        summary["gflops_convention"] + ".",
    ]
    (HERE / "recorded_run.md").write_text("\n".join(lines) + "\n")
    print(f"wrote {HERE / 'recorded_run.md'} and copied the plots, trajectory and summary")


if __name__ == "__main__":
    main()
