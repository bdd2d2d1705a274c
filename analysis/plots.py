"""Plots (matplotlib, PNG) from the tidy tables and the Optuna studies.

No pyplot and no global backend switch: figures are built with ``matplotlib.figure.Figure`` (Agg canvas),
so reports can be made in threads, tests and headless servers alike. Each function returns the written
path, or None when there is nothing to draw (e.g. no epochs reported yet).

Example::

    tables = load_tables("runs/exp")
    learning_curves(tables, "exp", "out/curves.png")
"""

from __future__ import annotations

import math
from pathlib import Path
from typing import Sequence

import numpy as np
import pandas as pd
from matplotlib.figure import Figure
from matplotlib.ticker import MaxNLocator

from mathtune.trainables.atomic import atomic_file
from mathtune.trainables.metrics import sign
from mathtune.trainables.reportviews import PALETTE  # shared with the families' own report figures

from .importance import Importance, StudyInfo, history_points
from .tables import best_rows, is_rate, metric_label
from .tidy import CONFIG_PREFIX, Tables

__all__ = ["learning_curves", "metric_vs_params", "optimisation_history", "importance_plot", "save_figure",
           "PALETTE"]

GREY = "#b0b0b0"
DPI = 100


def save_figure(fig: Figure, path: str | Path) -> Path:
    """Write ``fig`` as PNG atomically (a report being viewed never sees half an image)."""
    path = Path(path)
    with atomic_file(path) as fh:
        fig.savefig(fh, dpi=DPI, format="png")
    return path


def _percent_axis(ax, metric: str) -> None:
    if is_rate(metric):
        ax.yaxis.set_major_formatter(lambda v, _: f"{100 * v:.0f}%")


def learning_curves(tables: Tables, experiment: str, path: str | Path) -> Path | None:
    """Loss (train dashed, validation solid) and the validation metric per epoch; best trials in colour."""
    meta = tables.metas[experiment]
    metric = meta.metric
    epochs = tables.epochs_of(experiment)
    if not len(epochs) or "epoch" not in epochs.columns:
        return None
    factors = [CONFIG_PREFIX + f for f in meta.factors if CONFIG_PREFIX + f in tables.trials.columns]
    best = best_rows(tables, experiment, factors)
    highlight = {row["trial_id"]: (PALETTE[i % len(PALETTE)], f"best {row['factors']} ({row['trial_id']})")
                 for i, (_, row) in enumerate(best.iterrows())}
    loss_keys = [k for k in ("train_loss", "val_loss") if k in epochs.columns and epochs[k].notna().any()]
    panels = [("loss", loss_keys)] if loss_keys else []
    if metric in epochs.columns:
        panels.append((metric, [metric]))
    if not panels:
        return None
    fig = Figure(figsize=(6 * len(panels), 4.2), layout="constrained")
    axes = fig.subplots(1, len(panels), squeeze=False)[0]
    groups = list(epochs.groupby("trial_id", sort=False))
    for ax, (title, keys) in zip(axes, panels):
        for trial_id, group in groups:
            group = group.sort_values("epoch")
            color, label = highlight.get(trial_id, (GREY, None))
            for key in keys:
                if key not in group or group[key].isna().all():
                    continue
                style = "--" if key.startswith("train") else "-"
                ax.plot(group["epoch"], group[key], style, color=color, lw=2.2 if label else 0.9,
                        alpha=1.0 if label else 0.6, zorder=3 if label else 1, marker="o" if label else None,
                        ms=3, label=f"{label}: {metric_label(key)}" if label and len(keys) > 1 else label)
        ax.set_xlabel("epoch")
        ax.xaxis.set_major_locator(MaxNLocator(integer=True))
        ax.set_ylabel(metric_label(title) if title != "loss" else "loss (dashed: train, solid: validation)")
        ax.set_title(metric_label(title), fontsize=10)
        ax.grid(alpha=0.3)
        if title != "loss":
            _percent_axis(ax, metric)
        if highlight:
            ax.legend(fontsize=7, loc="best")
    fig.suptitle(f"{experiment}: learning curves ({len(groups)} trials; grey: other trials)", fontsize=11)
    return save_figure(fig, path)


def _is_numeric(values: pd.Series) -> bool:
    return all(isinstance(v, (int, float, np.integer, np.floating)) and not isinstance(v, bool)
               for v in values.dropna())


def metric_vs_params(tables: Tables, experiment: str, path: str | Path,
                     params: Sequence[str] | None = None) -> Path | None:
    """The best validation metric of every trial against each searched parameter (colour: factor value)."""
    meta = tables.metas[experiment]
    metric = meta.metric
    trials = tables.trials_of(experiment)
    col = f"best_{metric}"
    if not len(trials) or col not in trials.columns or trials[col].isna().all():
        return None
    params = [p for p in (params or tables.searched(experiment)) if CONFIG_PREFIX + p in trials.columns]
    if not params:
        return None
    ncol = min(3, len(params))
    nrow = math.ceil(len(params) / ncol)
    fig = Figure(figsize=(4.6 * ncol, 3.6 * nrow), layout="constrained")
    axes = fig.subplots(nrow, ncol, squeeze=False).ravel()
    labels = sorted(trials["factors"].astype(str).unique())
    colors = {lab: PALETTE[i % len(PALETTE)] for i, lab in enumerate(labels)}
    rng = np.random.default_rng(0)
    for ax, param in zip(axes, params):
        values = trials[CONFIG_PREFIX + param]
        numeric = _is_numeric(values)
        if numeric:
            x = values.astype(float).to_numpy()
            distinct = np.unique(x[~np.isnan(x)])
            positive = len(distinct) and distinct.min() > 0
            if positive and distinct.max() / distinct.min() > 20 and len(distinct) > 4:
                ax.set_xscale("log")
            elif len(distinct) <= 6:
                span = (distinct.max() - distinct.min()) if len(distinct) > 1 else 1.0
                x = x + rng.uniform(-0.03, 0.03, len(x)) * span
                if all(float(v).is_integer() for v in distinct):
                    ax.set_xticks(distinct)
        else:
            cats = sorted(values.astype(str).unique())
            x = np.array([cats.index(str(v)) for v in values], dtype=float) + rng.uniform(-0.08, 0.08, len(values))
            ax.set_xticks(range(len(cats)), cats)
        for lab in labels:
            sel = (trials["factors"].astype(str) == lab).to_numpy()
            stopped = (trials["status"] != "finished").to_numpy()
            for mask, face in ((sel & ~stopped, colors[lab]), (sel & stopped, "none")):
                if mask.any():
                    ax.scatter(x[mask], trials[col].to_numpy()[mask], s=28, facecolors=face,
                               edgecolors=colors[lab], label=lab if face != "none" or not (sel & ~stopped).any()
                               else None)
        ax.set_xlabel(param)
        ax.set_ylabel(f"best {metric_label(metric)}")
        _percent_axis(ax, metric)
        ax.grid(alpha=0.3)
    for ax in axes[len(params):]:
        ax.set_visible(False)
    if len(labels) > 1 or labels != ["all"]:
        axes[0].legend(fontsize=7, title="factor", title_fontsize=7)
    fig.suptitle(f"{experiment}: best {metric_label(metric)} per trial vs each searched parameter "
                 f"(hollow: not run to the end)", fontsize=11)
    return save_figure(fig, path)


def optimisation_history(studies: Sequence[StudyInfo], experiment: str, metric: str,
                         path: str | Path) -> Path | None:
    """Value of every trial in ask order and the running best, one panel per study (factor value)."""
    data = [(s, history_points(s)) for s in studies]
    data = [(s, pts) for s, pts in data if pts]
    if not data:
        return None
    fig = Figure(figsize=(min(5.5 * len(data), 16.5), 3.8), layout="constrained")
    axes = fig.subplots(1, len(data), squeeze=False)[0]
    for ax, (info, pts) in zip(axes, data):
        xs = np.array([p["number"] for p in pts])
        ys = np.array([p["value"] for p in pts])
        pruned = np.array([p["state"] == "pruned" for p in pts])
        ax.scatter(xs[~pruned], ys[~pruned], s=26, color=PALETTE[0], label="complete", zorder=3)
        if pruned.any():
            ax.scatter(xs[pruned], ys[pruned], s=26, facecolors="none", edgecolors=PALETTE[1],
                       label="pruned (best before stop)", zorder=3)
        order = np.argsort(xs)
        run = sign(info.mode) * np.maximum.accumulate(sign(info.mode) * ys[order])  # the best so far
        ax.step(xs[order], run, where="post", color=PALETTE[2], label="best so far")
        ax.set_xlabel("Optuna trial number")
        ax.set_ylabel(metric_label(metric))
        ax.set_title(info.label, fontsize=10)
        _percent_axis(ax, metric)
        ax.grid(alpha=0.3)
        ax.legend(fontsize=7)
    fig.suptitle(f"{experiment}: optimisation history", fontsize=11)
    return save_figure(fig, path)


def importance_plot(results: Sequence[Importance], experiment: str, path: str | Path) -> Path | None:
    """Horizontal bars of parameter importance, one panel per (study, target) that has importances."""
    results = [r for r in results if r.importances]
    if not results:
        return None
    fig = Figure(figsize=(min(5.0 * len(results), 15.0), 0.5 + 0.45 * max(len(r.importances) for r in results) + 1.2),
                 layout="constrained")
    axes = fig.subplots(1, len(results), squeeze=False)[0]
    for ax, r in zip(axes, results):
        items = sorted(r.importances.items(), key=lambda kv: kv[1])
        ax.barh([k for k, _ in items], [v for _, v in items], color=PALETTE[0])
        for i, (_, v) in enumerate(items):
            ax.text(v, i, f" {v:.2f}", va="center", fontsize=8)
        ax.set_xlim(0, max(1e-9, max(v for _, v in items)) * 1.25)
        ax.set_xlabel(f"importance ({r.evaluator})")
        ax.set_title(f"{r.study}\n{metric_label(r.target)}\n{r.basis or f'{r.n_trials} trials'}", fontsize=9)
    fig.suptitle(f"{experiment}: parameter importance", fontsize=11)
    return save_figure(fig, path)
