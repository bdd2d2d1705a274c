"""Experiment spec -> Ray Tune Tuner (searcher, scheduler, resources, storage), and resume.

Example::

    from mathtune.search import SearchOptions, run_search
    outcome = run_search("arith-text2text-addsub", SearchOptions(num_samples=4, overrides={"epochs": 2}))
    print(outcome.experiment_dir, outcome.counts)
"""

from __future__ import annotations

import contextlib
import dataclasses
import itertools
import json
import math
import os
import shutil
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from mathtune.analysis.store import (EXPERIMENT_FILE, OPTUNA_JOURNAL, PROVENANCE_FILE, ExperimentRecord, journal_url,
                                     load_trials, read_experiment, stopped_by_signal, trial_dirname)
from mathtune.search.budget import BudgetClock, BudgetGate, BudgetStopper, budget_saver, format_budget
from mathtune.search.confirm import run_confirmation
from mathtune.search.decode import score_decode_settings
from mathtune.search.driver import hold_experiment
from mathtune.search.progress import SearchProgress, quiet_tune_messages
from mathtune.search.scheduler import GroupedASHA, OptunaPruning
from mathtune.search.searcher import FactorOptunaSearch, close_storages, open_storage
from mathtune.search.staging import keep_own_files
from mathtune.spaces.loader import Space, SpaceError, check_combos, check_param_value, load_space
from mathtune.trainables.atomic import write_json
from mathtune.trainables.base import ConfigError
from mathtune.trainables.errors import MathtuneError
from mathtune.trainables.metrics import best_of, test_metric_for
from mathtune.trainables.provenance import collect as collect_provenance
from mathtune.trainables.registry import get_family
from mathtune.trainables.tune_wrapper import make_trainable

__all__ = ["SearchOptions", "SearchOutcome", "run_search", "resume_search", "check_trusted_folder", "ensure_ray",
           "apply_overrides", "EXPERIMENT_FILE", "SearchError"]



class SearchError(MathtuneError, RuntimeError):
    """A search that cannot start or resume; the message says why and what to do."""


@dataclass
class SearchOptions:
    """Options of ``mathtune search`` (see ``mathtune search --help`` for the advice on each)."""

    num_samples: int = 8  # -1: no trial cap, the budget ends the search (needs ``budget``)
    budget: float | None = None  # wall-clock seconds of the search (``--budget 8h``), counted across resumes
    max_concurrent: int | None = None
    cpus_per_trial: float | None = None
    gpus_per_trial: float | None = None
    scheduler: str = "asha"
    storage_path: str = "runs"
    name: str | None = None
    address: str | None = None
    seed: int = 0
    optuna_storage: str | None = None
    max_failures: int = 2
    sampler: str = "tpe"
    searcher: str = "mathtune"
    overrides: dict[str, Any] = field(default_factory=dict)
    verbose: int = 0  # 0: mathtune's own progress lines; 1-3: Ray Tune's console output at that level
    dashboard: bool = True
    reuse_actors: bool = True
    tensorboard: bool = False  # also write Tune's TensorBoard event files in every trial folder
    confirm_top: int = 0  # > 0: retrain the K best trials per factor value with new seeds once the search ends
    confirm_seeds: int = 3
    startup_trials: int | None = None  # TPE's random trials per study first; None: a third of them, 2 to 10
    asha: dict[str, float] = field(default_factory=dict)  # grace_period / reduction_factor / brackets over the space's


@dataclass
class SearchOutcome:
    experiment_dir: Path
    counts: dict[str, int]
    best: dict[str, dict[str, Any]]  # factor-combo label -> {metric values, config}
    interrupted: bool
    confirmed: dict[str, Any] | None = None  # confirm.json's content when --confirm-top ran to its end


def apply_overrides(space: Space, overrides: dict[str, Any]) -> Space:
    """Fix parameters to constants (``--set key=value``): removed from the search, checked by the family
    with the space file's own value check (:func:`~mathtune.spaces.loader.check_param_value`)."""
    if not overrides:
        return space
    family = get_family(space.family)
    params = dict(space.params)
    constants = dict(space.constants)
    factors = dict(space.factors)
    decode = dict(space.decode)
    for key, value in overrides.items():
        if key not in family.all_params():
            raise SpaceError(f"--set {key}: unknown parameter for family {family.name} "
                             f"(known: {', '.join(sorted(family.all_params()))})")
        value = check_param_value(family, key, value, "--set")
        params.pop(key, None)
        decode.pop(key, None)  # a decode-time setting fixed: trained and scored at that value only
        if key in factors:
            factors[key] = [value]
        else:
            constants[key] = value
    points = []
    for point in space.points_to_evaluate:  # what is left of each warm-start point, each once
        point = {k: v for k, v in point.items() if k in params or k in factors}
        if point not in points:
            points.append(point)
    new = dataclasses.replace(space, params=params, constants=constants, factors=factors, decode=decode,
                              points_to_evaluate=[p for p in points if p])
    check_combos(new, "--set")
    return new


def ensure_ray(address: str | None = None, *, dashboard: bool = True, num_cpus: int | None = None,
               worker_logs: bool = True) -> None:
    """Join ``address`` (or ``RAY_ADDRESS``, as set inside a Ray Job) or start a local Ray bound to 127.0.0.1.

    A local Ray (and its dashboard) listens on 127.0.0.1 only; it never joins a cluster it happens to find.
    ``worker_logs=False`` keeps the trials' own output (their epoch lines, Ray's checkpoint messages) out of
    this terminal; it stays in each worker's log file (the Ray dashboard's Logs page) and errors still reach
    the trial's ``error.txt``.
    """
    os.environ.setdefault("TUNE_WARN_EXCESSIVE_EXPERIMENT_CHECKPOINT_SYNC_THRESHOLD_S", "0")
    address = address or os.environ.get("RAY_ADDRESS") or None
    import ray

    if ray.is_initialized():
        return
    if address:
        ray.init(address=address, log_to_driver=worker_logs)
        return
    _loopback_only()
    ray.init(address="local", include_dashboard=dashboard, dashboard_host="127.0.0.1", num_cpus=num_cpus,
             log_to_driver=worker_logs, configure_logging=True, logging_level="WARNING")
    _private_token_file()


def _private_token_file() -> None:
    """Ray writes the token it generates for a local cluster with the default umask: make it owner-only."""
    if os.environ.get("RAY_AUTH_TOKEN"):
        return
    path = Path(os.environ.get("RAY_AUTH_TOKEN_PATH") or Path.home() / ".ray" / "auth_token")
    try:
        if path.is_file() and path.stat().st_uid == os.getuid() and path.stat().st_mode & 0o077:
            path.chmod(0o600)
    except OSError:
        pass


def _loopback_only() -> None:
    """Make the Ray this process starts bind 127.0.0.1 only.

    On Linux Ray listens on the machine's address (gRPC servers on all interfaces) unless
    ``RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER=0`` is set before ``ray`` is imported; Ray reads it once, at import.
    The variable reaches the Ray processes started from here, and the value this process's Ray read at
    import is aligned with it. Setting the variable to 1 keeps Ray's own choice.
    """
    os.environ.setdefault("RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER", "0")
    if os.environ["RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER"].lower() in ("1", "true"):
        return
    constants = sys.modules.get("ray._private.ray_constants")
    if constants is not None and getattr(constants, "ENABLE_RAY_CLUSTER", False):
        constants.ENABLE_RAY_CLUSTER = False


# At most this many datasets are built up front for the searched data parameters' choices (e.g. ``reverse``);
# beyond it, or for a data parameter searched over a range, each trial builds its own.
MAX_PREBUILT_DATASETS = 8


def _datasets(space: Space) -> dict:
    """Each dataset the search will need, built once (per factor combination, and per choice of a data parameter
    the space searches) and put into Ray's object store on its own: ``{data key: object ref}``, so that a trial
    fetches only the one its configuration uses (:func:`~mathtune.trainables.tune_wrapper.run_trial`)."""
    import ray

    family = get_family(space.family)
    searched = [space.params[k] for k in family.data_params if k in space.params]
    if any(spec.type != "choice" for spec in searched):
        return {}  # a data parameter searched over a range: each trial builds its own
    variants = [dict(zip((spec.name for spec in searched), values))
                for values in itertools.product(*(spec.values for spec in searched))]
    combos = list(space.factor_combos())
    if len(combos) * len(variants) > MAX_PREBUILT_DATASETS:
        return {}
    out = {}
    for combo in combos:
        for variant in variants:
            try:
                config = space.config(combo, variant)
            except ConfigError:
                continue  # a combination the family refuses is never a trial's
            key = family.data_key(config)
            if key not in out:
                t0 = time.perf_counter()
                data = family.build_data(config)
                out[key] = ray.put(data)
                print(f"[mathtune] built dataset {dict(key)} in {time.perf_counter() - t0:.2f} s: "
                      f"{family.describe_data(data)}", flush=True)
    return out


def _resources(space: Space, options: SearchOptions) -> dict[str, float]:
    cpus = options.cpus_per_trial if options.cpus_per_trial is not None else space.resources.get("cpus", 1.0)
    gpus = options.gpus_per_trial if options.gpus_per_trial is not None else space.resources.get("gpus", 0.0)
    if cpus < 0 or gpus < 0 or (cpus == 0 and gpus == 0):
        raise SearchError(f"per-trial resources must be >= 0 and not both zero (cpus {cpus}, gpus {gpus})")
    return {"cpu": cpus, "gpu": gpus}


def _build_tuner_parts(space: Space, record: ExperimentRecord):
    from ray import tune
    from ray.tune.search import ConcurrencyLimiter

    opts = record.options
    if opts["num_samples"] < 0:  # a budget without a trial cap: Optuna's own default of 10 random trials first
        n_startup = opts.get("startup_trials") or 10
    else:
        per_study = max(1, opts["num_samples"] // max(1, len(space.factor_combos())))
        n_startup = opts.get("startup_trials") or max(2, min(10, per_study // 3))
    asha = {**space.scheduler, **(opts.get("asha") or {})}
    grace, eta, brackets = int(asha.get("grace_period", 1)), asha.get("reduction_factor", 3), int(asha.get("brackets", 1))
    pruner = None
    if opts["scheduler"] == "optuna":  # Optuna's HyperbandPruner with ASHA's settings, on the searcher's studies
        import optuna

        pruner = optuna.pruners.HyperbandPruner(min_resource=min(grace, space.epochs), max_resource=space.epochs,
                                                reduction_factor=int(eta))
    if opts.get("searcher", "mathtune") == "stock":
        searcher = _stock_searcher(space, record, n_startup)
    else:
        searcher = FactorOptunaSearch(space, storage=record.optuna_storage, study_name=record.study_name,
                                      seed=opts["seed"], n_startup_trials=n_startup, sampler=opts["sampler"],
                                      rungs=asha_rungs(space.epochs, grace, eta, brackets)
                                      if opts["scheduler"] != "none" else [space.epochs], pruner=pruner)
    if opts.get("budget"):
        # the confirmation's retraining (--confirm-top) comes out of the same budget: rounds of full trials kept back
        runs = int(opts.get("confirm_top") or 0) * int(opts.get("confirm_seeds") or 0) * len(space.factor_combos())
        searcher = BudgetGate(searcher, record.location, epochs=space.epochs,
                              confirm=(int(opts["confirm_top"]), int(opts["confirm_seeds"])) if runs else None,
                              concurrent=int(opts["max_concurrent"]), group_keys=list(space.factors),
                              groups=len(space.factor_combos()))
    search_alg = ConcurrencyLimiter(searcher, max_concurrent=opts["max_concurrent"])
    scheduler = None
    if opts["scheduler"] == "asha":
        scheduler = GroupedASHA(group_keys=list(space.factors), metric=space.metric, mode=space.mode,
                                max_t=space.epochs, grace_period=grace, reduction_factor=eta, brackets=brackets,
                                seed=opts["seed"])
    elif opts["scheduler"] == "optuna":
        scheduler = OptunaPruning(storage=record.optuna_storage, study_name=record.study_name,
                                  combos=space.factor_combos(), metric=space.metric, mode=space.mode, pruner=pruner)
    trainable = tune.with_resources(make_trainable(space.family, _datasets(space)), record.resources)
    return trainable, search_alg, scheduler


def asha_rungs(max_t: int, grace: int, eta: float, brackets: int = 1) -> list[int]:
    """The epochs at which ASHA compares trials (every bracket's rungs) and the last epoch, ascending."""
    rungs = {max_t}
    for s in range(brackets):
        r = grace * eta ** s
        while r < max_t:
            rungs.add(int(r))
            r *= eta
    return sorted(rungs)


class _DefineByRun:
    """The space as an OptunaSearch define-by-run function (a class, so that Tune can pickle it)."""

    def __init__(self, space: Space):
        self.space = space

    def __call__(self, trial) -> dict[str, Any]:
        params = self.space.suggest(trial)
        combo = {k: trial.suggest_categorical(k, v) for k, v in self.space.factors.items()}
        config = self.space.config(combo, params)
        return {k: v for k, v in config.as_dict().items() if k not in params and k not in combo}


def _stock_searcher(space: Space, record: ExperimentRecord, n_startup: int):
    """Ray's own OptunaSearch on the same space, for comparison (factors become categorical choices)."""
    import optuna
    from ray.tune.search.optuna import OptunaSearch

    seed = record.options["seed"]
    sampler = optuna.samplers.RandomSampler(seed=seed) if record.options["sampler"] == "random" else \
        optuna.samplers.TPESampler(seed=seed, n_startup_trials=n_startup, multivariate=True, constant_liar=True)
    return OptunaSearch(space=_DefineByRun(space), metric=space.metric, mode=space.mode, sampler=sampler,
                        points_to_evaluate=space.points_to_evaluate or None, study_name=record.study_name,
                        storage=open_storage(record.optuna_storage))


def _run_config(space: Space, record: ExperimentRecord, *, sub: str | None = None, params: list[str] | None = None,
                num_samples: int | None = None):
    """The search's RunConfig; ``sub`` names a second experiment inside the experiment folder (the seed
    confirmation), with its own progress parameters and trial count, always run to the end."""
    from ray import tune

    opts = record.options
    verbose = int(opts.get("verbose", 0))
    callbacks = keep_own_files(_loggers(record))
    if verbose == 0:
        quiet_tune_messages()
        callbacks.append(SearchProgress(params=list(space.params) if params is None else params,
                                        factors=list(space.factors), metric=space.metric, mode=space.mode,
                                        max_epochs=space.epochs,
                                        num_samples=num_samples or opts["num_samples"],
                                        scheduler="none" if sub else opts["scheduler"],
                                        budget_dir=None if sub or not opts.get("budget") else record.location))
    name, storage_path = (record.name, record.storage_path) if sub is None else (sub, record.location)
    stop = BudgetStopper(record.location) if sub is None and opts.get("budget") else None
    if sub is not None and opts.get("budget"):  # the confirmation runs on the same clock, saved as it runs
        budget_saver(callbacks, record.location)
    return tune.RunConfig(
        name=name, storage_path=storage_path, verbose=verbose, callbacks=callbacks, stop=stop,
        failure_config=tune.FailureConfig(max_failures=opts["max_failures"]),
        checkpoint_config=tune.CheckpointConfig(num_to_keep=2, checkpoint_score_attribute=space.metric,
                                                checkpoint_score_order=space.mode))


def run_search(space_ref: str | Path | Space, options: SearchOptions | None = None) -> SearchOutcome:
    """Run a search described by a space file and options; returns where it went and what happened."""
    from ray import tune

    options = options or SearchOptions()
    space = space_ref if isinstance(space_ref, Space) else load_space(space_ref)
    space = apply_overrides(space, options.overrides)
    if options.budget is not None and not (isinstance(options.budget, (int, float)) and options.budget > 0):
        raise SearchError(f"--budget must be more than zero seconds, got {options.budget!r}")
    if options.num_samples == -1 and not options.budget:
        raise SearchError("--num-samples -1 (no trial cap) needs --budget, which then ends the search")
    if options.num_samples < 1 and options.num_samples != -1:
        raise SearchError(f"--num-samples must be at least 1, got {options.num_samples}")
    if options.budget and "://" in options.storage_path:
        raise SearchError(f"--budget needs a local or mounted --storage-path (the budget is counted in the "
                          f"experiment folder), not {options.storage_path}")
    if options.scheduler not in ("asha", "optuna", "none"):
        raise SearchError(f"--scheduler must be asha, optuna or none, got {options.scheduler!r}")
    if options.scheduler == "optuna" and (space.multi_objective or options.searcher == "stock"):
        raise SearchError("--scheduler optuna: Optuna's pruners need mathtune's searcher and one objective "
                          f"({space.path} {'has several objectives' if space.multi_objective else ''}"
                          f"{'; --searcher stock given' if options.searcher == 'stock' else ''})")
    eta = options.asha.get("reduction_factor", space.scheduler.get("reduction_factor", 3))
    if options.scheduler == "optuna" and eta != int(eta):
        raise SearchError(f"--scheduler optuna: Optuna's HyperbandPruner needs a whole reduction factor, got {eta}")
    if options.sampler == "rung-tpe" and space.multi_objective:
        raise SearchError(f"--sampler rung-tpe models one objective; {space.path} has several (use tpe)")
    if options.searcher not in ("mathtune", "stock"):
        raise SearchError(f"--searcher must be mathtune or stock, got {options.searcher!r}")
    if space.multi_objective and options.searcher == "stock":
        raise SearchError(f"--searcher stock: {space.path} has several objectives; Ray's OptunaSearch is compared "
                          f"on single-objective spaces only")
    if options.sampler not in ("tpe", "rung-tpe", "random", "grid"):
        raise SearchError(f"--sampler must be tpe, rung-tpe, random or grid, got {options.sampler!r}")
    if options.sampler == "grid":
        _check_grid(space, options)
    if options.max_concurrent is not None and options.max_concurrent < 1:
        raise SearchError(f"--max-concurrent must be at least 1, got {options.max_concurrent} "
                          f"(leave it out to fill the cluster)")
    if options.confirm_top < 0:
        raise SearchError(f"--confirm-top must be 0 (off) or more, got {options.confirm_top}")
    if options.confirm_top and options.confirm_seeds < 1:
        raise SearchError(f"--confirm-seeds must be at least 1, got {options.confirm_seeds}")
    if options.startup_trials is not None and options.startup_trials < 1:
        raise SearchError(f"--startup-trials must be at least 1, got {options.startup_trials}")
    for key, value in options.asha.items():
        flag = "--" + key.replace("_", "-")
        if key not in ("grace_period", "reduction_factor", "brackets"):
            raise SearchError(f"asha setting {key!r}: unknown (grace_period, reduction_factor, brackets)")
        low = 2 if key == "reduction_factor" else 1
        if not isinstance(value, (int, float)) or isinstance(value, bool) or value < low or \
                (key != "reduction_factor" and value != int(value)):
            raise SearchError(f"{flag} must be {'a number' if low == 2 else 'a whole number'} >= {low}, got {value!r}")
    if options.max_failures < -1:
        raise SearchError(f"--max-failures must be -1 (retry forever) or more, got {options.max_failures}")
    resources = _resources(space, options)
    if options.optuna_storage:
        _check_optuna_storage(options.optuna_storage)
    storage_path = str(Path(options.storage_path).expanduser().resolve()) if "://" not in options.storage_path \
        else options.storage_path
    name = options.name or f"{space.name}-{time.strftime('%Y%m%d-%H%M%S')}"
    exp_dir = Path(storage_path) / name
    if (exp_dir / EXPERIMENT_FILE).exists():
        raise SearchError(f"{exp_dir} already holds an experiment; resume it with `mathtune resume {exp_dir}` "
                          f"or choose another --name")
    exp_dir.mkdir(parents=True, exist_ok=True)
    with hold_experiment(exp_dir):  # one driver per experiment folder
        if (exp_dir / EXPERIMENT_FILE).exists():  # a search of the same --name started a moment before
            raise SearchError(f"{exp_dir} already holds an experiment; choose another --name")
        shutil.copyfile(space.path, exp_dir / "space.yaml")
        ensure_ray(options.address, dashboard=options.dashboard, worker_logs=options.verbose > 0)
        max_concurrent = options.max_concurrent or _default_concurrency(resources)
        num_samples = options.num_samples
        if options.sampler == "grid" and num_samples == -1:
            num_samples = _grid_size(space)
        opts = {**dataclasses.asdict(options), "max_concurrent": max_concurrent, "num_samples": num_samples,
                "named_loggers": True}
        if options.budget:
            BudgetClock.start(exp_dir, options.budget)  # the dataset build below counts
        record = ExperimentRecord(
            family=space.family, metric=space.metric, mode=space.mode, name=name, space=str(space.path),
            space_name=space.name, storage_path=storage_path, study_name=name, resources=resources, options=opts,
            optuna_storage=options.optuna_storage or journal_url(exp_dir / OPTUNA_JOURNAL),
            factors=list(space.factors), objectives=[list(o) for o in space.objectives],
            created=time.strftime("%Y-%m-%d %H:%M:%S"))
        trainable, search_alg, scheduler = _build_tuner_parts(space, record)
        record.write(exp_dir)  # after the datasets built: a bad data file leaves no experiment
        _record_provenance(exp_dir)
        tuner = tune.Tuner(trainable,
                           tune_config=tune.TuneConfig(search_alg=search_alg, scheduler=scheduler,
                                                       num_samples=num_samples, metric=space.metric,
                                                       mode=space.mode, trial_dirname_creator=trial_dirname,
                                                       trial_name_creator=trial_dirname,
                                                       reuse_actors=options.reuse_actors),
                           run_config=_run_config(space, record))
        trials = "trials until the budget is spent" if num_samples == -1 else f"{num_samples} trials"
        budget = f", budget {format_budget(options.budget)} wall-clock" if options.budget else ""
        print(f"[mathtune] experiment {exp_dir} ({space.family}, {trials}, {max_concurrent} at a time, "
              f"{resources['cpu']:g} CPU / {resources['gpu']:g} GPU each{budget})", flush=True)
        print(f"[mathtune] resume if interrupted: mathtune resume {exp_dir}", flush=True)
        return _finish_and_confirm(tuner, trainable, space, record, exp_dir)


def _finish_and_confirm(tuner, trainable, space: Space, record: ExperimentRecord, exp_dir: Path) -> SearchOutcome:
    """The search to its end, then its confirmation; a budget's clock counts both and stops at the end."""
    clock = BudgetClock.of(exp_dir)
    try:
        outcome = _confirm(_finish(tuner, space, record, exp_dir), trainable, space, record, exp_dir)
    finally:
        close_storages()  # the shared Optuna storage (searcher and Optuna pruning) of this search
        if clock is not None:
            clock.close()
    if clock is not None:
        print(f"[mathtune] budget: {clock.describe()}" + (" (used up)" if clock.exhausted() else ""), flush=True)
    return outcome


def _check_grid(space: Space, options: SearchOptions) -> None:
    """A grid search needs a finite space, mathtune's searcher and no warm-start points (they would be
    extra, off-grid trials); fewer trials than grid points runs a seeded random part of the grid."""
    grid = space.grid()
    if options.searcher != "mathtune":
        raise SearchError("--sampler grid: use mathtune's searcher (--searcher stock is compared on tpe and random)")
    if space.points_to_evaluate:
        raise SearchError(f"--sampler grid: {space.path} has points_to_evaluate; a grid search runs the grid only "
                          f"(remove them, or use --sampler tpe)")
    size = _grid_size(space)
    if options.num_samples > size:
        raise SearchError(f"--sampler grid: --num-samples {options.num_samples} is more than the grid's {size} "
                          f"points ({' x '.join(str(len(v)) for v in grid.values())} per factor value)")


def _grid_size(space: Space) -> int:
    return math.prod(len(values) for values in space.grid().values()) * len(space.factor_combos())


def check_trusted_folder(exp_dir: str | Path) -> None:
    """Refuse to resume from a folder that someone else could have written: ``Tuner.restore`` unpickles the
    searcher's, scheduler's and tuner's saved state from it, and unpickling runs code. The folder and every
    file directly in it (where those states live) must be owned by the current user and not writable by
    others; a one-line :class:`SearchError` names the first that is not."""
    if not hasattr(os, "getuid"):
        return
    uid = os.getuid()
    exp_dir = Path(exp_dir)
    folders = [exp_dir] + ([exp_dir / "confirm"] if (exp_dir / "confirm").is_dir() else [])  # its second Tuner
    paths = [p for d in folders for p in [d, *sorted(q for q in d.iterdir() if q.is_file() and not q.is_symlink())]]
    for path in paths:
        st = path.stat()
        if st.st_uid != uid:
            raise SearchError(f"{path}: owned by uid {st.st_uid}, not by you (uid {uid}); resume unpickles the "
                              f"experiment's saved state, so it only trusts folders you own")
        if st.st_mode & 0o002:
            raise SearchError(f"{path}: writable by every user (mode {st.st_mode & 0o777:o}); resume unpickles the "
                              f"experiment's saved state, so remove that permission first (chmod o-w)")


def resume_search(exp_dir: str | Path, *, address: str | None = None, dashboard: bool = True) -> SearchOutcome:
    """Finish an interrupted experiment with ``Tuner.restore`` (searcher and scheduler state included).

    The folder must be one you trust (:func:`check_trusted_folder`): restoring unpickles its saved state."""
    from ray import tune

    exp_dir = Path(exp_dir).expanduser().resolve()
    if not (exp_dir / EXPERIMENT_FILE).is_file():
        raise SearchError(f"{exp_dir}: not a mathtune experiment (no {EXPERIMENT_FILE})")
    check_trusted_folder(exp_dir)
    record = read_experiment(exp_dir, need=ExperimentRecord.RESUME_KEYS, error=SearchError, problem="corrupt")
    space = apply_overrides(load_space(exp_dir / "space.yaml"), record.options.get("overrides") or {})
    if not tune.Tuner.can_restore(str(exp_dir)):
        raise SearchError(f"{exp_dir}: Ray Tune saved no experiment state yet; start the search again")
    with hold_experiment(exp_dir):  # before anything is restored or written: one driver per experiment folder
        ensure_ray(address, dashboard=dashboard, worker_logs=int(record.options.get("verbose", 0)) > 0)
        _record_provenance(exp_dir)
        clock = BudgetClock.resume(exp_dir) if record.options.get("budget") else None
        if clock is not None:
            print(f"[mathtune] budget: {clock.describe()} before this resume", flush=True)
        trainable, _, _ = _build_tuner_parts(space, record)
        if int(record.options.get("verbose", 0)) == 0:
            quiet_tune_messages()  # as a new search's run configuration does: a resume builds none
        tuner = tune.Tuner.restore(str(exp_dir), trainable=trainable, resume_unfinished=True, resume_errored=False,
                                   restart_errored=False)
        # an experiment begun before run configurations held KeepOwnFiles gets one (Tune keeps the restored run
        # configuration on its internal tuner; Tuner.restore takes no new one)
        run_config = tuner._local_tuner.get_run_config()
        run_config.callbacks = keep_own_files(list(run_config.callbacks or []))
        print(f"[mathtune] resuming {exp_dir}", flush=True)
        return _finish_and_confirm(tuner, trainable, space, record, exp_dir)


def _confirm(outcome: SearchOutcome, trainable, space: Space, record: ExperimentRecord, exp_dir: Path) -> SearchOutcome:
    """After a search that ended, its seed confirmation when asked for (``--confirm-top``)."""
    if outcome.interrupted or not int(record.options.get("confirm_top") or 0):
        return outcome
    with _tune_console(record):
        summary = run_confirmation(space, record, exp_dir, trainable,
                                   lambda sub, params, n: _run_config(space, record, sub=sub, params=params,
                                                                      num_samples=n))
    if summary is None:
        print(f"[mathtune] confirmation interrupted; continue it with: mathtune resume {exp_dir}", flush=True)
        return dataclasses.replace(outcome, interrupted=True)
    print(f"[mathtune] confirmation: {exp_dir / 'confirm.json'}; the winner: mathtune best {exp_dir}", flush=True)
    return dataclasses.replace(outcome, confirmed=summary)


def _check_optuna_storage(url: str) -> None:
    """Refuse an Optuna storage URL that cannot be opened, or that carries a password (it would be stored
    in the experiment folder); opening it creates Optuna's tables."""
    import optuna
    from sqlalchemy.engine import make_url
    from sqlalchemy.exc import ArgumentError

    example = "e.g. sqlite:////shared/optuna.db or postgresql://user@head/optuna"
    try:
        parsed = make_url(url)
    except ArgumentError:
        raise SearchError(f"--optuna-storage {url!r}: not a SQLAlchemy URL ({example})") from None
    if parsed.password:
        raise SearchError(f"--optuna-storage {parsed.render_as_string(hide_password=True)}: the URL carries a "
                          f"password, which would be written into the experiment folder; leave it out and let "
                          f"the database client supply it (PostgreSQL: ~/.pgpass or PGPASSWORD)")
    try:
        optuna.storages.RDBStorage(url)
    except Exception as exc:  # driver missing, database unreachable, file not creatable: all one line
        detail = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        raise SearchError(f"--optuna-storage {url}: cannot open ({detail})") from None


def _record_provenance(exp_dir: Path) -> None:
    """Append the driver's provenance (commit, CPU, versions) to ``EXP/provenance.json``, one entry per session
    (the search, then each resume); each trial's own (where it trained) is in its checkpoints."""
    path = exp_dir / PROVENANCE_FILE
    try:
        sessions = json.loads(path.read_text())["sessions"] if path.is_file() else []
    except (OSError, ValueError, KeyError, TypeError):
        sessions = []  # a damaged file is replaced; provenance never stops a search
    write_json(path, {"sessions": [*sessions, collect_provenance(role="search driver")]})


def _default_concurrency(resources: dict[str, float]) -> int:
    import ray

    total = ray.cluster_resources()
    limits = []
    if resources["cpu"] > 0:
        limits.append(int(total.get("CPU", 1) // resources["cpu"]))
    if resources["gpu"] > 0:
        limits.append(int(total.get("GPU", 0) // resources["gpu"]))
    return max(1, min(limits) if limits else 1)


@contextlib.contextmanager
def _tune_console(record: ExperimentRecord):
    """Tune's environment while a Tuner fits; each variable is restored afterwards.

    * At verbosity 0, Tune's classic console output, which then prints nothing (its newer output prints an
      experiment box and a TensorBoard hint even when silent), leaving the terminal to mathtune's progress lines.
    * No loggers added behind mathtune's back: the run config names its own (:func:`_loggers`), so TensorBoard
      files are written only when asked for. An experiment started before searches named them (its record has
      no ``named_loggers``) resumes with a run configuration that holds none, so Tune adds its default loggers
      there as it did when the experiment started: without them no trial would write ``result.json``."""
    wanted = {"TUNE_DISABLE_AUTO_CALLBACK_LOGGERS": "1"} if record.options.get("named_loggers") else {}
    if int(record.options.get("verbose", 0)) == 0:
        wanted["RAY_AIR_NEW_OUTPUT"] = "0"
    previous = {name: os.environ.get(name) for name in wanted}
    os.environ.update(wanted)
    try:
        yield
    finally:
        for name, value in previous.items():
            os.environ.pop(name, None) if value is None else os.environ.__setitem__(name, value)


def _loggers(record: ExperimentRecord) -> list:
    """The trial loggers: Tune's CSV and JSON results (``progress.csv``, ``result.json``, which the reports and
    resume read) and, with ``--tensorboard``, its TensorBoard event files. Those cost the driver about 20 ms a
    trial (an event file opened, flushed and closed per trial), a tenth of a trivial trial's slot, for files no
    mathtune command reads."""
    from ray.tune.logger import CSVLoggerCallback, JsonLoggerCallback, TBXLoggerCallback

    loggers = [CSVLoggerCallback(), JsonLoggerCallback()]
    if record.options.get("tensorboard"):
        loggers.append(TBXLoggerCallback())
    return loggers


def _finish(tuner, space: Space, record: ExperimentRecord, exp_dir: Path) -> SearchOutcome:
    interrupted = False
    with _tune_console(record):
        try:
            grid = tuner.fit()
        except KeyboardInterrupt:
            interrupted = True
            grid = None
    counts: dict[str, int] = {}
    if grid is not None:
        for trial in grid._experiment_analysis.trials:
            counts[trial.status] = counts.get(trial.status, 0) + 1
        interrupted = interrupted or any(s not in ("TERMINATED", "ERROR") for s in counts) \
            or stopped_by_signal(exp_dir)
    if not interrupted:  # decode-time settings: every ended trial's checkpoint, inside the budget's count
        try:
            score_decode_settings(space, exp_dir)
        except KeyboardInterrupt:
            interrupted = True
    best = _best_per_combo(space, exp_dir) if grid is not None else {}
    print(f"[mathtune] results: {exp_dir}", flush=True)
    if counts:
        print("[mathtune] trials: " + ", ".join(f"{v} {k.lower()}" for k, v in sorted(counts.items())), flush=True)
    for label, b in best.items():
        test_key = test_metric_for(space.metric)
        decoded = f" at {', '.join(f'{k}={v}' for k, v in b['decoded'].items())}" if b.get("decoded") else ""
        print(f"[mathtune] best ({label}): {space.metric} {b[space.metric]:.4f}{decoded} "
              f"(test, reported only: {test_key} {b[test_key]:.4f}) epoch {b['epoch']}", flush=True)
    print(f"[mathtune] report: mathtune report {exp_dir}", flush=True)
    if interrupted:
        print(f"[mathtune] interrupted: the running trials were saved at their last epoch; continue with: "
              f"mathtune resume {exp_dir}", flush=True)
    return SearchOutcome(exp_dir, counts, best, interrupted)


def _best_per_combo(space: Space, exp_dir: Path) -> dict[str, dict[str, Any]]:
    """The best trial per factor combination by validation (at its chosen decode-time setting, if scored; the
    first trial on ties)."""
    by_combo: dict[str, list[tuple[Any, dict[str, Any]]]] = {}
    for trial in load_trials(exp_dir):
        row = trial.best(space.metric, space.mode)
        if row is not None:
            label = ", ".join(f"{k}={trial.config.get(k)}" for k in space.factors) or "all"
            by_combo.setdefault(label, []).append((trial, row))
    best: dict[str, dict[str, Any]] = {}
    test_key = test_metric_for(space.metric)
    for label, entries in by_combo.items():
        trial, row = best_of(entries, space.mode, key=lambda e: float(e[1][space.metric]))
        best[label] = {space.metric: float(row[space.metric]),
                       test_key: float(row[test_key]) if isinstance(row.get(test_key), (int, float)) else float("nan"),
                       "epoch": int(row.get("epoch", 0)), "trial_id": trial.trial_id, "path": str(trial.path),
                       "decoded": row.get("decoded")}
    return best
