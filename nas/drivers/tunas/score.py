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

import random
from pathlib import Path
from typing import Any, Mapping, Sequence

import torch

from nas.cost import spread_by_cost
from nas.dsl.arch import Arch
from nas.dsl.space import Space
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


SPAN_TILT = 8.0  # draws lean by a tilt uniform in [-8, 8]: from near the cheapest to near the dearest architecture
BAND_POOL = 4    # a band audit spreads n of 4 n in-band draws over the band
BAND_DRAWS = 200  # ... out of at most 200 n draws (about 1 in 10 lands within +-20 % of a 0.18 GFLOPs target)


def spanning_archs(space: Space, fixed: Mapping[str, Any], n: int, seed: int = 0, pool: int = 40,
                   band: tuple[float, float] | None = None) -> list[Arch]:
    """``n`` distinct architectures of ``space`` at the ``fixed`` values (the search's clip) that span its
    cost range, or only the ``band`` (lowest, highest GFLOPs) of it.

    Draws lean towards small or large values by a random tilt per draw (:meth:`Space.random`):
    uniform draws pile up around the median cost (at 8x10x112 none of 2000 uniform MoViNet draws costs
    less than 0.26 GFLOPs, above the default 0.18 target). ``pool x n`` draws, or for a band draws until
    ``4 n`` distinct ones lie in it, then :func:`nas.cost.spread_by_cost`; named ``<space>-spanNN`` in
    cost order.

    Raises:
        ValueError: fewer than ``n`` distinct architectures found in the band.
    """
    rng = random.Random(seed)

    def draw() -> Arch:
        tilt = rng.uniform(-SPAN_TILT, SPAN_TILT)
        return space.freeze({**space.random(rng, tilt), **fixed})

    if band is None:
        picked = spread_by_cost((draw() for _ in range(pool * n)), n)
    else:
        lo, hi = band
        found: dict[str, Arch] = {}
        for _ in range(BAND_DRAWS * n):
            arch = draw()
            if lo <= arch.cost().gflops <= hi:
                found.setdefault(arch.hash, arch)
                if len(found) >= BAND_POOL * n:
                    break
        if len(found) < n:
            raise ValueError(f"band: got {len(found)} distinct architecture(s) between {lo:g} and {hi:g} GFLOPs "
                             f"in {BAND_DRAWS * n} draws; allowed: a band that holds at least {n} (widen it or "
                             "audit fewer)")
        picked = spread_by_cost(found.values(), n)
    return [a.renamed(f"{space.name}-span{i + 1:02d}") for i, a in enumerate(picked)]


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
    if cfg.layout == "channels_last_3d":  # as the search ran (the batches come in it)
        supernet.to(memory_format=torch.channels_last_3d)
    supernet.train()  # batch statistics, as during the search (heldout_top1 leaves the running ones alone)
    size = cfg.batch_size * cfg.val_multiplier
    batches = [loaded.batch("held", i, size) for i in range(max(1, len(loaded.held[1]) // size))]
    out = []
    for arch in archs:
        out.append(heldout_top1(supernet, NetPath.of(arch, classes=loaded.num_classes), batches))
    return out
