"""An Optuna-backed Ray Tune searcher that tells Optuna the truth and survives a dead driver.

Differences from ``ray.tune.search.optuna.OptunaSearch``:

* **Study factors** (e.g. ``split``) get one Optuna study each; trials go round-robin over them, so
  TPE never compares validation scores measured on different data.
* **Faithful reporting**: every epoch's validation metric becomes an intermediate value; a trial
  stopped by the scheduler is told PRUNED, a finished one COMPLETE with its *best* validation value
  (the checkpoint kept), an errored one FAIL.
* **No repeats**: a configuration already run (or running) is not run again; its repeat is told the first
  trial's outcome and Optuna is asked again (in a finite space TPE proposes repeats often).
* **Rung-level TPE** (``sampler="rung-tpe"``, BOHB-like): TPE fitted on the best validation value each trial
  had reached by the highest ASHA rung that enough trials have reached (at least one more than the number
  of searched parameters, and at least the start-up trials), so the model learns from every trial ASHA
  stopped instead of ranking stopped trials below finished ones; random until a rung has enough.
* **Several objectives** (a space's ``objectives:``): one multi-objective study per factor value (TPE, which
  handles several objectives), each epoch's objective values kept on the Optuna trial (Optuna records no
  intermediate values for multi-objective studies), a finished trial told the values of its best epoch on
  the first objective, the one ASHA stops on.
* **Storage is the truth**: each Optuna trial records its Tune trial id as a user attribute. After
  ``Tuner.restore`` the searcher rebuilds its map from the storage, ignores updates for trials the
  storage already holds as finished (no ``UpdateFinishedTrialError``), and hands Optuna trials that
  were asked for after Tune's last snapshot to the replacement trials Tune asks for, so every trial is
  accounted for exactly once.

Example::

    searcher = FactorOptunaSearch(space, storage="journal:/abs/exp/optuna.journal", study_name="exp", seed=0)
"""

from __future__ import annotations

import logging
import math
import warnings
from typing import Any

import optuna
from optuna.trial import TrialState
from ray.tune.search import Searcher

from mathtune.analysis.store import open_optuna_storage
from mathtune.spaces.loader import Space
from mathtune.trainables.atomic import atomic_file
from mathtune.trainables.metrics import best_of

__all__ = ["FactorOptunaSearch", "study_name_for", "open_storage", "close_storages", "TUNE_ID_ATTR", "DUPLICATE_ATTR"]

TUNE_ID_ATTR = "tune_trial_id"
DUPLICATE_ATTR = "duplicate_of"  # on an Optuna trial that repeated a configuration: the number of the first
EPOCH_ATTR = "epoch_values:"  # + epoch: that epoch's objective values, on trials of multi-objective studies
logger = logging.getLogger(__name__)


_STORAGES: dict[str, Any] = {}


def open_storage(url: str):
    """One Optuna storage per storage string in this process (an RDBStorage takes seconds to open: schema
    checks), shared by the searcher and :class:`OptunaPruning` (``journal:PATH`` or a SQLAlchemy URL, see
    :func:`~mathtune.analysis.store.open_optuna_storage`)."""
    if url not in _STORAGES:
        _STORAGES[url] = open_optuna_storage(url)
    return _STORAGES[url]


def close_storages() -> None:
    """Forget the shared storages (a search's end: its database may be moved or deleted afterwards)."""
    for storage in _STORAGES.values():
        if hasattr(storage, "remove_session"):
            storage.remove_session()
        engine = getattr(storage, "engine", None)
        if engine is not None:
            engine.dispose()
    _STORAGES.clear()


def study_name_for(base: str, combo: dict[str, Any]) -> str:
    """Study name of one factor combination, e.g. ``exp[split=0.5]``."""
    if not combo:
        return base
    return base + "[" + ",".join(f"{k}={v}" for k, v in combo.items()) + "]"


class _AskTellGridSampler(optuna.samplers.GridSampler):
    """Optuna's GridSampler for ask-and-tell use: its ``after_trial`` calls ``study.stop()`` once the grid is
    covered, which raises outside ``study.optimize``, so the last trial could never be told. Tune's
    ``num_samples`` (at most the grid size) ends the search instead."""

    def after_trial(self, study, trial, state, values) -> None:
        pass


class FactorOptunaSearch(Searcher):
    """Define-by-run Optuna search over a :class:`~mathtune.spaces.loader.Space`."""

    def __init__(self, space: Space, *, storage: str, study_name: str, seed: int = 0,
                 n_startup_trials: int = 10, sampler: str = "tpe", max_repeat_asks: int = 32,
                 rungs: list[int] | None = None, pruner: optuna.pruners.BasePruner | None = None):
        super().__init__(metric=space.metric, mode=space.mode)
        self.space = space
        self.storage_url = storage
        self.study_name = study_name
        self.seed = seed
        self.n_startup_trials = n_startup_trials
        self.sampler_name = sampler
        self.max_repeat_asks = max_repeat_asks
        self.rungs = sorted(set(rungs or [space.epochs]))  # rung-tpe: the epochs at which trials are compared
        self.pruner = pruner  # an Optuna pruner that stops trials (OptunaPruning); the studies must know it
        self.combos = space.factor_combos()
        self._asked = [0] * len(self.combos)
        self._trials: dict[str, dict[str, Any]] = {}  # tune id -> {combo, number, last_epoch}
        self._points = [dict(p) for p in space.points_to_evaluate]
        self._studies: dict[int, optuna.Study] | None = None
        self._storage_obj = None
        self._orphans: list[tuple[int, int]] = []

    # ------------------------------------------------------------------ pickling (Tuner saves us)
    def __getstate__(self) -> dict[str, Any]:
        state = dict(self.__dict__)
        state["_studies"] = None
        state["_storage_obj"] = None
        state["_orphans"] = []
        return state

    def get_state(self) -> dict[str, Any]:
        return {"asked": list(self._asked), "trials": {k: dict(v) for k, v in self._trials.items()},
                "points": [dict(p) for p in self._points]}

    def set_state(self, state: dict[str, Any]) -> None:
        self._asked = list(state["asked"])
        self._trials = {k: dict(v) for k, v in state["trials"].items()}
        self._points = [dict(p) for p in state["points"]]

    def save(self, checkpoint_path: str) -> None:
        import pickle

        with atomic_file(checkpoint_path) as fh:
            pickle.dump(self.get_state(), fh)

    def restore(self, checkpoint_path: str) -> None:
        import pickle

        with open(checkpoint_path, "rb") as fh:
            self.set_state(pickle.load(fh))
        self._studies = None
        self._reconcile()

    # ------------------------------------------------------------------ studies
    def _sampler(self, index: int) -> optuna.samplers.BaseSampler:
        seed = self.seed * 1000 + index
        if self.sampler_name in ("random", "rung-tpe"):  # rung-tpe: random until a rung has enough trials
            return optuna.samplers.RandomSampler(seed=seed)
        if self.sampler_name == "grid":  # every grid point once, in an order shuffled by the seed
            return _AskTellGridSampler(self.space.grid(), seed=seed)
        return optuna.samplers.TPESampler(seed=seed, n_startup_trials=self.n_startup_trials, multivariate=True,
                                          constant_liar=True)

    def studies(self) -> dict[int, optuna.Study]:
        if self._studies is None:
            optuna.logging.set_verbosity(optuna.logging.WARNING)
            if self._storage_obj is None:
                self._storage_obj = open_storage(self.storage_url)
            objectives = self.space.objectives if self.space.multi_objective else \
                [(self.space.metric, self.space.mode)]
            directions = ["maximize" if mode == "max" else "minimize" for _, mode in objectives]
            self._studies = {}
            for i, combo in enumerate(self.combos):
                name = study_name_for(self.study_name, combo)
                study = optuna.create_study(storage=self._storage_obj, study_name=name, directions=directions,
                                            sampler=self._sampler(i), pruner=self.pruner, load_if_exists=True)
                if not study.user_attrs:
                    study.set_user_attr("family", self.space.family)
                    study.set_user_attr("space", str(self.space.path))
                    study.set_user_attr("metric", self.space.metric)
                    study.set_user_attr("factors", combo)
                    if self.space.multi_objective:
                        study.set_user_attr("objectives", [list(o) for o in objectives])
                    # optuna-dashboard then names the metric (val_exec_acc), not "Objective 0"
                    with warnings.catch_warnings():  # experimental in Optuna, stable in use since 3.2
                        warnings.simplefilter("ignore")
                        study.set_metric_names([m for m, _ in objectives])
                self._studies[i] = study
        return self._studies

    def _reconcile(self) -> None:
        """After a restore, line the searcher up with the storage (the storage is the truth).

        An Optuna trial that is RUNNING but unknown to the restored state was asked for after Tune's last
        snapshot: Tune will ask for a replacement, and that replacement adopts it (same parameters, same
        Optuna trial), so every Tune trial maps to exactly one Optuna trial.
        """
        known = {(v["combo"], v["number"]) for v in self._trials.values()}
        self._orphans: list[tuple[int, int]] = []
        for i, study in self.studies().items():
            trials = study.get_trials(deepcopy=False)
            self._asked[i] = sum(1 for t in trials if t.state != TrialState.WAITING and DUPLICATE_ATTR not in t.user_attrs)
            for t in trials:
                if t.state == TrialState.RUNNING and (i, t.number) not in known:
                    self._orphans.append((i, t.number))

    # ------------------------------------------------------------------ Searcher API
    def set_search_properties(self, metric, mode, config, **spec) -> bool:
        return True  # metric and mode come from the space file

    def suggest(self, trial_id: str) -> dict[str, Any] | None:
        studies = self.studies()
        if self._orphans:
            combo_index, number = self._orphans.pop(0)
            study = studies[combo_index]
            frozen = study.trials[number]
            optuna.trial.Trial(study, frozen._trial_id).set_user_attr(TUNE_ID_ATTR, trial_id)
            params = {k: frozen.params[k] for k in self.space.params if k in frozen.params}
            if self._points and all(params.get(k) == v for k, v in self._points[0].items()
                                    if k in self.space.params):
                self._points.pop(0)  # that warm-start point is the adopted trial
            self._trials[trial_id] = {"combo": combo_index, "number": number, "last_epoch": 0}
            logger.info("tune trial %s adopts optuna trial %s of %s", trial_id, number, study.study_name)
            return self.space.config(self.combos[combo_index], params).as_dict()
        if self._points:
            point = self._points.pop(0)
            combo_index = self._combo_of(point)
            study = studies[combo_index]
            study.enqueue_trial({k: v for k, v in point.items() if k in self.space.params},
                                skip_if_exists=False)
            trial = study.ask()
            params = self.space.suggest(trial)
        else:
            combo_index = min(range(len(self.combos)), key=lambda i: (self._asked[i], i))
            study = studies[combo_index]
            trial, params = self._ask_new(study)
        trial.set_user_attr(TUNE_ID_ATTR, trial_id)
        self._asked[combo_index] += 1
        self._trials[trial_id] = {"combo": combo_index, "number": trial.number, "last_epoch": 0}
        return self.space.config(self.combos[combo_index], params).as_dict()  # Tune's trial parameters: a plain dict

    def _ask_new(self, study: optuna.Study) -> tuple[optuna.Trial, dict[str, Any]]:
        """Ask for a configuration no trial of the study has run or is running.

        A trial's result is a function of its configuration (the training seed is part of it), so running a
        configuration twice spends compute for nothing; in a finite space TPE proposes repeats often (about
        a third of a 32-trial search's compute on the replay benchmark's 144-point grid). A repeat of a
        finished trial is told that trial's outcome (its intermediate values and state, marked
        ``duplicate_of``), so the sampler learns the same as from a rerun; a repeat of a running trial is
        told FAIL (ignored by the samplers; the running one is already counted, by constant liar). Then
        Optuna is asked again, up to ``max_repeat_asks`` times, after which a repeat is run.
        """
        for attempt in range(self.max_repeat_asks):
            trial, params = self._ask(study, attempt)
            original = self._same_config(study, trial.number, params)
            if original is None:
                return trial, params
            self._tell_repeat(study, trial, original)
        return self._ask(study, self.max_repeat_asks)

    def _ask(self, study: optuna.Study, attempt: int) -> tuple[optuna.Trial, dict[str, Any]]:
        if self.sampler_name == "rung-tpe":
            params = self._rung_proposal(study, attempt)
            if params is not None:  # the real study records the proposal; its own sampler is random
                study.enqueue_trial(params, skip_if_exists=False)
        trial = study.ask()
        return trial, self.space.suggest(trial)

    def rung_observations(self, study: optuna.Study) -> tuple[int | None, list[tuple[Any, float]]]:
        """The highest rung that enough trials have reached, and each such trial with the best value it had
        by that epoch; ``(None, [])`` while no rung has enough."""
        trials = [t for t in study.get_trials(deepcopy=False)
                  if DUPLICATE_ATTR not in t.user_attrs and t.intermediate_values
                  and t.state in (TrialState.COMPLETE, TrialState.PRUNED, TrialState.RUNNING)]
        need = max(len(self.space.params) + 1, self.n_startup_trials)
        for rung in reversed(self.rungs):
            obs = [(t, best_of((v for s, v in t.intermediate_values.items() if s <= rung), self.space.mode))
                   for t in trials if max(t.intermediate_values) >= rung]
            if len(obs) >= need:
                return rung, obs
        return None, []

    def _rung_proposal(self, study: optuna.Study, attempt: int) -> dict[str, Any] | None:
        """A TPE proposal from the trials' values at the highest rung with enough of them (BOHB's model);
        running trials that have not reached it are passed as running (constant liar)."""
        rung, obs = self.rung_observations(study)
        if rung is None:
            return None
        seen = {t.number for t, _ in obs}
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")  # multivariate TPE is marked experimental
            sampler = optuna.samplers.TPESampler(seed=(self.seed * 1000003 + len(study.trials) * 101 + attempt) % 2**31,
                                                 n_startup_trials=0, multivariate=True, constant_liar=True)
            model = optuna.create_study(direction="maximize" if self.space.mode == "max" else "minimize",
                                        sampler=sampler)
            model.add_trials([optuna.trial.create_trial(params=t.params, distributions=t.distributions, value=v)
                              for t, v in obs])
            model.add_trials([optuna.trial.create_trial(params=t.params, distributions=t.distributions,
                                                        state=TrialState.RUNNING)
                              for t in study.get_trials(deepcopy=False, states=(TrialState.RUNNING,))
                              if t.number not in seen and t.params])
            return self.space.suggest(model.ask())

    def _same_config(self, study: optuna.Study, number: int, params: dict[str, Any]):
        for t in study.get_trials(deepcopy=False):
            if t.number != number and t.state in (TrialState.COMPLETE, TrialState.PRUNED, TrialState.RUNNING) \
                    and DUPLICATE_ATTR not in t.user_attrs and t.params == params:
                return t
        return None

    def _tell_repeat(self, study: optuna.Study, trial: optuna.Trial, original) -> None:
        trial.set_user_attr(DUPLICATE_ATTR, original.number)
        if original.state == TrialState.RUNNING:
            study.tell(trial, state=TrialState.FAIL)
            return
        for key, value in original.user_attrs.items():
            if key.startswith(EPOCH_ATTR) or key == "selected_epoch":
                trial.set_user_attr(key, value)
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            for step, value in sorted(original.intermediate_values.items()):
                trial.report(value, step=step)
        if original.state == TrialState.PRUNED:
            study.tell(trial, state=TrialState.PRUNED)
        else:
            study.tell(trial, original.values)

    def _combo_of(self, point: dict[str, Any]) -> int:
        for i, combo in enumerate(self.combos):
            if all(point.get(k, v) == v for k, v in combo.items()):
                return i
        return 0

    def _open(self, trial_id: str) -> tuple[dict[str, Any], optuna.Study, optuna.trial.FrozenTrial] | None:
        info = self._trials.get(trial_id)
        if info is None:
            return None
        study = self.studies()[info["combo"]]
        frozen = study._storage.get_trial(study._storage.get_trial_id_from_study_id_trial_number(
            study._study_id, info["number"]))
        if frozen.state.is_finished():
            return None  # already told (e.g. replayed after a restore): nothing to update
        return info, study, frozen

    def on_trial_result(self, trial_id: str, result: dict[str, Any]) -> None:
        opened = self._open(trial_id)
        if opened is None:
            return
        info, study, frozen = opened
        value = result.get(self.space.metric)
        epoch = int(result.get("epoch", result.get("training_iteration", 0)))
        info["last_epoch"] = max(info["last_epoch"], epoch)
        if value is None or not isinstance(value, (int, float)) or math.isnan(value):
            return
        if self.space.multi_objective:
            values = [result.get(m) for m, _ in self.space.objectives]
            if all(isinstance(v, (int, float)) and not math.isnan(v) for v in values) and \
                    f"{EPOCH_ATTR}{epoch}" not in frozen.user_attrs:
                optuna.trial.Trial(study, frozen._trial_id).set_user_attr(f"{EPOCH_ATTR}{epoch}",
                                                                          [float(v) for v in values])
            return
        if epoch not in frozen.intermediate_values:
            with warnings.catch_warnings():
                warnings.simplefilter("ignore")
                optuna.trial.Trial(study, frozen._trial_id).report(float(value), step=epoch)

    def on_trial_complete(self, trial_id: str, result: dict[str, Any] | None = None, error: bool = False) -> None:
        if result:
            self.on_trial_result(trial_id, result)
        opened = self._open(trial_id)
        if opened is None:
            return
        info, study, frozen = opened
        if error:
            study.tell(info["number"], state=TrialState.FAIL)
            return
        # The storage holds every epoch ever reported (also those after Tune's last snapshot): intermediate
        # values, or for several objectives each epoch's values as a trial attribute.
        multi = self.space.multi_objective
        epochs = {int(k[len(EPOCH_ATTR):]): v for k, v in frozen.user_attrs.items() if k.startswith(EPOCH_ATTR)} \
            if multi else frozen.intermediate_values
        max_epochs = int((result or {}).get("config", {}).get("epochs", 0) or self.space.epochs)
        last_epoch = max([info["last_epoch"], *epochs])
        if not epochs:
            study.tell(info["number"], state=TrialState.FAIL)
        elif last_epoch < max_epochs:
            study.tell(info["number"], state=TrialState.PRUNED)
        elif not multi:
            study.tell(info["number"], best_of(epochs.values(), self.space.mode))
        else:  # the objective values of the best epoch on the first objective (the first such epoch on ties)
            best = best_of(sorted(epochs), self.space.objectives[0][1], key=lambda e: epochs[e][0])
            optuna.trial.Trial(study, frozen._trial_id).set_user_attr("selected_epoch", best)
            study.tell(info["number"], list(epochs[best]))
