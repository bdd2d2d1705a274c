"""The Pareto front of a multi-objective experiment (a space with ``objectives:``), from its trial folders.

Each trial counts with its selected epoch (the best on the first objective, as the loop keeps it), the
other objectives read at that same epoch; a trial is on the front when no other trial of the same factor
value is at least as good on every objective and better on one. Trials stopped by ASHA count too: their
selected checkpoint is a model like any other. Test figures are reported beside, never used.

Example::

    front = pareto_front(load_tables("runs/exp"), "exp")
    print(front[["trial_id", "best_val_exact_match", "best_num_params"]])
"""

from __future__ import annotations

import math
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from mathtune.trainables.metrics import sign

from .plots import save_figure
from .store import ExperimentRecord
from .tables import metric_label
from .tidy import CONFIG_PREFIX, Tables, test_metric_for

__all__ = ["objectives_of", "pareto_front", "pareto_plot", "front_lines"]


def objectives_of(meta: ExperimentRecord) -> list[tuple[str, str]]:
    """The experiment's (metric, mode) objectives; [] for a single-objective experiment."""
    objectives = [tuple(o) for o in meta.objectives]
    return objectives if len(objectives) > 1 else []


def _dominates(a: np.ndarray, b: np.ndarray) -> bool:
    return bool(np.all(a >= b) and np.any(a > b))


def pareto_front(tables: Tables, experiment: str, *, all_trials: bool = False) -> pd.DataFrame:
    """Trials with every objective, an ``on_front`` column (per factor value); only the front unless
    ``all_trials``. Sorted by factor value, then the first objective, best first."""
    meta = tables.metas[experiment]
    objectives = objectives_of(meta)
    if not objectives:
        raise ValueError(f"{experiment}: a single-objective experiment has no Pareto front (its space names no "
                         f"objectives)")
    trials = tables.trials_of(experiment).copy()
    cols = [f"best_{m}" for m, _ in objectives]
    for col in cols:
        if col not in trials:
            trials[col] = math.nan
    trials = trials.dropna(subset=cols)
    if not len(trials):
        return trials.assign(on_front=pd.Series(dtype=bool))
    signs = np.array([sign(mode) for _, mode in objectives])
    on_front = pd.Series(False, index=trials.index)
    for _, group in trials.groupby("factors", sort=False):
        values = group[cols].to_numpy(dtype=float) * signs
        for i, idx in enumerate(group.index):
            on_front[idx] = not any(_dominates(values[j], values[i]) for j in range(len(group)) if j != i)
    trials["on_front"] = on_front
    first, first_mode = cols[0], objectives[0][1]
    trials = trials.sort_values(["factors", first], ascending=[True, first_mode == "min"], kind="mergesort")
    return trials if all_trials else trials[trials["on_front"]]


def front_lines(tables: Tables, experiment: str) -> list[str]:
    """One line per front trial: factor value, trial, objectives, test figure, searched parameters."""
    meta = tables.metas[experiment]
    objectives = objectives_of(meta)
    front = pareto_front(tables, experiment)
    searched = tables.searched(experiment)
    test = test_metric_for(objectives[0][0])
    lines = []
    for _, row in front.iterrows():
        values = ", ".join(f"{m} {_fmt(row[f'best_{m}'])}" for m, _ in objectives)
        params = ", ".join(f"{p}={row.get(CONFIG_PREFIX + p)}" for p in searched)
        test_part = f" (test, reported only: {test} {_fmt(row[f'best_{test}'])})" if f"best_{test}" in row else ""
        lines.append(f"[mathtune] pareto ({row['factors'] or 'all'}) trial {row['trial_id']} epoch "
                     f"{row.get('best_epoch')}: {values}{test_part}; {params}")
    return lines


def _fmt(value: Any) -> str:
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return "-"
    value = float(value)
    return f"{int(value):,}" if value.is_integer() and abs(value) >= 1000 else f"{value:.4g}"


def pareto_plot(tables: Tables, experiment: str, path: str | Path) -> Path | None:
    """The first two objectives of every trial, the front joined by a line, one panel per factor value."""
    from matplotlib.figure import Figure

    meta = tables.metas[experiment]
    objectives = objectives_of(meta)
    trials = pareto_front(tables, experiment, all_trials=True)
    if not len(trials):
        return None
    (m0, _), (m1, mode1) = objectives[:2]
    groups = list(trials.groupby("factors", sort=True))
    fig = Figure(figsize=(5.0 * len(groups), 4.0))
    for k, (label, group) in enumerate(groups):
        ax = fig.add_subplot(1, len(groups), k + 1)
        rest = group[~group["on_front"]]
        front = group[group["on_front"]].sort_values(f"best_{m1}")
        ax.scatter(rest[f"best_{m1}"], rest[f"best_{m0}"], color="0.6", s=18, label="dominated")
        ax.plot(front[f"best_{m1}"], front[f"best_{m0}"], "o-", color="C3", label="Pareto front")
        for _, row in front.iterrows():
            ax.annotate(str(row["trial_id"])[-5:], (row[f"best_{m1}"], row[f"best_{m0}"]), fontsize=7,
                        xytext=(3, 3), textcoords="offset points")
        if m1 == "num_params":
            ax.set_xscale("log")
        ax.set_xlabel(metric_label(m1) + (" (lower is better)" if mode1 == "min" else ""))
        ax.set_ylabel(metric_label(m0))
        ax.set_title(f"{experiment} ({label or 'all'})", fontsize=9)
        ax.legend(fontsize=7)
    fig.tight_layout()
    return save_figure(fig, path)
