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
import math
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import optuna

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
from nas.cli import main as xnas  # noqa: E402

TARGET, CLIP = 0.18, "8x10x112"


def run(strategy: str, seed: int, trials: int, runs_dir: Path, max_gflops: float | None) -> list[tuple[int, float, str]]:
    name = f"{strategy}-{seed}"
    code = xnas(["sample", "--space", "movinet", "--clip", CLIP, "--strategy", strategy, "--target-gflops", str(TARGET),
                 "--trials", str(trials), "--seed", str(seed), "--evaluator", "formula", "--executor", "local",
                 "--runs-dir", str(runs_dir), "--name", name, "--no-progress", "--baselines", "",
                 *(["--max-gflops", str(max_gflops)] if max_gflops is not None else [])])
    if code != 0:
        raise SystemExit(f"xnas sample {name} exited {code}")
    # every proposal, repeats included (results.csv has one row per distinct architecture)
    study = optuna.load_study(study_name=name, storage=f"sqlite:///{runs_dir / name / 'study.db'}")
    return [(t.number, float(t.user_attrs["gflops"]), str(t.user_attrs["hash"])) for t in study.get_trials()
            if t.user_attrs.get("role") != "baseline"]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--trials", type=int, default=400)
    parser.add_argument("--seeds", default="0,1,2")
    parser.add_argument("--strategies", default="random,tpe,nsga2")
    parser.add_argument("--max-gflops", type=float, help="the cost cap (default: xnas sample's, 2 x the target; "
                        "0: none)")
    parser.add_argument("--out", type=Path)
    args = parser.parse_args()
    commit = subprocess.run(["git", "-C", str(ROOT), "rev-parse", "--short", "HEAD"], capture_output=True,
                            text=True).stdout.strip()
    # xnas sample's default cap with a target: 2 x --target-gflops (MoViNet has no larger reference)
    cap = 2 * TARGET if args.max_gflops is None else (args.max_gflops or float("inf"))
    quarter = args.trials // 4
    lines = [f"# where the samplers propose under a cost cap (commit {commit}, `experiments/sampler_cost_cap.py "
             f"--trials {args.trials} --seeds {args.seeds} --strategies {args.strategies}"
             + (f" --max-gflops {args.max_gflops:g}" if args.max_gflops is not None else "") + "`)", "",
             f"MoViNet space at clip {CLIP}, target {TARGET} GFLOPs (one multiply-add = one FLOP), "
             + (f"cap {cap:g} GFLOPs, " if math.isfinite(cap) else "no cost cap, ") +
             "formula evaluator (no training). `in cap` = proposals at or under the cap (random / tpe train only "
             f"these); `in target` = at or under {TARGET} (NSGA-II's feasible set); per quarter of "
             f"{quarter} trials, repeated proposals counted. `nearest` = the proposal closest to the target, as an "
             "offset; `distinct` = distinct architectures among the proposals.", "",
             "| strategy | seed | in cap per quarter | in target per quarter | nearest | min GFLOPs | distinct | wall s |",
             "|---|---|---|---|---|---|---|---|"]
    with tempfile.TemporaryDirectory() as tmp:
        for strategy in args.strategies.split(","):
            for seed in (int(s) for s in args.seeds.split(",")):
                t0 = time.perf_counter()
                rows = run(strategy, seed, args.trials, Path(tmp), args.max_gflops)
                wall = time.perf_counter() - t0
                gflops = [g for _, g, _ in sorted(rows)]
                distinct = len({h for _, _, h in rows})
                per_q = [gflops[i * quarter:(i + 1) * quarter] for i in range(4)]
                in_cap = [sum(g <= cap for g in q) for q in per_q]
                in_target = [sum(g <= TARGET for g in q) for q in per_q]
                nearest = min(gflops, key=lambda g: abs(g / TARGET - 1))
                line = (f"| {strategy} | {seed} | {' / '.join(map(str, in_cap))} | {' / '.join(map(str, in_target))} | "
                        f"{100 * (nearest / TARGET - 1):+.1f} % | {min(gflops):.3f} | {distinct} | {wall:.0f} |")
                print(line, flush=True)
                lines.append(line)
    text = "\n".join(lines) + "\n"
    print(text)
    if args.out:
        args.out.write_text(text)


if __name__ == "__main__":
    main()
