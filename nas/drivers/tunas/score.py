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

from pathlib import Path
from typing import Any, Mapping, Sequence

import torch

from nas.cost import spread_by_cost
from nas.dsl.arch import Arch
from nas.dsl.space import Space
from nas.drivers.tunas.controller import Policy
from nas.drivers.tunas.search import SearchConfig, SupernetData, heldout_top1
from nas.drivers.tunas.supernet import Path as NetPath, Supernet

__all__ = ["searches_in", "load_search_config", "spanning_archs", "supernet_top1s"]


def searches_in(run_dir: str | Path) -> dict[float, Path]:
    """Target (GFLOPs, or ms for a latency search) -> folder of each search of an ``xnas search`` run that
    left a supernet (``search-<target>/checkpoint.pt``, ``search-<target>ms/checkpoint.pt``)."""
    found = {}
    for ckpt in sorted(Path(run_dir).glob("search-*/checkpoint.pt")):
        try:
            found[float(ckpt.parent.name.removeprefix("search-").removesuffix("ms"))] = ckpt.parent
        except ValueError:
            continue
    return found


def load_search_config(search_dir: str | Path) -> SearchConfig:
    """The configuration a search's checkpoint was made with."""
    state = torch.load(Path(search_dir) / "checkpoint.pt", map_location="cpu", weights_only=False)
    return SearchConfig.from_dict(state["config"])


def spanning_archs(space: Space, fixed: Mapping[str, Any], n: int, seed: int = 0, pool: int = 40) -> list[Arch]:
    """``n`` distinct architectures of ``space`` at the ``fixed`` values (the search's clip) that span its
    cost range: ``pool x n`` uniform random draws (every value of every choice equally likely), then
    :func:`nas.cost.spread_by_cost`; named ``<space>-spanNN`` in cost order."""
    policy = Policy(space, fixed)  # uniform logits
    gen = torch.Generator().manual_seed(seed)
    draws = (policy.freeze(policy.sample_indices(gen)) for _ in range(pool * n))
    return [a.renamed(f"{space.name}-span{i + 1:02d}") for i, a in enumerate(spread_by_cost(draws, n))]


@torch.no_grad()
def supernet_top1s(space: Space, search_dir: str | Path, archs: Sequence[Arch], data: str = "synthetic") -> list[float]:
    """Each architecture's held-out top-1 (percent) inside the search's final shared weights: the path
    extracted from the supernet, measured like the search's Q and ``supernet_top1`` (batch statistics,
    the whole held-out split in the search's held-out batch size)."""
    state = torch.load(Path(search_dir) / "checkpoint.pt", map_location="cpu", weights_only=False)
    cfg = SearchConfig.from_dict(state["config"])
    torch.manual_seed(cfg.seed)
    loaded = SupernetData(data, space, dict(cfg.fixed), cfg)
    supernet = Supernet(space, classes=loaded.num_classes)
    supernet.load_state_dict(state["supernet"])
    supernet.train()  # batch statistics, as during the search (heldout_top1 leaves the running ones alone)
    size = cfg.batch_size * cfg.val_multiplier
    batches = [loaded.batch("held", i, size) for i in range(max(1, len(loaded.held[1]) // size))]
    out = []
    for arch in archs:
        out.append(heldout_top1(supernet, NetPath.of(arch, classes=loaded.num_classes), batches))
    return out
