"""The best configuration of an experiment, as a file ``mathtune train FAMILY --config`` reproduces.

The best trial is selected on the validation metric, within one study-factor value: results on
different splits are measured on different data, so an experiment with several factor values needs
``where`` to say which one.

Example::

    payload = best_config("runs/exp", where={"split": 0.5})
    Path("best.json").write_text(json.dumps(payload, indent=1))
    # then: mathtune train arith-text2text --config best.json
"""

from __future__ import annotations

import json
import math
from pathlib import Path
from typing import Any

import pandas as pd

from mathtune.trainables.atomic import write_json
from mathtune.trainables.errors import MathtuneError

from .reference import _same
from .store import load_confirmation
from .tables import best_rows
from .tidy import CONFIG_PREFIX, Tables, load_tables, test_metric_for

__all__ = ["best_config", "write_best", "BestError"]


class BestError(MathtuneError, ValueError):
    """No best trial can be named (no results yet, or several factor values and no ``where``)."""


def _clean(value: Any) -> Any:
    if isinstance(value, float) and math.isnan(value):
        return None
    if hasattr(value, "item"):
        return value.item()
    return value


def best_config(exp_dir: str | Path, *, where: dict[str, Any] | None = None, tables: Tables | None = None) -> dict:
    """Best trial of ``exp_dir`` (within ``where``, e.g. ``{"split": 0.5}``): config, metrics, checkpoint."""
    tables = tables or load_tables(exp_dir, optuna=False)
    experiment = next(iter(tables.metas))
    meta = tables.metas[experiment]
    metric, factors = meta.metric, list(meta.factors)
    trials = tables.trials_of(experiment)
    for key, want in (where or {}).items():
        col = CONFIG_PREFIX + key
        if col not in trials.columns:
            raise BestError(f"--where {key}: not a parameter of {experiment}")
        trials = trials[[_same(v, _coerce(want, v)) for v in trials[col]]]
    if where and not len(trials):
        have = "; ".join(sorted(tables.trials_of(experiment)["factors"].astype(str).unique())) or "none"
        raise BestError(f"{experiment}: no trial with {', '.join(f'{k}={v}' for k, v in where.items())} "
                        f"(factor values with trials: {have})")
    combos = trials[[CONFIG_PREFIX + f for f in factors]].astype(str).drop_duplicates() if factors and len(trials) \
        else pd.DataFrame()
    if len(combos) > 1:
        values = "; ".join(sorted(trials["factors"].astype(str).unique()))
        raise BestError(f"{experiment} has results for several factor values ({values}), measured on different data; "
                        f"choose one with --where, e.g. --where {trials['factors'].iloc[0].split(', ')[0]}")
    confirmed = _confirmed_winner(meta.dir, trials)
    if confirmed is not None:
        trials = trials[trials["trial_id"].astype(str) == str(confirmed["trial_id"])]
    sub = Tables(trials=trials, epochs=tables.epochs, metas=tables.metas)
    best = best_rows(sub, experiment)
    if not len(best):
        raise BestError(f"{experiment}: no trial has reported {metric} yet" + (f" (where {where})" if where else ""))
    row = best.iloc[0]
    config = _trial_config(row, trials.columns)
    metrics = {c[len("best_"):]: _clean(row[c]) for c in trials.columns
               if c.startswith("best_") and c not in ("best_epoch", "best_checkpoint") and not _missing(row[c])}
    payload = {
        "experiment": experiment, "experiment_dir": meta.dir, "family": meta.family,
        "metric": metric, "mode": meta.mode, "trial_id": row["trial_id"],
        "trial_dir": row.get("trial_dir"), "status": row.get("status"),
        "factors": {f: config.get(f) for f in factors}, "epoch": _clean(row.get("best_epoch")),
        metric: _clean(row.get(f"best_{metric}")), test_metric_for(metric): metrics.get(test_metric_for(metric)),
        "metrics": metrics, "checkpoint": row.get("best_checkpoint"),
        "checkpoint_epoch": _clean(row.get("checkpoint_epoch")),
        "train_command": f"mathtune train {meta.family} --config best.json",
        "note": "selected on the validation metric; test metrics are reported only. `config` holds every "
                "parameter of the trial; `mathtune train FAMILY --config FILE` reads it.",
        "config": config,
    }
    if confirmed is not None:
        payload["confirmed"] = {k: confirmed[k] for k in ("mean", "sd", "test_mean", "test_sd", "runs", "complete")}
        payload["confirmed"]["seeds"] = [r["seed"] for r in confirmed["runs"]]
        payload["note"] = (f"selected by the mean {metric} over {len(confirmed['runs'])} retraining(s) with new seeds "
                           f"(--confirm-top); epoch, checkpoint and figures are the trial's own search run. "
                           + payload["note"])
    return payload


def _confirmed_winner(exp_dir: Any, trials: pd.DataFrame) -> dict[str, Any] | None:
    """The seed confirmation's winner among ``trials`` (one factor value), when ``confirm.json`` names one."""
    summary = load_confirmation(exp_dir) if exp_dir else None
    if not summary or not len(trials):
        return None
    ids = set(trials["trial_id"].astype(str))
    for combo in summary["combos"].values():
        for cand in combo.get("candidates", []):
            if str(cand.get("trial_id")) == str(combo.get("winner")) and str(cand["trial_id"]) in ids:
                return cand
    return None


def _trial_config(row: pd.Series, columns) -> dict[str, Any]:
    """The trial's own ``params.json`` (exact types), else its ``config/*`` columns."""
    params = Path(str(row.get("trial_dir"))) / "params.json"
    try:
        config = json.loads(params.read_text())
        if isinstance(config, dict):
            return config
    except (OSError, ValueError):
        pass
    return {c[len(CONFIG_PREFIX):]: _clean(row[c]) for c in columns if c.startswith(CONFIG_PREFIX)
            and not _missing(row[c])}


def _missing(value: Any) -> bool:
    try:
        return value is None or bool(pd.isna(value))
    except (TypeError, ValueError):
        return False


def _coerce(want: Any, like: Any) -> Any:
    """``--where split=0.5`` arrives as text; compare it as a number when the column holds numbers."""
    if isinstance(want, str) and isinstance(like, (int, float)) and not isinstance(like, bool):
        try:
            return float(want)
        except ValueError:
            return want
    return want


def write_best(payload: dict[str, Any], path: str | Path) -> Path:
    return write_json(path, payload)
