"""Scoring architectures inside a finished search's supernet (``xnas fidelity`` on a search run).

A TuNAS search steers its controller by each sampled path's held-out top-1 under the shared weights
(Q). Whether those scores rank architectures the way stand-alone training does is what decides whether
the search finds anything, so ``xnas fidelity`` measures it: it draws architectures that span the
space's cost range at the search's clip (:func:`spanning_archs`), scores each inside the final
supernet (:func:`supernet_top1s`, measured exactly as the search measures Q and ``supernet_top1``: batch
statistics on the whole held-out split, so every extracted child's BN statistics are its own) and
compares them with a stand-alone reference training of each.
"""
from __future__ import annotations

import dataclasses
import math
from pathlib import Path
from typing import Any, Mapping, Sequence

import torch

from nas.dsl.arch import Arch
from nas.dsl.space import Space
from nas.families.movinet import resolve
from nas.drivers.tunas.controller import Policy
from nas.drivers.tunas.search import SearchConfig, SupernetData, heldout_top1
from nas.drivers.tunas.supernet import Path as NetPath, Supernet

__all__ = ["searches_in", "load_search_config", "spanning_archs", "supernet_top1s"]


def searches_in(run_dir: str | Path) -> dict[float, Path]:
    """Target GFLOPs -> folder of each search of an ``xnas search`` run that left a supernet
    (``search-<target>/checkpoint.pt``)."""
    found = {}
    for ckpt in sorted(Path(run_dir).glob("search-*/checkpoint.pt")):
        try:
            found[float(ckpt.parent.name.removeprefix("search-"))] = ckpt.parent
        except ValueError:
            continue
    return found


def load_search_config(search_dir: str | Path) -> SearchConfig:
    """The configuration a search's checkpoint was made with."""
    state = torch.load(Path(search_dir) / "checkpoint.pt", map_location="cpu", weights_only=False)
    return SearchConfig(**dict(state["config"]))


def spanning_archs(space: Space, fixed: Mapping[str, Any], n: int, seed: int = 0, pool: int = 40) -> list[Arch]:
    """``n`` distinct architectures of ``space`` at the ``fixed`` values (the search's clip) that span its
    cost range: ``pool x n`` uniform random draws, sorted by cost, then one from each of ``n`` equal
    slices of log-cost between the cheapest and the dearest draw (the nearest draw not yet taken).
    Uniform draws alone pile up where the space is dense; an audit needs the whole range."""
    policy = Policy(space, fixed)  # uniform logits: every value of every choice equally likely
    gen = torch.Generator().manual_seed(seed)
    draws: dict[str, tuple[float, Arch]] = {}
    for _ in range(pool * n):
        arch = policy.freeze(policy.sample_indices(gen))
        draws.setdefault(arch.hash, (arch.cost().gflops, arch))
    ranked = sorted(draws.values(), key=lambda t: t[0])
    if len(ranked) <= n:
        return [a for _, a in ranked]
    lo, hi = math.log(ranked[0][0]), math.log(ranked[-1][0])
    taken: list[Arch] = []
    free = list(ranked)
    for i in range(n):
        want = lo + (hi - lo) * (i + 0.5) / n
        best = min(range(len(free)), key=lambda j: abs(math.log(free[j][0]) - want))
        taken.append(free.pop(best)[1])
    return [a.renamed(f"{space.name}-span{i + 1:02d}") for i, a in enumerate(sorted(taken, key=lambda a: a.cost().gflops))]


@torch.no_grad()
def supernet_top1s(space: Space, search_dir: str | Path, archs: Sequence[Arch], data: str = "synthetic") -> list[float]:
    """Each architecture's held-out top-1 (percent) inside the search's final shared weights: the path
    extracted from the supernet, measured like the search's Q and ``supernet_top1`` (batch statistics,
    the whole held-out split in the search's held-out batch size)."""
    state = torch.load(Path(search_dir) / "checkpoint.pt", map_location="cpu", weights_only=False)
    cfg = SearchConfig(**dict(state["config"]))
    torch.manual_seed(cfg.seed)
    loaded = SupernetData(data, space, dict(cfg.fixed), cfg)
    supernet = Supernet(space, classes=loaded.num_classes)
    supernet.load_state_dict(state["supernet"])
    supernet.train()  # batch statistics, as during the search (heldout_top1 leaves the running ones alone)
    size = cfg.batch_size * cfg.val_multiplier
    batches = [loaded.batch("held", i, size) for i in range(max(1, len(loaded.held[1]) // size))]
    out = []
    for arch in archs:
        net = dataclasses.replace(resolve(arch.doc), classes=loaded.num_classes)
        out.append(heldout_top1(supernet, NetPath(net), batches))
    return out
