"""The TuNAS search loop: one weight-sharing supernet, one REINFORCE controller, one cost target.

Each step (§1.4 of ``shared/reference/tunas.md``):

1. the controller samples an architecture, with the op / filter / depth warm-ups applied;
2. **shared weights**: that architecture on a training batch, cross-entropy (label smoothing 0.1)
   plus the masked L2 of the weights it used, one optimiser step (cosine schedule, linear warm-up
   over the first 2.5 %);
3. **then** the same architecture on a separate, larger **held-out batch** (``val_multiplier`` x
   the batch; synthetic data: a training split drawn with another seed, as TuNAS holds out part of
   ImageNet-train; real videos: the validation split): Q = its top-1 fraction, BN on batch statistics;
4. reward ``R = Q + beta * |cost / target - 1|`` with the exact analytic GFLOPs, REINFORCE update.

The final architecture is the argmax of every choice. Everything needed to continue exactly --
supernet weights, both optimisers' states, policy logits, Adam moments, the EMA baseline, every RNG
state, the step and the trajectory so far -- is checkpointed together, atomically, so an interrupted
search resumed from its checkpoint ends with the same policy as an uninterrupted one.
"""
from __future__ import annotations

import csv
import dataclasses
import json
import os
import sys
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable, Mapping

import numpy as np
import torch
import torch.nn.functional as F

from nas.cost import GFLOPS_NOTE
from nas.dsl.arch import Arch
from nas.dsl.space import Space
from nas.files import atomic_path
from nas.loop import LoopResult, run_steps
from nas.optim import RMSpropTF
from nas.drivers.tunas.config import SearchConfig
from nas.drivers.tunas.controller import Controller, warmup_probability
from nas.drivers.tunas.supernet import SEARCH_FIXED_PREFIXES, Path as NetPath, Supernet, kernel_positions
from nas.models.onednn import SEARCH_PRIMITIVE_CACHE_CAPACITY, size_primitive_cache

__all__ = ["SearchConfig", "SearchResult", "run_search", "supernet_loss", "supernet_backward", "default_fixed", "TRAJECTORY_COLUMNS",
           "SupernetData", "warmup_steps"]

TRAJECTORY_COLUMNS = ("step", "loss", "q", "reward", "baseline", "advantage", "rl_lr", "warmup_p", "entropy",
                      "sampled_gflops", "expected_gflops", "argmax_gflops", "supernet_top1", "target_gflops", "wall_s",
                      "sampled_ms", "expected_ms", "argmax_ms", "target_ms")


@dataclass
class SearchResult:
    """What a search produced."""

    argmax: Arch
    top_k: list[Arch]
    trajectory: list[dict[str, Any]]
    policy: dict[str, list[float]]
    dir: Path
    steps_done: int
    wall_s: float
    step_s: float
    cpu_s: float = 0.0
    supernet_top1: float = float("nan")  # the argmax path's held-out top-1 under the final shared weights
    chance_top1: float = float("nan")

    @property
    def finished(self) -> bool:
        """Whether every step ran (False when stopped early)."""
        return bool(self.trajectory) and self.steps_done >= int(self.trajectory[-1].get("total_steps", 0))


def default_fixed(space: Space, dropout: float | None = None) -> dict[str, Any]:
    """Values for the choices a search does not decide (labels under :data:`SEARCH_FIXED_PREFIXES`).

    ``dropout`` overrides the head dropout; every other such choice takes its default (first) value.
    The clip a search trains at is written into the space first (:meth:`Space.with_clip`), so it may
    lie outside the space's clip choices. Raises ValueError naming the label if a value is not allowed.
    """
    fixed = {}
    for label, choice in space.dims().items():
        if label.startswith(SEARCH_FIXED_PREFIXES):
            value = dropout if label == "head/dropout" and dropout is not None else choice.default
            if not choice.admits(value):
                raise ValueError(f"{label}: got {value!r}; allowed: {choice.allowed()}")
            fixed[label] = choice.normalise(value)
    if dropout is not None and "head/dropout" not in fixed:  # the space fixes it already: it must agree
        if space.doc["head"]["dropout"] != dropout:
            raise ValueError(f"head/dropout: got {dropout!r}; allowed: {space.doc['head']['dropout']!r} "
                             f"(fixed by space {space.name!r})")
    return fixed


class SupernetData:
    """Training and held-out splits at the search clip, as uint8 arrays, with per-step batches."""

    def __init__(self, data: str, space: Space, fixed: Mapping[str, Any], cfg: SearchConfig) -> None:
        from nas.proxy import Proxy
        from nas.train import make_data

        probe = space.freeze({**space.default(), **fixed})
        proxy = Proxy(size_scale=cfg.size_scale, task=cfg.task, train_clips=cfg.train_clips,
                      val_clips=cfg.heldout_clips, batch_size=cfg.batch_size)
        train, val, self.description = make_data(data, probe, proxy, cfg.seed)
        if data == "synthetic":
            # TuNAS holds part of the training set out for the controller: a training split drawn with
            # another seed (disjoint clips), never the validation split the proxy reports on
            held, _, _ = make_data(data, probe, dataclasses.replace(proxy, train_clips=cfg.heldout_clips), cfg.seed + 1)
        else:
            held = val
        self.num_classes = train.num_classes
        self.train = self._arrays(train)
        self.held = self._arrays(held)
        self.cfg = cfg

    @staticmethod
    def _arrays(split: Any) -> tuple[np.ndarray, np.ndarray]:
        items = [split[i] for i in range(len(split))]
        clips = np.stack([c[0] for c, _ in items])  # first view: (N, T, H, W, 3) uint8
        labels = np.asarray([lab for _, lab in items], dtype=np.int64)
        return clips, labels

    def batch(self, which: str, step: int, size: int) -> tuple[torch.Tensor, torch.Tensor]:
        """Batch ``step`` of a split: a fresh permutation per epoch, a function of (seed, split, epoch)."""
        from nas.train import MEAN, STD

        clips, labels = self.train if which == "train" else self.held
        n = len(labels)
        per_epoch = max(1, n // size)
        epoch, pos = divmod(step, per_epoch)
        order = np.random.default_rng([self.cfg.seed, 0 if which == "train" else 1, epoch]).permutation(n)
        idx = order[pos * size: (pos + 1) * size] if n >= size else order
        x = torch.from_numpy(np.ascontiguousarray(clips[idx])).permute(0, 4, 1, 2, 3).float()
        x = x.div_(255.0).sub_(MEAN).div_(STD)  # the permuted view is already channels_last_3d in memory
        fmt = torch.channels_last_3d if self.cfg.layout == "channels_last_3d" else torch.contiguous_format
        return x.contiguous(memory_format=fmt), torch.from_numpy(labels[idx])


@torch.no_grad()
def heldout_top1(supernet: Supernet, path: NetPath, batches: list[tuple[torch.Tensor, torch.Tensor]]) -> float:
    """Top-1 (percent) of one path of the shared weights on held-out batches, measured the way the
    controller's Q is (batch statistics), without disturbing the search: the global RNG (dropout) is
    restored afterwards and the BN running statistics are left as they were."""
    bns = [m for m in supernet.modules() if isinstance(m, torch.nn.modules.batchnorm._BatchNorm)]
    saved = [m.momentum for m in bns]
    for m in bns:
        m.momentum = 0.0
    correct = total = 0
    try:
        with torch.random.fork_rng():
            for x, y in batches:
                correct += int((supernet(x, path).argmax(-1) == y).sum())
                total += len(y)
    finally:
        for m, momentum in zip(bns, saved):
            m.momentum = momentum
    return 100.0 * correct / max(1, total)


def supernet_loss(supernet: Supernet, path: NetPath, x: torch.Tensor, y: torch.Tensor,
                  cfg: SearchConfig) -> torch.Tensor:
    """TuNAS's training loss of one path: cross-entropy with label smoothing plus the masked L2 of the
    weights the path uses (``wd / 2 * sum(w**2)``, never optimiser weight decay). The definition; the
    search trains with :func:`supernet_backward`, which has its gradient."""
    loss = F.cross_entropy(supernet(x, path), y, label_smoothing=cfg.label_smoothing)
    if cfg.weight_decay:
        loss = loss + 0.5 * cfg.weight_decay * supernet.l2(path)
    return loss


def supernet_backward(supernet: Supernet, path: NetPath, x: torch.Tensor, y: torch.Tensor, cfg: SearchConfig,
                      scale: float = 1.0) -> float:
    """Accumulate the gradient of ``scale * supernet_loss(...)`` and return the loss's value.

    The cross-entropy goes through autograd; the masked L2's gradient (``wd * w`` on the used slices) is
    added directly (:meth:`Supernet.add_l2_grad`), 4.7 % faster a step (measured)."""
    loss = F.cross_entropy(supernet(x, path), y, label_smoothing=cfg.label_smoothing)
    (loss * scale).backward()
    value = float(loss.detach())
    if cfg.weight_decay:
        value += 0.5 * cfg.weight_decay * supernet.add_l2_grad(path, cfg.weight_decay * scale)
    return value


# A mid-search checkpoint (every ``checkpoint_every`` steps) is skipped when the last one is less than
# this many seconds old. The checkpoint holds the max-width supernet and its Adam state (357 MB for the
# default movinet space) plus the policy history: 1.2-1.9 s to write, which every 30 steps was about 50 s
# (10 %) of the default search's 472 s (2026-12-07, 96 GMAC/s). A kill loses at most a minute of steps.
# The environment variable XNAS_CHECKPOINT_MIN_S overrides it (tests of kills mid-search set 0).
CHECKPOINT_MIN_INTERVAL_S = 60.0


def _checkpoint_min_interval_s() -> float:
    raw = os.environ.get("XNAS_CHECKPOINT_MIN_S", "")
    try:
        return float(raw) if raw else CHECKPOINT_MIN_INTERVAL_S
    except ValueError:
        raise ValueError(f"XNAS_CHECKPOINT_MIN_S: got {raw!r}; allowed: a number of seconds") from None


def warmup_steps(total: int) -> int:
    """TuNAS's learning-rate warm-up: 2.5 % of the steps (at least one), then a cosine to zero."""
    return max(1, round(0.025 * total))


def _save(path: Path, state: dict[str, Any]) -> None:
    with atomic_path(path) as tmp:  # a crash mid-write never leaves a truncated checkpoint
        torch.save(state, tmp)


def run_search(space: Space, cfg: SearchConfig, out_dir: str | Path, *, data: str = "synthetic", top_k: int = 0,
               progress: bool | None = None, log: Callable[[str], None] | None = None,
               stop_after: int | None = None, plot: bool = True,
               latency: Callable[[Arch], float] | None = None) -> SearchResult:
    """Run (or resume, or reload a finished) TuNAS search and write its outputs under ``out_dir``.

    Outputs: ``checkpoint.pt`` (everything needed to resume), ``argmax.yaml`` (the final
    architecture, frozen), ``top_k/*.yaml``, ``trajectory.csv`` (one row per ``log_every`` steps),
    ``policy.csv`` (probability of every value of every choice at those steps), ``policy.png``
    (costs vs target, reward and Q, the policy's confidence per choice) and ``summary.json``.

    Args:
        space: a ``movinet``-family space.
        cfg: the search configuration.
        out_dir: the search's folder (a checkpoint there with the same configuration is resumed).
        data: ``synthetic`` or a path to videos.
        top_k: how many of the final policy's most probable architectures (besides the argmax) to return.
        progress: a progress line on stderr (default: when stderr is a terminal).
        log: where status lines go (default: stderr).
        stop_after: stop after this many steps in total (checkpointing first) -- tests of resume.
        plot: draw ``policy.png`` (tests skip it: matplotlib costs seconds).
        latency: an architecture's predicted milliseconds (:meth:`nas.latency.LatencyTable.predict_ms`):
            the controller's cost with ``cfg.target_ms`` (required then).

    Raises:
        ValueError: ``cfg.target_ms`` without ``latency``.
    """
    if cfg.target_ms is not None and latency is None:
        raise ValueError(f"latency: got None with target_ms {cfg.target_ms:g}; allowed: a function giving an "
                         "architecture's predicted milliseconds (nas.latency.LatencyTable.predict_ms)")
    in_ms = cfg.target_ms is not None
    # before the supernet's first conv: a cache that keeps every primitive the search creates (in a
    # process that already ran a network it is too late, and nothing changes)
    size_primitive_cache(SEARCH_PRIMITIVE_CACHE_CAPACITY)
    log = log or (lambda m: print(m, file=sys.stderr, flush=True))
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    ckpt_path = out / "checkpoint.pt"
    fixed = dict(cfg.fixed)
    torch.manual_seed(cfg.seed)
    t_setup = time.perf_counter()
    loaded = SupernetData(data, space, fixed, cfg)
    supernet = Supernet(space, classes=loaded.num_classes, zero_init_residual=cfg.zero_init_residual)
    if cfg.layout == "channels_last_3d":
        supernet.to(memory_format=torch.channels_last_3d)
    if cfg.optimizer == "adam":
        opt: torch.optim.Optimizer = torch.optim.Adam(supernet.parameters(), lr=cfg.lr)
    else:
        opt = RMSpropTF(supernet.parameters(), lr=cfg.lr, rho=0.9, momentum=0.9, eps=1.0, ms_init=1.0)  # TF 1.x
    ctrl = Controller(space, cfg.target, cfg.steps, fixed=fixed, lr=cfg.rl_lr, beta=cfg.beta,
                      reward_kind=cfg.reward, warmup_fraction=cfg.warmup_fraction,
                      rl_delay_fraction=cfg.warmup_fraction, seed=cfg.seed, cost_fn=latency if in_ms else None)
    # GFLOPs for the trajectory: the controller's own (cached) cost, unless it counts predicted ms
    gflops_of = (lambda arch: arch.cost().gflops) if in_ms else ctrl.cost
    positions = kernel_positions(space)
    trajectory: list[dict[str, Any]] = []
    policy_rows: list[dict[str, Any]] = []
    train_time, train_steps = 0.0, 0
    start = 0
    if ckpt_path.is_file():
        state = torch.load(ckpt_path, weights_only=False)
        if state.get("config_hash") == cfg.hash:
            supernet.load_state_dict(state["supernet"])
            opt.load_state_dict(state["optimizer"])
            ctrl.load_state_dict(state["controller"])
            torch.set_rng_state(state["torch_rng"])
            trajectory, policy_rows = state["trajectory"], state["policy_rows"]
            train_time, train_steps = state.get("train_time", 0.0), state.get("train_steps", 0)
            start = state["step"]
            log(f"search: resumed at step {start}/{cfg.steps} from {ckpt_path}")
        else:
            log(f"search: {ckpt_path} belongs to another configuration; starting afresh")
    setup_s = time.perf_counter() - t_setup

    def checkpoint(step: int) -> None:
        _save(ckpt_path, {"config_hash": cfg.hash, "config": cfg.to_dict(), "step": step,
                          "supernet": supernet.state_dict(), "optimizer": opt.state_dict(),
                          "controller": ctrl.state_dict(), "torch_rng": torch.get_rng_state(),
                          "trajectory": trajectory, "policy_rows": policy_rows,
                          "train_time": train_time, "train_steps": train_steps})

    t0, cpu0 = time.perf_counter(), time.process_time()
    end = cfg.steps if stop_after is None else min(cfg.steps, stop_after)
    supernet.train()
    k_archs = cfg.archs_per_step
    sampled_now: list[Any] = []
    paths_now: list[NetPath] = []

    def train_step(step: int) -> dict[str, Any]:
        """Shared weights: each sampled architecture on its own training batch, gradients averaged."""
        sampled_now[:] = [ctrl.sample() for _ in range(k_archs)]
        paths_now.clear()
        for sampled in sampled_now:
            mixed = [p for label in sampled.mixed_labels for p in positions.get(label, ())]
            paths_now.append(NetPath.of(sampled.arch, mixed, classes=loaded.num_classes))
        losses = []
        for j, path in enumerate(paths_now):
            x, y = loaded.batch("train", step * k_archs + j, cfg.batch_size)
            losses.append(supernet_backward(supernet, path, x, y, cfg, scale=1 / k_archs))
        return {"loss": sum(losses) / k_archs}

    def after_step(done: int, metrics: dict[str, Any]) -> None:
        """Q of the same architectures on their own held-out batches (after the update), then REINFORCE."""
        step = done - 1
        qs = []
        with torch.no_grad():
            for j, path in enumerate(paths_now):
                xv, yv = loaded.batch("held", step * k_archs + j, cfg.batch_size * cfg.val_multiplier)
                qs.append(float((supernet(xv, path).argmax(-1) == yv).float().mean()))
        info = ctrl.update_many([(s.indices, q, s.gflops) for s, q in zip(sampled_now, qs)])
        row = {"step": done, "loss": metrics["loss"], "q": sum(qs) / k_archs, **info,
               "warmup_p": warmup_probability(step, cfg.steps, cfg.warmup_fraction),
               "sampled_gflops": sum(gflops_of(s.arch) for s in sampled_now) / k_archs,
               "target_gflops": cfg.target_gflops, "total_steps": cfg.steps}
        if in_ms:  # the controller's cost is the predicted latency: log it beside the GFLOPs
            row.update(sampled_ms=sum(s.gflops for s in sampled_now) / k_archs, target_ms=cfg.target_ms)
        if done % cfg.log_every == 0 or done == cfg.steps:
            argmax_now = ctrl.argmax_arch()
            row["expected_ms" if in_ms else "expected_gflops"] = ctrl.expected_cost(cfg.expected_samples, seed=done)
            row["argmax_gflops"] = gflops_of(argmax_now)
            if in_ms:
                row["argmax_ms"] = ctrl.cost(argmax_now)
            held = loaded.batch("held", step * k_archs, cfg.batch_size * cfg.val_multiplier)
            row["supernet_top1"] = heldout_top1(supernet, argmax_path(), [held])
            for label, probs in ctrl.policy.probs().items():
                for value, p in zip(ctrl.policy.values[label], probs):
                    policy_rows.append({"step": done, "label": label, "value": value, "prob": p})
        row["wall_s"] = time.perf_counter() - t0
        metrics.update(row)
        trajectory.append(row)
        if not progress_on and (done % max(1, cfg.steps // 10) == 0 or done == cfg.steps):
            # no terminal: a progress line in the log every 10 % of the steps
            log(f"search: step {done}/{cfg.steps}, loss {row['loss']:.3f}, Q {row['q']:.2f}, sampled "
                f"{row['sampled_gflops']:.3g} GFLOPs, {row['wall_s'] / max(1, done - start):.2f} s/step")

    def argmax_path() -> NetPath:
        return NetPath.of(ctrl.argmax_arch(), classes=loaded.num_classes)

    last_save = [time.perf_counter()]
    min_interval = _checkpoint_min_interval_s()

    def save(done: int, so_far: LoopResult) -> None:
        nonlocal train_time, train_steps
        if done < end and time.perf_counter() - last_save[0] < min_interval:
            return
        train_time, train_steps = train_time_before + so_far.train_s, train_steps_before + done - start
        checkpoint(done)
        last_save[0] = time.perf_counter()

    progress_on = sys.stderr.isatty() if progress is None else bool(progress)
    train_time_before, train_steps_before = train_time, train_steps

    loop = run_steps(opt, train_step, start=start, end=end, total=cfg.steps, base_lr=cfg.lr,
                     warmup=warmup_steps(cfg.steps), checkpoint_every=cfg.checkpoint_every, save=save,
                     checkpoint_at_end=True, after_step=after_step, progress=progress_on,
                     label=f"tunas @{cfg.target_label}",
                     describe=lambda m: f"loss {m['loss']:.3f} Q {m['q']:.2f} sampled {m['sampled_gflops']:.3g} GFLOPs")
    train_time, train_steps = train_time_before + loop.train_s, train_steps_before + loop.steps_done - start
    steps_done = loop.steps_done
    if loop.failure:
        log(f"search: stopped: {loop.failure}")
    wall, cpu = time.perf_counter() - t0, time.process_time() - cpu0
    argmax = ctrl.argmax_arch(name=f"{space.name}-tunas-{cfg.target_label}")
    top = ctrl.top_k(top_k, n=max(32, 16 * top_k), seed=cfg.seed, exclude=[argmax.hash]) if top_k else []
    top = [a.renamed(f"{space.name}-tunas-{cfg.target_label}-top{i + 1}") for i, a in enumerate(top)]
    size = cfg.batch_size * cfg.val_multiplier
    n_held = len(loaded.held[1])
    final_top1 = heldout_top1(supernet, argmax_path(),
                              [loaded.batch("held", i, size) for i in range(max(1, n_held // size))])
    argmax_ms = ctrl.cost(argmax) if in_ms else None
    result = SearchResult(argmax=argmax, top_k=top, trajectory=trajectory, policy=ctrl.policy.probs(), dir=out,
                          steps_done=steps_done, wall_s=wall, step_s=train_time / max(1, train_steps), cpu_s=cpu,
                          supernet_top1=final_top1, chance_top1=100.0 / loaded.num_classes)
    _write_outputs(result, cfg, policy_rows, setup_s, plot, argmax_ms)
    return result


def _write_outputs(result: SearchResult, cfg: SearchConfig, policy_rows: list[dict[str, Any]], setup_s: float,
                   plot: bool = True, argmax_ms: float | None = None) -> None:
    out = result.dir
    result.argmax.save(out / "argmax.yaml")
    for i, arch in enumerate(result.top_k):
        arch.save(out / "top_k" / f"top{i + 1}.yaml")
    with open(out / "trajectory.csv", "w", newline="") as f:
        w = csv.DictWriter(f, fieldnames=TRAJECTORY_COLUMNS, extrasaction="ignore")
        w.writeheader()
        for row in result.trajectory:
            w.writerow({k: row.get(k, "") for k in TRAJECTORY_COLUMNS})
    with open(out / "policy.csv", "w", newline="") as f:
        w = csv.DictWriter(f, fieldnames=("step", "label", "value", "prob"))
        w.writeheader()
        w.writerows(policy_rows)
    cost = result.argmax.cost().gflops
    in_unit = argmax_ms if cfg.target_ms is not None else cost
    summary = {"target_gflops": cfg.target_gflops, "argmax": result.argmax.name, "argmax_hash": result.argmax.hash,
               "argmax_gflops": cost, "argmax_off_target": in_unit / cfg.target - 1,
               **({"target_ms": cfg.target_ms, "argmax_ms": argmax_ms} if cfg.target_ms is not None else {}),
               "top_k": [{"name": a.name, "hash": a.hash, "gflops": a.cost().gflops} for a in result.top_k],
               "steps_done": result.steps_done, "steps": cfg.steps, "search_wall_s": result.wall_s,
               "search_cpu_s": result.cpu_s,
               "supernet_top1": result.supernet_top1, "chance_top1": result.chance_top1,
               "supernet_train_step_s": result.step_s, "archs_per_step": cfg.archs_per_step, "setup_s": setup_s, "config": cfg.to_dict(),
               "gflops_convention": GFLOPS_NOTE}
    (out / "summary.json").write_text(json.dumps(summary, indent=2, default=str))
    if plot and result.trajectory:
        from nas.drivers.tunas.plots import policy_plot

        policy_plot(result.trajectory, policy_rows, out / "policy.png", title=f"TuNAS policy, target {cfg.target:g} {'ms' if cfg.target_ms else 'GFLOPs'}")
