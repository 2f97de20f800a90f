"""Rank agreement between a trained supernet and stand-alone proxy training (issue 8).

Two phases, so the expensive stand-alone trainings are done once and reused for every supernet:

``standalone``: draw ``--archs`` distinct architectures from the final policy of a finished search
(``SEARCH_DIR/checkpoint.pt``: the architectures TuNAS would actually choose between), train each
from scratch with the proxy (``nas.train.evaluate``; default: the default ``Proxy``, the budget
under which a temporal model learns the synthetic default) and record their top-1::

    .venv/bin/python experiments/tunas/rank_agreement.py standalone runs/default/search-0.18 \
        --archs 12 --out experiments/tunas/results/rank_standalone.json

``supernet``: for each architecture of a ``standalone`` record, measure its top-1 *inside* a
trained supernet (``nas.drivers.tunas.score.supernet_top1s``, as ``xnas fidelity`` on a search run:
shared weights, batch-statistics BN, the whole of the supernet's own held-out split) and report Kendall's tau-b between the two accuracy lists (and, as
a reference, between GFLOPs and stand-alone top-1)::

    .venv/bin/python experiments/tunas/rank_agreement.py supernet runs/default/search-0.18 \
        --standalone experiments/tunas/results/rank_standalone.json \
        --out experiments/tunas/results/rank_agreement_default.json
"""
from __future__ import annotations

import argparse
import dataclasses
import json
import time
from pathlib import Path

import torch

import nas
import nas.train
from nas.fidelity import kendall_tau_b  # the project's one implementation (xnas fidelity)
from nas.proxy import Proxy
from nas.drivers.tunas.controller import Controller
from nas.drivers.tunas.search import SearchConfig, SupernetData, supernet_backward, warmup_steps
from nas.loop import run_steps
from nas.drivers.tunas.supernet import Path as NetPath, Supernet


def _load(search_dir: str) -> tuple[dict, SearchConfig]:
    state = torch.load(Path(search_dir) / "checkpoint.pt", weights_only=False)
    return state, SearchConfig(**dict(state["config"]))


def cmd_standalone(args: argparse.Namespace) -> None:
    space = nas.load_space(args.space)
    state, cfg = _load(args.search_dir)
    ctrl = Controller(space, cfg.target_gflops, cfg.steps, fixed=cfg.fixed, seed=cfg.seed)
    ctrl.load_state_dict(state["controller"])
    del state
    with torch.no_grad():  # temperature > 1 flattens the policy: more diverse architectures
        for logits in ctrl.policy.logits:
            logits.div_(args.temperature)
    g = torch.Generator().manual_seed(args.seed)
    archs: dict[str, nas.dsl.Arch] = {}
    skip = set()
    if args.exclude:
        skip = {r["hash"] for path in args.exclude for r in json.loads(Path(path).read_text())["rows"]}
    if args.framewise_of:
        # frame-wise twins of recorded architectures: every block kernel with a temporal extent
        # becomes 1x3x3, so the network cannot see frame order (a point of the same space, at
        # chance on event_order when trained alone): a designed accuracy spread for the ranking
        for path in args.framewise_of:
            for r in json.loads(Path(path).read_text())["rows"][: args.archs]:
                doc = json.loads(json.dumps(r["arch"]))
                for block in doc["blocks"]:
                    for layer in block["layers"]:
                        if not str(layer["kernel"]).startswith("1x"):
                            layer["kernel"] = "1x3x3"
                doc["name"] = r["arch"]["name"] + "-framewise"
                arch = nas.dsl.Arch.from_dict(doc)
                archs.setdefault(arch.hash, arch)
    for _ in range(0 if args.framewise_of else 200 * args.archs):
        arch = ctrl.policy.freeze(ctrl.policy.sample_indices(g))
        if arch.hash in skip or (args.max_gflops and arch.cost().gflops > args.max_gflops):
            continue
        archs.setdefault(arch.hash, arch)
        if len(archs) == args.archs:
            break
    proxy = dataclasses.replace(Proxy(), steps=args.proxy_steps) if args.proxy_steps else Proxy()
    out = Path(args.out)
    done = {r["hash"]: r for r in json.loads(out.read_text())["rows"]} if out.exists() else {}
    rows = []
    for arch in archs.values():
        if arch.hash in done:  # resumable: a rerun skips the trainings already recorded
            rows.append(done[arch.hash])
            continue
        t0 = time.perf_counter()
        res = nas.train.evaluate(arch, "synthetic", proxy, seed=args.seed, progress=False)
        rows.append({"hash": arch.hash, "gflops": arch.cost().gflops, "arch": arch.doc, "standalone_top1": res.top1,
                     "status": res.status, "reason": res.reason, "train_s": time.perf_counter() - t0})
        print(json.dumps({k: v for k, v in rows[-1].items() if k != "arch"}), flush=True)
        out.parent.mkdir(parents=True, exist_ok=True)
        out.write_text(json.dumps({"search_dir": str(args.search_dir), "proxy": proxy.to_dict(),
                                   "seed": args.seed, "temperature": args.temperature, "framewise_of": args.framewise_of,
                                   "max_gflops": args.max_gflops, "rows": rows}, indent=2))


def cmd_supernet(args: argparse.Namespace) -> None:
    # the project's one supernet scoring (xnas fidelity on a search run uses it too): each path's
    # held-out top-1 under the final shared weights, batch statistics, the whole held-out split. The
    # records in results/ before 2026-11-29 were measured with the script's own earlier loop (eval mode,
    # the first --eval-clips held-out clips in batches of 32).
    from nas.drivers.tunas.score import supernet_top1s

    space = nas.load_space(args.space)
    _, cfg = _load(args.search_dir)
    records = [json.loads(Path(p).read_text()) for p in args.standalone]
    todo = []
    for r in [{**r, "draw": "framewise twin" if rec.get("framewise_of") else f"policy T={rec.get('temperature', 1.0):g}"}
              for rec in records for r in rec["rows"]]:
        if r["status"] == "ok" and all(row["hash"] != r["hash"] for row in todo):
            todo.append(r)
    scores = supernet_top1s(space, args.search_dir, [nas.dsl.Arch.from_dict(r["arch"]) for r in todo])
    rows = [{"hash": r["hash"], "gflops": r["gflops"], "supernet_top1": s, "standalone_top1": r["standalone_top1"],
             "draw": r["draw"]} for r, s in zip(todo, scores)]
    for row in rows:
        print(json.dumps(row), flush=True)
    tau = kendall_tau_b([r["supernet_top1"] for r in rows], [r["standalone_top1"] for r in rows])
    tau_cost = kendall_tau_b([r["gflops"] for r in rows], [r["standalone_top1"] for r in rows])
    summary = {"kendall_tau_supernet_vs_standalone": tau, "kendall_tau_gflops_vs_standalone": tau_cost,
               "archs": len(rows), "search_dir": str(args.search_dir), "search": cfg.to_dict(),
               "standalone_proxy": records[0]["proxy"], "standalone": args.standalone, "eval_clips": "all held-out", "rows": rows}
    print(json.dumps({k: v for k, v in summary.items() if k not in ("rows", "search")}))
    if args.out:
        Path(args.out).parent.mkdir(parents=True, exist_ok=True)
        Path(args.out).write_text(json.dumps(summary, indent=2))


def cmd_finetune(args: argparse.Namespace) -> None:
    """Go on training a finished search's shared weights on architectures drawn from its final
    policy (no controller updates): what the last steps of a long TuNAS search do, at a budget the
    default 20-minute search cannot afford. Writes ``OUT/checkpoint.pt`` in the search's format."""
    space = nas.load_space(args.space)
    state, cfg = _load(args.search_dir)
    cfg = dataclasses.replace(cfg, batch_size=args.batch_size, train_clips=args.train_clips)
    torch.manual_seed(args.seed)
    data = SupernetData("synthetic", space, cfg.fixed, cfg)
    supernet = Supernet(space, classes=data.num_classes)
    supernet.load_state_dict(state["supernet"])
    ctrl = Controller(space, cfg.target_gflops, cfg.steps, fixed=cfg.fixed, seed=cfg.seed)
    ctrl.load_state_dict(state["controller"])
    opt = torch.optim.Adam(supernet.parameters(), lr=args.lr)
    g = torch.Generator().manual_seed(args.seed)
    supernet.train()
    t0 = time.perf_counter()
    def train_step(step: int) -> dict:
        arch = ctrl.policy.freeze(ctrl.policy.sample_indices(g))
        x, y = data.batch("train", step, cfg.batch_size)
        return {"loss": supernet_backward(supernet, NetPath.of(arch, classes=data.num_classes), x, y, cfg)}

    def report(done: int, metrics: dict) -> None:
        if done % max(1, args.steps // 10) == 0:
            print(json.dumps({"step": done, "loss": metrics["loss"], "s": round(time.perf_counter() - t0, 1)}),
                  flush=True)

    run_steps(opt, train_step, start=0, end=args.steps, total=args.steps, base_lr=args.lr,
              warmup=warmup_steps(args.steps), after_step=report)
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    state["supernet"] = supernet.state_dict()
    state["finetune"] = {"from": str(args.search_dir), "steps": args.steps, "batch_size": args.batch_size,
                         "train_clips": args.train_clips, "lr": args.lr, "seed": args.seed,
                         "wall_s": time.perf_counter() - t0}
    state.pop("optimizer", None)
    torch.save(state, out / "checkpoint.pt")


def cmd_report(args: argparse.Namespace) -> None:
    """A Markdown table of several ``supernet`` records: tau-b over all architectures and per group."""
    def tau(rows: list[dict]) -> float:
        return kendall_tau_b([r["supernet_top1"] for r in rows], [r["standalone_top1"] for r in rows])

    def span(rows: list[dict], key: str) -> str:
        values = [r[key] for r in rows]
        return f"{sum(values) / len(values):.1f} ({min(values):.1f}-{max(values):.1f})"

    lines = ["| supernet | archs | tau-b, all | tau-b, policy draws only | tau-b, frame-wise twins only | "
             "supernet top-1 %: policy draws | supernet top-1 %: twins | stand-alone top-1 %: policy draws | "
             "stand-alone top-1 %: twins |", "|" + "---|" * 9]
    for path in args.records:
        rec = json.loads(Path(path).read_text())
        rows = rec["rows"]
        drawn = [r for r in rows if r["draw"] != "framewise twin"]
        twins = [r for r in rows if r["draw"] == "framewise twin"]
        name = rec.get("label") or Path(path).stem
        lines.append(f"| {name} | {len(rows)} | {tau(rows):.3f} | {tau(drawn):.3f} | {tau(twins):.3f} | "
                     f"{span(drawn, 'supernet_top1')} | {span(twins, 'supernet_top1')} | "
                     f"{span(drawn, 'standalone_top1')} | {span(twins, 'standalone_top1')} |")
    text = "\n".join(lines) + "\n"
    print(text)
    if args.out:
        Path(args.out).write_text(text)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = ap.add_subparsers(dest="phase", required=True)
    s = sub.add_parser("standalone")
    s.add_argument("search_dir")
    s.add_argument("--space", default="movinet")
    s.add_argument("--archs", type=int, default=12)
    s.add_argument("--proxy-steps", type=int, default=0, help="0: the default Proxy's steps")
    s.add_argument("--seed", type=int, default=0)
    s.add_argument("--temperature", type=float, default=1.0, help="divide the policy's logits by this")
    s.add_argument("--max-gflops", type=float, default=0.0, help="skip costlier draws (0: none)")
    s.add_argument("--exclude", nargs="*", default=[], help="standalone records whose architectures to skip")
    s.add_argument("--framewise-of", nargs="*", default=[],
                   help="instead of drawing: frame-wise twins of the first --archs architectures of these records")
    s.add_argument("--out", required=True)
    s.set_defaults(func=cmd_standalone)
    f = sub.add_parser("finetune")
    f.add_argument("search_dir")
    f.add_argument("--space", default="movinet")
    f.add_argument("--steps", type=int, default=1500)
    f.add_argument("--batch-size", type=int, default=16)
    f.add_argument("--train-clips", type=int, default=2048)
    f.add_argument("--lr", type=float, default=3e-3)
    f.add_argument("--seed", type=int, default=0)
    f.add_argument("--out", required=True)
    f.set_defaults(func=cmd_finetune)
    p = sub.add_parser("supernet")
    p.add_argument("search_dir")
    p.add_argument("--standalone", nargs="+", required=True)
    p.add_argument("--space", default="movinet")
    p.add_argument("--out")
    p.set_defaults(func=cmd_supernet)
    r = sub.add_parser("report")
    r.add_argument("records", nargs="+")
    r.add_argument("--out")
    r.set_defaults(func=cmd_report)
    args = ap.parse_args()
    args.func(args)


if __name__ == "__main__":
    main()
