"""Markdown report of one or more experiments: the best trial per study-factor value.

Selection is on the validation metric; test metrics are shown beside it for reporting only.

Example::

    write_report([Path("runs/arith-text2text-addsub-20261122-101500")])
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any, Sequence

from .store import TrialRecord, load_experiment_meta, load_trials

__all__ = ["write_report", "best_per_factor", "markdown_report"]

HIDDEN_KEYS = {"threads", "device"}


def _fmt(value: Any) -> str:
    if isinstance(value, float):
        return f"{100 * value:.2f}%" if 0.0 <= value <= 1.0 else f"{value:.4g}"
    return "-" if value is None else str(value)


def best_per_factor(trials: Sequence[TrialRecord], factors: Sequence[str], metric: str,
                    mode: str) -> dict[tuple, tuple[TrialRecord, dict[str, Any]]]:
    """Factor values -> (trial, epoch row) with the best validation ``metric``."""
    best: dict[tuple, tuple[TrialRecord, dict[str, Any]]] = {}
    for trial in trials:
        row = trial.best(metric, mode)
        if row is None:
            continue
        key = tuple(trial.config.get(f) for f in factors)
        if key not in best or ((row[metric] > best[key][1][metric]) if mode == "max"
                               else (row[metric] < best[key][1][metric])):
            best[key] = (trial, row)
    return dict(sorted(best.items(), key=lambda kv: [str(v) for v in kv[0]]))


def markdown_report(exp_dirs: Sequence[Path]) -> str:
    lines = ["# mathtune report", ""]
    for exp_dir in exp_dirs:
        meta = load_experiment_meta(exp_dir)
        trials = load_trials(exp_dir)
        metric, mode, factors = meta["metric"], meta["mode"], meta.get("factors") or []
        test_metric = metric.replace("val_", "test_", 1)
        lines += [f"## {meta['name']}", "",
                  f"Family `{meta['family']}`, space `{meta['space_name']}`, {len(trials)} trials "
                  f"({sum(t.finished for t in trials)} ran all epochs). Selected on `{metric}` ({mode}) over "
                  f"the validation slice; test figures are reported only, never used to select or stop.", ""]
        best = best_per_factor(trials, factors, metric, mode)
        cols = list(factors) + ["val exact match", "test exact match", "val per-char", "test per-char", "epoch",
                                "data seed", "config"]
        lines += ["### Best trial per " + (", ".join(factors) if factors else "experiment"), "",
                  "| " + " | ".join(cols) + " |", "|" + "---|" * len(cols)]
        for key, (trial, row) in best.items():
            config = {k: v for k, v in trial.config.items() if k not in factors and k not in HIDDEN_KEYS}
            config_text = ", ".join(f"{k}={v}" for k, v in sorted(config.items()))
            cells = [str(v) for v in key] + [
                _fmt(row.get(metric)), _fmt(row.get(test_metric)), _fmt(row.get("val_char_acc")),
                _fmt(row.get("test_char_acc")), str(row.get("epoch")), str(trial.config.get("data_seed")),
                config_text]
            lines.append("| " + " | ".join(cells) + " |")
        if not best:
            lines.append("| " + " | ".join(["-"] * len(cols)) + " |")
        lines.append("")
    return "\n".join(lines)


def write_report(exp_dirs: Sequence[Path], out: Path | None = None) -> Path:
    """Write ``report.md`` into ``out`` (default: the first experiment folder); returns its path."""
    out = Path(out) if out else Path(exp_dirs[0])
    out.mkdir(parents=True, exist_ok=True)
    text = markdown_report(exp_dirs)
    path = out / "report.md"
    tmp = path.with_name(".report.md.tmp")
    tmp.write_text(text)
    os.replace(tmp, path)
    return path
