"""ASHA that compares trials only within one study-factor combination.

A trial at split 0.1 must not be stopped because trials at split 0.5 score higher on their own,
different validation data; this scheduler keeps one ``AsyncHyperBandScheduler`` per factor combination.
With ``brackets`` > 1 (Hyperband-style: bracket s starts its rungs at ``grace_period x reduction_factor^s``,
so later brackets let late-blooming curves run longer before the first cut), a new trial's bracket is drawn
with Ray's weights but from a generator seeded by the search's seed, so a search replays the same way.

:class:`OptunaPruning` is the other route: Optuna's own pruner decides, reading the searcher's studies.

Example::

    scheduler = GroupedASHA(group_keys=["split"], metric="val_exact_match", mode="max", max_t=20)
"""

from __future__ import annotations

import math
import pickle
from typing import Any

import numpy as np

from ray.tune.schedulers import AsyncHyperBandScheduler, FIFOScheduler, TrialScheduler

from mathtune.search.searcher import TUNE_ID_ATTR, open_storage, study_name_for
from mathtune.trainables.atomic import atomic_file

__all__ = ["GroupedASHA", "OptunaPruning"]


class GroupedASHA(FIFOScheduler):
    def __init__(self, *, group_keys: list[str], metric: str, mode: str, max_t: int, grace_period: int = 1,
                 reduction_factor: float = 3, brackets: int = 1, time_attr: str = "epoch", seed: int = 0):
        super().__init__()
        self._rng = np.random.default_rng(seed)  # bracket draws, seeded (Ray's ASHA draws from numpy's global state)
        self._metric, self._mode = metric, mode
        self.group_keys = list(group_keys)
        self.kwargs = dict(time_attr=time_attr, metric=metric, mode=mode, max_t=max_t,
                           grace_period=min(grace_period, max_t), reduction_factor=reduction_factor,
                           brackets=brackets)
        self.groups: dict[tuple, AsyncHyperBandScheduler] = {}
        self.num_stopped = 0

    def set_search_properties(self, metric, mode, **spec) -> bool:
        return True

    def _group(self, trial) -> AsyncHyperBandScheduler:
        key = tuple(repr(trial.config.get(k)) for k in self.group_keys)
        if key not in self.groups:
            self.groups[key] = AsyncHyperBandScheduler(**self.kwargs)
        return self.groups[key]

    def on_trial_add(self, tune_controller, trial) -> None:
        group = self._group(trial)
        if len(group._brackets) == 1:
            group.on_trial_add(tune_controller, trial)
            return
        # Ray's weights (a bracket with more rungs is drawn e times as often as the next), from a seeded draw
        sizes = np.array([len(b._rungs) for b in group._brackets])
        probs = np.e ** (sizes - sizes.max())
        group._trial_info[trial.trial_id] = group._brackets[int(self._rng.choice(len(sizes), p=probs / probs.sum()))]

    def on_trial_result(self, tune_controller, trial, result: dict[str, Any]) -> str:
        group = self._group(trial)
        if trial.trial_id not in group._trial_info:  # restored trial: give it a bracket first
            self.on_trial_add(tune_controller, trial)
        action = group.on_trial_result(tune_controller, trial, result)
        if action == TrialScheduler.STOP:
            self.num_stopped += 1
        return action

    def on_trial_complete(self, tune_controller, trial, result: dict[str, Any]) -> None:
        group = self._group(trial)
        if trial.trial_id in group._trial_info:
            group.on_trial_complete(tune_controller, trial, result)

    def on_trial_remove(self, tune_controller, trial) -> None:
        group = self._group(trial)
        group._trial_info.pop(trial.trial_id, None)

    def on_trial_error(self, tune_controller, trial) -> None:
        self.on_trial_remove(tune_controller, trial)

    def debug_string(self) -> str:
        return f"GroupedASHA over {self.group_keys or 'all trials'}: {len(self.groups)} group(s), " \
               f"{self.num_stopped} early stops"

    def save(self, checkpoint_path: str) -> None:
        with atomic_file(checkpoint_path) as fh:
            pickle.dump(self.__dict__, fh)

    def restore(self, checkpoint_path: str) -> None:
        with open(checkpoint_path, "rb") as fh:
            self.__dict__.update(pickle.load(fh))


class OptunaPruning(FIFOScheduler):
    """Optuna's own pruner route: after each epoch, the trial's value is reported to its Optuna trial and the
    study's pruner (e.g. ``HyperbandPruner``) decides whether Tune stops it, as ``trial.should_prune()`` would
    in an Optuna objective. The studies are the searcher's (same storage, one per factor combination, made
    with the same pruner, so the sampler sees the pruner's brackets too).

    Example::

        pruner = optuna.pruners.HyperbandPruner(min_resource=2, max_resource=20, reduction_factor=3)
        scheduler = OptunaPruning(storage="journal:/abs/exp/optuna.journal", study_name="exp", combos=[{}],
                                  metric="val_exact_match", mode="max", pruner=pruner)
    """

    def __init__(self, *, storage: str, study_name: str, combos: list[dict[str, Any]], metric: str, mode: str,
                 pruner, time_attr: str = "epoch"):
        super().__init__()
        self.storage_url, self.study_name, self.combos = storage, study_name, [dict(c) for c in combos]
        self._metric, self._mode, self.pruner, self.time_attr = metric, mode, pruner, time_attr
        self._studies: dict[int, Any] = {}
        self._numbers: dict[str, tuple[int, int]] = {}  # tune trial id -> (combo index, storage trial id)
        self.num_stopped = 0

    def __getstate__(self) -> dict[str, Any]:
        return {**self.__dict__, "_studies": {}}

    def set_search_properties(self, metric, mode, **spec) -> bool:
        return True

    def _study(self, index: int):
        import optuna

        if index not in self._studies:
            self._studies[index] = optuna.load_study(study_name=study_name_for(self.study_name, self.combos[index]),
                                                     storage=open_storage(self.storage_url), pruner=self.pruner,
                                                     sampler=optuna.samplers.RandomSampler())
        return self._studies[index]

    def _optuna_trial(self, trial) -> tuple[Any, int] | None:
        if trial.trial_id not in self._numbers:
            index = next((i for i, c in enumerate(self.combos)
                          if all(trial.config.get(k) == v for k, v in c.items())), None)
            if index is None:
                return None
            found = [t for t in self._study(index).get_trials(deepcopy=False)
                     if t.user_attrs.get(TUNE_ID_ATTR) == trial.trial_id and not t.state.is_finished()]
            if not found:
                return None
            self._numbers[trial.trial_id] = (index, found[-1]._trial_id)
        index, storage_id = self._numbers[trial.trial_id]
        return self._study(index), storage_id

    def on_trial_result(self, tune_controller, trial, result: dict[str, Any]) -> str:
        import optuna

        value, step = result.get(self._metric), result.get(self.time_attr)
        opened = self._optuna_trial(trial)
        if opened is None or not isinstance(value, (int, float)) or math.isnan(value) or step is None:
            return TrialScheduler.CONTINUE
        study, storage_id = opened
        frozen = study._storage.get_trial(storage_id)
        if frozen.state.is_finished():
            return TrialScheduler.CONTINUE
        if int(step) not in frozen.intermediate_values:  # reported here first: Tune calls the scheduler first
            optuna.trial.Trial(study, storage_id).report(float(value), step=int(step))
            frozen = study._storage.get_trial(storage_id)
        if self.pruner.prune(study, frozen):
            self.num_stopped += 1
            return TrialScheduler.STOP
        return TrialScheduler.CONTINUE

    def on_trial_complete(self, tune_controller, trial, result: dict[str, Any]) -> None:
        self._numbers.pop(trial.trial_id, None)

    def on_trial_remove(self, tune_controller, trial) -> None:
        self._numbers.pop(trial.trial_id, None)

    def debug_string(self) -> str:
        return f"Optuna {type(self.pruner).__name__}: {self.num_stopped} early stops"
