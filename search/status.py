"""``mathtune status EXP``: where a search stands, read from its folder, without starting Ray or writing anything.

Whether a driver runs it now (:mod:`.driver`'s lock), was interrupted (Tune's saved state still has trials
running or pending, or a confirmation that has not summarised) or finished; the trials by status and when
the last epoch was reported (a search whose driver runs but reports nothing for long is stuck); the best
trial per factor value so far on the selection metric (validation; test is never shown here); the budget
spent; the confirmation's state. For a search running in the background, it is the question a user asks
between two looks at the log.

Example::

    for line in experiment_status("runs/campaign-mul60"):
        print(line)
"""

from __future__ import annotations

import json
import time
from pathlib import Path

from mathtune.analysis.store import (EXPERIMENT_FILE, STATUSES, load_confirmation, load_trials, read_budget,
                                     read_experiment, stopped_by_signal)
from mathtune.search.confirm import CONFIRM_DIR, PLAN_FILE
from mathtune.search.driver import describe_driver, running_driver
from mathtune.trainables.errors import MathtuneError
from mathtune.trainables.loop import format_duration
from mathtune.trainables.metrics import best_of

__all__ = ["StatusError", "experiment_status"]


class StatusError(MathtuneError, ValueError):
    """Not an experiment folder, or one whose record cannot be read."""


def _state(exp_dir: Path, confirm_asked: bool, confirmed: bool) -> str:
    driver = running_driver(exp_dir)
    if driver is not None:
        pid = driver.get("pid")
        return (f"running: {describe_driver(driver)}"
                + (f"; `kill -INT {pid}` stops it cleanly (resume later)" if pid else ""))
    if not any(exp_dir.glob("experiment_state-*.json")):
        return "stopped before Ray Tune saved its state (nothing to resume): start the search again"
    confirming = (exp_dir / CONFIRM_DIR).is_dir()
    if stopped_by_signal(exp_dir) or (confirming and stopped_by_signal(exp_dir / CONFIRM_DIR)) \
            or (confirm_asked and confirming and not confirmed):
        return f"interrupted: continue with `mathtune resume {exp_dir}`"
    if confirm_asked and not confirmed:
        return (f"the search ended but its confirmation has not run (its driver stopped in between): continue with "
                f"`mathtune resume {exp_dir}`")
    return "finished" + (f"; report: {exp_dir / 'report.md'}" if (exp_dir / "report.md").is_file() else "")


def experiment_status(exp_dir: str | Path, *, now: float | None = None) -> list[str]:
    """The lines ``mathtune status`` prints for ``exp_dir`` at time ``now`` (default: the clock's);
    :class:`StatusError` when it is no experiment."""
    exp_dir = Path(exp_dir).expanduser()
    if not (exp_dir / EXPERIMENT_FILE).is_file():
        raise StatusError(f"{exp_dir}: not a mathtune experiment folder (no {EXPERIMENT_FILE})")
    record = read_experiment(exp_dir, error=StatusError)
    confirm_asked = int(record.options.get("confirm_top") or 0) > 0
    confirmation = load_confirmation(exp_dir)
    lines = [f"{exp_dir}: experiment {record.name}, space {record.space_name} ({record.family}), created "
             f"{record.created or '?'}",
             f"state: {_state(exp_dir, confirm_asked, confirmation is not None)}"]

    trials = load_trials(exp_dir)
    counts = {s: 0 for s in STATUSES}
    for t in trials:
        counts[t.status] = counts.get(t.status, 0) + 1
    lines.append(f"trials: {len(trials)}" + (": " + ", ".join(f"{n} {s}" for s, n in counts.items() if n)
                                             if trials else ""))
    stamps = [float(r["timestamp"]) for t in trials for r in t.history if isinstance(r.get("timestamp"), (int, float))]
    if stamps:
        ago = max(0.0, (time.time() if now is None else now) - max(stamps))
        lines.append(f"last epoch reported: {time.strftime('%Y-%m-%d %H:%M:%S', time.localtime(max(stamps)))} "
                     f"({format_duration(ago)} ago)")

    metric, mode, factors = record.metric, record.mode, list(record.factors)
    groups: dict[str, list[tuple[str, dict]]] = {}
    for t in trials:
        best = t.best(metric, mode)
        if best is not None:
            label = ", ".join(f"{f}={t.config.get(f)}" for f in factors) or "all"
            groups.setdefault(label, []).append((t.trial_id, best))
    for label, rows in sorted(groups.items()):
        pick = best_of(rows, mode, key=lambda r: r[1].get(metric))
        if pick is None:
            continue
        tid, best = pick
        decoded = best.get("decoded")
        setting = f", decoded with {', '.join(f'{k}={v}' for k, v in decoded.items())}" if decoded else ""
        epochs = next((t.epochs_run for t in trials if t.trial_id == tid), 0)
        lines.append(f"best ({label}): {metric} {best[metric]:.4f}, trial {tid} at epoch {int(best.get('epoch', 0))}"
                     f"{setting} (it has run {epochs} epoch{'s' if epochs != 1 else ''})")
    if not groups:
        lines.append(f"best: no trial has reported {metric} yet")
    live = [t for t in trials if t.status == "running"]
    if live:  # running now, or running when the driver stopped
        lines.append("running trials: " + "; ".join(
            f"{t.trial_id} epoch {t.epochs_run}/{t.epochs_planned or '?'}"
            + (f" (best {b[metric]:.4f})" if (b := t.best(metric, mode)) is not None and metric in b else "")
            for t in live))

    budget = read_budget(exp_dir)
    if budget:
        lines.append(f"budget: {format_duration(float(budget['spent_s']))} of {format_duration(float(budget['budget_s']))}"
                     f" spent over {budget.get('sessions', '?')} session(s)" + (", used up" if budget.get("exhausted")
                                                                              else ""))
    if confirm_asked:
        top, seeds = int(record.options.get("confirm_top")), int(record.options.get("confirm_seeds") or 1)
        which = f"the best {top} trial{'s' if top != 1 else ''}, {seeds} new seed{'s' if seeds != 1 else ''} each"
        if confirmation is not None:
            winners = [f"{label}: {c.get('winner')}" for label, c in sorted(confirmation["combos"].items())]
            lines.append(f"confirmation: done; the winner{'s' if len(winners) != 1 else ''}: " + "; ".join(winners)
                         + f" (mathtune best {exp_dir})")
        elif (exp_dir / CONFIRM_DIR).is_dir():
            runs = load_trials(exp_dir / CONFIRM_DIR)
            done = sum(r.status == "finished" for r in runs)
            try:  # the plan lists every run; Tune's folders only those started so far
                planned = len(json.loads((exp_dir / CONFIRM_DIR / PLAN_FILE).read_text())["runs"])
            except (OSError, ValueError, KeyError, TypeError):
                planned = len(runs)
            lines.append(f"confirmation: under way, {done} of {max(planned, len(runs))} new-seed runs finished and "
                         f"{len(runs) - done} more started ({which})")
        else:
            lines.append(f"confirmation: after the search ({which})")
    return lines
