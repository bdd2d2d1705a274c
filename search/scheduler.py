"""ASHA that compares trials only within one study-factor combination.

A trial at split 0.1 must not be stopped because trials at split 0.5 score higher on their own,
different validation data; this scheduler keeps one ``AsyncHyperBandScheduler`` per factor combination.

Example::

    scheduler = GroupedASHA(group_keys=["split"], metric="val_exact_match", mode="max", max_t=20)
"""

from __future__ import annotations

import pickle
from typing import Any

from ray.tune.schedulers import AsyncHyperBandScheduler, FIFOScheduler, TrialScheduler

__all__ = ["GroupedASHA"]


class GroupedASHA(FIFOScheduler):
    def __init__(self, *, group_keys: list[str], metric: str, mode: str, max_t: int, grace_period: int = 1,
                 reduction_factor: float = 3, brackets: int = 1, time_attr: str = "epoch"):
        super().__init__()
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
        self._group(trial).on_trial_add(tune_controller, trial)

    def on_trial_result(self, tune_controller, trial, result: dict[str, Any]) -> str:
        group = self._group(trial)
        if trial.trial_id not in group._trial_info:  # restored trial: give it a bracket first
            group.on_trial_add(tune_controller, trial)
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
        with open(checkpoint_path, "wb") as fh:
            pickle.dump(self.__dict__, fh)

    def restore(self, checkpoint_path: str) -> None:
        with open(checkpoint_path, "rb") as fh:
            self.__dict__.update(pickle.load(fh))
