"""``xnas search`` as a library call: one TuNAS search per cost target, then the winners retrained.

:func:`search_and_retrain` runs :func:`nas.drivers.tunas.search.run_search` once per target (in this
process, or as parallel jobs through a ``map`` function such as :meth:`RayEvaluator.map`), then
retrains each search's argmax, its ``top_k`` most probable architectures and the baselines from
scratch through the evaluator it is given. It sees only the space, a typed config, an evaluator and
where to write; the command line only turns flags into a :class:`TunasConfig`.

Example::

    from nas.drivers.tunas.driver import TunasConfig, search_and_retrain
    from nas.drivers.tunas.search import SearchConfig, default_fixed
    from nas.evaluator import LocalEvaluator
    from nas.registry import load_space

    space = load_space("movinet").with_clip((8, 10, 112))  # the clip the supernet trains at
    base = SearchConfig(target_gflops=0.18, fixed=default_fixed(space), steps=100)
    result = search_and_retrain(space, TunasConfig(search=base, targets=(0.1, 0.2)), LocalEvaluator(),
                                out_dir="runs/my-search")
"""
from __future__ import annotations

import dataclasses
import math
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, Callable, Sequence

if TYPE_CHECKING:
    from nas.drivers.tunas.search import SearchConfig, SearchResult
    from nas.dsl.arch import Arch
    from nas.dsl.space import Space
    from nas.evaluator import Evaluator, TrialResult

__all__ = ["TunasConfig", "TunasResult", "search_and_retrain", "reclip", "nearest_baselines", "search_dir"]


@dataclass(frozen=True)
class TunasConfig:
    """What a multi-target TuNAS run does besides each search's own hyper-parameters.

    Attributes:
        search: every search's settings; its target (``target_gflops``, or ``target_ms`` for a latency
            search) is replaced by each of ``targets``.
        targets: the cost targets in the search's unit, one search each (default: its own target).
        top_k: most probable architectures of each final policy retrained besides the argmax.
        retrain: whether to retrain the winners and baselines at all.
    """

    search: "SearchConfig"
    targets: tuple[float, ...] = ()
    # 0, as TuNAS retrains only the argmax: in 4 default runs the policy's top-1/top-2 retrains tied with
    # the argmax (within 1.2 points, SE about 0.43) and cost a second round of retraining
    top_k: int = 0
    retrain: bool = True

    def __post_init__(self) -> None:
        if self.top_k < 0:
            raise ValueError(f"top_k: got {self.top_k}; allowed: an integer >= 0")
        for t in self.targets:
            if not (t > 0 and math.isfinite(t)):
                raise ValueError(f"targets: got {t!r}; allowed: positive numbers (GFLOPs, or ms for a latency search)")

    @property
    def configs(self) -> list["SearchConfig"]:
        """One search config per target, in order."""
        targets = self.targets or (self.search.target,)
        key = "target_ms" if self.search.target_ms is not None else "target_gflops"
        return [dataclasses.replace(self.search, **{key: t}) for t in dict.fromkeys(targets)]


@dataclass
class TunasResult:
    """The searches (``(target, SearchResult)`` in target order), the baselines, and every retrained
    architecture's result by hash (empty when ``retrain`` is off)."""

    searches: list[tuple[float, "SearchResult"]]
    baselines: list["Arch"]
    retrained: dict[str, "TrialResult"] = field(default_factory=dict)

    def top1(self, arch: "Arch") -> float | None:
        """The retrained top-1 of ``arch`` (None when it was not retrained or failed)."""
        res = self.retrained.get(arch.hash)
        return res.top1 if res is not None and res.status == "ok" else None


def search_dir(out_dir: str | Path, target: float, unit: str = "gflops") -> Path:
    """Where the search for ``target`` writes: ``<out_dir>/search-<target>`` (GFLOPs) or
    ``<out_dir>/search-<target>ms`` (a latency target)."""
    return Path(out_dir) / f"search-{target:g}{'ms' if unit == 'ms' else ''}"


def _dir_of(out_dir: str | Path, cfg: "SearchConfig") -> Path:
    return search_dir(out_dir, cfg.target, "ms" if cfg.target_ms is not None else "gflops")


def reclip(arch: "Arch", clip: tuple[int, int, int], suffix: bool = True) -> "Arch":
    """The architecture at another clip (frames, frame stride, crop); ``suffix`` names it
    ``<name>-FxSxC``."""
    from nas.dsl.arch import Arch

    doc = arch.to_dict()
    frames, stride, crop = clip
    doc["clip"] = {"frames": frames, "frame_stride": stride, "crop": crop}
    if suffix:
        doc["name"] = f"{arch.name}-{frames}x{stride}x{crop}"
    return Arch.from_dict(doc)


def nearest_baselines(space: "Space", targets: Sequence[float], clip: tuple[int, int, int],
                      cost: Callable[["Arch"], float] | None = None) -> list["Arch"]:
    """The space's reference architecture nearest each target in log-cost (GFLOPs, or ``cost``: e.g.
    predicted milliseconds for latency targets), re-clipped to ``clip`` (each at most once)."""
    from nas.registry import arch_names, load_arch

    candidates = [reclip(load_arch(n), clip) for n in arch_names() if load_arch(n).space == space.name]
    chosen: dict[str, Any] = {}
    for t in targets:
        if candidates:
            best = min(candidates, key=lambda a: abs(math.log((cost(a) if cost else a.cost().gflops) / t)))
            chosen[best.hash] = best
    return list(chosen.values())


def _search_job(space: "Space", cfg: "SearchConfig", out_dir: str, data: str, top_k: int,
                latency: Callable[["Arch"], float] | None = None) -> "SearchResult":
    """One search as a worker job: its status lines go to ``out_dir/search.log`` (a worker has no terminal)."""
    from nas.drivers.tunas.search import run_search

    Path(out_dir).mkdir(parents=True, exist_ok=True)
    with open(Path(out_dir) / "search.log", "a", encoding="utf-8") as log_file:
        def log(message: str) -> None:
            log_file.write(message + "\n")
            log_file.flush()

        return run_search(space, cfg, out_dir, data=data, top_k=top_k, progress=False, log=log, latency=latency)


def search_and_retrain(space: "Space", config: TunasConfig, evaluator: "Evaluator", *, out_dir: str | Path,
                       data: str = "synthetic", baselines: Sequence["Arch"] = (),
                       map_fn: Callable[..., list[Any]] | None = None, progress: bool = False,
                       log: Callable[[str], None] = print, stop_after: int | None = None,
                       latency: Callable[["Arch"], float] | None = None) -> TunasResult:
    """Search every target of ``config``, then retrain the winners and ``baselines`` with ``evaluator``.

    Args:
        space: a movinet-family space (the only family with a supernet so far).
        config: targets, top-k, retraining and every search's settings.
        evaluator: retrains from scratch (a :class:`~nas.runs.RecordingEvaluator` records and caches).
        out_dir: each search writes and checkpoints under ``<out_dir>/search-<target>/``, so a rerun
            resumes every unfinished search and reloads finished ones.
        data: ``"synthetic"`` or a video folder for the supernet.
        baselines: architectures retrained beside the winners (e.g. :func:`nearest_baselines`).
        map_fn: ``map_fn(fn, calls)`` runs ``fn(**call)`` for every call and returns the results in
            order (e.g. ``RayEvaluator.map``): with several targets, the searches run as parallel jobs.
        progress: a progress line on stderr (in-process searches only).
        log: status lines.
        stop_after: stop each in-process search after this many steps (fault injection in tests);
            a search stopped early is returned unfinished and nothing is retrained.
        latency: an architecture's predicted milliseconds, for searches with ``target_ms``.

    Returns:
        The searches, the baselines and the retrained results.
    """
    from nas.drivers.tunas.search import run_search

    if space.family != "movinet":
        raise ValueError(f"space: got {space.name!r} (family {space.family!r}); allowed: a movinet-family space "
                         "(the only family with a supernet so far)")
    configs = config.configs
    if len(configs) > 1 and map_fn is not None and stop_after is None:
        # each job's status lines go to search-<target>/search.log
        results = map_fn(_search_job, [
            {"space": space, "cfg": cfg, "out_dir": str(_dir_of(out_dir, cfg)), "data": data,
             "top_k": config.top_k, "latency": latency} for cfg in configs])
    else:
        results = []
        for cfg in configs:
            result = run_search(space, cfg, _dir_of(out_dir, cfg), data=data, top_k=config.top_k,
                                progress=progress, log=log, stop_after=stop_after, latency=latency)
            results.append(result)
            if result.steps_done < cfg.steps:
                return TunasResult([(c.target, r) for c, r in zip(configs, results)], list(baselines))
    searches = [(cfg.target, result) for cfg, result in zip(configs, results)]
    in_ms = config.search.target_ms is not None
    for t, result in searches:
        g = result.argmax.cost().gflops
        if in_ms:
            ms = latency(result.argmax) if latency else math.nan
            log(f"search: target {t:g} ms: argmax {ms:.4g} ms predicted ({ms / t - 1:+.1%}), {g:.4g} GFLOPs, "
                f"{result.wall_s:.0f} s, {result.step_s:.2f} s per supernet training step")
        else:
            log(f"search: target {t:g}: argmax {g:.4g} GFLOPs ({g / t - 1:+.1%}), {result.wall_s:.0f} s, "
                f"{result.step_s:.2f} s per supernet training step")
    out = TunasResult(searches, list(baselines))
    if config.retrain:
        archs, tags = [], []
        for t, result in searches:
            for role, arch in [("argmax", result.argmax)] + [(f"top{i + 1}", a) for i, a in enumerate(result.top_k)]:
                archs.append(arch)
                tags.append({"driver": "search", "role": role, **({"target_ms": t, "latency_ms": latency(arch)}
                                                                   if in_ms and latency else {"target_gflops": t})})
        for b in baselines:
            archs.append(b)
            tags.append({"driver": "search", "role": "baseline",
                         **({"latency_ms": latency(b)} if in_ms and latency else {})})
        log(f"retraining {len(archs)} architecture(s) from scratch with the proxy")
        for arch, res in zip(archs, evaluator.evaluate(archs, tags)):
            out.retrained[arch.hash] = res
    return out
