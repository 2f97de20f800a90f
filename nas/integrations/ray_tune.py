"""Candidate evaluations as Ray Tune trials. The only module of xnas that imports ray.

:class:`RayEvaluator` turns a batch of architectures into one Ray Tune experiment with one trial per
architecture. A trial receives plain JSON only -- the architecture document, the proxy's fields, the
seed, the data location (or the name of a formula) -- never a pickled driver object, so any Ray
worker with xnas installed can run it. Inside, it calls the proxy trainer :func:`nas.train.evaluate`,
whose ``report`` hook forwards the training loss every ``checkpoint_every`` steps to Tune; with
``scheduler="asha"`` Tune's ASHA scheduler stops weak candidates on it (they come back with status
``pruned``).

Console: a one-line progress display (done / running / failed, best top-1 so far, elapsed); Tune's
own tables are off (``verbose=0``), worker output is not forwarded (``log_to_driver=False``) and Ray's
logs go to ``log_dir`` (the run's ``ray/`` folder: ``tune/`` holds the experiments, ``session_*``
Ray's own logs when this process starts Ray). Ray is started without the dashboard and with usage
statistics off, so it never reaches out to the internet.
"""
from __future__ import annotations

import copy
import hashlib
import json
import logging
import math
import os
import sys
import time
from pathlib import Path
from typing import Any, Callable, Sequence

# set before ray is imported: no usage-stats upload, Tune's legacy (quiet at verbose=0) output, no
# per-trial TensorBoard/CSV/JSON logger files, trials keep the driver's working directory
os.environ.setdefault("RAY_USAGE_STATS_ENABLED", "0")
os.environ.setdefault("RAY_AIR_NEW_OUTPUT", "0")
os.environ.setdefault("TUNE_DISABLE_AUTO_CALLBACK_LOGGERS", "1")
os.environ.setdefault("RAY_CHDIR_TO_TRIAL_DIR", "0")
os.environ.setdefault("TUNE_WARN_EXCESSIVE_EXPERIMENT_CHECKPOINT_SYNC_THRESHOLD_S", "100")

import ray  # noqa: E402
from ray import tune  # noqa: E402

from nas.dsl.arch import Arch  # noqa: E402
from nas.evaluator import Inheritance, OnResult, Tags, check_tags, checkpoint_suffix, proxy_cache_key  # noqa: E402
from nas.proxy import AUTO_CPUS, RAY_ERROR_PREFIX, TUNE_STOPPED_PREFIX, Proxy, TrialResult, auto_cpus_per_trial  # noqa: E402

__all__ = ["RayEvaluator", "run_trial"]

SCHEDULERS = ("none", "asha")

# reason prefix of a trial that crashed more than max_failures times (a resume retries those)


def run_trial(job: dict[str, Any], report: Callable[[int, dict[str, float]], None] | None = None) -> TrialResult:
    """Evaluate one job (plain JSON: ``arch``, ``proxy``, ``seed``, ``data``, ``evaluator``,
    ``checkpoint``, ``threads``); the body of every Ray trial, usable without Ray too."""
    arch = Arch.from_dict(job["arch"])
    spec = job.get("evaluator")
    if spec:
        from nas.evaluator import FormulaEvaluator
        from nas.formulas import get_formula

        result = FormulaEvaluator(get_formula(spec["name"]), spec["name"]).evaluate([arch])[0]
        result.seed = int(job["seed"])
        return result
    import torch

    from nas.train import evaluate

    torch.set_num_threads(max(1, int(job.get("threads") or 1)))
    return evaluate(arch, job["data"], Proxy.from_dict(job["proxy"]), seed=int(job["seed"]),
                    checkpoint=job.get("checkpoint"), progress=False, report=report,
                    memory_limit_gib=job.get("memory_limit_gib"), init=job.get("init"),
                    save_weights=job.get("save_weights"), workers=int(job.get("workers") or 1),
                    loader_workers=int(job.get("loader_workers") or 0))


def _trainable(config: dict[str, Any]) -> None:
    """The Tune function trainable: intermediate losses, then the full result as JSON. A job with
    ``workers`` > 1 launches a Ray Train run of that many data-parallel workers from here
    (:func:`_train_in_trial`), so one trial can span the cluster's nodes."""
    job = config["job"]
    if int(job.get("workers") or 1) > 1 and not job.get("evaluator"):
        _train_in_trial(job)
        return

    def report(step: int, metrics: dict[str, float]) -> None:
        if "top1" in metrics:  # the final metrics come with the full result below
            return
        tune.report({"step": step, "final": 0, "loss": float(metrics.get("loss", math.nan))})

    result = run_trial(job, report)
    tune.report({"step": result.steps, "final": 1, "loss": result.loss, "top1": result.top1,
                 "result": json.dumps(result.as_dict())})


def _train_worker(config: dict[str, Any]) -> None:
    """One Ray Train worker of a data-parallel trial: Ray Train has joined the workers into a torch
    process group (gloo on CPU, NCCL on CUDA), so :func:`nas.train.evaluate` trains this worker's share
    of every global batch (:mod:`nas.parallel`). Every worker reports the result at the end (each
    evaluated the same validation split); Tune keeps rank 0's."""
    import ray.train

    job = dict(config["job"], workers=1)  # the process group exists: evaluate joins it, spawns nothing
    result = run_trial(job)
    ray.train.report({"step": result.steps, "final": 1, "loss": result.loss, "top1": result.top1,
                      "result": json.dumps(result.as_dict())})


def _train_in_trial(job: dict[str, Any]) -> None:
    """Run one data-parallel trial with Ray Train from inside its Tune trial; its workers take
    ``job["cpus"]`` / ``job["gpus"]`` each, on whichever nodes have them."""
    from ray.train import RunConfig, ScalingConfig
    from ray.train.torch import TorchTrainer
    from ray.tune.integration.ray_train import TuneReportCallback

    workers = int(job["workers"])
    gpus = float(job.get("gpus") or 0)
    per_worker = {"CPU": float(job.get("cpus") or 1)}
    if gpus:
        per_worker["GPU"] = gpus
    trainer = TorchTrainer(
        _train_worker, train_loop_config={"job": job},
        scaling_config=ScalingConfig(num_workers=workers, use_gpu=gpus > 0, resources_per_worker=per_worker),
        run_config=RunConfig(name=f"train-{job['arch']['name']}-{job['index']}-{os.getpid()}",
                             storage_path=job.get("train_storage"), callbacks=[TuneReportCallback()]))
    trainer.fit()


def _per_trial_resources(gpus: float, memory_gib: float) -> Callable[[dict], Any]:
    """Tune's resource request read from each trial's job (``trial_cpus``), for ``cpus_per_trial="auto"``."""
    from ray.tune import PlacementGroupFactory

    def request(config: dict) -> PlacementGroupFactory:
        bundle = {"CPU": float(config["job"]["trial_cpus"])}
        if gpus:
            bundle["GPU"] = float(gpus)
        if memory_gib:
            bundle["memory"] = int(memory_gib * 1024**3)
        return PlacementGroupFactory([bundle])

    return request


def _call_with_threads(fn: Callable[..., Any], threads: int, kwargs: dict[str, Any]) -> Any:
    """A Ray task body: ``fn(**kwargs)`` with torch limited to the task's CPUs (Ray reserves them;
    torch would otherwise start one thread per core of the node)."""
    import torch

    torch.set_num_threads(threads)
    return fn(**kwargs)


def _result_from_metrics(job: dict[str, Any], metrics: dict[str, Any] | None, error: str | None) -> TrialResult:
    """Turn what Tune kept of a trial into a :class:`TrialResult`."""
    metrics = metrics or {}
    if metrics.get("final") == 1 and metrics.get("result"):
        raw = json.loads(metrics["result"])
        raw.pop("gflops_convention", None)
        return TrialResult(**{k: (math.nan if v is None and k in ("top1", "loss", "gflops", "train_clips_per_s")
                                  else v) for k, v in raw.items()})
    arch = Arch.from_dict(job["arch"])
    cost = arch.cost()
    base = dict(arch_name=arch.name, arch_hash=arch.hash, gflops=cost.gflops, params=cost.params,
                frames=cost.frames, size=cost.size, seed=int(job["seed"]), proxy_hash=job["proxy_hash"],
                data=job.get("data") or "")
    if error:
        return TrialResult(status="failed", reason=f"{RAY_ERROR_PREFIX}{error}"[:500], **base)
    step = metrics.get("step", 0)
    return TrialResult(status="pruned", reason=f"stopped early by ASHA at step {step} (training loss "
                       f"{metrics.get('loss', math.nan):.4f})", steps=int(step or 0),
                       loss=float(metrics.get("loss", math.nan)), **base)


class _Progress(tune.Callback):
    """One concise progress line instead of Tune's status tables; hands finished trials over."""

    def __init__(self, total: int, enabled: bool, on_done: Callable[[int, TrialResult], None],
                 jobs: list[dict[str, Any]]) -> None:
        self.total = total
        self.enabled = enabled
        self.on_done = on_done
        self.jobs = jobs
        self.running: set[str] = set()
        self.done = 0
        self.failed = 0
        self.best = math.nan
        self.start = time.perf_counter()
        self.tty = sys.stderr.isatty()

    def _show(self, final: bool = False) -> None:
        if not self.enabled:
            return
        best = f"{self.best:.2f} %" if math.isfinite(self.best) else "-"
        line = (f"[ray] {self.done}/{self.total} done, {len(self.running)} running, {self.failed} failed; "
                f"best top-1 {best}; {time.perf_counter() - self.start:.0f} s")
        if self.tty:
            print("\r" + line, end="\n" if final else "", file=sys.stderr, flush=True)
        else:
            print(line, file=sys.stderr, flush=True)

    def on_trial_start(self, iteration: int, trials: list, trial: Any, **info: Any) -> None:
        self.running.add(trial.trial_id)
        if self.tty:
            self._show()

    def _finish(self, trial: Any, error: str | None) -> None:
        self.running.discard(trial.trial_id)
        job = trial.config["job"]
        result = _result_from_metrics(job, trial.last_result, error)
        self.done += 1
        if result.status != "ok":
            self.failed += 1
        elif math.isfinite(result.top1):
            self.best = result.top1 if not math.isfinite(self.best) else max(self.best, result.top1)
        self.on_done(int(job["index"]), result)
        self._show(final=self.done == self.total)

    def on_trial_complete(self, iteration: int, trials: list, trial: Any, **info: Any) -> None:
        self._finish(trial, None)

    def on_trial_error(self, iteration: int, trials: list, trial: Any, **info: Any) -> None:
        self._finish(trial, _error_text(trial))


def _error_text(trial: Any) -> str:
    text = getattr(trial, "error_message", None) or ""
    if not text:
        path = getattr(trial, "error_file", None)
        if path and os.path.isfile(path):
            text = Path(path).read_text()
    lines = [ln for ln in str(text).strip().splitlines() if ln.strip()]
    return lines[-1] if lines else "unknown error"


def _last_line(error: BaseException) -> str:
    lines = [ln for ln in str(error).strip().splitlines() if ln.strip()]
    return lines[-1] if lines else type(error).__name__


def _short_temp_dir(log_dir: Path) -> str:
    """A short path that leads to ``log_dir`` (Ray's unix sockets need paths under ~107 bytes)."""
    target = log_dir.resolve()
    if len(str(target)) <= 40:
        return str(target)
    link = Path("/tmp") / f"xnas-ray-{hashlib.sha256(str(target).encode()).hexdigest()[:10]}"
    if not link.is_symlink() or os.readlink(link) != str(target):
        if link.is_symlink():
            link.unlink()
        link.symlink_to(target, target_is_directory=True)
    return str(link)


class RayEvaluator:
    """Evaluates a batch of architectures as Ray Tune trials (implements :class:`nas.evaluator.Evaluator`).

    Args:
        data: ``synthetic`` or an absolute path to videos (every worker must see it).
        proxy: the training budget of every trial.
        seed: the trial seed.
        address: ``None`` starts a local Ray sized to this machine; ``auto`` or ``HOST:PORT`` joins a
            running cluster (its workers need xnas installed).
        cpus_per_trial, gpus_per_trial: resources each trial reserves (Tune runs as many at once as fit);
            ``cpus_per_trial`` is also the trial's torch thread count. ``"auto"``: per trial, 1 CPU when
            its proxy training step is small, else 2 (:func:`nas.proxy.auto_cpus_per_trial`); trials
            with GPUs or data-parallel workers, and :meth:`map`'s tasks, take 2 (1 on a one-core
            machine).
        max_failures: retries of a trial whose worker crashed or raised.
        scheduler: ``none`` or ``asha`` (early stopping on the reported training loss).
        log_dir: where Tune's experiments and (local Ray) Ray's session logs go.
        progress: print the one-line progress display on stderr.
        evaluator_spec: ``{"kind": "formula", "name": NAME}`` scores with a named formula
            (:mod:`nas.formulas`) inside the trials instead of training.
        memory_per_trial: GiB of memory each trial reserves (Ray's ``memory`` resource; 0: none), so
            Ray runs fewer big candidates at once instead of its OOM killer stopping them.
        workers: data-parallel processes per trial (DDP): the trial launches a Ray Train run of
            ``workers`` workers, each reserving ``cpus_per_trial / workers`` CPUs and ``gpus_per_trial /
            workers`` GPUs on whichever nodes have them (the trial itself reserves nothing). Such trials
            report only their final result: ASHA cannot stop them early.
        inheritance: trials start from their parent's trained weights (:class:`nas.evaluator.Inheritance`;
            the parent set per batch with :func:`nas.evaluator.for_parent`). Trials get the parent's
            weights file as a path: on a cluster its ``weights_dir`` must be on shared storage.

    ``evaluate``'s ``on_result(index, result)`` is called as each trial finishes, so a recording run
    writes results before the whole batch is done.
    """

    def __init__(self, data: str, proxy: Proxy, seed: int, *, address: str | None = None,
                 cpus_per_trial: float | str = 1, gpus_per_trial: float = 0, max_failures: int = 1,
                 scheduler: str = "none", log_dir: Path | None = None, progress: bool = True,
                 evaluator_spec: dict | None = None, memory_per_trial: float = 0,
                 inheritance: Inheritance | None = None, workers: int = 1, loader_workers: int = 0) -> None:
        if scheduler not in SCHEDULERS:
            raise ValueError(f"scheduler: got {scheduler!r}; allowed: {', '.join(SCHEDULERS)}")
        if evaluator_spec is not None and evaluator_spec.get("kind") != "formula":
            raise ValueError(f"evaluator_spec.kind: got {evaluator_spec.get('kind')!r}; allowed: 'formula'")
        if cpus_per_trial != AUTO_CPUS and (
                isinstance(cpus_per_trial, str) or cpus_per_trial < 0 or gpus_per_trial < 0
                or cpus_per_trial + gpus_per_trial <= 0):
            raise ValueError(f"cpus_per_trial, gpus_per_trial: got {cpus_per_trial!r}, {gpus_per_trial!r}; "
                             f"allowed: numbers >= 0, not both 0 ({AUTO_CPUS!r} for the CPUs)")
        if gpus_per_trial < 0:
            raise ValueError(f"gpus_per_trial: got {gpus_per_trial!r}; allowed: a number >= 0")
        self.data = data
        self.proxy = proxy
        self.seed = seed
        self.address = address
        self.cpus_per_trial = cpus_per_trial
        self.gpus_per_trial = gpus_per_trial
        self.max_failures = max_failures
        self.memory_per_trial = memory_per_trial
        self.scheduler = scheduler
        self.log_dir = Path(log_dir or Path("runs") / "ray").resolve()
        self.progress = progress
        self.evaluator_spec = evaluator_spec
        self.batches = 0
        self._started_ray = False
        self._temp_dir: str | None = None
        if evaluator_spec is not None and inheritance is not None:
            raise ValueError("inheritance: got one with a formula evaluator; allowed: None (a formula has no weights)")
        self.inheritance = inheritance
        self.workers = workers
        self.loader_workers = loader_workers
        if evaluator_spec:
            self.cache_key = f"formula:{evaluator_spec['name']}"
        else:
            self.cache_key = proxy_cache_key(proxy, data, seed)
            if inheritance is not None:
                self.cache_key += f":{inheritance.key}"

    def for_parent(self, parent: Arch | None) -> "RayEvaluator":
        """This evaluator for children of ``parent`` (itself when it does not inherit). The copy shares
        this one's Ray session (started here, so ``shutdown`` on this one ends it)."""
        if self.inheritance is None:
            return self
        self._ensure_ray()
        clone = copy.copy(self)
        clone.inheritance = self.inheritance.with_parent(parent)
        clone.cache_key = f"{proxy_cache_key(self.proxy, self.data, self.seed)}:{clone.inheritance.key}"
        clone._started_ray = False
        return clone

    # -- CPUs per trial ----------------------------------------------------------------------------
    def _cores(self) -> int:
        """CPUs of a node: this machine's on a local Ray; on a cluster assumed >= 2."""
        return (os.cpu_count() or 1) if not self.address else 2

    def _fixed_cpus(self) -> float:
        """The CPUs of a trial or task whose size ``auto`` does not judge (GPU, data-parallel, :meth:`map`)."""
        if self.cpus_per_trial == AUTO_CPUS:
            return float(min(2, self._cores()))
        return float(self.cpus_per_trial)

    def _trial_cpus(self, arch: Arch, proxy: Proxy) -> float:
        """The CPUs (and torch threads) one proxy trial of ``arch`` reserves."""
        if self.cpus_per_trial != AUTO_CPUS or self.gpus_per_trial or self.workers > 1:
            return self._fixed_cpus()
        return float(auto_cpus_per_trial(arch, proxy, self._cores()))

    # -- Ray session ------------------------------------------------------------------------------
    def _ensure_ray(self) -> None:
        if ray.is_initialized():
            return
        self.log_dir.mkdir(parents=True, exist_ok=True)
        common = dict(include_dashboard=False, log_to_driver=False, configure_logging=True,
                      logging_level=logging.ERROR)
        if self.address:
            ray.init(address=self.address, **common)
        else:
            self._temp_dir = _short_temp_dir(self.log_dir)
            ray.init(num_cpus=os.cpu_count() or 1, object_store_memory=200 * 1024**2,
                     _temp_dir=self._temp_dir, **common)
        self._started_ray = True
        for name in ("ray", "ray.tune", "ray.train", "ray.air"):
            logging.getLogger(name).setLevel(logging.ERROR)

    def shutdown(self) -> None:
        """Stop the Ray session if this evaluator started it."""
        if self._started_ray and ray.is_initialized():
            ray.shutdown()
        self._started_ray = False
        link = Path(self._temp_dir) if self._temp_dir else None
        if link is not None and link.is_symlink():  # the short alias of the run's ray/ folder
            link.unlink()
            latest = self.log_dir / "session_latest"
            if latest.is_symlink():  # Ray's link went through the alias: make it relative
                target = os.path.basename(os.readlink(latest))
                latest.unlink()
                latest.symlink_to(target, target_is_directory=True)
        self._temp_dir = None

    # -- other work on the same Ray session ---------------------------------------------------------
    def map(self, fn: Callable[..., Any], calls: Sequence[dict[str, Any]], cpus_per_call: float | None = None) -> list[Any]:
        """Run ``fn(**kwargs)`` once per entry of ``calls`` as Ray tasks, as many at once as the CPUs
        allow (``cpus_per_call``, default ``cpus_per_trial``); return the results in order.

        For whole jobs that are not proxy trials (``xnas search --targets``: one TuNAS search per
        target). ``fn`` must be importable by the workers (a module-level function) and its
        arguments and result picklable. A task that raises re-raises here; Ray does not retry it
        (the jobs checkpoint themselves, so a rerun resumes them).
        """
        if not calls:
            return []
        self._ensure_ray()
        cpus = self._fixed_cpus() if cpus_per_call is None else cpus_per_call
        task = ray.remote(num_cpus=cpus, num_gpus=self.gpus_per_trial, max_retries=0)(_call_with_threads)
        refs = [task.remote(fn, max(1, int(cpus)), dict(kwargs)) for kwargs in calls]
        try:
            return ray.get(refs)
        except ray.exceptions.RayTaskError as err:
            raise RuntimeError(f"a Ray task failed: {_last_line(err)}") from None

    # -- evaluation -------------------------------------------------------------------------------
    def _jobs(self, archs: Sequence[Arch]) -> list[dict[str, Any]]:
        ckpt_dir = self.log_dir / "checkpoints"
        jobs = []
        for i, arch in enumerate(archs):
            job: dict[str, Any] = {"index": i, "arch": arch.to_dict(), "seed": self.seed, "proxy_hash": self.proxy.hash}
            if self.evaluator_spec:
                cpus = self._fixed_cpus()
                job["evaluator"] = dict(self.evaluator_spec)
                job["proxy_hash"] = f"formula:{self.evaluator_spec['name']}"
            else:
                proxy, init, save = self.proxy, None, None
                if self.inheritance is not None:
                    proxy, init, save = self.inheritance.job(arch, self.proxy)
                    job.update(init=init, save_weights=save)
                cpus = self._trial_cpus(arch, proxy)
                job.update(proxy=proxy.to_dict(), data=self.data, evaluator=None,
                           memory_limit_gib=self._memory_limit(len(archs), cpus),
                           workers=self.workers, loader_workers=self.loader_workers)
                if self.workers > 1:  # Ray Train workers share the trial's CPUs and GPUs equally
                    job.update(cpus=cpus / self.workers, gpus=self.gpus_per_trial / self.workers,
                               train_storage=str(self.log_dir / "train"))
            # what the trial reserves (its Tune resource request) and trains with: a data-parallel
            # trial's workers split its CPUs
            workers = self.workers if not self.evaluator_spec else 1
            job.update(trial_cpus=cpus, threads=max(1, int(cpus // workers)))
            if not self.evaluator_spec and not self.address:  # a local cluster shares this file system: resumable trials
                job["checkpoint"] = str(ckpt_dir / f"{arch.hash}-{self.proxy.hash}-{self.seed}"
                                        f"{checkpoint_suffix(self.inheritance)}.pt")
            jobs.append(json.loads(json.dumps(job)))  # plain JSON, nothing else
        if not self.evaluator_spec and not self.address:
            ckpt_dir.mkdir(parents=True, exist_ok=True)
        return jobs

    def _memory_limit(self, n_jobs: int, cpus: float) -> float | None:
        """GiB a trial reserving ``cpus`` CPUs may use: ``--memory-per-trial``, or on a local Ray this
        machine's free memory shared by the trials that run at once (a remote worker judges its own
        machine: None)."""
        if self.memory_per_trial:
            return float(self.memory_per_trial)
        if self.address:
            return None
        from nas.train import memory_available

        at_once = max(1, min(n_jobs, int((os.cpu_count() or 1) // max(cpus, 1e-9))))
        return round(0.9 * memory_available() / at_once, 2)

    def evaluate(self, archs: Sequence[Arch], tags: Sequence[Tags] | None = None,
                 on_result: OnResult | None = None) -> list[TrialResult]:
        """Run one trial per architecture; one result per architecture, in order; ``on_result`` as
        each finishes."""
        check_tags(archs, tags)
        if not archs:
            return []
        self._ensure_ray()
        jobs = self._jobs(archs)
        results: list[TrialResult | None] = [None] * len(archs)

        def done(index: int, result: TrialResult) -> None:
            if results[index] is None:
                results[index] = result
                if on_result is not None:
                    on_result(index, result)
                ckpt = jobs[index].get("checkpoint")
                if ckpt:
                    Path(ckpt).unlink(missing_ok=True)

        progress = _Progress(len(jobs), self.progress, done, jobs)
        resources: dict[str, float] | Callable[[dict], Any] = {"cpu": self._fixed_cpus(), "gpu": self.gpus_per_trial}
        if self.workers > 1 and not self.evaluator_spec:
            # the trial only launches its Ray Train workers, which reserve the CPUs and GPUs themselves
            # (Tune needs a non-empty request: one byte of memory)
            resources = {"cpu": 0, "gpu": 0, "memory": 1}
        elif self.cpus_per_trial == AUTO_CPUS:
            resources = _per_trial_resources(self.gpus_per_trial, self.memory_per_trial)
        if self.memory_per_trial and isinstance(resources, dict):
            resources["memory"] = int(self.memory_per_trial * 1024**3)
        scheduler = None
        tune_kwargs: dict[str, Any] = {}
        if self.scheduler == "asha" and not self.evaluator_spec:
            from ray.tune.schedulers import ASHAScheduler

            every = self.proxy.checkpoint_every or self.proxy.steps
            reports = max(1, self.proxy.steps // every)
            scheduler = ASHAScheduler(time_attr="training_iteration", max_t=reports + 1, grace_period=1,
                                      reduction_factor=2)
            tune_kwargs = {"metric": "loss", "mode": "min"}
        restarts = 0
        while True:
            pending = [job for job in jobs if results[int(job["index"])] is None]
            if not pending:
                break
            self.batches += 1
            tuner = tune.Tuner(
                tune.with_resources(_trainable, resources),
                param_space={"job": tune.grid_search(pending)},
                tune_config=tune.TuneConfig(num_samples=1, scheduler=scheduler, reuse_actors=True,
                                            trial_dirname_creator=lambda t: f"trial-{t.config['job']['index']}",
                                            **tune_kwargs),
                run_config=tune.RunConfig(
                    name=f"batch-{time.strftime('%Y%m%d-%H%M%S')}-{os.getpid()}-{self.batches}",
                    storage_path=str(self.log_dir / "tune"), verbose=0, callbacks=[progress],
                    failure_config=tune.FailureConfig(max_failures=self.max_failures)),
            )
            try:
                grid = tuner.fit()
            except Exception as err:  # Tune itself gave up (e.g. Ray's OOM killer took an actor it was starting)
                restarts += 1
                reason = f"{TUNE_STOPPED_PREFIX}{_last_line(err)}"
                if restarts > self.max_failures:
                    for job in pending:
                        done(int(job["index"]), _result_from_metrics(job, None, reason))
                    break
                print(f"[ray] {reason}; restarting {len(pending)} unfinished trial(s)", file=sys.stderr, flush=True)
                continue
            for res in grid:
                job = res.config["job"] if res.config else None
                if job is None or results[int(job["index"])] is not None:
                    continue
                metrics = res.metrics or {}
                if res.error is not None:
                    done(int(job["index"]), _result_from_metrics(job, metrics, _last_line(res.error)))
                elif metrics.get("final") == 1 or (scheduler is not None and metrics):
                    done(int(job["index"]), _result_from_metrics(job, metrics, None))
            missing = [i for i, r in enumerate(results) if r is None]
            if missing:
                # Tune returned without finishing them (Ctrl-C): nothing is recorded for them, so a
                # rerun with --resume trains exactly these again
                raise KeyboardInterrupt(f"{len(missing)} Ray trial(s) did not finish (interrupted)")
        return [r for r in results if r is not None]
