"""The persisted Optuna studies of an experiment: optimisation history and parameter importance.

Each study-factor value has its own study (``NAME[split=0.5]``). Importance uses Optuna's evaluators on
the stored trials: fANOVA when scikit-learn is importable, else PED-ANOVA. Besides the selection metric
(the study's own values), importance can be computed for any other per-trial figure of the tidy table
(e.g. ``best_val_loss``, smoother in short searches), with the study's distributions and parameters.

Optuna's evaluators read only COMPLETE trials, and with ASHA those are the few that ran to the end. So
importance can also rest on every trial's value at one common epoch (the first ASHA rung, which every
trial that was not lost reached): ``param_importances(s, values=at_rung, states=("COMPLETE", "PRUNED"))``.
Each :class:`Importance` says in ``basis`` which trials it rests on.

Example::

    for s in load_studies("runs/exp"):
        print(s.name, param_importances(s).importances)
"""

from __future__ import annotations

import math
import warnings
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from mathtune.trainables.metrics import best_of

from .store import ExperimentRecord, open_study_storage, read_experiment

__all__ = ["StudyInfo", "Importance", "load_studies", "param_importances", "history_points", "MIN_TRIALS"]

MIN_TRIALS = 3
"""Fewest complete trials an importance is computed from (fewer give a note instead)."""


@dataclass
class StudyInfo:
    name: str
    label: str  # the factor part, e.g. "split=0.5" ("all" without factors)
    study: Any  # optuna.Study
    direction: str  # Optuna's: "maximize" or "minimize"

    @property
    def mode(self) -> str:
        """The direction as a metric mode, "max" or "min" (:mod:`mathtune.trainables.metrics`)."""
        return "max" if self.direction == "maximize" else "min"


@dataclass
class Importance:
    study: str
    target: str
    importances: dict[str, float] | None
    reason: str | None  # why there is no importance (too few trials, constant target, ...)
    n_trials: int
    evaluator: str
    basis: str = ""  # which trials the figure rests on, e.g. "12 trials at epoch 3 (4 complete, 8 stopped early)"


def load_studies(exp_dir: str | Path, meta: ExperimentRecord | None = None) -> list[StudyInfo]:
    """The experiment's studies, in name order (``meta``: its record, read from ``exp_dir`` when not given); empty
    when the storage cannot be read."""
    import optuna

    meta = meta or read_experiment(exp_dir)
    storage = open_study_storage(exp_dir, meta.optuna_storage)
    if storage is None:
        return []
    optuna.logging.set_verbosity(optuna.logging.WARNING)
    base = meta.study_name or meta.name
    out = []
    for name in sorted(optuna.get_all_study_names(storage)):
        if name != base and not name.startswith(f"{base}["):
            continue
        study = optuna.load_study(study_name=name, storage=storage)
        label = name[len(base) + 1:-1] if name != base else "all"
        # several objectives: the first one is the selection metric, the one these views show
        out.append(StudyInfo(name, label.replace(",", ", "), study, study.directions[0].name.lower()))
    return out


def history_points(info: StudyInfo) -> list[dict[str, Any]]:
    """One point per finished trial in ask order: number, value, state (pruned trials: last intermediate)."""
    from optuna.trial import TrialState

    out = []
    for t in info.study.get_trials(deepcopy=False):
        # a multi-objective trial keeps its epochs' objective values as user attributes instead
        epochs = [v[0] for k, v in t.user_attrs.items() if k.startswith("epoch_values:")]
        if t.state == TrialState.COMPLETE and t.values:
            out.append({"number": t.number, "value": float(t.values[0]), "state": "complete",
                        "tune_trial_id": t.user_attrs.get("tune_trial_id")})
        elif t.state == TrialState.PRUNED and (t.intermediate_values or epochs):
            vals = list(t.intermediate_values.values()) or epochs
            best = best_of(vals, info.mode)
            out.append({"number": t.number, "value": float(best), "state": "pruned",
                        "tune_trial_id": t.user_attrs.get("tune_trial_id")})
    return out


def _evaluator():
    import optuna

    try:
        import sklearn  # noqa: F401

        return optuna.importance.FanovaImportanceEvaluator(seed=0), "fANOVA"
    except ImportError:
        return optuna.importance.PedAnovaImportanceEvaluator(), "PED-ANOVA"


def param_importances(info: StudyInfo, *, values: dict[str, float] | None = None, target: str | None = None,
                      maximize: bool | None = None, min_trials: int = MIN_TRIALS,
                      states: tuple[str, ...] = ("COMPLETE",), at: str = "") -> Importance:
    """Importance of each searched parameter for the study's values, or for ``values`` (tune id -> value).

    ``states`` are the Optuna trial states taken (only COMPLETE trials have study values; with ``values``,
    PRUNED ones, the trials ASHA stopped, can count too); ``at`` names where ``values`` were read (e.g.
    "at epoch 3") for the result's ``basis``. Never raises for thin data: the result then has
    ``importances=None`` and a ``reason``.
    """
    import optuna
    from optuna.trial import TrialState

    target = target or "objective"
    if values is None and len(info.study.directions) > 1:  # the first objective, the selection metric
        values = {t.user_attrs.get("tune_trial_id"): float(t.values[0])
                  for t in info.study.get_trials(deepcopy=False) if t.state == TrialState.COMPLETE and t.values}
        maximize = info.direction == "maximize"
    evaluator, ev_name = _evaluator()
    wanted = {TrialState[s] for s in states} if values is not None else {TrialState.COMPLETE}
    trials = [t for t in info.study.get_trials(deepcopy=False) if t.state in wanted]
    if values is not None:
        trials = [t for t in trials if isinstance(values.get(t.user_attrs.get("tune_trial_id")), (int, float))
                  and not math.isnan(values[t.user_attrs["tune_trial_id"]])]
    n = len(trials)
    complete = sum(t.state == TrialState.COMPLETE for t in trials)
    basis = f"{n} complete trial{'s' if n != 1 else ''}" if complete == n else (
        f"{n} trials{' ' + at if at else ''} ({complete} complete, {n - complete} stopped early)")
    if complete == n and at:
        basis += f" {at}"

    def none(reason: str) -> Importance:
        return Importance(info.name, target, None, reason, n, ev_name, basis)

    if n < min_trials:
        kinds = "complete " if wanted == {TrialState.COMPLETE} else ""
        return none(f"{n} {kinds}trial(s){' ' + at if at else ''}; importance needs at least {min_trials}")
    if not set.intersection(*(set(t.distributions) for t in trials)):
        return none("no parameter was searched in every trial")
    if values is None:
        scores = [float(t.value) for t in trials]
        fn = None
    else:
        scores = [float(values[t.user_attrs["tune_trial_id"]]) for t in trials]
        fn = lambda t: float(values[t.user_attrs["tune_trial_id"]])  # noqa: E731
    if max(scores) - min(scores) <= 1e-12 * max(1.0, abs(max(scores))):
        return none(f"all {basis} score {scores[0]:.4g}: nothing to attribute")
    study = info.study
    if fn is not None:
        # a copy of the trials with the new value, so evaluators that assume minimisation see the right sign
        study = optuna.create_study(direction="maximize" if maximize else "minimize")
        study.add_trials([optuna.trial.create_trial(params=t.params, distributions=t.distributions,
                                                    value=fn(t)) for t in trials])
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            imp = optuna.importance.get_param_importances(study, evaluator=evaluator)
    except Exception as exc:  # noqa: BLE001 - evaluators raise on degenerate data (e.g. zero variance)
        return none(f"{ev_name} failed: {exc}")
    imp = {k: float(v) for k, v in imp.items()}
    if not imp or any(math.isnan(v) for v in imp.values()):
        return none(f"{ev_name} gave no finite importances")
    return Importance(info.name, target, imp, None, n, ev_name, basis)
