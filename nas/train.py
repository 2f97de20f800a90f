"""The proxy trainer: the one function every driver calls to turn an architecture into a measured accuracy.

``evaluate(arch, data, proxy, seed)`` builds the architecture, trains it under a declared budget
(:class:`Proxy`, the same for every candidate of a run), evaluates it and returns a
:class:`TrialResult`. Cost fields are always those of the architecture document itself (its own clip
and class count): the proxy may train at a fraction of the crop (``size_scale``) and with the
classifier resized to the data's classes, but the GFLOPs a search compares stay the full-size ones.
"""
from __future__ import annotations

import math
import os
import random
import time
from pathlib import Path
from typing import Any, Callable, Iterator, Protocol

import numpy as np
import torch
import torch.nn.functional as F

from nas.data.loader import Batches, epoch_batches
from nas.dsl.arch import Arch
from nas.files import atomic_path
from nas.loop import run_steps
from nas.models import build_model
from nas.models.morph import inherit, reestimate_bn
from nas.models.weights import read_weights, write_weights
from nas.parallel import all_mean, shard, spawn_local, to_global_batchnorm, world
from nas.proxy import LAYOUTS, MEMORY_REFUSAL, OPTIMIZERS, Proxy, TrialResult

__all__ = ["Proxy", "TrialResult", "ClipData", "evaluate", "precise_bn", "make_data", "memory_estimate", "memory_available",
           "OPTIMIZERS", "LAYOUTS", "batch_indices", "to_tensor", "timed_training_pass", "choose_layout",
           "evaluate_split", "make_optimizer", "seed_everything"]

# Kinetics normalisation (X3D / pytorchvideo), applied to uint8 clips scaled to [0, 1].
MEAN, STD = 0.45, 0.225


class ClipData(Protocol):
    """What the trainer needs from a dataset: indexable (clips uint8 (V, T, H, W, 3), label)."""

    num_classes: int

    def __len__(self) -> int: ...

    def __getitem__(self, i: int) -> tuple[np.ndarray, int]: ...


class _Materialised:
    """A synthetic split rendered once into memory (uint8), with one view per clip."""

    def __init__(self, source: Any) -> None:
        clips, labels = zip(*(source[i] for i in range(len(source))))
        self.clips = np.stack(clips)[:, None]  # (N, 1, T, H, W, 3)
        self.labels = np.asarray(labels, dtype=np.int64)
        self.num_classes = source.num_classes

    def __len__(self) -> int:
        return len(self.labels)

    def __getitem__(self, i: int) -> tuple[np.ndarray, int]:
        return self.clips[i], int(self.labels[i])


_SYNTHETIC_CACHE: dict[tuple, tuple[_Materialised, _Materialised]] = {}


def make_data(data: str, arch: Arch, proxy: Proxy, seed: int) -> tuple[ClipData, ClipData, str]:
    """Training and validation data at the clip the architecture asks for, scaled by ``size_scale``.

    Args:
        data: ``synthetic`` or a path to real videos (any layout :mod:`nas.data.layouts` knows).
        arch: the architecture (its clip: frames, frame stride, crop).
        proxy: the budget (sizes, ``size_scale``, task).
        seed: data seed (synthetic splits are a function of it).

    Returns:
        ``(train, val, description)``.
    """
    clip = arch.clip
    crop = proxy.train_crop(clip.crop)
    if data == "synthetic":
        from nas.data.synthetic import SyntheticVideo

        key = (proxy.task, clip.frames, clip.frame_stride, crop, proxy.train_clips, proxy.val_clips, seed)
        if key not in _SYNTHETIC_CACHE:
            common = dict(task=proxy.task, frames=clip.frames, frame_stride=clip.frame_stride, crop=crop, seed=seed)
            _SYNTHETIC_CACHE.clear()  # keep one clip geometry in memory at a time
            _SYNTHETIC_CACHE[key] = (
                _Materialised(SyntheticVideo(split="train", size=proxy.train_clips, **common)),
                _Materialised(SyntheticVideo(split="val", size=proxy.val_clips, **common)),
            )
        train, val = _SYNTHETIC_CACHE[key]
        return train, val, f"synthetic:{proxy.task}"
    from nas.data.layouts import discover
    from nas.data.video import VideoClips, default_cache_dir

    path = Path(data)
    if not path.exists():
        raise ValueError(f"data: got {data!r}; allowed: 'synthetic' or an existing path to videos")
    short = max(crop, round(crop * 1.15))
    # decode each video once per machine, at a size every scale jitter of this clip reads without upsampling
    common = dict(frames=clip.frames, frame_stride=clip.frame_stride, crop=crop, seed=seed,
                  cache_dir=default_cache_dir(), cache_short_side=max(128, round(short * 1.25)))
    train = VideoClips(discover(path, split="train"), train=True, short_side=(short, round(short * 1.25)), **common)
    val = VideoClips(discover(path, split="val"), train=False, n_clips=proxy.val_views, short_side=short, **common)
    return train, val, str(path)


def batch_indices(n: int, batch_size: int, seed: int, start_step: int) -> Iterator[np.ndarray]:
    """Index batches for steps ``start_step, start_step+1, ...``: a fresh permutation per epoch, each a
    function of (seed, epoch) only, so a resumed trial sees exactly the batches it would have seen."""
    per_epoch = max(1, n // batch_size)
    step = start_step
    while True:
        epoch, pos = divmod(step, per_epoch)
        order = np.random.default_rng([seed, epoch]).permutation(n)
        yield order[pos * batch_size: (pos + 1) * batch_size] if n >= batch_size else order
        step += 1


def to_tensor(clips: np.ndarray, device: torch.device, layout: str) -> torch.Tensor:
    """uint8 (B, T, H, W, 3) -> normalised float (B, 3, T, H, W) in the requested memory format."""
    x = torch.from_numpy(np.ascontiguousarray(clips)).to(device)
    x = x.permute(0, 4, 1, 2, 3).float().div_(255.0).sub_(MEAN).div_(STD)
    fmt = torch.channels_last_3d if layout == "channels_last_3d" else torch.contiguous_format
    return x.contiguous(memory_format=fmt)


def _param_groups(model: torch.nn.Module, weight_decay: float) -> list[dict[str, Any]]:
    """Weight decay on conv / linear weights only: never BN, biases or ReZero-style scalars."""
    decay, no_decay = [], []
    for p in model.parameters():
        if p.requires_grad:
            (decay if p.ndim > 1 else no_decay).append(p)
    return [{"params": decay, "weight_decay": weight_decay}, {"params": no_decay, "weight_decay": 0.0}]


def make_optimizer(model: torch.nn.Module, proxy: Proxy) -> torch.optim.Optimizer:
    """The proxy's optimiser over ``model`` (weight decay on conv / linear weights only)."""
    groups = _param_groups(model, proxy.weight_decay)
    if proxy.optimizer == "sgd":
        return torch.optim.SGD(groups, lr=proxy.lr, momentum=0.9, nesterov=True)
    if proxy.optimizer == "rmsprop":
        # MoViNet's recipe: Keras RMSprop, rho 0.9, momentum 0.9, eps 1.0 inside the square root, mean
        # square starting at 0 (torch's RMSprop puts eps outside: a different optimiser at eps 1)
        from nas.optim import RMSpropTF

        return RMSpropTF(groups, lr=proxy.lr, rho=0.9, momentum=0.9, eps=1.0, ms_init=0.0)
    return torch.optim.AdamW(groups, lr=proxy.lr)


def seed_everything(seed: int) -> None:
    """Seed Python's, NumPy's and torch's generators."""
    random.seed(seed)
    np.random.seed(seed % 2**32)
    torch.manual_seed(seed)


_LAYOUT_CHOICE: dict[tuple, str] = {}
# A first pass in each layout decides when one is this much faster; closer, a second pass each does
# (first passes also pay one-off costs). experiments/results/layout_choice.md, 18 architectures: at 25 %
# every choice equal to the steady-state truth, as with two passes always, for 17 % less time timing; at
# 15 %, 2 of 18 wrong (up to 1.095x a step) for 32 % less.
LAYOUT_DECISIVE_MARGIN = 0.25
_TIMED_LAYOUTS = ("channels_first", "channels_last_3d")


def timed_training_pass(model: torch.nn.Module, x: torch.Tensor, y: torch.Tensor, layout: str) -> float:
    """Seconds of one forward, cross-entropy and backward of ``model`` on ``(x, y)`` in ``layout``
    (``channels_first`` or ``channels_last_3d``; the model is moved to it). Gradients accumulate."""
    fmt = torch.channels_last_3d if layout == "channels_last_3d" else torch.contiguous_format
    model.to(memory_format=fmt)
    xl = x.contiguous(memory_format=fmt)
    t0 = time.perf_counter()
    F.cross_entropy(model(xl), y).backward()
    return time.perf_counter() - t0


def choose_layout(model: torch.nn.Module, x: torch.Tensor, y: torch.Tensor, key: tuple) -> str:
    """Time forward+backward in each layout on this batch; keep the faster (cached per shape).

    The fast layout depends on the shape and the machine, so it is measured, not assumed. One pass per
    layout decides when one is more than :data:`LAYOUT_DECISIVE_MARGIN` faster; otherwise a second pass
    each, and the faster of each layout's two counts. The model is left as it was: gradients cleared,
    and its buffers (BN running statistics, which the timed passes in training mode move) restored, so a
    trial's result does not depend on whether this process had measured the shape before.
    """
    if key in _LAYOUT_CHOICE:
        return _LAYOUT_CHOICE[key]
    buffers = {name: b.detach().clone() for name, b in model.named_buffers()}
    times = {layout: timed_training_pass(model, x, y, layout) for layout in _TIMED_LAYOUTS}
    fast, slow = sorted(times.values())
    if slow <= fast * (1 + LAYOUT_DECISIVE_MARGIN):  # too close for first calls: time each again
        for layout in _TIMED_LAYOUTS:
            times[layout] = min(times[layout], timed_training_pass(model, x, y, layout))
    model.zero_grad(set_to_none=True)
    with torch.no_grad():
        for name, b in model.named_buffers():
            b.copy_(buffers[name])
    _LAYOUT_CHOICE[key] = min(times, key=times.get)
    return _LAYOUT_CHOICE[key]


def _save_checkpoint(path: Path, state: dict[str, Any]) -> None:
    """Write atomically: a crash mid-write never leaves a truncated checkpoint behind."""
    with atomic_path(path) as tmp:
        torch.save(state, tmp)


def evaluate_split(model: torch.nn.Module, val: ClipData, batch_size: int, device: torch.device,
                    layout: str) -> tuple[float, float]:
    """Top-1 (%) and mean loss; multi-view clips average their softmax over views."""
    model.eval()
    correct, loss_sum, n = 0, 0.0, 0
    with torch.no_grad():
        for start in range(0, len(val), batch_size):
            items = [val[i] for i in range(start, min(len(val), start + batch_size))]
            clips = np.stack([c for c, _ in items])  # (B, V, T, H, W, 3)
            labels = torch.tensor([lab for _, lab in items], device=device)
            b, v = clips.shape[:2]
            logits = model(to_tensor(clips.reshape(b * v, *clips.shape[2:]), device, layout))
            probs = logits.float().softmax(-1).reshape(b, v, -1).mean(1)
            loss_sum += F.nll_loss(probs.clamp_min(1e-12).log(), labels, reduction="sum").item()
            correct += (probs.argmax(-1) == labels).sum().item()
            n += b
    return 100.0 * correct / max(1, n), loss_sum / max(1, n)


def memory_estimate(arch: Arch, proxy: Proxy, classes: int | None = None) -> float:
    """GiB one proxy training step of ``arch`` needs (activations + parameters, gradients, optimiser state).

    The model is built on the meta device (no memory, no compute) and run once on a proxy-sized batch
    (``batch_size`` clips of ``frames x round(crop * size_scale)``²); see
    :func:`nas.measure.training_activation_bytes`. Used to refuse a candidate that cannot fit before
    it brings the machine down; the estimate errs high.
    """
    from nas.measure import training_activation_bytes

    if classes is not None:
        arch = arch.with_classes(classes)
    clip = arch.clip
    crop = proxy.train_crop(clip.crop)
    with torch.device("meta"):
        model = build_model(arch)
    params = sum(p.numel() for p in model.parameters())
    activations = training_activation_bytes(model, clip.frames, crop, proxy.batch_size)
    # fp32 parameter + gradient + up to two optimiser moments (AdamW), and the uint8 + float batch
    state = params * 4 * 4
    batch = proxy.batch_size * 3 * clip.frames * crop * crop * 5
    return (activations + state + batch) / 2**30


def memory_available(device: torch.device | str = "cpu") -> float:
    """GiB a new trial can use now: free CUDA memory, or the kernel's ``MemAvailable`` on CPU."""
    dev = torch.device(device)
    if dev.type == "cuda":
        free, _ = torch.cuda.mem_get_info(dev)
        return free / 2**30
    try:
        with open("/proc/meminfo") as f:
            for line in f:
                if line.startswith("MemAvailable:"):
                    return int(line.split()[1]) / 2**20
    except OSError:
        pass
    return os.sysconf("SC_AVPHYS_PAGES") * os.sysconf("SC_PAGE_SIZE") / 2**30


def _worker_evaluate(arch: Arch, data: Any, proxy: Proxy, seed: int, threads: int, kwargs: dict[str, Any]) -> TrialResult:
    """One data-parallel worker of :func:`evaluate` (inside the process group :func:`spawn_local` made)."""
    torch.set_num_threads(threads)
    return evaluate(arch, data, proxy, seed, **kwargs)


def precise_bn(model: torch.nn.Module, train: ClipData, proxy: Proxy, seed: int, device: torch.device,
               layout: str) -> None:
    """Re-estimate every BN's statistics with the model's current weights on ``proxy.precise_bn_batches``
    training batches ("precise BN"; nothing when 0), a fixed set apart from the training order.

    Running averages trail the weights by about ``1 / momentum`` steps (MoViNet's 0.01: 100), so after
    a short proxy they describe a network that no longer exists and eval-mode validation can sit at
    chance while the network has learned (``experiments/results/residual_init.md``). Leaves the model
    in eval mode.
    """
    if proxy.precise_bn_batches:
        _reestimate_on_training_batches(model, train, proxy.precise_bn_batches, proxy.batch_size, seed, device,
                                        layout)


def _reestimate_on_training_batches(model: torch.nn.Module, train: ClipData, count: int, batch_size: int,
                                    seed: int, device: torch.device, layout: str) -> None:
    """:func:`~nas.models.morph.reestimate_bn` on ``count`` training batches of a fixed set apart from
    the training order (the same batches for one seed, whoever asks). Leaves the model in eval mode."""
    order = batch_indices(len(train), batch_size, seed + 7919, 0)

    def batches() -> Iterator[torch.Tensor]:
        for _ in range(count):
            clips = np.stack([train[int(i)][0][0] for i in next(order)])  # first (only) view of each clip
            yield to_tensor(clips, device, layout)

    with torch.no_grad():
        reestimate_bn(model, batches())


BN_REESTIMATE_BATCHES = 8  # batches of training clips that re-estimate BN statistics after a morphism


def _initial_model(trained: Arch, init: dict[str, Any] | None, seed: int, classes: int,
                   zero_init_residual: bool) -> tuple[torch.nn.Module, bool]:
    """The model training starts from, and whether its input differs from the one its weights were
    trained on (then its BN statistics need re-estimating). See :func:`evaluate`'s ``init``; a fresh
    model follows the proxy's ``zero_init_residual``."""
    if init is None:
        return build_model(trained, zero_init_residual=zero_init_residual), False
    weights = read_weights(init["weights"])
    if init.get("parent") is None:
        model = build_model(trained)
        model.load_state_dict(weights)
        return model, False
    parent = Arch.from_dict(init["parent"]).with_classes(classes)
    parent_model = build_model(parent)
    parent_model.load_state_dict(weights)
    child = inherit(parent_model, parent, trained, seed=seed, noise=float(init.get("noise") or 0.0))
    return child, parent.clip != trained.clip


def evaluate(arch: Arch, data: str | tuple[ClipData, ClipData], proxy: Proxy, seed: int = 0, *,
             checkpoint: str | Path | None = None, progress: bool | None = None,
             report: Callable[[int, dict[str, float]], None] | None = None,
             device: str | None = None, memory_limit_gib: float | None = None,
             init: dict[str, Any] | None = None, save_weights: str | Path | None = None,
             workers: int = 1, loader_workers: int = 0) -> TrialResult:
    """Train ``arch`` under ``proxy`` and measure its validation top-1.

    Args:
        arch: the frozen architecture (its cost is reported; the model's classifier is resized to the
            data's classes and it trains at ``size_scale`` x its crop).
        data: ``"synthetic"``, a path to real videos, or a ``(train, val)`` pair of :class:`ClipData`.
        proxy: the budget.
        seed: seeds the model init, the batch order and synthetic data: same inputs, same result.
        checkpoint: a file for mid-trial checkpoints; if it holds a checkpoint of this same trial
            (architecture, proxy, seed) the trial resumes from it.
        progress: show a progress line (default: when stderr is a terminal).
        report: called as ``report(step, {"loss": ...})`` every ``checkpoint_every`` steps and with
            ``{"top1": ...}`` at the end (Ray Tune reporting hooks in here).
        device: ``cpu`` or ``cuda`` (default: cuda if available).
        memory_limit_gib: refuse (``status="failed"``, nothing trained) a candidate whose
            :func:`memory_estimate` exceeds this; default: 90 % of :func:`memory_available` now.
        init: start from trained weights instead of a random initialisation (plain JSON, as
            :meth:`nas.evaluator.Inheritance.job` writes it): ``{"parent": ARCH_DICT, "weights": PATH,
            "noise": X}`` transforms the parent's weights into ``arch`` by network morphism
            (:func:`nas.models.morph.inherit`; BN statistics re-estimated on the training clips when the
            input changed); ``{"parent": None, "weights": PATH}`` loads weights of ``arch`` itself;
            ``"train": False`` evaluates without training. ``None``: random initialisation.
        save_weights: write the trained weights here (:func:`nas.models.weights.write_weights`).
        workers: data-parallel processes (:mod:`nas.parallel`): the same training as one process with
            the same global batch (``proxy.batch_size`` must divide by it); started here on this machine
            (gloo on CPU, NCCL on CUDA) unless this process is already one worker of a process group.
        loader_workers: processes that read training batches ahead (:class:`nas.data.loader.Batches`;
            0: read in this process). The same batches at any count: it never changes the result.

    Returns:
        The trial's result; a non-finite loss gives ``status="failed"`` with the step in ``reason``,
        and so does a candidate too big for the memory limit.
    """
    rank, size = world()
    if workers > 1 and size == 1:
        if proxy.batch_size % workers:
            raise ValueError(f"workers: got {workers} for batch_size {proxy.batch_size}; allowed: a divisor of "
                             "the proxy's batch size (each worker takes an equal share of the global batch)")
        backend = "nccl" if (device or ("cuda" if torch.cuda.is_available() else "cpu")).startswith("cuda") else "gloo"
        kwargs = dict(checkpoint=checkpoint, progress=False, device=device, memory_limit_gib=memory_limit_gib,
                      init=init, save_weights=save_weights)
        threads = max(1, torch.get_num_threads() // workers)  # this process's threads, shared by the workers
        return spawn_local(_worker_evaluate, (arch, data, proxy, seed, threads, kwargs), workers, backend)
    t_start = time.perf_counter()
    cost = arch.cost()
    result = TrialResult(arch_name=arch.name, arch_hash=arch.hash, status="ok", gflops=cost.gflops,
                         params=cost.params, seed=seed, proxy_hash=proxy.hash, frames=cost.frames,
                         workers=size)
    dev = torch.device(device or ("cuda" if torch.cuda.is_available() else "cpu"))
    if isinstance(data, str):
        train, val, result.data = make_data(data, arch, proxy, seed)
    else:
        (train, val), result.data = data, "in-memory"
    classes = train.num_classes
    trained = arch.with_classes(classes)
    limit = memory_limit_gib if memory_limit_gib is not None else 0.9 * memory_available(dev)
    need = memory_estimate(trained, proxy)
    if need > limit:
        result.status = "failed"
        result.reason = (f"{MEMORY_REFUSAL}needs about {need:.1f} GiB at proxy scale (batch {proxy.batch_size}, "
                         f"{arch.clip.frames} frames, size-scale {proxy.size_scale}); memory limit {limit:.1f} GiB "
                         "(memory_limit_gib, set by xnas --memory-per-trial, or what the machine has free)")
        result.wall_s = time.perf_counter() - t_start
        return result
    seed_everything(seed)
    model, input_changed = _initial_model(trained, init, seed, classes, proxy.zero_init_residual)
    if size > 1:
        model = to_global_batchnorm(model)  # BN statistics of the global batch, as one process sees them
    model = model.to(dev)
    model.train()
    optimizer = make_optimizer(model, proxy)
    start_step = 0
    ckpt_path = Path(checkpoint) if checkpoint else None
    ident = {"arch": arch.hash, "proxy": proxy.hash, "seed": seed, **({"init": init} if init else {})}
    if ckpt_path and ckpt_path.is_file():
        state = torch.load(ckpt_path, map_location=dev, weights_only=False)
        if state.get("ident") == ident:
            model.load_state_dict(state["model"])
            optimizer.load_state_dict(state["optimizer"])
            torch.set_rng_state(state["torch_rng"])
            start_step = state["step"]
            result.layout = state.get("layout", "")

    batches = batch_indices(len(train), proxy.batch_size, seed, start_step)

    def fetch(indices: np.ndarray) -> tuple[np.ndarray, torch.Tensor]:
        items = [train[int(i)] for i in indices]
        clips = np.stack([c[0] for c, _ in items])  # first (only) view of each training clip
        labels = torch.tensor([lab for _, lab in items], device=dev)
        return clips, labels

    if input_changed and start_step == 0:
        # the parent's BN statistics describe another input (size, frames or frame rate): re-estimate
        # them on training clips before training
        _reestimate_on_training_batches(model, train, BN_REESTIMATE_BATCHES, proxy.batch_size, seed, dev,
                                        "channels_first")
        model.train()
    if init is not None and init.get("train") is False:
        start_step = proxy.steps  # evaluate the given weights as they are

    layout = result.layout or proxy.layout
    if size > 1:
        layout = "channels_first"  # every worker the same (a timed choice could differ between them)
    if layout == "auto" and dev.type == "cpu":
        clips, labels = fetch(next(batch_indices(len(train), proxy.batch_size, seed, 0)))
        layout = choose_layout(model, to_tensor(clips, dev, "channels_first"), labels,
                                (arch.hash, clips.shape))
    elif layout == "auto":
        layout = "channels_first"
    result.layout = layout
    model.to(memory_format=torch.channels_last_3d if layout == "channels_last_3d" else torch.contiguous_format)
    trained_model = model
    if size > 1:
        from torch.nn.parallel import DistributedDataParallel

        # gradients averaged over the workers = the gradient of the global batch's mean loss
        trained_model = DistributedDataParallel(model, device_ids=[dev.index] if dev.type == "cuda" else None)
    autocast = torch.autocast("cuda", dtype=torch.bfloat16) if dev.type == "cuda" else torch.autocast("cpu", enabled=False)

    def save(done: int) -> None:
        if ckpt_path and rank == 0:
            _save_checkpoint(ckpt_path, {"ident": ident, "step": done, "model": model.state_dict(),
                                         "optimizer": optimizer.state_dict(),
                                         "torch_rng": torch.get_rng_state(), "layout": layout})

    last_loss = float("nan")

    loader = Batches(train, epoch_batches((shard(b, rank, size) if size > 1 else b for b in batches), len(train),
                                          proxy.batch_size, start_step), workers=loader_workers)

    def train_step(step: int) -> dict[str, Any]:
        nonlocal last_loss
        clips, label_array = next(loader)
        labels = torch.from_numpy(label_array).to(dev)
        result.size = clips.shape[-2]  # the crop actually trained at (size_scale applied)
        with autocast:
            logits = trained_model(to_tensor(clips, dev, layout))
        loss = F.cross_entropy(logits.float(), labels, label_smoothing=proxy.label_smoothing)
        last_loss = all_mean(loss.item())  # the global batch's mean loss (equal shares)
        if math.isfinite(last_loss):
            loss.backward()
        return {"loss": last_loss}

    def checkpoint(done: int, _so_far: Any) -> None:
        # checkpoint before reporting: a report hook may stop the trial (Ray's early stopping)
        save(done)
        if report and rank == 0:
            report(done, {"loss": last_loss})

    t_train = time.perf_counter()
    try:
        loop = run_steps(optimizer, train_step, start=start_step, end=proxy.steps, total=proxy.steps, base_lr=proxy.lr,
                         warmup=proxy.warmup_steps, checkpoint_every=proxy.checkpoint_every, save=checkpoint,
                         progress=progress, label=arch.name)
    finally:
        loader.close()
    if loop.failure:
        result.status, result.reason, result.steps = "failed", loop.failure, loop.steps_done
        result.wall_s = time.perf_counter() - t_start
        return result
    trained_steps = proxy.steps - start_step
    result.train_clips_per_s = trained_steps * proxy.batch_size / max(1e-9, time.perf_counter() - t_train)
    result.steps = 0 if init is not None and init.get("train") is False else proxy.steps
    precise_bn(model, train, proxy, seed, dev, layout)  # every data-parallel worker: the whole batches
    result.top1, result.loss = evaluate_split(model, val, proxy.batch_size, dev, layout)
    skipped = getattr(train, "report", None)
    if callable(skipped):
        result.skipped_files = [s["path"] if isinstance(s, dict) else str(s) for s in skipped().get("skipped", [])]
    save(proxy.steps)
    if save_weights and rank == 0:
        write_weights(save_weights, trained, model)
    if report and rank == 0:
        report(proxy.steps, {"top1": result.top1, "loss": result.loss})
    result.wall_s = time.perf_counter() - t_start
    return result
