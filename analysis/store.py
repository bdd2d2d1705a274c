"""Read an experiment folder (written by Ray Tune) without importing Tune: per-trial config and history.

Example::

    trials = load_trials("runs/arith-text2text-addsub-20261122-101500")
    best = max(trials, key=lambda t: t.best("val_exact_match")["val_exact_match"])
"""

from __future__ import annotations

import json
import math
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

__all__ = ["TrialRecord", "load_trials", "load_experiment_meta"]


@dataclass
class TrialRecord:
    trial_id: str
    path: Path
    config: dict[str, Any]
    history: list[dict[str, Any]] = field(default_factory=list)

    @property
    def epochs_run(self) -> int:
        return max((int(r.get("epoch", 0)) for r in self.history), default=0)

    @property
    def finished(self) -> bool:
        return self.epochs_run >= int(self.config.get("epochs", 0) or 0) > 0

    def best(self, metric: str, mode: str = "max") -> dict[str, Any] | None:
        """The epoch row with the best value of ``metric`` (first one on ties)."""
        rows = [r for r in self.history if isinstance(r.get(metric), (int, float)) and not math.isnan(r[metric])]
        if not rows:
            return None
        pick = max if mode == "max" else min
        return pick(rows, key=lambda r: r[metric])


def load_experiment_meta(exp_dir: str | Path) -> dict[str, Any]:
    path = Path(exp_dir) / "mathtune.json"
    if not path.is_file():
        raise FileNotFoundError(f"{exp_dir}: not a mathtune experiment (no mathtune.json)")
    return json.loads(path.read_text())


def _read_results(path: Path) -> list[dict[str, Any]]:
    rows: dict[int, dict[str, Any]] = {}
    if not path.is_file():
        return []
    for line in path.read_text().splitlines():
        line = line.strip()
        if not line:
            continue
        try:
            row = json.loads(line)
        except json.JSONDecodeError:
            continue  # a line being written right now
        # A trial restored from a checkpoint repeats epochs; keep the latest report of each epoch.
        rows[int(row.get("epoch", row.get("training_iteration", len(rows) + 1)))] = row
    return [rows[k] for k in sorted(rows)]


def load_trials(exp_dir: str | Path) -> list[TrialRecord]:
    """Every trial folder of an experiment (readable while the search still runs)."""
    exp_dir = Path(exp_dir)
    if not exp_dir.is_dir():
        raise FileNotFoundError(f"{exp_dir}: experiment folder not found")
    trials = []
    for params in sorted(exp_dir.glob("*/params.json")):
        try:
            config = json.loads(params.read_text())
        except json.JSONDecodeError:
            continue
        history = _read_results(params.parent / "result.json")
        trial_id = history[-1].get("trial_id") if history else params.parent.name
        trials.append(TrialRecord(trial_id=str(trial_id), path=params.parent, config=config, history=history))
    return trials
