"""Run directories: one folder per search run, with everything needed to read it or resume it.

``runs/<name>/`` holds

* ``config.json`` -- the resolved configuration (driver, space, proxy, seed, evaluator, ...);
* ``results.csv`` -- one row per evaluated architecture (see :data:`COLUMNS`); floats are written
  exactly (``repr``), so a resumed run reads back the same numbers it wrote;
* ``study.db`` -- the Optuna study (SQLite; or any SQLAlchemy URL given as ``storage``);
* ``archs/<hash>.yaml`` -- every evaluated architecture, frozen;
* ``plots/`` -- figures (:mod:`nas.plots`); ``run.log`` -- a timestamped log; ``ray/`` -- Ray's files.

:meth:`Run.evaluator` wraps any :class:`~nas.evaluator.Evaluator`: a result is looked up first by
(architecture hash, evaluation key, seed) -- the evaluation key names the proxy (its hash and data)
or the formula -- so the same architecture under the same proxy and seed is never trained twice, also
across restarts; new results are recorded (CSV row, frozen document, Optuna trial) as each finishes.

Resume works by determinism and this cache: rerunning the same command re-requests the same
architectures in the same order, finished ones come from ``results.csv``, and only unfinished trials
run. This module imports neither torch, ray nor optuna at import time.
"""
from __future__ import annotations

import csv
import dataclasses
import hashlib
import json
import math
import os
import sys
import time
from pathlib import Path
from typing import TYPE_CHECKING, Any, Callable, Mapping, Sequence

from nas.dsl.arch import Arch
from nas.errors import RunError
from nas.files import atomic_path, atomic_write_text
from nas.evaluator import OVER_COST_CAP, TRIAL_TAG, OnResult, Tags, check_tags
from nas.proxy import FAILED, LEGACY_FIELDS, OK, RETRY_ON_RESUME, TrialResult

if TYPE_CHECKING:
    import pandas

    from nas.evaluator import Evaluator
    from nas.integrations.optuna_study import Study

__all__ = ["Run", "RunLock", "RecordingEvaluator", "COLUMNS", "ADDED_COLUMNS", "NEUTRAL_KEYS", "evaluation_key", "read_results", "results_frame",
           "FAULT_EXIT_CODE", "write_json"]

# results.csv columns, in order. ``tags`` holds every tag as JSON (driver and step also have columns).
COLUMNS = ("trial", "hash", "name", "driver", "step", "gflops", "params", "top1", "loss", "wall_s",
           "status", "reason", "arch_path", "tags", "eval_key", "seed", "proxy_hash", "data", "steps",
           "train_clips_per_s", "size", "frames", "layout", "skipped_files", "workers", "latency_ms",
           "finished_at")
# Columns added after the first release, with the value an older file's rows get when read ("" for a
# column that has no meaningful old value). A file with an older header is read as if it had them, and
# its writer rewrites it with the current header when it opens the run (one schema per file).
ADDED_COLUMNS = {"workers": "1", "latency_ms": ""}

# Config keys that do not change results: they may differ when a run is resumed.
NEUTRAL_KEYS = frozenset({
    "executor", "address", "cpus_per_trial", "gpus_per_trial", "memory_per_trial", "max_failures", "trials",
    "workers_per_trial", "loader_workers",
    "progress",
    "fail_after_trials", "resume", "name", "runs_dir", "storage", "device",
})

# Failed trials whose reason starts so are infrastructure failures (Ray workers that crashed more than
# --max-failures times, a candidate refused for this machine's memory), not the candidate's: they are
# not served from the cache when a run resumes.

# Exit status of the fault-injection switch (a real, abrupt process exit: no clean-up runs).
FAULT_EXIT_CODE = 75


def _short_hash(data: Any) -> str:
    return hashlib.sha256(json.dumps(data, sort_keys=True, default=str).encode()).hexdigest()[:8]


def evaluation_key(inner: Any) -> str:
    """What, besides the architecture, determines an evaluator's result (the cache key part): its
    ``cache_key`` (part of the :class:`~nas.evaluator.Evaluator` protocol)."""
    key = getattr(inner, "cache_key", None)
    if isinstance(key, str):
        return key
    raise TypeError(f"evaluator: got {type(inner).__name__} without a 'cache_key' attribute; allowed: an "
                    "evaluator with a str cache_key (what determines its results besides the architecture)")


def _fmt(value: Any) -> str:
    if value is None:
        return ""
    if isinstance(value, float):
        return repr(value)
    if isinstance(value, (list, dict)):
        return json.dumps(value, sort_keys=True)
    return str(value)


def _parse_float(text: str) -> float:
    return float(text) if text not in ("", None) else math.nan


def _parse_int(text: str) -> int:
    return int(float(text)) if text not in ("", None) else 0


def _result_from_row(row: Mapping[str, str]) -> TrialResult:
    """Rebuild the :class:`TrialResult` a CSV row recorded (exact floats)."""
    return TrialResult(
        arch_name=row["name"], arch_hash=row["hash"], status=row["status"], reason=row["reason"],
        top1=_parse_float(row["top1"]), loss=_parse_float(row["loss"]), gflops=_parse_float(row["gflops"]),
        params=_parse_int(row["params"]), steps=_parse_int(row["steps"]), wall_s=_parse_float(row["wall_s"]),
        train_clips_per_s=_parse_float(row["train_clips_per_s"]), size=_parse_int(row["size"]),
        frames=_parse_int(row["frames"]), layout=row["layout"], seed=_parse_int(row["seed"]),
        proxy_hash=row["proxy_hash"], data=row["data"],
        skipped_files=json.loads(row["skipped_files"]) if row["skipped_files"] else [],
        workers=_parse_int(row["workers"]) or 1)


def read_results(path: str | Path, *, repair: bool = False) -> list[dict[str, str]]:
    """The rows of a ``results.csv`` as strings, with every column of :data:`COLUMNS`; a torn last line
    (the process was killed while writing it) is left out. A file written before a column was added
    (:data:`ADDED_COLUMNS`) reads with that column's old value. ``repair`` also rewrites the file without
    the torn line and with the current header: only the run's writer (the holder of its lock) may,
    since a reader that rewrote the file under a live writer would swap the file its appends go to.

    Raises:
        ValueError: the header has a column this version does not know (a newer xnas wrote it).
    """
    path = Path(path)
    if not path.is_file():
        return []
    with open(path, newline="") as f:
        text = f.read()
    lines = text.splitlines(keepends=True)
    reader = csv.DictReader(lines)
    header = list(reader.fieldnames or [])
    unknown = [c for c in header if c not in COLUMNS]
    if unknown:
        raise ValueError(f"{path}: got column(s) {', '.join(unknown)}; allowed: the columns of this xnas version "
                         f"({', '.join(COLUMNS)}); was the run written by a newer xnas?")
    missing = [c for c in COLUMNS if c not in header]
    rows = list(reader)
    good = [{c: r.get(c, ADDED_COLUMNS.get(c, "")) for c in COLUMNS} for r in rows
            if None not in r and all(v is not None for v in r.values())]
    torn = not text.endswith("\n") or len(good) != len(rows)
    if (torn or missing) and lines and repair:
        # keep every complete row under the current header, rewrite atomically
        with atomic_path(path) as tmp, open(tmp, "w", newline="") as f:
            writer = csv.DictWriter(f, fieldnames=COLUMNS)
            writer.writeheader()
            writer.writerows(good)
    return good


def results_frame(path: str | Path) -> "pandas.DataFrame":
    """A ``results.csv`` as a DataFrame (a torn last line left out, the file untouched)."""
    import io

    import pandas

    buffer = io.StringIO()
    writer = csv.DictWriter(buffer, fieldnames=COLUMNS)
    writer.writeheader()
    writer.writerows(read_results(path))
    buffer.seek(0)
    return pandas.read_csv(buffer, keep_default_na=True)


class RunLock:
    """One writer per run: an exclusive ``flock`` on ``<run>/run.lock`` holding the writer's pid.

    The kernel drops the lock when its process dies, however it dies, so a lock left by a killed
    holder is stale by construction and the next opener takes it over (``stale_pid`` says whose it
    was). Opening the same run again inside the process that holds it is allowed (counted), since
    the danger is another process writing the same files.
    """

    _held: dict[Path, "RunLock"] = {}

    def __init__(self, path: Path, handle: Any, stale_pid: str) -> None:
        self.path, self.handle, self.stale_pid, self.count = path, handle, stale_pid, 1

    @classmethod
    def acquire(cls, run_dir: Path) -> "RunLock":
        """Take the run's lock, or raise :class:`RunError` naming the directory and the holder's pid."""
        import fcntl

        key = run_dir.resolve()
        held = cls._held.get(key)
        if held is not None:
            held.count += 1
            return held
        path = run_dir / "run.lock"
        handle = open(path, "a+")
        try:
            fcntl.flock(handle.fileno(), fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            handle.seek(0)
            holder = handle.read().strip() or "unknown"
            handle.close()
            raise RunError("name", f"run directory {run_dir} is in use by pid {holder}; allowed: wait for that "
                                   "process to finish (or stop it), or another name") from None
        except OSError as err:  # a file system without locks (some network mounts): go on, and say so
            import warnings

            warnings.warn(f"{path}: cannot lock ({err}); one writer per run is not enforced on this file system",
                          RuntimeWarning, stacklevel=3)
        handle.seek(0)
        previous = handle.read().strip()
        handle.seek(0)
        handle.truncate()
        handle.write(f"{os.getpid()}\n")
        handle.flush()
        lock = cls(path, handle, previous if previous and previous != str(os.getpid()) else "")
        if not cls._held:
            import atexit

            atexit.register(cls._release_all)
        cls._held[key] = lock
        return lock

    @classmethod
    def _release_all(cls) -> None:
        """At exit: release the locks of runs never closed (the kernel would drop them anyway)."""
        for lock in list(cls._held.values()):
            lock.count = 1
            lock.release()

    def release(self) -> None:
        """Give the lock back (the last release of this process's opens unlocks it)."""
        self.count -= 1
        if self.count > 0 or self.handle.closed:
            return
        import fcntl

        self._held.pop(self.path.parent.resolve(), None)
        self.handle.seek(0)
        self.handle.truncate()  # empty: a pid left in the file means its holder died holding it
        self.handle.flush()
        try:
            fcntl.flock(self.handle.fileno(), fcntl.LOCK_UN)
        except OSError:  # never locked (see acquire): nothing to release
            pass
        self.handle.close()


class Run:
    """One run directory (see the module docstring). Open with :meth:`open`.

    Attributes:
        dir: ``runs/<name>/``.
        name: the run's name (also the Optuna study name).
        driver: which driver made it (``sample``, ``expand``, ``search``, ...).
        config: the resolved configuration (as in ``config.json``).
        plots_dir: ``runs/<name>/plots/``.
        fail_after_trials: fault injection -- exit the process abruptly (status
            :data:`FAULT_EXIT_CODE`) after this many newly finished trials (tests of resume use it).
        echo: also print log lines to stderr.
    """

    def __init__(self, dir: Path, name: str, driver: str, config: dict[str, Any],
                 storage: str | None = None) -> None:
        self.dir = dir
        self.name = name
        self.driver = driver
        self.config = config
        self.plots_dir = dir / "plots"
        self.archs_dir = dir / "archs"
        self.results_path = dir / "results.csv"
        self.log_path = dir / "run.log"
        self.storage_url = storage or f"sqlite:///{(dir / 'study.db').resolve()}"
        self.fail_after_trials: int | None = None
        self.echo = True
        self.new_trials = 0
        self._study: "Study | None" = None
        self._spaces: dict[str, Any] = {}
        self._cache: dict[tuple[str, str], TrialResult] = {}
        self._rows: list[dict[str, str]] = []
        self._closers: list[Callable[[], None]] = []
        self._lock: "RunLock | None" = None

    # -- opening ------------------------------------------------------------------------------------
    @classmethod
    def open(cls, name: str | None, *, driver: str, config: dict, root: str | Path = "runs",
             resume: bool = False, storage: str | None = None) -> "Run":
        """Create ``runs/<name>/`` (default name: ``<driver>-<short hash of config>``), write
        ``config.json``, open the Optuna study (SQLite ``study.db`` by default, or the SQLAlchemy URL
        ``storage``).

        Reopening an existing run (``resume=True`` or simply the same name) continues it; a config that
        differs in what changes results (anything but :data:`NEUTRAL_KEYS`) is a
        :class:`~nas.errors.RunError` naming the field. ``resume=True`` for a run that does not exist
        is an error too.
        """
        config = json.loads(json.dumps(config, default=str))  # plain JSON, as it will be stored
        essential = {k: v for k, v in config.items() if k not in NEUTRAL_KEYS}
        if name is None:
            name = f"{driver}-{_short_hash({'driver': driver, **essential})}"
        if not name or "/" in name or name.startswith("."):
            raise RunError("name", f"got {name!r}; allowed: a folder name (no '/', not starting with '.')")
        run_dir = Path(root) / name
        config_path = run_dir / "config.json"
        if config_path.is_file():
            lock = RunLock.acquire(run_dir)  # before anything is read or written: one writer per run
            stored = json.loads(config_path.read_text())
            if stored.get("driver") != driver:
                lock.release()
                raise RunError("name", f"run {name!r} was made by driver {stored.get('driver')!r}, not "
                                       f"{driver!r}; allowed: another name")
            old = _with_legacy_fields(stored.get("config", {}))
            for key in sorted(set(old) | set(config)):
                if key in NEUTRAL_KEYS:
                    continue
                if old.get(key) != config.get(key):
                    lock.release()
                    field, got, made = _first_difference(f"config.{key}", config.get(key), old.get(key))
                    raise RunError(field, f"got {_brief(got)} but run {name!r} was made "
                                   f"with {_brief(made)}; allowed: the same value, or another name")
            url = storage or f"sqlite:///{(run_dir / 'study.db').resolve()}"
            if stored.get("storage") and _redact(url) != stored["storage"] and not (
                    storage is None and _default_sqlite(stored["storage"], run_dir)):  # a moved or cloned run
                lock.release()
                raise RunError("storage", f"got {_redact(url)!r} but run {name!r} keeps its study in "
                                          f"{stored['storage']!r}; allowed: that storage (its password, if any, is "
                                          "not stored)")
            stored["config"] = {**old, **{k: config[k] for k in config if k in NEUTRAL_KEYS}}
            stored["resumed"] = stored.get("resumed", 0) + 1
            run = cls(run_dir, name, driver, stored["config"], storage)
            run._lock = lock
            run.on_close(lock.release)
            write_json(config_path, stored)
            run._load()
            if lock.stale_pid:
                run.log(f"took over the lock of pid {lock.stale_pid}, which is gone (killed or crashed)")
            run.log(f"resumed run {name} ({len(run._rows)} results on file)")
        else:
            if resume:
                raise RunError("resume", f"no run {name!r} under {Path(root)}; allowed: the name of an "
                                         "existing run (or resume=False to start one)")
            run_dir.mkdir(parents=True, exist_ok=True)
            lock = RunLock.acquire(run_dir)
            run = cls(run_dir, name, driver, config, storage)
            run._lock = lock
            run.on_close(lock.release)
            write_json(config_path, {"driver": driver, "name": name, "config": config,
                                      "storage": _redact(run.storage_url), "created": _now()})
            run.log(f"new run {name} (driver {driver})")
        run.plots_dir.mkdir(exist_ok=True)
        run.archs_dir.mkdir(exist_ok=True)
        return run

    def _load(self) -> None:
        self._rows = read_results(self.results_path, repair=True)
        for row in self._rows:
            if row["status"] != OK and row["reason"].startswith(RETRY_ON_RESUME):
                continue  # a trial whose worker crashed (not the candidate's fault): a resume retries it
            self._cache[(row["hash"], row["eval_key"])] = _result_from_row(row)

    # -- the study ----------------------------------------------------------------------------------
    @property
    def study(self) -> "Study":
        """The Optuna study (opened on first use; results on file but missing from it are added)."""
        if self._study is None:
            from nas.integrations.optuna_study import Study

            self._study = Study(self.storage_url, self.name, self.config.get("objectives", ["top1"]),
                                self.config.get("target_gflops"), self.config.get("target_ms"))
            self._reconcile(self._study)
        return self._study

    def _reconcile(self, study: "Study") -> None:
        """A crash between writing a CSV row and its Optuna trial leaves the study one short: tell the
        asked trial (sampler runs) or add the trial."""
        recorded = study.recorded_hashes()
        running = study.running_numbers()
        for row in self._rows:
            if row["hash"] in recorded:
                continue
            arch = self._arch_of_row(row)
            if arch is None:
                continue
            number = int(row["trial"]) if row["trial"] else None
            study.record(_result_from_row(row), arch, self._user_attrs(row), space=self._space_of(arch),
                         trial_number=number if number in running else None)

    def _arch_of_row(self, row: Mapping[str, str]) -> Arch | None:
        path = self.dir / row["arch_path"]
        return Arch.load(path) if path.is_file() else None

    def _space_of(self, arch: Arch) -> Any:
        name = arch.space
        if not name:
            return None
        if name not in self._spaces:
            from nas.registry import load_space

            try:
                self._spaces[name] = load_space(name)
            except Exception:  # a space not shipped (e.g. a document path gone): record without params
                self._spaces[name] = None
        return self._spaces[name]

    def register_space(self, space: Any) -> None:
        """Use ``space`` for the Optuna params of architectures that name it (spaces loaded from files)."""
        self._spaces[space.name] = space

    # -- files --------------------------------------------------------------------------------------
    def save_arch(self, arch: Arch, name: str | None = None) -> Path:
        """Write ``archs/<name or hash>.yaml``; return its path."""
        path = self.archs_dir / f"{name or arch.hash}.yaml"
        if not path.is_file():
            atomic_write_text(path, arch.to_yaml())
        return path

    def log(self, message: str) -> None:
        """Append a timestamped line to ``run.log`` (and print it to stderr unless ``echo`` is off)."""
        line = f"{_now()} {message}"
        with open(self.log_path, "a") as f:
            f.write(line + "\n")
        if self.echo:
            print(f"[{self.name}] {message}", file=sys.stderr, flush=True)

    def results(self) -> "pandas.DataFrame":
        """One row per evaluated architecture (the columns of :data:`COLUMNS`)."""
        import pandas

        if not self.results_path.is_file():
            return pandas.DataFrame(columns=list(COLUMNS))
        return results_frame(self.results_path)

    def cached(self, arch: Arch, key: str) -> TrialResult | None:
        """The recorded result of ``arch`` under evaluation key ``key``, if any."""
        hit = self._cache.get((arch.hash, key))
        return dataclasses.replace(hit) if hit is not None else None

    def on_close(self, fn: Callable[[], None]) -> None:
        """Call ``fn`` when the run is closed (evaluators register their shutdown here)."""
        self._closers.append(fn)

    def close(self) -> None:
        """Release what the run holds (the Ray session it started, if any)."""
        while self._closers:
            self._closers.pop()()

    # -- recording ----------------------------------------------------------------------------------
    def evaluator(self, inner: "Evaluator") -> "RecordingEvaluator":
        """Wrap an evaluator: cache, then record every result (CSV row, ``archs/<hash>.yaml``, Optuna
        trial with the DSL sample as params when the architecture is a point of its space)."""
        return RecordingEvaluator(self, inner)

    def _user_attrs(self, row: Mapping[str, Any]) -> dict[str, Any]:
        attrs = {"hash": row["hash"], "name": row["name"], "gflops": _parse_float(row["gflops"]),
                 "params": _parse_int(row["params"]), "status": row["status"], "reason": row["reason"],
                 "arch_path": row["arch_path"], "eval_key": row["eval_key"]}
        tags = json.loads(row["tags"]) if row["tags"] else {}
        for key, value in tags.items():
            attrs.setdefault(f"tag_{key}" if key in attrs else key, value)
        return attrs

    def record(self, arch: Arch, result: TrialResult, key: str, tags: Mapping[str, Any] | None = None,
               trial_number: int | None = None) -> dict[str, str]:
        """Record a new result: frozen document, CSV row (flushed to disk), Optuna trial, log line."""
        tags = dict(tags or {})
        public_tags = {k: _plain_tag(v) for k, v in tags.items() if not k.startswith("_")}
        path = self.save_arch(arch)
        row = {
            "trial": "", "hash": arch.hash, "name": arch.name, "driver": public_tags.get("driver", self.driver),
            "step": public_tags.get("step", ""), "gflops": result.gflops, "params": result.params,
            "top1": result.top1, "loss": result.loss, "wall_s": result.wall_s, "status": result.status,
            "reason": result.reason, "arch_path": str(path.relative_to(self.dir)),
            "tags": public_tags, "eval_key": key, "seed": result.seed, "proxy_hash": result.proxy_hash,
            "data": result.data, "steps": result.steps, "train_clips_per_s": result.train_clips_per_s,
            "size": result.size, "frames": result.frames, "layout": result.layout,
            "skipped_files": result.skipped_files, "workers": result.workers,
            "latency_ms": public_tags.get("latency_ms", ""), "finished_at": _now(),
        }
        text_row = {k: _fmt(v) for k, v in row.items()}
        study = self.study
        # the CSV row is the source of truth and is written first; the study trial follows (a crash
        # in between is repaired on resume by _reconcile). Only this process writes the study, so an
        # added trial's number is the current trial count.
        number = trial_number if trial_number is not None else study.next_number()
        text_row["trial"] = str(number)
        self._append_row(text_row)
        self._rows.append(text_row)
        self._cache[(arch.hash, key)] = dataclasses.replace(result)
        study.record(result, arch, self._user_attrs(text_row), space=self._space_of(arch),
                     trial_number=trial_number)
        what = f"top-1 {result.top1:.2f} %" if result.status == "ok" else f"{result.status}: {result.reason}"
        self.log(f"trial {number} {arch.name} ({arch.hash[:8]}, {result.gflops:.4f} GFLOPs): {what}")
        self.new_trials += 1
        if self.fail_after_trials is not None and self.new_trials >= self.fail_after_trials:
            self.log(f"fault injection: exiting abruptly after {self.new_trials} new trials")
            os._exit(FAULT_EXIT_CODE)
        return text_row

    def _append_row(self, row: Mapping[str, str]) -> None:
        new = not self.results_path.is_file() or self.results_path.stat().st_size == 0
        if not new and not _ends_with_newline(self.results_path):
            read_results(self.results_path, repair=True)  # a torn last row from a killed writer: drop it first
        with open(self.results_path, "a", newline="") as f:
            writer = csv.DictWriter(f, fieldnames=COLUMNS)
            if new:
                writer.writeheader()
            writer.writerow(row)
            f.flush()
            os.fsync(f.fileno())

    def tell_cached(self, arch: Arch, result: TrialResult, trial_number: int) -> None:
        """A sampler asked for an architecture already evaluated: tell its trial the cached result
        (no new row: one row per evaluated architecture)."""
        row = next((r for r in self._rows if r["hash"] == arch.hash), None)
        attrs = self._user_attrs(row) if row else {"hash": arch.hash, "status": result.status}
        attrs["cache_hit"] = True
        self.study.record(result, arch, attrs, trial_number=trial_number)


class RecordingEvaluator:
    """An evaluator that looks results up in its run first and records every new one.

    ``evaluate`` returns one result per architecture, in order (cache hits included). Each new result
    is recorded as soon as the inner evaluator reports it through ``on_result`` (the protocol's
    callback; an evaluator whose ``evaluate`` does not take one is called one architecture at a time),
    so a crash in the middle of a batch loses no finished trial.
    """

    def __init__(self, run: Run, inner: "Evaluator", max_gflops: float | None = None,
                 max_gflops_origin: str = "max_gflops") -> None:
        self.run = run
        self.inner = inner
        self.key = evaluation_key(inner)
        # Candidates costlier than this are recorded as failed without training (their cost is exact
        # and free, so a sampler's outliers never cost hours or the machine's memory).
        self.max_gflops = max_gflops
        self.max_gflops_origin = max_gflops_origin

    @property
    def cache_key(self) -> str:
        """The inner evaluator's evaluation key."""
        return self.key

    def for_parent(self, parent: Arch | None) -> "RecordingEvaluator":
        """Recording the inner evaluator's children of ``parent`` (:func:`nas.evaluator.for_parent`);
        itself when the inner one does not inherit weights."""
        from nas.evaluator import for_parent

        inner = for_parent(self.inner, parent)
        if inner is self.inner:
            return self
        return RecordingEvaluator(self.run, inner, self.max_gflops, self.max_gflops_origin)

    def evaluate(self, archs: Sequence[Arch], tags: Sequence[Tags] | None = None,
                 on_result: OnResult | None = None) -> list[TrialResult]:
        """Evaluate ``archs`` (cache first), record new results, return one result per architecture;
        ``on_result(i, result)`` as each exists (cache hits and cost-cap refusals first)."""
        check_tags(archs, tags)
        tags = list(tags) if tags is not None else [{} for _ in archs]
        results: list[TrialResult | None] = [None] * len(archs)
        todo: list[int] = []
        first_of: dict[str, int] = {}
        over_cap = 0
        for i, arch in enumerate(archs):
            hit = self.run.cached(arch, self.key)
            if hit is not None:
                results[i] = hit
                if TRIAL_TAG in tags[i]:
                    self.run.tell_cached(arch, hit, int(tags[i][TRIAL_TAG]))
            elif self.max_gflops is not None and arch.cost().gflops > self.max_gflops:
                results[i] = self._over_cap(arch, tags[i])
                over_cap += 1
            elif arch.hash in first_of:
                continue  # a duplicate inside the batch: filled from its first occurrence below
            else:
                first_of[arch.hash] = i
                todo.append(i)
        if on_result is not None:
            for i, result in enumerate(results):
                if result is not None:
                    on_result(i, result)
        if todo:
            over = f", {over_cap} over the cost cap" if over_cap else ""
            self.run.log(f"evaluating {len(todo)} architecture(s) ({len(archs) - len(todo) - over_cap} cached{over})")
        recorded: set[int] = set()

        def record(j: int, result: TrialResult) -> None:
            i = todo[j]
            if i in recorded:
                return
            recorded.add(i)
            results[i] = result
            self.run.record(archs[i], result, self.key, tags[i], _trial_of(tags[i]))
            if on_result is not None:
                on_result(i, result)

        sub_archs = [archs[i] for i in todo]
        sub_tags = [tags[i] for i in todo]
        if todo and _takes_on_result(self.inner):
            for j, result in enumerate(self.inner.evaluate(sub_archs, sub_tags, on_result=record)):
                record(j, result)  # a no-op for those already reported
        else:
            for j, (arch, tag) in enumerate(zip(sub_archs, sub_tags)):
                record(j, self.inner.evaluate([arch], [tag])[0])
        for i, arch in enumerate(archs):
            if results[i] is None:  # an in-batch duplicate
                results[i] = dataclasses.replace(results[first_of[arch.hash]])
                if TRIAL_TAG in tags[i]:
                    self.run.tell_cached(arch, results[i], int(tags[i][TRIAL_TAG]))
                if on_result is not None:
                    on_result(i, results[i])
        return [r for r in results if r is not None]


    def _over_cap(self, arch: Arch, tags: Tags) -> TrialResult:
        """Record ``arch`` as failed for exceeding the cost cap, untrained; the recorded result."""
        cost = arch.cost()
        result = TrialResult(arch_name=arch.name, arch_hash=arch.hash, status=FAILED,
                             reason=f"not trained: {cost.gflops:.3f} GFLOPs is over the cost cap "
                                    f"{self.max_gflops:g} ({self.max_gflops_origin})",
                             gflops=cost.gflops, params=cost.params, frames=cost.frames)
        # the tag makes its Optuna trial PRUNED with the constraint GFLOPs - cap > 0, which TPE and
        # NSGA-II learn from (a FAIL trial teaches no sampler anything)
        self.run.record(arch, result, self.key, {**tags, OVER_COST_CAP: self.max_gflops}, _trial_of(tags))
        return dataclasses.replace(result)


def _takes_on_result(evaluator: Any) -> bool:
    """Whether ``evaluator.evaluate`` accepts the protocol's ``on_result`` keyword."""
    import inspect

    try:
        params = inspect.signature(evaluator.evaluate).parameters
    except (TypeError, ValueError):
        return False
    return "on_result" in params or any(p.kind is inspect.Parameter.VAR_KEYWORD for p in params.values())


def _trial_of(tags: Mapping[str, Any]) -> int | None:
    value = tags.get(TRIAL_TAG)
    return int(value) if value is not None else None


def _plain_tag(value: Any) -> Any:
    try:
        return json.loads(json.dumps(value))
    except (TypeError, ValueError):
        return str(value)


def _ends_with_newline(path: Path) -> bool:
    with open(path, "rb") as f:
        f.seek(0, os.SEEK_END)
        if f.tell() == 0:
            return True
        f.seek(-1, os.SEEK_END)
        return f.read(1) == b"\n"


def _first_difference(field: str, new: Any, old: Any) -> tuple[str, Any, Any]:
    """The dotted name and the two values of the first place where ``new`` and ``old`` differ (inside
    nested dicts), so an error names ``config.proxy.steps``, not the whole proxy."""
    while isinstance(new, dict) and isinstance(old, dict):
        key = next(k for k in sorted(set(new) | set(old), key=str) if new.get(k) != old.get(k))
        field, new, old = f"{field}.{key}", new.get(key), old.get(key)
    return field, new, old


def _brief(value: Any) -> str:
    text = json.dumps(value, sort_keys=True, default=str)
    return text if len(text) <= 100 else text[:97] + "..."


def _default_sqlite(url: str, run_dir: Path) -> bool:
    """Whether ``url`` is the default study of a run folder named like ``run_dir`` (its absolute path
    changes when the folder is moved or cloned)."""
    return url.startswith("sqlite:///") and Path(url[len("sqlite:///"):]).parent.name == run_dir.name \
        and url.endswith("/study.db")


def _with_legacy_fields(config: dict[str, Any]) -> dict[str, Any]:
    """A stored config with the proxy fields added since it was written set to the values it ran with,
    so a run made before a field existed resumes under the same settings (and fails to resume under
    the new defaults, naming the field)."""
    proxy = config.get("proxy")
    return {**config, "proxy": {**LEGACY_FIELDS, **proxy}} if isinstance(proxy, dict) else config


def _redact(url: str) -> str:
    """A storage URL without its password (config.json must not hold secrets)."""
    if "://" in url and "@" in url:
        scheme, rest = url.split("://", 1)
        creds, host = rest.rsplit("@", 1)
        user = creds.split(":", 1)[0]
        return f"{scheme}://{user}:***@{host}" if ":" in creds else url
    return url


def _now() -> str:
    return time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime()) + "Z"


def write_json(path: Path, data: Any) -> None:
    """Write ``data`` as indented JSON atomically (a temporary file, then a rename)."""
    atomic_write_text(path, json.dumps(data, indent=2, sort_keys=True) + "\n")
