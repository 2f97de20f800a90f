"""Data-parallel training inside one trial (issue 19): N processes train one model on one global batch.

The contract: with N workers a trial is **the same training as one process with the same global
batch**. Each step's global batch (``Proxy.batch_size`` clips, the indices one process would draw) is
split into N equal contiguous shards; each worker computes the mean loss of its shard, and
``DistributedDataParallel`` averages the gradients, which equals the gradient of the mean loss over the
global batch. The learning rate is the proxy's, unchanged (no scaling with N: the global batch is the
same). BatchNorm is the one place where a shard differs from the whole: its statistics would be a
shard's. :class:`GlobalBatchNorm` computes them over the global batch (sums all-reduced across workers,
with gradients), on CPU (gloo) as on CUDA; ``torch.nn.SyncBatchNorm`` does this on GPUs only.

:func:`spawn_local` runs a function on N local processes joined by a gloo (CPU) or NCCL (CUDA) process
group: the path ``--executor local`` and the tests use. On Ray, Ray Train's ``TorchTrainer`` sets up
the same process group (not wired yet; see docs/runs.md).
"""
from __future__ import annotations

import os
import socket
from typing import Any, Callable

import torch
import torch.distributed as dist
from torch import nn

__all__ = ["GlobalBatchNorm", "to_global_batchnorm", "world", "shard", "spawn_local", "all_mean"]


def world() -> tuple[int, int]:
    """``(rank, world size)`` of this process (``(0, 1)`` outside a process group)."""
    if dist.is_available() and dist.is_initialized():
        return dist.get_rank(), dist.get_world_size()
    return 0, 1


def shard(indices: Any, rank: int, size: int) -> Any:
    """This worker's contiguous share of one global batch (equal shares: the batch must divide)."""
    n = len(indices)
    if n % size:
        raise ValueError(f"batch_size: got {n} clips for {size} workers; allowed: a multiple of the workers")
    k = n // size
    return indices[rank * k:(rank + 1) * k]


def all_mean(value: float) -> float:
    """The mean of a float over all workers (itself outside a process group)."""
    rank, size = world()
    if size == 1:
        return value
    t = torch.tensor([value], dtype=torch.float64)
    dist.all_reduce(t)
    return float(t.item()) / size


class GlobalBatchNorm(nn.modules.batchnorm._BatchNorm):
    """BatchNorm whose training statistics are those of the global batch across all workers.

    In training inside a process group of more than one worker it all-reduces the per-channel count,
    sum and sum of squares (differentiably: ``torch.distributed.nn.functional.all_reduce``), normalises
    with the global mean and biased variance and updates the running statistics with the global
    unbiased variance, as one BatchNorm over the global batch would. Otherwise it is a plain BatchNorm.
    """

    def _check_input_dim(self, input: torch.Tensor) -> None:
        if input.dim() < 2:
            raise ValueError(f"input: got {input.dim()}D; allowed: (N, C, ...) with at least 2 dimensions")

    def forward(self, input: torch.Tensor) -> torch.Tensor:
        _, size = world()
        if not self.training or size == 1:
            return super().forward(input)
        from torch.distributed.nn.functional import all_reduce

        c = input.shape[1]
        dims = [0] + list(range(2, input.dim()))
        x = input.float()
        count = torch.full((1,), float(x.numel() // c), dtype=x.dtype, device=x.device)
        stats = all_reduce(torch.cat([x.sum(dims), (x * x).sum(dims), count]))
        n = stats[-1]
        mean = stats[:c] / n
        var = stats[c:2 * c] / n - mean * mean
        if self.track_running_stats:
            with torch.no_grad():
                self.num_batches_tracked += 1
                m = (1.0 / float(self.num_batches_tracked)) if self.momentum is None else self.momentum
                self.running_mean.mul_(1 - m).add_(mean.detach() * m)
                self.running_var.mul_(1 - m).add_(var.detach() * (n / (n - 1)) * m)
        shape = [1, c] + [1] * (input.dim() - 2)
        y = (x - mean.view(shape)) * torch.rsqrt(var.view(shape) + self.eps)
        if self.affine:
            y = y * self.weight.view(shape) + self.bias.view(shape)
        return y.to(input.dtype)


def to_global_batchnorm(module: nn.Module) -> nn.Module:
    """``module`` with every BatchNorm replaced by a :class:`GlobalBatchNorm` holding the same
    parameters and statistics (in place where possible; returns the new root)."""
    if isinstance(module, nn.modules.batchnorm._BatchNorm) and not isinstance(module, GlobalBatchNorm):
        new = GlobalBatchNorm(module.num_features, module.eps, module.momentum, module.affine,
                              module.track_running_stats)
        new.load_state_dict(module.state_dict())
        new.train(module.training)
        return new
    for name, child in module.named_children():
        setattr(module, name, to_global_batchnorm(child))
    return module


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _worker(rank: int, size: int, port: int, backend: str, fn: Callable[..., Any], args: tuple, out: Any) -> None:
    os.environ.update(MASTER_ADDR="127.0.0.1", MASTER_PORT=str(port))
    dist.init_process_group(backend, rank=rank, world_size=size)
    try:
        result = fn(*args)
        if rank == 0:
            out.put(result)
    finally:
        dist.destroy_process_group()


def spawn_local(fn: Callable[..., Any], args: tuple, workers: int, backend: str = "gloo") -> Any:
    """Run ``fn(*args)`` on ``workers`` local processes in one process group; return rank 0's result.
    ``fn`` and its arguments must be picklable (a module-level function)."""
    import torch.multiprocessing as mp

    if workers == 1:
        return fn(*args)
    ctx = mp.get_context("spawn")
    out = ctx.SimpleQueue()
    mp.start_processes(_worker, args=(workers, _free_port(), backend, fn, args, out), nprocs=workers,
                       join=True, start_method="spawn")
    return out.get()
