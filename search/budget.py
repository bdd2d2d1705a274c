"""A search's compute budget (``mathtune search --budget 8h``): wall-clock time, counted across resumes.

The budget is **wall-clock** seconds of the search driver (dataset build, trials, Tune's bookkeeping), not
CPU-hours: wall-clock is what a fixed machine or a cluster bill is held for, it does not depend on how many
trials run at once, and it is what Tune's own ``time_budget_s`` counts. With two one-CPU trials at a time on
a two-core machine, ``--budget 8h`` is 16 CPU-hours.

Three parts, all in the driver process:

* :class:`BudgetClock` counts the seconds spent, one clock per experiment folder, kept in ``budget.json``
  (saved every few seconds while the search runs, so a killed driver loses at most that much of its count;
  ``mathtune resume`` reads it and keeps counting from there). Time between sessions does not count.
* :class:`BudgetStopper`, a Tune :class:`~ray.tune.stopper.Stopper` (Tune's ``TimeoutStopper``, but counted
  across resumes): when the budget is spent, Tune stops every running trial cleanly (their last epoch is
  checkpointed and reported) and the search ends.
* :class:`BudgetGate`, a searcher wrapper: it stops starting trials that cannot finish in what is left,
  estimated as a trial's start-up plus the epochs of a full trial times the median seconds per epoch of the
  trials seen so far.

A search with ``--confirm-top K --confirm-seeds S`` keeps back what its confirmation will need out of the same
budget: the S new-seed runs of each of today's K leaders per factor value (the trials with the best validation
value so far), each run costing that leader's own epochs x its own seconds per epoch plus the longest trial
start-up seen, packed onto the concurrent slots (longest first); plus what the search took to start before its
first trial reported. Until K trials of every factor value have reported an epoch there are no leaders and
nothing is kept back (the first trials are the search's, whatever they cost). The reserve follows the leaders
as they change, and is at most half the budget: leaders that would need more (say the first ones are the
slowest configurations of the space) must not end the search before it has searched; a warning then says the
confirmation may run past the budget. The search's trials stop (and no new one starts) before the reserve is
touched; the confirmation then runs to its end, counted on the same clock.

The stopper and the gate are pickled into Tune's experiment state; they keep only the folder's path and
find the clock of this process through :meth:`BudgetClock.of`.

Example::

    clock = BudgetClock.start("runs/exp", parse_duration("8h"))
    ... tune.RunConfig(stop=BudgetStopper("runs/exp")) ...
    clock.close()
"""

from __future__ import annotations

import json
import math
import re
import statistics
import time
from pathlib import Path
from typing import Any, ClassVar, Sequence

from ray.tune import Callback
from ray.tune.search import Searcher
from ray.tune.stopper import Stopper

from mathtune.analysis.store import BUDGET_FILE, load_trials, read_experiment
from mathtune.trainables.atomic import write_json
from mathtune.trainables.errors import MathtuneError
from mathtune.trainables.loop import format_duration as format_budget
from mathtune.trainables.metrics import is_better, rank

__all__ = ["BUDGET_FILE", "BudgetError", "BudgetClock", "BudgetStopper", "BudgetSaver", "budget_saver", "BudgetGate",
           "parse_duration", "format_budget"]

_UNITS = {"s": 1.0, "m": 60.0, "min": 60.0, "h": 3600.0, "d": 86400.0}
_PART = re.compile(r"(\d+(?:\.\d+)?)\s*(min|s|m|h|d)")


class BudgetError(MathtuneError, ValueError):
    """A budget that cannot be read (``--budget 8x``) or a damaged ``budget.json``."""


def parse_duration(text: str | float | int) -> float:
    """Seconds in ``"8h"``, ``"90m"``, ``"1h30m"``, ``"2.5h"``, ``"45min"``, ``"3600s"`` or ``"3600"``."""
    if isinstance(text, (int, float)) and not isinstance(text, bool):
        seconds = float(text)
    else:
        raw = str(text).strip().lower().replace(" ", "")
        if re.fullmatch(r"\d+(\.\d+)?", raw):
            seconds = float(raw)
        elif raw and re.fullmatch(f"(?:{_PART.pattern})+", raw):
            seconds = sum(float(n) * _UNITS[u] for n, u in _PART.findall(raw))
        else:
            raise BudgetError(f"--budget {text!r}: expected a duration such as 8h, 90m, 1h30m or 3600 (seconds)")
    if not math.isfinite(seconds) or seconds <= 0:
        raise BudgetError(f"--budget {text!r}: must be more than zero")
    return seconds


class BudgetClock:
    """Seconds a search has spent of its budget, kept in ``EXP/budget.json`` across driver sessions."""

    SAVE_EVERY_S = 5.0
    _open: ClassVar[dict[str, "BudgetClock"]] = {}

    def __init__(self, exp_dir: str | Path, budget_s: float, spent_before: float = 0.0, sessions: int = 0):
        self.exp_dir = Path(exp_dir)
        self.budget_s = float(budget_s)
        self.spent_before = float(spent_before)
        self.sessions = int(sessions) + 1
        self._started = time.monotonic()
        self._closed_at: float | None = None
        self.reserve_s = 0.0  # seconds the search leaves for its confirmation (set by the gate)
        self._saved_at = float("-inf")

    # ------------------------------------------------------------------ opening
    @classmethod
    def start(cls, exp_dir: str | Path, budget_s: float) -> "BudgetClock":
        """A new search's clock, at zero."""
        clock = cls(exp_dir, budget_s)
        clock.save(force=True)
        cls._open[cls._key(exp_dir)] = clock
        return clock

    @classmethod
    def resume(cls, exp_dir: str | Path, budget_s: float | None = None) -> "BudgetClock | None":
        """The clock of a resumed search, counting on from what ``budget.json`` says was spent (None when
        the search has no budget). ``budget_s`` replaces the stored budget (``mathtune resume --budget``)."""
        path = Path(exp_dir) / BUDGET_FILE
        if not path.is_file():
            if budget_s is None:
                return None
            stored = {"budget_s": budget_s, "spent_s": 0.0, "sessions": 0}
        else:
            try:
                stored = json.loads(path.read_text())
                float(stored["budget_s"]), float(stored["spent_s"])
            except (OSError, ValueError, KeyError, TypeError) as exc:
                raise BudgetError(f"{path}: not a readable budget file ({type(exc).__name__}); restore it or "
                                  f"resume with --budget to start counting again") from None
        clock = cls(exp_dir, budget_s if budget_s is not None else stored["budget_s"], stored["spent_s"],
                    stored.get("sessions", 0))
        clock.save(force=True)
        cls._open[cls._key(exp_dir)] = clock
        return clock

    @classmethod
    def of(cls, exp_dir: str | Path) -> "BudgetClock | None":
        """This process's open clock for ``exp_dir``."""
        return cls._open.get(cls._key(exp_dir))

    @staticmethod
    def _key(exp_dir: str | Path) -> str:
        # the folder's name: Tune restores a moved experiment folder under its name, while the stopper and the
        # gate pickled in its state still hold the old path
        return Path(str(exp_dir).rstrip("/")).name

    # ------------------------------------------------------------------ reading
    def spent(self) -> float:
        end = self._closed_at if self._closed_at is not None else time.monotonic()
        return self.spent_before + (end - self._started)

    def remaining(self) -> float:
        return self.budget_s - self.spent()

    def exhausted(self) -> bool:
        return self.remaining() <= 0

    # ------------------------------------------------------------------ writing
    def save(self, *, force: bool = False) -> None:
        now = time.monotonic()
        if not force and now - self._saved_at < self.SAVE_EVERY_S:
            return
        self._saved_at = now
        write_json(self.exp_dir / BUDGET_FILE, {"budget_s": self.budget_s, "spent_s": round(self.spent(), 3),
                                                "sessions": self.sessions, "exhausted": self.exhausted(),
                                                "clock": "wall-clock seconds of the search driver"})

    def close(self) -> None:
        """Stop counting (the search ended or was interrupted) and save."""
        if self._closed_at is None:
            self._closed_at = time.monotonic()
        self.save(force=True)
        self._open.pop(self._key(self.exp_dir), None)

    def describe(self) -> str:
        return f"{format_budget(self.spent())} of {format_budget(self.budget_s)} spent"


class BudgetStopper(Stopper):
    """Stops every trial once the search's budget is spent; Tune then ends the experiment. Tune asks it at every
    step of its loop, so it also keeps ``budget.json`` up to date (every 5 s): all a driver killed with SIGKILL
    leaves of its session's time."""

    def __init__(self, exp_dir: str | Path):
        self.exp_dir = str(exp_dir)
        self.announced = False

    def __call__(self, trial_id: str, result: dict[str, Any]) -> bool:
        return False

    def stop_all(self) -> bool:
        clock = BudgetClock.of(self.exp_dir)
        if clock is None:
            return False
        clock.save()
        if clock.remaining() > clock.reserve_s:
            return False
        if not self.announced:
            self.announced = True
            kept = f"; {format_budget(clock.reserve_s)} kept for the confirmation" if clock.reserve_s else ""
            print(f"[mathtune] budget spent ({clock.describe()}{kept}): stopping the running trials at their "
                  f"last checkpointed epoch", flush=True)
        return True


class BudgetGate(Searcher):
    """Wraps a searcher: no new trial once what is left of the budget is less than a full trial's estimated
    time (start-up plus ``epochs`` x the median seconds per epoch of the trials seen so far); trials start
    freely until one has reported an epoch. Everything else goes to the wrapped searcher."""

    def __init__(self, searcher: Searcher, exp_dir: str | Path, *, epochs: int,
                 confirm: tuple[int, int] | None = None, concurrent: int = 1, group_keys: Sequence[str] = (),
                 groups: int = 1):
        super().__init__(metric=searcher.metric, mode=searcher.mode)
        self.searcher = searcher
        self.exp_dir = str(exp_dir)
        self.epochs = int(epochs)
        self.confirm = tuple(confirm) if confirm else None  # (top K per factor value, seeds S) of --confirm-*
        self.concurrent = max(1, int(concurrent))
        self.group_keys = tuple(group_keys)  # the factors: the confirmation takes its top K within each value
        self.expected_groups = int(groups)  # how many factor values the search has
        self.trials: dict[str, dict[str, Any]] = {}  # trial id -> {"group", "epochs", "best"} for the leaders
        self.warned = False
        self.epoch_s: dict[str, float] = {}  # trial id -> the seconds of its latest epoch
        self.startup_s: dict[str, float] = {}  # trial id -> its first report's seconds beyond its first epoch
        self.setup_s: float | None = None  # seconds from the search's start to its first trial's start
        self.closed_reason: str | None = None

    def estimate_s(self) -> float | None:
        """Seconds a new trial needs to run all its epochs: its start-up plus ``epochs`` x the median seconds per
        epoch of the trials so far (None before any trial reported an epoch)."""
        if not self.epoch_s:
            return None
        startup = statistics.median(self.startup_s.values()) if getattr(self, "startup_s", None) else 0.0
        return startup + self.epochs * statistics.median(self.epoch_s.values())

    def reserve_s(self) -> float:
        """Seconds kept back for the confirmation: what the confirmation of today's leaders needs
        (:meth:`confirmation_s`), at most half the budget; nothing before there are leaders."""
        if not self.epoch_s or not getattr(self, "confirm", None):
            return 0.0
        needed = self.confirmation_s()
        if needed is None:
            return 0.0
        clock = BudgetClock.of(self.exp_dir)
        return min(needed, clock.budget_s / 2) if clock is not None else needed

    def confirmation_s(self) -> float | None:
        """Seconds the confirmation of today's leaders needs (their new-seed runs at their own cost, packed onto
        the concurrent slots, each with the longest start-up seen, after a new experiment's set-up), or None
        before every factor value has its leaders."""
        runs = self._leader_runs_s()
        if runs is None or not self.epoch_s:
            return None
        startup = max(getattr(self, "startup_s", {}).values(), default=0.0)
        setup = getattr(self, "setup_s", None) or 0.0  # a new experiment's start before its first report
        slots = [0.0] * max(1, getattr(self, "concurrent", 1))
        for seconds in sorted(runs, reverse=True):  # longest first, each onto the slot that frees first
            slots[slots.index(min(slots))] += startup + seconds
        return setup + max(slots)

    def _leader_runs_s(self) -> list[float] | None:
        """Seconds of training of each confirmation run (S per leader, K leaders per factor value), or None while
        some factor value has fewer than K trials with a reported value."""
        confirm, trials = getattr(self, "confirm", None), getattr(self, "trials", {})
        if not confirm:
            return None
        top, seeds = confirm
        groups: dict[Any, list[tuple[float, str]]] = {}
        for trial_id, t in trials.items():
            if t.get("best") is not None and trial_id in self.epoch_s:
                groups.setdefault(t["group"], []).append((t["best"], trial_id))
        expected = getattr(self, "expected_groups", 0)
        if not groups or len(groups) < expected or any(len(g) < top for g in groups.values()):
            return None
        runs = []
        for entries in groups.values():
            for _, trial_id in rank(entries, self.mode, key=lambda e: e[0])[:top]:
                runs.extend([trials[trial_id]["epochs"] * self.epoch_s[trial_id]] * seeds)
        return runs

    def _note(self, trial_id: str, result: dict[str, Any]) -> None:
        """Keep what the reserve needs of a trial: its factor value, its epochs and its best value so far."""
        if not hasattr(self, "trials"):
            self.trials = {}
        t = self.trials.setdefault(trial_id, {"group": None, "epochs": self.epochs, "best": None})
        config = result.get("config") if isinstance(result.get("config"), dict) else {}
        def value(key):
            return config.get(key, result.get(f"config/{key}"))
        epochs = value("epochs")
        if isinstance(epochs, (int, float)) and epochs > 0:
            t["epochs"] = int(epochs)
        t["group"] = tuple(value(k) for k in getattr(self, "group_keys", ()))
        metric = result.get(self.metric)
        if isinstance(metric, (int, float)) and math.isfinite(metric) and is_better(metric, t["best"], self.mode):
            t["best"] = float(metric)

    def suggest(self, trial_id: str) -> dict[str, Any] | str | None:
        clock = BudgetClock.of(self.exp_dir)
        if clock is not None:
            clock.reserve_s = self.reserve_s()  # the stopper ends the search's trials before this is touched
            left, need = clock.remaining() - clock.reserve_s, self.estimate_s()
            if left <= 0 or (need is not None and need > left):
                if self.closed_reason is None:
                    kept = f" (after {format_budget(clock.reserve_s)} kept for the confirmation)" \
                        if clock.reserve_s else ""
                    self.closed_reason = f"{format_budget(max(0.0, left))} of the budget left{kept}, a full trial " \
                                         f"needs about {format_budget(need or 0)}"
                    print(f"[mathtune] no new trials: {self.closed_reason}; the running ones go on",
                          flush=True)
                return Searcher.FINISHED
        return self.searcher.suggest(trial_id)

    def on_trial_result(self, trial_id: str, result: dict[str, Any]) -> None:
        epoch = result.get("epoch", result.get("training_iteration"))
        total = result.get("time_total_s")
        # the loop's own epoch time (training and evaluation) when the family reports it, else the report's;
        # what the first report took beyond its epoch is the trial's start-up (actor, imports, data, model)
        this = result.get("epoch_time_s", result.get("time_this_iter_s"))
        if isinstance(epoch, (int, float)) and epoch > 0 and isinstance(this, (int, float)) and this > 0:
            self.epoch_s[trial_id] = float(this)
            self._note(trial_id, result)
            if not hasattr(self, "startup_s"):
                self.startup_s = {}
            if int(epoch) == 1 and isinstance(total, (int, float)):
                self.startup_s[trial_id] = max(0.0, float(total) - float(this))
            clock = BudgetClock.of(self.exp_dir)
            if getattr(self, "setup_s", None) is None and clock is not None and clock.sessions == 1:
                # the search's first report: Tune's start, actors and imports before any trial trained
                self.setup_s = max(0.0, clock.spent() - float(total if isinstance(total, (int, float)) else this))
            clock = BudgetClock.of(self.exp_dir)
            if clock is not None:
                clock.reserve_s = self.reserve_s()
                needed = self.confirmation_s() if getattr(self, "confirm", None) else None
                if needed is not None and not getattr(self, "announced_leaders", False):
                    self.announced_leaders = True
                    print(f"[mathtune] the confirmation's reserve follows the leaders from now on: "
                          f"{format_budget(clock.reserve_s)} kept (their new-seed runs at their own epochs and "
                          f"seconds per epoch)", flush=True)
                if needed is not None and needed > clock.budget_s / 2 and not getattr(self, "warned", False):
                    self.warned = True
                    print(f"[mathtune] warning: the confirmation of today's leaders needs about "
                          f"{format_budget(needed)}, more than half the {format_budget(clock.budget_s)} budget; "
                          f"the search keeps half back, so the confirmation may run past the budget unless cheaper "
                          f"leaders take over (fewer --confirm-top or --confirm-seeds would fit)", flush=True)
        self.searcher.on_trial_result(trial_id, result)

    def on_trial_complete(self, trial_id: str, result: dict[str, Any] | None = None, error: bool = False) -> None:
        self.searcher.on_trial_complete(trial_id, result=result, error=error)

    def set_search_properties(self, metric, mode, config, **spec) -> bool:
        return self.searcher.set_search_properties(metric, mode, config, **spec)

    def add_evaluated_point(self, *args, **kwargs) -> None:
        self.searcher.add_evaluated_point(*args, **kwargs)

    def get_state(self) -> dict[str, Any]:
        return {"epoch_s": dict(self.epoch_s), "startup_s": dict(getattr(self, "startup_s", {})),
                "setup_s": getattr(self, "setup_s", None), "closed_reason": self.closed_reason,
                "trials": {k: dict(v) for k, v in getattr(self, "trials", {}).items()}}

    def set_state(self, state: dict[str, Any]) -> None:
        self.epoch_s = dict(state.get("epoch_s", {}))
        self.startup_s = dict(state.get("startup_s", {}))
        self.setup_s = state.get("setup_s")
        self.closed_reason = state.get("closed_reason")
        self.trials = {k: dict(v) for k, v in state.get("trials", {}).items()}
        if not hasattr(self, "confirm"):
            self._adopt_record()

    def _adopt_record(self) -> None:
        """A gate saved before it kept the confirmation's plan and the leaders: read the plan from the
        experiment's record and the leaders from its trial folders (what they reported is on disk)."""
        exp_dir = Path(self.exp_dir)
        try:
            record = read_experiment(exp_dir, need=())
            options, factors = record.options or {}, list(record.factors or [])
            records = load_trials(exp_dir)
        except (OSError, ValueError, MathtuneError):
            self.confirm = None  # the rounds of full trials, as the gate kept before
            return
        top, seeds = int(options.get("confirm_top") or 0), int(options.get("confirm_seeds") or 0)
        self.confirm = (top, seeds) if top and seeds else None
        self.concurrent = max(1, int(options.get("max_concurrent") or 1))
        self.group_keys = tuple(factors)
        # the searcher takes the factor values in turn, so every value the search has shows among its trials
        self.expected_groups = max(1, len({tuple(r.config.get(k) for k in factors) for r in records}))
        saved = set(self.epoch_s)  # the saved gate's latest seconds per epoch stand; the folders fill the rest
        for record in records:
            for row in record.history:  # in epoch order: the latest epoch's seconds are kept
                this = row.get("epoch_time_s")
                if isinstance(this, (int, float)) and this > 0:
                    if record.trial_id not in saved:
                        self.epoch_s[record.trial_id] = float(this)
                    self._note(record.trial_id, {**row, "config": record.config})

    def save(self, checkpoint_path: str) -> None:
        self.searcher.save(checkpoint_path)

    def restore(self, checkpoint_path: str) -> None:
        self.searcher.restore(checkpoint_path)


class BudgetSaver(Callback):
    """Keeps ``budget.json`` up to date (every 5 s) through the confirmation, which runs to its end on the
    search's clock: a Tune callback, since a restored run keeps the stopper it was saved with (Tune restores its
    loop's state, the stopper in it) but takes the callbacks it is given."""

    def __init__(self, exp_dir: str | Path):
        self.exp_dir = str(exp_dir)

    def on_step_begin(self, iteration: int, trials: list, **info: Any) -> None:
        clock = BudgetClock.of(self.exp_dir)
        if clock is not None:
            clock.save()


def budget_saver(callbacks: list, exp_dir: str | Path) -> list:
    """``callbacks`` with a :class:`BudgetSaver` for ``exp_dir`` in it (added where it is missing, as in a
    confirmation begun before there was one)."""
    if not any(isinstance(c, BudgetSaver) for c in callbacks):
        callbacks.append(BudgetSaver(exp_dir))
    return callbacks
