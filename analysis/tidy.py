"""Experiment folders -> two tidy tables (pandas, stored as Parquet): trials and epochs.

* ``trials``: one row per trial: experiment, family, factor label, status, Optuna bookkeeping, epochs
  run, the epoch selected on the validation metric and every train/val/test metric at that epoch
  (``best_*``) and at the last epoch (``final_*``), wall time, resources, the best kept checkpoint, and
  the configuration as ``config/<key>`` columns.
* ``epochs``: one row per trial and epoch with every key any trial ever reported (keys that first
  appear late, e.g. a final-epoch beam-search score, are kept; earlier rows hold NaN).

Several experiments load into one pair of tables (column ``experiment``), so families and searches can
be compared. The experiment's ``mathtune.json`` says which metric selects and in which direction;
nothing here assumes a particular family's metric names.

Example::

    tables = load_tables(["runs/a", "runs/b"])
    tables.write_parquet("runs/a/tables")
    again = Tables.read_parquet("runs/a/tables")
    print(again.trials[["experiment", "trial_id", "status", "best_val_exact_match"]])
"""

from __future__ import annotations

import dataclasses
import json
import math
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Sequence

import pandas as pd

from mathtune.spaces.loader import COST_METRICS
from mathtune.trainables.atomic import atomic_file, write_json
from mathtune.trainables.metrics import test_metric_for  # noqa: F401  (re-exported)

from .store import (ExperimentRecord, TrialRecord, load_trials, open_study_storage, read_experiment, searched_params,
                    study_storage_url)

__all__ = ["Tables", "TableExperiment", "load_tables", "test_metric_for", "metric_keys", "factor_label",
           "CONFIG_PREFIX", "study_storage_url"]

CONFIG_PREFIX = "config/"
METRIC_PREFIXES = ("train_", "val_", "test_")
SKIP_METRICS = ("train_samples_per_s",)
# Tune's bookkeeping keys that are not metrics of the model
TUNE_KEYS = {"timestamp", "checkpoint_dir_name", "should_checkpoint", "done", "training_iteration", "trial_id",
             "date", "time_this_iter_s", "time_total_s", "pid", "hostname", "node_ip", "time_since_restore",
             "iterations_since_restore", "config"}


@dataclass
class TableExperiment(ExperimentRecord):
    """An experiment of the tables (:attr:`Tables.metas`): its ``mathtune.json`` record, whose ``name`` is the one
    the tables give it (unique among them), with the folder it was read from and the parameters it searched
    (:func:`~mathtune.analysis.store.searched_params`: name -> the space's spec). ``experiments.json`` beside the
    Parquet tables holds each as :meth:`to_dict` gives it."""

    dir: str = ""
    searched: dict[str, dict[str, Any]] = field(default_factory=dict)


def factor_label(config: dict[str, Any], factors: Sequence[str]) -> str:
    """``split=0.5`` style label of a trial's factor values (``all`` when the study has no factors)."""
    return ", ".join(f"{k}={config.get(k)}" for k in factors) or "all"


def metric_keys(rows: Sequence[dict[str, Any]]) -> list[str]:
    """Numeric train/val/test keys reported in any row, in first-seen order."""
    keys: dict[str, None] = {}
    for row in rows:
        for k, v in row.items():
            if (k.startswith(METRIC_PREFIXES) or k in COST_METRICS) and k not in SKIP_METRICS and isinstance(v, (int, float)) \
                    and not isinstance(v, bool):
                keys.setdefault(k, None)
    return list(keys)


def _optuna_index(exp_dir: Path, meta: ExperimentRecord) -> dict[str, dict[str, Any]]:
    """Tune trial id -> Optuna study, number, state and value (empty when the studies are unreadable)."""
    try:
        import optuna

        storage = open_study_storage(exp_dir, meta.optuna_storage)
        if storage is None:
            return {}

        optuna.logging.set_verbosity(optuna.logging.WARNING)
        base = meta.study_name or meta.name
        out: dict[str, dict[str, Any]] = {}
        for name in optuna.get_all_study_names(storage):
            if name != base and not name.startswith(f"{base}["):
                continue
            study = optuna.load_study(study_name=name, storage=storage)
            for t in study.get_trials(deepcopy=False):
                tune_id = t.user_attrs.get("tune_trial_id")
                if tune_id:
                    out[str(tune_id)] = {"optuna_study": name, "optuna_number": t.number,
                                         "optuna_state": t.state.name, "optuna_value": t.value}
        return out
    except Exception:  # noqa: BLE001 - a locked/remote/unreadable storage must not stop a report
        return {}


def _trial_row(trial: TrialRecord, meta: TableExperiment, keys: list[str], optuna_info: dict[str, Any]) -> dict:
    metric, mode = meta.metric, meta.mode
    factors = meta.factors
    best = trial.best(metric, mode)
    last = trial.history[-1] if trial.history else {}
    status = trial.status
    if status == "running" and optuna_info.get("optuna_state") == "PRUNED":
        status = "stopped early"
    ckpt, ckpt_epoch = trial.best_checkpoint(metric, mode)
    resources = meta.resources
    row: dict[str, Any] = {
        "experiment": meta.name, "family": meta.family, "space": meta.space_name,
        "metric": metric, "mode": mode, "factors": factor_label(trial.config, factors),
        "trial_id": trial.trial_id, "trial_dir": str(trial.path), "status": status, "tune_status": trial.tune_status,
        "optuna_study": optuna_info.get("optuna_study"), "optuna_number": optuna_info.get("optuna_number"),
        "optuna_state": optuna_info.get("optuna_state"),
        "epochs_run": trial.epochs_run, "epochs_planned": trial.epochs_planned,
        "best_epoch": int(best["epoch"]) if best and "epoch" in best else None,
        # the decode-time setting the best figures were scored at (search/decode.py), e.g. "beam_width=5"
        "decoded": ", ".join(f"{k}={v}" for k, v in best["decoded"].items()) if best and best.get("decoded") else None,
    }
    for k in keys:
        row[f"best_{k}"] = _num(best.get(k)) if best else math.nan
    for k in keys:
        row[f"final_{k}"] = _num(last.get(k))
    row.update({
        "wall_time_s": _num(last.get("time_total_s")),
        "train_time_s": float(sum(_num(r.get("epoch_time_s"), 0.0) for r in trial.history)),
        "start_time": _num(trial.tune_info.get("start_time")),
        "last_report_time": _num(last.get("timestamp")),
        "resource_cpu": _num(resources.get("cpu")), "resource_gpu": _num(resources.get("gpu")),
        "num_failures": int(trial.tune_info.get("num_failures") or 0),
        "hostname": last.get("hostname"),
        "best_checkpoint": str(ckpt) if ckpt else None, "checkpoint_epoch": ckpt_epoch,
        "error": trial.error,
    })
    for k, v in sorted(trial.config.items()):
        row[CONFIG_PREFIX + k] = v
    return row


def _num(value: Any, default: float = math.nan) -> float:
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        return default
    return float(value)


def _epoch_rows(trial: TrialRecord, meta: TableExperiment) -> list[dict[str, Any]]:
    factors = meta.factors
    out = []
    for row in trial.history:
        clean = {k: v for k, v in row.items() if k != "config" and not isinstance(v, (dict, list))}
        out.append({"experiment": meta.name, "trial_id": trial.trial_id,
                    "factors": factor_label(trial.config, factors), **clean})
    return out


def _parquet_safe(frame: pd.DataFrame) -> pd.DataFrame:
    """Columns mixing types (e.g. a config value that is sometimes a number, sometimes text) become text."""
    frame = frame.copy()
    for col in frame.columns:
        if frame[col].dtype != object:
            continue
        kinds = {type(v) for v in frame[col] if v is not None and not (isinstance(v, float) and math.isnan(v))}
        if len(kinds) > 1 and not kinds <= {int, float}:
            frame[col] = [None if v is None or (isinstance(v, float) and math.isnan(v)) else str(v)
                          for v in frame[col]]
        elif kinds and kinds <= {int, float}:
            frame[col] = pd.to_numeric(frame[col])
    return frame


@dataclass
class Tables:
    """The tidy tables of one or more experiments, plus their ``mathtune.json`` records."""

    trials: pd.DataFrame
    epochs: pd.DataFrame
    metas: dict[str, TableExperiment] = field(default_factory=dict)  # experiment name -> its record

    # ----------------------------------------------------------------- views
    def experiments(self) -> list[str]:
        return list(self.metas)

    def trials_of(self, experiment: str) -> pd.DataFrame:
        return self.trials[self.trials["experiment"] == experiment] if len(self.trials) else self.trials

    def epochs_of(self, experiment: str) -> pd.DataFrame:
        return self.epochs[self.epochs["experiment"] == experiment] if len(self.epochs) else self.epochs

    def config_columns(self, experiment: str | None = None) -> list[str]:
        frame = self.trials_of(experiment) if experiment else self.trials
        return [c for c in frame.columns if c.startswith(CONFIG_PREFIX) and frame[c].notna().any()]

    def searched(self, experiment: str) -> list[str]:
        """Parameters the experiment searched (the space file's params), else the config keys that vary."""
        meta = self.metas[experiment]
        names = list(meta.searched)
        frame = self.trials_of(experiment)
        if not names:
            factors = set(meta.factors)
            names = [c[len(CONFIG_PREFIX):] for c in self.config_columns(experiment)
                     if c[len(CONFIG_PREFIX):] not in factors and frame[c].astype(str).nunique() > 1]
        return [n for n in names if CONFIG_PREFIX + n in frame.columns]

    def discrete_params(self, experiment: str, max_values: int = 8) -> list[str]:
        """Searched parameters with few values (``choice``/``int`` in the space file), for per-value tables."""
        specs = self.metas[experiment].searched
        frame = self.trials_of(experiment)
        out = []
        for name in self.searched(experiment):
            kind = (specs.get(name) or {}).get("type")
            values = frame[CONFIG_PREFIX + name].dropna()
            if kind in ("choice", "int") or (kind is None and all(isinstance(v, (int, str)) for v in values)):
                if 1 < values.astype(str).nunique() <= max_values:
                    out.append(name)
        return out

    def metrics_of(self, experiment: str, prefix: str = "best_") -> list[str]:
        """Metric names (without prefix) with a value for some trial of ``experiment``."""
        frame = self.trials_of(experiment)
        skip = {"best_epoch", "best_checkpoint"}
        return [c[len(prefix):] for c in frame.columns
                if c.startswith(prefix) and c not in skip and frame[c].notna().any()]

    # ----------------------------------------------------------------- Parquet
    def write_parquet(self, out_dir: str | Path) -> dict[str, Path]:
        """``trials.parquet``, ``epochs.parquet`` and ``experiments.json`` into ``out_dir``."""
        out_dir = Path(out_dir)
        out_dir.mkdir(parents=True, exist_ok=True)
        paths = {}
        for name, frame in (("trials", self.trials), ("epochs", self.epochs)):
            path = out_dir / f"{name}.parquet"
            with atomic_file(path) as fh:
                _parquet_safe(frame).to_parquet(fh, engine="pyarrow", index=False)
            paths[name] = path
        paths["experiments"] = write_json(out_dir / "experiments.json",
                                          {name: meta.to_dict() for name, meta in self.metas.items()})
        return paths

    @classmethod
    def read_parquet(cls, out_dir: str | Path) -> "Tables":
        out_dir = Path(out_dir)
        path = out_dir / "experiments.json"
        raw = json.loads(path.read_text()) if path.is_file() else {}
        metas = {name: TableExperiment.from_dict(meta, where=path) for name, meta in raw.items()}
        return cls(trials=pd.read_parquet(out_dir / "trials.parquet"),
                   epochs=pd.read_parquet(out_dir / "epochs.parquet"), metas=metas)


def load_tables(exp_dirs: str | Path | Sequence[str | Path], *, optuna: bool = True) -> Tables:
    """Tidy tables of one or several experiment folders (readable while a search runs).

    ``optuna=False`` skips reading the Optuna studies (the ``optuna_*`` columns stay empty).
    """
    if isinstance(exp_dirs, (str, Path)):
        exp_dirs = [exp_dirs]
    trial_rows: list[dict[str, Any]] = []
    epoch_rows: list[dict[str, Any]] = []
    metas: dict[str, TableExperiment] = {}
    for exp_dir in exp_dirs:
        exp_dir = Path(exp_dir).expanduser().resolve()
        record = read_experiment(exp_dir)
        name = record.name or exp_dir.name
        if name in metas:  # two folders with the same experiment name (e.g. a copy): keep both apart
            name = f"{name} ({exp_dir.name})" if f"{name} ({exp_dir.name})" not in metas else str(exp_dir)
        fields = {f.name: getattr(record, f.name) for f in dataclasses.fields(record)}
        own = {"name": name, "dir": str(exp_dir), "searched": searched_params(exp_dir)}
        # an older file's keys of the same names (version 1 wrote "dir") give way to what the tables found
        fields["extra"] = {k: v for k, v in record.extra.items() if k not in own}
        meta = TableExperiment(**{**fields, **own})
        metas[name] = meta
        trials = load_trials(exp_dir)
        keys = metric_keys([r for t in trials for r in t.history])
        index = _optuna_index(exp_dir, meta) if optuna else {}
        for trial in trials:
            trial_rows.append(_trial_row(trial, meta, keys, index.get(trial.trial_id, {})))
            epoch_rows.extend(_epoch_rows(trial, meta))
    trials_df = pd.DataFrame(trial_rows)
    if trials_df.empty:
        trials_df = pd.DataFrame(columns=["experiment", "family", "metric", "mode", "factors", "trial_id",
                                          "status", "epochs_run"])
    epochs_df = pd.DataFrame(epoch_rows)
    if epochs_df.empty:
        epochs_df = pd.DataFrame(columns=["experiment", "trial_id", "factors", "epoch"])
    return Tables(trials=trials_df, epochs=epochs_df, metas=metas)
