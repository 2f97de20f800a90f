"""Optuna studies: every evaluated architecture is an Optuna trial in a real database.

This is the only module that imports optuna. A :class:`Study` lives in the run directory's SQLite
file ``study.db`` by default, or in any SQLAlchemy URL (``--storage postgresql://...``). Only the
driver process writes it: Ray trials return plain results to the driver, which records them here,
so there is no SQLite write contention from workers.

* params: the DSL sample of the architecture (``Space.sample_of``) with distributions built from
  ``Space.dims()`` -- continuous factors are ``FloatDistribution`` (log where the DSL says so),
  everything else ``CategoricalDistribution``; list-valued choices (strides) are stored as JSON text;
* user attributes: ``hash``, ``gflops``, ``params``, ``status``, ``reason``, ``name``,
  ``arch_path`` and the driver's tags;
* values: the study's objectives, named in the run config (``top1``; ``top1, gflops`` for NSGA-II;
  ``reward`` = the TuNAS-style absolute reward when a GFLOPs target is given).

Samplers (``xnas sample``) ask for a batch of trials over the **static** dimension set of a space, so
multivariate TPE never falls back to independent sampling. Each batch gets a freshly seeded sampler
(seed, batch index): what it proposes depends only on the study's content, never on the process's
history, which is what makes a resumed run end with the same trials as an uninterrupted one.
"""
from __future__ import annotations

import json
import logging
import math
from typing import TYPE_CHECKING, Any, Mapping, Sequence

import sqlite3

import optuna
import sqlalchemy
import sqlalchemy.event
from optuna.distributions import BaseDistribution, CategoricalDistribution, FloatDistribution
from optuna.trial import TrialState

from nas.dsl.choice import Choice
from nas.evaluator import OVER_COST_CAP

if TYPE_CHECKING:
    from nas.dsl.arch import Arch
    from nas.dsl.space import Space
    from nas.proxy import TrialResult

__all__ = ["Study", "OBJECTIVES", "ABS_REWARD_BETA", "abs_reward", "make_sampler", "STRATEGIES",
           "distributions", "encode_value", "decode_sample"]

optuna.logging.set_verbosity(optuna.logging.WARNING)


@sqlalchemy.event.listens_for(sqlalchemy.engine.Engine, "connect")
def _sqlite_wal(dbapi_connection: Any, _record: Any) -> None:
    """SQLite studies in WAL mode with ``synchronous=NORMAL``: a commit no longer waits for an fsync
    (Optuna commits once per suggested parameter: 134 of them per MoViNet trial), yet a killed process
    loses nothing committed -- only a power cut could lose the last transactions."""
    if isinstance(dbapi_connection, sqlite3.Connection):
        cursor = dbapi_connection.cursor()
        cursor.execute("PRAGMA journal_mode=WAL")
        cursor.execute("PRAGMA synchronous=NORMAL")
        cursor.close()
logging.getLogger("optuna").setLevel(logging.WARNING)

# objective name -> Optuna direction
OBJECTIVES = {"top1": "maximize", "gflops": "minimize", "reward": "maximize", "latency_ms": "minimize"}
STRATEGIES = ("random", "tpe", "nsga2")

# TuNAS absolute reward (Bender et al. 2020): Q + beta * |T / T0 - 1| with beta < 0. TuNAS uses
# beta = -0.07 with Q a fraction; xnas's top-1 is in percent, hence -7 percentage points for a cost
# 100 % away from the target.
ABS_REWARD_BETA = -7.0

_STATE = {"ok": TrialState.COMPLETE, "failed": TrialState.FAIL, "pruned": TrialState.PRUNED}


def abs_reward(top1: float, cost: float, target: float) -> float:
    """TuNAS-style absolute reward in percent: ``top1 + ABS_REWARD_BETA * |cost / target - 1|`` (cost and
    target in one unit: GFLOPs, or predicted milliseconds)."""
    return top1 + ABS_REWARD_BETA * abs(cost / target - 1.0)


def encode_value(value: Any) -> Any:
    """A DSL value as an Optuna categorical choice (lists and mappings become JSON text)."""
    if value is None or isinstance(value, (bool, int, float, str)):
        return value
    return json.dumps(value, sort_keys=True)


def _distribution(choice: Choice) -> BaseDistribution:
    if choice.is_continuous:
        return FloatDistribution(float(choice.low), float(choice.high), log=bool(choice.log))
    return CategoricalDistribution([encode_value(v) for v in choice.values])


def distributions(space: "Space") -> dict[str, BaseDistribution]:
    """One Optuna distribution per dimension of ``space`` (the static set, unused slots included)."""
    return {label: _distribution(choice) for label, choice in space.dims().items()}


def decode_sample(space: "Space", params: Mapping[str, Any]) -> dict[str, Any]:
    """Optuna params back to a DSL sample (JSON text back to the list / mapping it encodes)."""
    dims = space.dims()
    sample: dict[str, Any] = {}
    for label, value in params.items():
        choice = dims.get(label)
        if choice is not None and not choice.is_continuous:
            for v in choice.values:
                if encode_value(v) == value:
                    value = v
                    break
        sample[label] = value
    return sample


def make_sampler(strategy: str, seed: int, *, population_size: int = 8) -> "optuna.samplers.BaseSampler":
    """A freshly seeded sampler: ``random``, ``tpe`` (multivariate, the dimension set is static) or
    ``nsga2`` (NSGA-II, for the two objectives top-1 and GFLOPs).

    Cost limits reach TPE and NSGA-II through the constraints :meth:`Study.record` writes on each trial
    (Optuna reads them from the trials, whatever sampler proposes): infeasible trials rank behind every
    feasible one, the less infeasible ahead.
    """
    if strategy == "random":
        return optuna.samplers.RandomSampler(seed=seed)
    if strategy == "tpe":
        return optuna.samplers.TPESampler(seed=seed, multivariate=True,
                                          n_startup_trials=min(10, max(2, population_size)))
    if strategy == "nsga2":
        return optuna.samplers.NSGAIISampler(seed=seed, population_size=max(2, population_size))
    raise ValueError(f"strategy: got {strategy!r}; allowed: {', '.join(STRATEGIES)}")


class Study:
    """A run's Optuna study (created on first use, reopened on resume).

    Args:
        storage: an SQLAlchemy URL (``sqlite:///runs/x/study.db``, ``postgresql://user@host/db``).
        name: the study name (the run's name).
        objectives: names from :data:`OBJECTIVES` (their directions follow).
        target_gflops: the ``reward`` objective's cost target in GFLOPs ...
        target_ms: ... or in predicted milliseconds (each trial's ``latency_ms`` attribute, which the
            driver tags it with); also what the ``latency_ms`` objective reads.
    """

    def __init__(self, storage: str, name: str, objectives: Sequence[str] = ("top1",),
                 target_gflops: float | None = None, target_ms: float | None = None) -> None:
        for obj in objectives:
            if obj not in OBJECTIVES:
                raise ValueError(f"objectives: got {obj!r}; allowed: {', '.join(OBJECTIVES)}")
        if "reward" in objectives and not (target_gflops or target_ms):
            raise ValueError("target_gflops: got None; allowed: a positive number, or a target_ms (the reward "
                             "objective needs a cost target)")
        if target_gflops and target_ms:
            raise ValueError(f"target_ms: got {target_ms!r} with target_gflops {target_gflops!r}; allowed: one cost target")
        self.objectives = tuple(objectives)
        self.target_gflops = target_gflops
        self.target_ms = target_ms
        self.storage_url = storage
        directions = [OBJECTIVES[o] for o in self.objectives]
        self.study = optuna.create_study(storage=storage, study_name=name, directions=directions,
                                         load_if_exists=True)
        existing = [d.name.lower() for d in self.study.directions]
        if existing != directions:
            raise ValueError(f"objectives: got {list(self.objectives)} ({', '.join(directions)}); the stored "
                             f"study {name!r} has directions {existing}")
        self._dists: dict[str, dict[str, BaseDistribution]] = {}
        self._asked: dict[int, optuna.trial.Trial] = {}

    # -- values -----------------------------------------------------------------------------------
    def values_of(self, result: "TrialResult", attrs: Mapping[str, Any] | None = None) -> list[float] | None:
        """The objective values of a result (``None`` if any is not finite); ``attrs`` (the trial's user
        attributes) carry its predicted ``latency_ms`` for a latency objective or target."""
        latency = float((attrs or {}).get("latency_ms", math.nan) or math.nan)
        values = []
        for obj in self.objectives:
            if obj == "top1":
                v = result.top1
            elif obj == "gflops":
                v = result.gflops
            elif obj == "latency_ms":
                v = latency
            elif self.target_ms:
                v = abs_reward(result.top1, latency, float(self.target_ms))
            else:
                v = abs_reward(result.top1, result.gflops, float(self.target_gflops))
            if v is None or not math.isfinite(v):
                return None
            values.append(float(v))
        return values

    def constraints_of(self, result: "TrialResult", attrs: Mapping[str, Any]) -> dict[str, float]:
        """The constraint values Optuna's TPE and NSGA-II read from a trial (feasible when <= 0):

        - ``cost_cap``: ``GFLOPs - cap`` for a candidate refused untrained by the run's cost cap (its
          ``over_cost_cap`` attribute), so the samplers learn how far over the cap a region lies;
        - ``target``: ``cost - target`` for every trial of a study with a cost objective (``gflops`` or
          ``latency_ms``, NSGA-II) and a target: the cost limit that study optimises under.
        """
        out: dict[str, float] = {}
        cap = attrs.get(OVER_COST_CAP)
        if cap is not None and result.gflops is not None and math.isfinite(result.gflops):
            out["cost_cap"] = float(result.gflops) - float(cap)
        if "gflops" in self.objectives and self.target_gflops and result.gflops is not None:
            out["target"] = float(result.gflops) - float(self.target_gflops)
        latency = attrs.get("latency_ms")
        if "latency_ms" in self.objectives and self.target_ms and latency not in (None, ""):
            out["target"] = float(latency) - float(self.target_ms)
        return {k: v for k, v in out.items() if math.isfinite(v)}

    def _space_dists(self, space: "Space") -> dict[str, BaseDistribution]:
        if space.name not in self._dists:
            self._dists[space.name] = distributions(space)
        return self._dists[space.name]

    # -- recording --------------------------------------------------------------------------------
    def record(self, result: "TrialResult", arch: "Arch", user_attrs: Mapping[str, Any], *,
               space: "Space | None" = None, trial_number: int | None = None) -> int:
        """Record one evaluated architecture; return its trial number.

        If ``trial_number`` names a trial a sampler asked for, that trial is told the result;
        otherwise a finished trial is added with the architecture's DSL sample as params (when it is a
        point of ``space``).
        """
        values = self.values_of(result, user_attrs) if result.status == "ok" else None
        state = _STATE.get(result.status, TrialState.FAIL)
        if state == TrialState.COMPLETE and values is None:
            state = TrialState.FAIL
        if user_attrs.get(OVER_COST_CAP) is not None:
            # refused untrained by the cost cap: PRUNED, not FAIL, so that TPE learns from it (Optuna's
            # samplers read only COMPLETE and PRUNED trials), through its constraint below
            state = TrialState.PRUNED
        constraints = self.constraints_of(result, user_attrs) if state != TrialState.FAIL else {}
        attrs = {k: _plain(v) for k, v in user_attrs.items()}
        if trial_number is not None:
            trial = self._asked.pop(trial_number, None) or optuna.trial.Trial(self.study, self._trial_id(trial_number))
            for key, value in attrs.items():
                trial.set_user_attr(key, value)
            for key, value in constraints.items():  # (set before a crash: Optuna keeps the first, same value)
                trial.set_constraint(key, value)
            self.study.tell(trial_number, values if state == TrialState.COMPLETE else None, state=state,
                            skip_if_finished=True)
            return trial_number
        params: dict[str, Any] = {}
        dists: dict[str, BaseDistribution] = {}
        if space is not None:
            try:
                sample = space.sample_of(arch)
            except Exception:  # not a point of the space: no params, the attrs still identify it
                sample = {}
            all_dists = self._space_dists(space)
            for label, value in sample.items():
                if label in all_dists:
                    params[label] = encode_value(value)
                    dists[label] = all_dists[label]
        trial = optuna.trial.create_trial(
            state=state, values=values if state == TrialState.COMPLETE else None,
            params=params, distributions=dists, user_attrs=attrs, constraints=constraints or None)
        self.study.add_trial(trial)
        return self.study.get_trials(deepcopy=False)[-1].number

    def _trial_id(self, number: int) -> int:
        # a trial asked by an earlier process (resume): find its storage id by number
        for t in self.study.get_trials(deepcopy=False):
            if t.number == number:
                return t._trial_id
        raise KeyError(f"trial {number} is not in study {self.study.study_name!r}")

    # -- sampling ---------------------------------------------------------------------------------
    def ask_batch(self, space: "Space", count: int, sampler: "optuna.samplers.BaseSampler",
                  first_number: int | None = None) -> list[tuple[int, dict[str, Any]]]:
        """The trials numbered ``first_number .. first_number + count - 1`` (default: the next ones),
        as ``(trial number, DSL sample)`` pairs, finished ones left out.

        Crash-safe by construction: ``sampler`` proposes the batch in an in-memory replica of the
        trials numbered below ``first_number`` (all finished), so the proposals are a function of that
        history and the sampler's seed only; each proposal is then enqueued (one atomic storage write
        that carries its params) and popped. A rerun after a kill at any instant -- while proposing,
        enqueuing, popping or writing a trial's params -- re-proposes the same batch, reuses the trials
        already in the study (completing their params from the enqueued ones) and adds only the
        missing ones: the same trials, numbered alike, as the uninterrupted run.
        """
        dists = self._space_dists(space)
        first = self.next_number() if first_number is None else first_number
        trials = {t.number: t for t in self.study.get_trials(deepcopy=False)}
        replica = optuna.create_study(directions=[d.name.lower() for d in self.study.directions], sampler=sampler)
        replica.add_trials([t for n, t in sorted(trials.items()) if n < first])
        asked = [replica.ask(fixed_distributions=dists) for _ in range(count)]
        replica_trials = replica.get_trials(deepcopy=False)
        proposals = [(t.params, replica_trials[t.number].system_attrs) for t in asked]
        out = []
        for j, (params, bookkeeping) in enumerate(proposals):
            number = first + j
            trial = trials.get(number)
            if trial is None:  # not created before a crash: enqueue and pop it
                self.study.enqueue_trial(params)
                popped = self.study.ask(fixed_distributions=dists)
                if popped.number != number:
                    raise RuntimeError(f"trial numbering: expected {number}, got {popped.number}; is another "
                                       "process writing this study?")
                self._asked[number] = popped
            elif trial.state.is_finished():
                continue
            else:  # created before a crash, possibly with part of its params: complete them
                if trial.state == TrialState.WAITING:
                    popped = self.study.ask(fixed_distributions=dists)
                    self._asked[number] = popped
                else:
                    self._asked[number] = self._complete(trial, dists)
            self._copy_bookkeeping(self._asked[number], bookkeeping)
            out.append((number, decode_sample(space, params)))
        return out

    def _copy_bookkeeping(self, trial: "optuna.trial.Trial", system_attrs: Mapping[str, Any]) -> None:
        """What the sampler wrote on its proposal in the replica, written on the study's trial.

        NSGA-II keeps each trial's generation there (``NSGAIISampler:generation``): without it on the
        stored trials, every later replica sees generation 0 with no member, and NSGA-II proposes
        random initial individuals forever. Optuna has no public setter for a trial's system
        attributes, hence the storage call. Idempotent: a resumed batch writes the same values.
        """
        for key, value in system_attrs.items():
            if key != "fixed_params":  # the enqueued params: the study's trial has its own
                self.study._storage.set_trial_system_attr(trial._trial_id, key, value)

    def _complete(self, trial: "optuna.trial.FrozenTrial", dists: Mapping[str, BaseDistribution]) -> "optuna.trial.Trial":
        """A RUNNING trial whose params may be partly written: write the rest from its enqueued values."""
        live = optuna.trial.Trial(self.study, trial._trial_id)
        for name, dist in dists.items():
            if name in trial.params:
                continue
            if isinstance(dist, CategoricalDistribution):
                live.suggest_categorical(name, dist.choices)
            else:
                live.suggest_float(name, dist.low, dist.high, log=dist.log, step=dist.step)
        return live

    def first_unfinished(self) -> int | None:
        """The lowest number of a trial asked but never told (a run stopped in between), or None."""
        numbers = [t.number for t in self.study.get_trials(deepcopy=False,
                                                           states=(TrialState.RUNNING, TrialState.WAITING))]
        return min(numbers) if numbers else None

    # -- reading ----------------------------------------------------------------------------------
    def count(self, states: Sequence[str] = ("ok", "failed", "pruned")) -> int:
        """Number of finished trials in the given states."""
        wanted = tuple(_STATE[s] for s in states)
        return len(self.study.get_trials(deepcopy=False, states=wanted))

    def next_number(self) -> int:
        """The number the next added trial will get (trials are numbered 0, 1, ... in order)."""
        return len(self.study.get_trials(deepcopy=False))

    def running_numbers(self) -> set[int]:
        """Numbers of trials asked but not finished."""
        return {t.number for t in self.study.get_trials(deepcopy=False, states=(TrialState.RUNNING,))}

    def recorded_hashes(self) -> set[str]:
        """Architecture hashes of every finished trial."""
        return {t.user_attrs.get("hash") for t in self.study.get_trials(deepcopy=False) if t.state.is_finished()}

    def trials(self) -> list[dict[str, Any]]:
        """Every trial as plain data: number, state, values, params, user_attrs."""
        return [{"number": t.number, "state": t.state.name, "values": t.values, "params": dict(t.params),
                 "user_attrs": dict(t.user_attrs)} for t in self.study.get_trials(deepcopy=False)]


def _plain(value: Any) -> Any:
    """A JSON-able user attribute (NaN becomes None: JSON has no NaN)."""
    if isinstance(value, float) and not math.isfinite(value):
        return None
    if isinstance(value, (str, int, float, bool)) or value is None:
        return value
    try:
        return json.loads(json.dumps(value, default=str))
    except (TypeError, ValueError):
        return str(value)
