"""What ``mathtune search`` prints while it runs: one line per trial event and a periodic status line.

Ray Tune's own console output (a boxed configuration of every trial, a TensorBoard hint, result tables,
and after Ctrl-C a ``Tuner.restore(...)`` hint that is the wrong command for a mathtune user) is what
``mathtune search --verbose`` shows. By default Tune is silent and :class:`SearchProgress`, a Tune
callback on the driver, prints instead::

    [mathtune] trial_5e57 started: lr 0.004, reverse both  (split=0.5)
    [mathtune] trial_5e57 epoch 3: val_exact_match 0.4120 (best 0.4120)
    [mathtune] trial_5e57 stopped by ASHA at epoch 6: best val_exact_match 0.5310 (epoch 6)
    [mathtune] trial_7adc finished after 40 epochs: best val_exact_match 0.9930 (epoch 33)
    [mathtune] status: 3/8 trials done (2 stopped early), 2 running, 3 pending | best val_exact_match 0.9930
               (trial_7adc) | 12 min elapsed, about 20 min left

Epoch lines are rate-limited (at most one every ``epoch_interval_s`` seconds across all trials, plus each
trial's first epoch), so a fast search does not flood the terminal; a trial's end is always printed.
"""

from __future__ import annotations

import logging
import time
from typing import Any, Sequence

from ray.tune import Callback

from mathtune.search.budget import BudgetClock
from mathtune.trainables.loop import format_duration
from mathtune.trainables.metrics import best_of, is_better

__all__ = ["SearchProgress", "quiet_tune_messages", "format_duration"]


def _fmt(value: Any) -> str:
    if isinstance(value, float):
        return f"{value:.4g}"
    return str(value)


class SearchProgress(Callback):
    """Tune callback printing mathtune's compact progress lines (see the module docstring).

    ``params`` are the searched parameter names (a trial's start line shows only those), ``factors`` the
    study factors, ``metric``/``mode`` the selection metric, ``max_epochs`` the epoch cap (a trial that ends
    before its own ``epochs``, or before the cap when its configuration has none, was stopped by the scheduler),
    ``num_samples`` the number of trials the search will run.
    """

    def __init__(self, *, params: Sequence[str], factors: Sequence[str], metric: str, mode: str, max_epochs: int,
                 num_samples: int, scheduler: str = "asha", status_interval_s: float = 30.0,
                 epoch_interval_s: float = 10.0, out=None, clock=time.monotonic, budget_dir: str | None = None):
        self.params, self.factors = list(params), list(factors)
        self.metric, self.mode, self.max_epochs = metric, mode, int(max_epochs)
        self.num_samples, self.scheduler = int(num_samples), scheduler
        self.status_interval_s, self.epoch_interval_s = status_interval_s, epoch_interval_s
        self.out, self.clock = out, clock
        self.budget_dir = budget_dir  # a budgeted search's folder: its clock gives the time spent and left
        self.start = clock()
        self.last_status = self.start
        self.last_epoch_line = float("-inf")
        self.best: dict[str, tuple[float, int]] = {}  # trial id -> (best value, its epoch)
        self.last_epoch: dict[str, int] = {}
        self.ended: dict[str, str] = {}  # trial id -> finished / stopped / error
        self.seen_first: set[str] = set()
        self.started: set[str] = set()  # trials that began (or went on) in this session

    # ------------------------------------------------------------------ output
    def _print(self, text: str) -> None:
        print(f"[mathtune] {text}", file=self.out, flush=True)

    def _best_line(self, trial_id: str) -> str:
        if trial_id not in self.best:
            return f"no {self.metric} reported"
        value, epoch = self.best[trial_id]
        return f"best {self.metric} {value:.4f} (epoch {epoch})"

    # ------------------------------------------------------------------ Tune callback hooks
    def on_trial_start(self, iteration: int, trials: list, trial, **info) -> None:
        self.__dict__.setdefault("started", set()).add(trial.trial_id)
        config = trial.config or {}
        searched = ", ".join(f"{k} {_fmt(config[k])}" for k in self.params if k in config)
        factors = ", ".join(f"{k}={_fmt(config[k])}" for k in self.factors if k in config)
        restarted = " (again, from its last checkpoint)" if trial.trial_id in self.last_epoch else ""
        self._print(f"{trial.trial_id} started{restarted}: {searched or 'no searched parameters'}"
                    f"{f'  ({factors})' if factors else ''}")

    def on_trial_result(self, iteration: int, trials: list, trial, result: dict, **info) -> None:
        tid = trial.trial_id
        epoch = int(result.get("epoch", result.get("training_iteration", 0)) or 0)
        self.last_epoch[tid] = epoch
        value = result.get(self.metric)
        if isinstance(value, (int, float)):
            if tid not in self.best or is_better(float(value), self.best[tid][0], self.mode):
                self.best[tid] = (float(value), epoch)
        # the trial's own best so far (the loop reports it): for a trial resumed from a checkpoint, it holds the
        # epochs before this session, which this callback never saw
        before = result.get(f"best_{self.metric}")
        if isinstance(before, (int, float)) and is_better(float(before), self.best.get(tid, (None, 0))[0], self.mode):
            self.best[tid] = (float(before), int(result.get("best_epoch") or epoch))
        now = self.clock()
        first = tid not in self.seen_first
        self.seen_first.add(tid)
        if (first or now - self.last_epoch_line >= self.epoch_interval_s) and isinstance(value, (int, float)):
            self.last_epoch_line = now
            self._print(f"{tid} epoch {epoch}: {self.metric} {float(value):.4f} "
                        f"(best {self.best[tid][0]:.4f})")

    def on_trial_complete(self, iteration: int, trials: list, trial, **info) -> None:
        tid = trial.trial_id
        epoch = self.last_epoch.get(tid, 0)
        if self.scheduler in ("asha", "optuna") and 0 < epoch < self._planned(trial):
            self.ended[tid] = "stopped"
            by = "ASHA" if self.scheduler == "asha" else "Optuna's pruner"
            self._print(f"{tid} stopped by {by} at epoch {epoch}: {self._best_line(tid)}")
        else:
            self.ended[tid] = "finished"
            self._print(f"{tid} finished after {epoch} epoch{'s' if epoch != 1 else ''}: {self._best_line(tid)}")

    def _planned(self, trial) -> int:
        """The epochs a trial was to run: its own ``epochs`` (a searched schedule length), else the cap."""
        epochs = (getattr(trial, "config", None) or {}).get("epochs")
        return int(epochs) if isinstance(epochs, (int, float)) and epochs > 0 else self.max_epochs

    def on_trial_error(self, iteration: int, trials: list, trial, **info) -> None:
        self.ended[trial.trial_id] = "error"
        where = f" (see {trial.path}/error.txt)" if getattr(trial, "path", None) else ""
        self._print(f"{trial.trial_id} errored at epoch {self.last_epoch.get(trial.trial_id, 0)}{where}")

    def on_trial_recover(self, iteration: int, trials: list, trial, **info) -> None:
        self._print(f"{trial.trial_id} failed at epoch {self.last_epoch.get(trial.trial_id, 0)}; retrying from "
                    f"its last checkpoint")

    def on_step_end(self, iteration: int, trials: list, **info) -> None:
        now = self.clock()
        if now - self.last_status >= self.status_interval_s:
            self.last_status = now
            self._print(self.status_line(trials))

    def on_experiment_end(self, trials: list, **info) -> None:
        self._print(self.status_line(trials, final=True, interrupted=self._interrupted(trials)))

    def _interrupted(self, trials: list) -> set[str]:
        """Trials that began in this session and ended without Tune's ``on_trial_complete``: on Ctrl-C Tune ends
        the running trials, marked TERMINATED like finished ones, without it. So does a spent budget (which
        stops them for good), so a search whose budget is spent was not interrupted."""
        budget = BudgetClock.of(self.budget_dir) if self.budget_dir else None
        if budget is not None and budget.remaining() <= budget.reserve_s:
            return set()
        started = getattr(self, "started", set())
        return {t.trial_id for t in trials if t.trial_id in started and t.trial_id not in self.ended
                and t.status == "TERMINATED"}

    # ------------------------------------------------------------------ status
    def status_line(self, trials: list, *, final: bool = False, interrupted: set[str] = frozenset()) -> str:
        """One status line; ``interrupted`` (the final line after Ctrl-C) names the trials Tune ended unfinished."""
        states = [t.status for t in trials if t.trial_id not in interrupted]
        done = sum(s in ("TERMINATED", "ERROR") for s in states)
        running = states.count("RUNNING")
        capped = self.num_samples > 0
        pending = max(0, self.num_samples - done - running - len(interrupted)) if capped else states.count("PENDING")
        stopped = sum(v == "stopped" for v in self.ended.values())
        if self.scheduler in ("asha", "optuna"):  # a resumed search: the trials stopped in its earlier sessions
            stopped += sum(1 for t in trials if t.status == "TERMINATED" and t.trial_id not in self.ended
                           and t.trial_id not in interrupted
                           and 0 < int((getattr(t, "last_result", None) or {}).get("epoch") or 0) < self._planned(t))
        errors = states.count("ERROR")
        extras = ", ".join(x for x in (f"{stopped} stopped early" if stopped else "",
                                       f"{errors} errored" if errors else "") if x)
        of = f"/{self.num_samples}" if capped else ""
        cut = f", {len(interrupted)} interrupted (saved at their last epoch)" if interrupted else ""
        parts = [f"{done}{of} trials done{f' ({extras})' if extras else ''}{cut}, {running} running, "
                 f"{pending} pending"]
        known = dict(self.best)
        for t in trials:  # a resumed search: what trials reported before this session, from Tune's restored state
            before = (getattr(t, "last_result", None) or {}).get(f"best_{self.metric}")
            if t.trial_id not in known and isinstance(before, (int, float)) and before == before:
                known[t.trial_id] = (float(before), int((t.last_result or {}).get("best_epoch") or 0))
        top = best_of(known.items(), self.mode, key=lambda kv: kv[1][0])  # the first trial on ties
        if top is not None:
            tid, (value, _) = top
            parts.append(f"best {self.metric} {value:.4f} ({tid})")
        elapsed = self.clock() - self.start
        timing = f"{format_duration(elapsed)} elapsed"
        if not final and capped and 0 < done < self.num_samples:
            timing += f", about {format_duration(elapsed / done * (self.num_samples - done))} left"
        parts.append(timing)
        budget = BudgetClock.of(self.budget_dir) if self.budget_dir else None
        if budget is not None:
            parts.append(f"budget {budget.describe()}")
        head = "status: " if not final else "search interrupted: " if interrupted else "search ended: "
        return head + " | ".join(parts)


class _DropRestoreHint(logging.Filter):
    def filter(self, record: logging.LogRecord) -> bool:
        return "Tuner.restore(" not in record.getMessage()


class _GoneCheckpoint(logging.Filter):
    """Tune's ERROR and traceback when a trial's checkpoint manager deletes an old checkpoint folder that is
    already gone, which happens after a driver was killed (its last experiment snapshot lists folders the trial
    had since replaced); Tune carries on with the trial. One mathtune line instead."""

    def filter(self, record: logging.LogRecord) -> bool:
        gone = record.exc_info is not None and isinstance(record.exc_info[1], FileNotFoundError)
        if not (gone and str(record.msg).startswith("Trial %s: Error handling checkpoint")):
            return True
        trial = record.args[0] if isinstance(record.args, tuple) and record.args else "a trial"
        print(f"[mathtune] {getattr(trial, 'trial_id', trial)}: an old checkpoint Tune meant to delete was already "
              f"gone (replaced before the interruption); the trial goes on", flush=True)
        return False


def quiet_tune_messages() -> None:
    """mathtune's own lines where Tune's would mislead: Tune's "Resume experiment with: Tuner.restore(...)"
    warning after Ctrl-C goes (mathtune prints ``mathtune resume EXP_DIR``, the command that works for a
    mathtune experiment), and so does the traceback of an already deleted checkpoint (:class:`_GoneCheckpoint`)."""
    for name, kind in (("ray.tune.tune", _DropRestoreHint), ("ray.tune.execution.tune_controller", _GoneCheckpoint)):
        log = logging.getLogger(name)
        if not any(isinstance(f, kind) for f in log.filters):
            log.addFilter(kind())
