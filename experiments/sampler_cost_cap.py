"""Do Optuna's samplers learn from the cost cap and the cost target? (issue 20: TPE under a tight cap)

Runs ``xnas sample`` with the free formula evaluator (scores are a formula of the architecture, so no
training: this measures where each sampler *proposes*, not what it would score) over the MoViNet space
at the search clip, for each strategy and seed, and reports per quarter of the trials how many
proposals fall under the cost cap (``random`` / ``tpe``: trained trials) or within the NSGA-II target,
and how near the target the best proposal lands. Run it from the checkout to measure::

    .venv/bin/python experiments/sampler_cost_cap.py [--trials 400] [--seeds 0,1,2] [--out FILE]

Before the cost cap was told to Optuna, a candidate over the cap was a FAIL trial, which no Optuna
sampler reads: TPE then proposed exactly what random search proposes.
"""
from __future__ import annotations

import argparse
import csv
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
from nas.cli import main as xnas  # noqa: E402

TARGET, CLIP = 0.18, "8x10x112"


def run(strategy: str, seed: int, trials: int, runs_dir: Path) -> list[dict[str, str]]:
    name = f"{strategy}-{seed}"
    code = xnas(["sample", "--space", "movinet", "--clip", CLIP, "--strategy", strategy, "--target-gflops", str(TARGET),
                 "--trials", str(trials), "--seed", str(seed), "--evaluator", "formula", "--executor", "local",
                 "--runs-dir", str(runs_dir), "--name", name, "--no-progress", "--baselines", ""])
    if code != 0:
        raise SystemExit(f"xnas sample {name} exited {code}")
    rows = [r for r in csv.DictReader(open(runs_dir / name / "results.csv")) if r["driver"] == "sample"]
    return sorted(rows, key=lambda r: int(r["trial"]))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--trials", type=int, default=400)
    parser.add_argument("--seeds", default="0,1,2")
    parser.add_argument("--strategies", default="random,tpe,nsga2")
    parser.add_argument("--out", type=Path)
    args = parser.parse_args()
    commit = subprocess.run(["git", "-C", str(ROOT), "rev-parse", "--short", "HEAD"], capture_output=True,
                            text=True).stdout.strip()
    cap = 2 * TARGET  # xnas sample's default cap with a target: 2 x --target-gflops (MoViNet has no larger reference)
    quarter = args.trials // 4
    lines = [f"# where the samplers propose under a cost cap (commit {commit}, `experiments/sampler_cost_cap.py "
             f"--trials {args.trials} --seeds {args.seeds}`)", "",
             f"MoViNet space at clip {CLIP}, target {TARGET} GFLOPs (one multiply-add = one FLOP), cap {cap:g} GFLOPs, "
             "formula evaluator (no training). `in cap` = proposals at or under the cap (random / tpe train only "
             f"these); `in target` = at or under {TARGET} (NSGA-II's feasible set); per quarter of "
             f"{quarter} trials. `nearest` = the proposal closest to the target, as an offset.", "",
             "| strategy | seed | in cap per quarter | in target per quarter | nearest | min GFLOPs | wall s |",
             "|---|---|---|---|---|---|---|"]
    with tempfile.TemporaryDirectory() as tmp:
        for strategy in args.strategies.split(","):
            for seed in (int(s) for s in args.seeds.split(",")):
                t0 = time.perf_counter()
                rows = run(strategy, seed, args.trials, Path(tmp))
                wall = time.perf_counter() - t0
                gflops = [float(r["gflops"]) for r in rows]
                per_q = [gflops[i * quarter:(i + 1) * quarter] for i in range(4)]
                in_cap = [sum(g <= cap for g in q) for q in per_q]
                in_target = [sum(g <= TARGET for g in q) for q in per_q]
                nearest = min(gflops, key=lambda g: abs(g / TARGET - 1))
                line = (f"| {strategy} | {seed} | {' / '.join(map(str, in_cap))} | {' / '.join(map(str, in_target))} | "
                        f"{100 * (nearest / TARGET - 1):+.1f} % | {min(gflops):.3f} | {wall:.0f} |")
                print(line, flush=True)
                lines.append(line)
    text = "\n".join(lines) + "\n"
    print(text)
    if args.out:
        args.out.write_text(text)


if __name__ == "__main__":
    main()
