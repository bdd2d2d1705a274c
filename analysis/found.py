"""What a search found: the opening of its report.

Per factor value: the best configuration (its searched values), its validation figure (at its chosen
decode-time setting, if the space has any) and its test figure (reported only), how many trials ran, finished,
were stopped early or errored, and the hand-tuned shipped figure where one answers the same setting; then the
compute and budget spent, and best-so-far validation against wall-clock time spent, with the hand-tuned figure
as a line across it.

A shipped configuration answers a search's factor value when it is of the same family and agrees with every
value the search held fixed (the space's constants, ``--set`` values and that factor value): a search run with
``--set aux_weight=0`` compares with the shipped files trained without the reading head only.

Example::

    table, figure, lines = search_found(load_tables("runs/exp"), "exp", Path("runs/exp/report_files"))
"""

from __future__ import annotations

import math
from pathlib import Path
from typing import Any, Sequence

import numpy as np
import pandas as pd
from matplotlib.figure import Figure

from mathtune.trainables.base import ConfigError
from mathtune.trainables.loop import format_duration
from mathtune.trainables.metrics import best_of, sign
from mathtune.trainables.provenance import EXECUTION_KEYS
from mathtune.trainables.registry import get_family

from .plots import PALETTE, save_figure
from .reference import _same
from .shipped import ShippedConfig, load_shipped
from .store import read_budget, read_experiment, searched_params, tune_sessions
from .tables import CONFIG_PREFIX, Table, _sort_best, metric_label
from .tidy import Tables, test_metric_for

__all__ = ["search_found", "hand_tuned", "best_so_far"]

IDLE_GAP_S = 1800.0  # no report for this long: the search was stopped and resumed later; the gap is cut out


def _fixed(exp_dir: Path) -> dict[str, Any]:
    """What the search held fixed: the space's constants (and decode-time training values) and ``--set``."""
    import yaml

    try:
        spec = yaml.safe_load((exp_dir / "space.yaml").read_text()) or {}
        record = read_experiment(exp_dir)
    except (OSError, ValueError):  # ExperimentError is a ValueError
        return {}
    fixed = dict(spec.get("constants") or {})
    fixed.update(record.options.get("overrides") or {})
    return fixed


def hand_tuned(family: str, fixed: dict[str, Any], combo: dict[str, Any]) -> ShippedConfig | None:
    """The shipped configuration with the best validation figure among those that agree with ``fixed`` and
    ``combo`` (None when no shipped file answers that setting), of the family or of a family whose model it
    can build (``Family.builds_families``)."""
    want = {**fixed, **combo}
    try:
        own = get_family(family)
        families, mode = {family, *own.builds_families}, own.mode
    except ConfigError:  # a family that is not installed here: its own files only
        families, mode = {family}, "max"
    matches = []
    for shipped in load_shipped():
        if shipped.family not in families:
            continue
        if all(k not in shipped.config or _same(shipped.config[k], v) for k, v in want.items()
               if k not in ("epochs", "seed", *EXECUTION_KEYS)):
            matches.append(shipped)
    return best_of(matches, mode, key=lambda s: s.selection[1])  # the first file on ties


def best_so_far(epochs: pd.DataFrame, metric: str, mode: str, starts: Sequence[float] = ()) -> pd.DataFrame:
    """(hours, best) after every report, in arrival order; hours the search ran before that report.

    With ``starts`` (when each session of the search started: the search, then each resume) a report's hours are
    the time its session had run, plus every earlier session's time up to its last report; time between
    sessions does not count. Without them, gaps of more than :data:`IDLE_GAP_S` between reports (a stopped
    search) are cut out."""
    if not len(epochs) or "timestamp" not in epochs or metric not in epochs:
        return pd.DataFrame(columns=["hours", "best"])
    rows = epochs[["timestamp", metric]].dropna().sort_values("timestamp")
    if not len(rows):
        return pd.DataFrame(columns=["hours", "best"])
    stamps = rows["timestamp"].to_numpy(dtype=float)
    values = rows[metric].to_numpy(dtype=float)
    best = sign(mode) * np.maximum.accumulate(sign(mode) * values)  # the best so far, for either mode
    starts = sorted(s for s in starts if s <= stamps[-1])
    if starts:
        session = np.searchsorted(np.asarray(starts), stamps, side="right") - 1  # -1: before the first start
        begin = np.where(session >= 0, np.asarray(starts)[np.maximum(session, 0)], stamps[0])
        ran = {k: float(stamps[session == k].max() - (starts[k] if k >= 0 else stamps[0])) for k in set(session)}
        before = np.array([sum(v for j, v in ran.items() if j < k) for k in session])
        hours = (before + stamps - begin) / 3600.0
    else:
        gaps = np.diff(stamps, prepend=stamps[0])
        hours = np.cumsum(np.where(gaps > IDLE_GAP_S, 0.0, gaps)) / 3600.0
    return pd.DataFrame({"hours": hours, "best": best})


def search_found(tables: Tables, experiment: str, files: Path) -> tuple[Table, Path | None, list[str]]:
    """(the table, the best-so-far figure or None, paragraphs) of one experiment."""
    meta = tables.metas[experiment]
    exp_dir = Path(meta.dir)
    metric, mode = meta.metric, meta.mode
    test = test_metric_for(metric)
    factors = [f for f in meta.factors if CONFIG_PREFIX + f in tables.trials.columns]
    trials = tables.trials_of(experiment)
    searched = list(searched_params(exp_dir))
    fixed = _fixed(exp_dir)
    epochs = tables.epochs[tables.epochs["experiment"] == experiment] if len(tables.epochs) else tables.epochs
    starts = [start for start, _ in tune_sessions(exp_dir)]  # time between the search's sessions does not count
    rows, curves = [], []
    groups = trials.groupby([CONFIG_PREFIX + f for f in factors], dropna=False) if factors else [((), trials)]
    for key, group in groups:
        key = key if isinstance(key, tuple) else (key,)
        combo = dict(zip(factors, key))
        label = ", ".join(f"{k}={v}" for k, v in combo.items()) or "all"
        ranked = _sort_best(group, metric, mode)
        best = ranked.iloc[0] if len(ranked) else None
        hand = hand_tuned(meta.family, fixed, combo)
        hand_value = hand.selection[1] if hand is not None else math.nan
        counts = group["status"].value_counts().to_dict()
        ours = float(best[f"best_{metric}"]) if best is not None else math.nan
        row = {"factors": label, f"{metric_label(metric)} (validation)": ours,
               f"{metric_label(test)} (test, reported only)": float(best.get(f"best_{test}", math.nan))
               if best is not None else math.nan,
               "decoded at": (best.get("decoded") or "-") if best is not None else "-",
               "hand-tuned (validation)": hand_value,
               "search - hand": ours - hand_value if not math.isnan(hand_value) else math.nan,
               "hand-tuned file": hand.path.name if hand is not None else "none ships for this setting",
               "trials": int(len(group)), "finished": int(counts.get("finished", 0)),
               "stopped early": int(counts.get("stopped early", 0)), "errored": int(counts.get("errored", 0)),
               "best trial": f"{best['trial_id']} epoch {int(best['best_epoch'])}" if best is not None else "-",
               "its searched values": ", ".join(f"{p}={_short(best.get(CONFIG_PREFIX + p))}" for p in searched
                                                if CONFIG_PREFIX + p in best.index) if best is not None else "-"}
        rows.append(row)
        ids = set(group["trial_id"])
        part = epochs[epochs["trial_id"].isin(ids)] if len(epochs) else epochs
        curves.append((label, best_so_far(part, metric, mode, starts), hand_value, hand.path.name if hand else None))
    frame = pd.DataFrame(rows)
    pct = {c for c in frame.columns if "validation" in c or "test" in c or c == "search - hand"}
    table = Table(f"{experiment}-found", f"{experiment}: what the search found", frame, percent=pct,
                  signed={"search - hand"},
                  note="The best trial per factor value, selected on validation (at its chosen decode-time setting "
                       "where the space lists some); test is reported only. The hand-tuned figure is the shipped "
                       "configuration's own validation figure for the same setting, on the same validation data.")
    lines = [_spent_line(trials, exp_dir)]
    figure = _plot(curves, experiment, metric, files / f"{experiment}-found.png") if any(len(c[1]) for c in curves) \
        else None
    return table, figure, lines


def _short(value: Any) -> str:
    return f"{value:.4g}" if isinstance(value, float) else str(value)


def _spent_line(trials: pd.DataFrame, exp_dir: Path) -> str:
    counts = trials["status"].value_counts().to_dict() if len(trials) else {}
    compute = float(trials["train_time_s"].fillna(0).sum() * trials["resource_cpu"].fillna(1).clip(lower=1).mean()) \
        if len(trials) else 0.0
    text = (f"{len(trials)} trials: {counts.get('finished', 0)} ran their whole schedule, "
            f"{counts.get('stopped early', 0)} were stopped early, {counts.get('errored', 0)} errored"
            + (f", {counts.get('running', 0) + counts.get('pending', 0)} still running or pending"
               if counts.get("running") or counts.get("pending") else "")
            + f"; {format_duration(compute)} of trial CPU time in training epochs.")
    budget = read_budget(exp_dir)
    if budget:
        text += (f" Budget: {format_duration(float(budget['spent_s']))} of {format_duration(float(budget['budget_s']))} "
                 f"wall-clock spent" + (" (used up)" if budget.get("exhausted") else "") + ".")
    return text


def _plot(curves, experiment: str, metric: str, path: Path) -> Path:
    fig = Figure(figsize=(6.4, 3.8), layout="constrained")
    ax = fig.subplots()
    for i, (label, curve, hand, hand_name) in enumerate(curves):
        color = PALETTE[i % len(PALETTE)]
        if len(curve):
            ax.step(curve["hours"], curve["best"], where="post", color=color, label=f"search, {label}")
        if not math.isnan(hand):
            ax.axhline(hand, color=color, ls="--", lw=1.0, label=f"hand-tuned, {label} ({hand_name})")
    ax.set_xlabel("wall-clock hours spent (stopped periods cut out)")
    ax.set_ylabel(f"best {metric_label(metric)} so far")
    ax.grid(alpha=0.3)
    ax.legend(fontsize=7, loc="lower right")
    ax.set_title(f"{experiment}: best validation so far\n(each epoch as trained, before decode-time scoring)",
                 fontsize=9)
    path.parent.mkdir(parents=True, exist_ok=True)
    return save_figure(fig, path)
