"""Read an experiment folder (written by Ray Tune) without importing Tune: per-trial config, history, status.

Everything here tolerates a search that is still running: half-written result lines, a missing or
half-written ``experiment_state-*.json``, trial folders without results yet.

Example::

    trials = load_trials("runs/arith-text2text-addsub-20261122-101500")
    best = best_of(trials, "max", key=lambda t: (t.best("val_exact_match") or {}).get("val_exact_match"))
    print(best.status, best.best_checkpoint("val_exact_match"))
"""

from __future__ import annotations

import json
import math
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, ClassVar, Sequence

import yaml
from optuna.storages.journal import JournalFileBackend

from mathtune.trainables.atomic import write_text
from mathtune.trainables.checkpoints import best_checkpoint, checkpoint_history, trial_checkpoints
from mathtune.trainables.errors import RecordError
from mathtune.trainables.metrics import best_of
from mathtune.trainables.records import Record

__all__ = ["TrialRecord", "load_trials", "load_experiment_meta", "tune_trial_states", "searched_params",
           "load_confirmation", "STATUSES", "CONFIRM_FILE", "DECODE_FILE", "BUDGET_FILE", "read_budget", "EXPERIMENT_FILE", "PROVENANCE_FILE", "ExperimentRecord",
           "read_experiment", "OPTUNA_JOURNAL", "JOURNAL_PREFIX", "journal_url", "open_optuna_storage", "study_storage_url",
           "open_study_storage", "ExperimentError", "TRIAL_PREFIX", "trial_dirname", "tune_sessions"]

CONFIRM_FILE = "confirm.json"
"""The seed confirmation's outcome (``mathtune search --confirm-top``), written by mathtune.search.confirm."""
DECODE_FILE = "decode.json"
BUDGET_FILE = "budget.json"  # a budgeted search's clock, written by mathtune.search.budget
EXPERIMENT_FILE = "mathtune.json"
PROVENANCE_FILE = "provenance.json"  # where the search driver ran, one entry per session (search.engine)
OPTUNA_JOURNAL = "optuna.journal"  # an experiment's Optuna studies (Optuna's JournalStorage, one file)
OPTUNA_SQLITE = "optuna.db"  # where experiments before the journal kept them
JOURNAL_PREFIX = "journal:"  # journal:/path/to/optuna.journal, beside Optuna's SQLAlchemy URLs
RECORD_VERSION = 2  # the format of mathtune.json this code writes and reads up to (ExperimentRecord)

STATUSES = ("finished", "stopped early", "errored", "running", "pending")
"""Trial statuses in the tables: ran every epoch; stopped by the scheduler; failed (after retries);
still reporting (or its driver died before it ended); started but nothing reported yet."""

ERROR_FILES = ("error.txt", "error.pkl")
TRIAL_PREFIX = "trial_"  # a trial's folder: trial_ID (the engine names them, load_trials reads the ID back)


class ExperimentError(RecordError):
    """An experiment folder (or a ``mathtune train`` folder) that is missing or that mathtune cannot read."""


def trial_dirname(trial: Any) -> str:
    """The folder (and name) of a Tune trial in an experiment: ``trial_`` and its ID."""
    return f"{TRIAL_PREFIX}{trial.trial_id}"


@dataclass
class TrialRecord:
    trial_id: str
    path: Path
    config: dict[str, Any]
    history: list[dict[str, Any]] = field(default_factory=list)
    tune_status: str | None = None  # Tune's own status from experiment_state-*.json, when saved
    tune_info: dict[str, Any] = field(default_factory=dict)  # start_time, num_failures from the same file

    @property
    def epochs_run(self) -> int:
        return max((int(r.get("epoch", 0)) for r in self.history), default=0)

    @property
    def epochs_planned(self) -> int:
        return int(self.config.get("epochs", 0) or 0)

    @property
    def finished(self) -> bool:
        return self.epochs_run >= self.epochs_planned > 0

    @property
    def error(self) -> str | None:
        """First line of Tune's ``error.txt`` (None when the trial never failed)."""
        path = self.path / "error.txt"
        if path.is_file():
            lines = [ln.strip() for ln in path.read_text(errors="replace").splitlines() if ln.strip()]
            return (lines[-1] if lines else "error")[:300]
        return "error (see error.pkl)" if (self.path / "error.pkl").is_file() else None

    @property
    def status(self) -> str:
        """One of :data:`STATUSES`; Tune's saved status first, else inferred from the folder."""
        done = bool(self.history and self.history[-1].get("done"))
        tune = (self.tune_status or "").upper()
        if tune == "ERROR" or (not tune and self.error and not done):
            return "errored"
        if tune == "TERMINATED" or done:
            return "finished" if self.finished else "stopped early"
        if not self.history:
            return "pending"
        return "finished" if self.finished and not tune else "running"

    def best(self, metric: str, mode: str = "max", *, decoded: bool = True) -> dict[str, Any] | None:
        """The epoch row with the best value of ``metric`` (first one on ties).

        When the trial's selected checkpoint was scored at decode-time settings (``decode.json``, written by
        :mod:`mathtune.search.decode`) the row carries the chosen setting's figures instead, with the setting
        under ``decoded`` (e.g. ``{"beam_width": 5}``); ``decoded=False`` gives the row as trained."""
        row = best_of((r for r in self.history if _is_number(r.get(metric))), mode, key=lambda r: r[metric])
        if row is None:
            return None
        scored = self.decoded() if decoded else None
        if scored and scored.get("metric") == metric and int(scored.get("epoch", -1)) == int(row.get("epoch", -2)):
            row = {**row, **scored["best"], "decoded": dict(scored["chosen"])}
        return row

    def decoded(self) -> dict[str, Any] | None:
        """``decode.json``: the selected checkpoint scored at each decode-time setting (None when not scored)."""
        path = self.path / DECODE_FILE
        try:
            payload = json.loads(path.read_text())
        except (OSError, ValueError):
            return None
        return payload if isinstance(payload, dict) and isinstance(payload.get("best"), dict) else None

    def checkpoints(self) -> dict[int, Path]:
        """Epoch -> checkpoint folder, for the checkpoints Tune kept (``checkpoint_*/state.pt``)."""
        return trial_checkpoints(self.path)

    def best_checkpoint(self, metric: str, mode: str = "max") -> tuple[Path | None, int | None]:
        """(folder, epoch) of the kept checkpoint whose epoch scored best on ``metric`` in the trial's results
        (:func:`mathtune.trainables.checkpoints.best_checkpoint`): the best epoch's own checkpoint when Tune kept
        it (it keeps the best ones by the metric)."""
        return best_checkpoint(self.path, metric, mode, history=self.history)


def _is_number(value: Any) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool) and not math.isnan(value)


@dataclass
class ExperimentRecord(Record):
    """``EXP/mathtune.json``: what the engine knows of a search, written once when the search starts. The record is
    the file's only writer and reader: resume needs every field, analysis the family and the metric (``need``).
    ``version`` 2 added ``objectives`` and ``version``; files without them read as version 1 with a single
    objective (``version`` says what the file holds; the file is written in the current one). A file written by
    a newer mathtune is refused in one line. ``options`` are the search's options as ``mathtune search`` took
    them (``SearchOptions``, with the trial count and concurrency it settled on).

    Example::

        record = read_experiment("runs/arith-text2text-addsub-20261122-101500")
        record.family, record.metric, record.options["seed"], record.optuna_storage
    """

    family: str
    metric: str
    mode: str = "max"
    name: str = ""
    space: str = ""
    space_name: str = ""
    storage_path: str = ""
    study_name: str = ""
    resources: dict[str, float] = field(default_factory=dict)
    options: dict[str, Any] = field(default_factory=dict)
    optuna_storage: str = ""
    factors: list[str] = field(default_factory=list)
    objectives: list[list[str]] = field(default_factory=list)  # [[metric, mode], ...] when several
    created: str = ""
    extra: dict[str, Any] = field(default_factory=dict)  # keys of the file this version does not know
    version: int = RECORD_VERSION

    KIND = "experiment file"
    VERSION = RECORD_VERSION
    REQUIRED = ("family", "metric")
    RESUME_KEYS: ClassVar[tuple[str, ...]] = ("name", "storage_path", "study_name", "resources", "options",
                                              "optuna_storage")

    @property
    def location(self) -> str:
        """Where the search writes the experiment: ``storage_path/name`` (a URL on remote storage)."""
        return f"{self.storage_path.rstrip('/')}/{self.name}"

    @classmethod
    def read(cls, exp_dir: str | Path, *, need: Sequence[str] = REQUIRED, error: type[Exception] = ExperimentError,
             problem: str = "unreadable") -> "ExperimentRecord":
        """The record of the experiment folder ``exp_dir``; ``error`` (one line naming the file) when it has no
        ``mathtune.json``, or the file is not JSON, was written by a newer mathtune, lacks a key of ``need`` or
        holds a value of the wrong type."""
        path = Path(exp_dir) / EXPERIMENT_FILE
        if not path.is_file():
            raise error(f"{exp_dir}: not a mathtune experiment (no {EXPERIMENT_FILE})")
        return cls._load(path, need=need, error=error, problem=problem)

    def write(self, exp_dir: str | Path) -> Path:
        """Write ``exp_dir/mathtune.json`` whole (:mod:`mathtune.trainables.atomic`); returns its path."""
        return write_text(Path(exp_dir) / EXPERIMENT_FILE, self.to_json())


def read_experiment(exp_dir: str | Path, *, need: Sequence[str] = ExperimentRecord.REQUIRED,
                    error: type[Exception] = ExperimentError, problem: str = "unreadable") -> ExperimentRecord:
    """``mathtune.json`` of an experiment (:meth:`ExperimentRecord.read`): every field typed, defaults filled for
    older files; ``error`` (one line naming the file) when it is missing, not JSON, newer than this mathtune
    reads, or lacks a key of ``need`` or has one of the wrong type."""
    return ExperimentRecord.read(exp_dir, need=need, error=error, problem=problem)


def load_experiment_meta(exp_dir: str | Path) -> dict[str, Any]:
    """``mathtune.json`` of an experiment as a plain dict: :func:`read_experiment`'s record, as its file holds it
    (the tidy tables keep the record itself, ``Tables.metas``)."""
    return read_experiment(exp_dir).to_dict()


def read_budget(exp_dir: str | Path) -> dict[str, Any] | None:
    """A budgeted search's ``budget.json`` (budget_s, spent_s, sessions, exhausted); None without one."""
    try:
        payload = json.loads((Path(exp_dir) / BUDGET_FILE).read_text())
    except (OSError, ValueError):
        return None
    return payload if isinstance(payload, dict) and "budget_s" in payload and "spent_s" in payload else None


def searched_params(exp_dir: str | Path) -> dict[str, dict[str, Any]]:
    """Parameters the search varied -> their space spec (``{"type": "int", "low": 0, ...}``).

    The experiment's copy of the space file (``space.yaml``) minus the parameters fixed with ``--set``;
    empty when the file is unreadable.
    """
    exp_dir = Path(exp_dir)
    try:
        space = yaml.safe_load((exp_dir / "space.yaml").read_text()) or {}
        overrides = read_experiment(exp_dir).options.get("overrides") or {}
    except (OSError, yaml.YAMLError, ExperimentError):
        return {}
    params = space.get("params") or {}
    if not isinstance(params, dict):
        return {}
    return {p: dict(spec) if isinstance(spec, dict) else {} for p, spec in params.items() if p not in overrides}


def _read_results(path: Path) -> list[dict[str, Any]]:
    rows: dict[int, dict[str, Any]] = {}
    if not path.is_file():
        return []
    for line in path.read_text(errors="replace").splitlines():
        line = line.strip()
        if not line:
            continue
        try:
            row = json.loads(line)
        except json.JSONDecodeError:
            continue  # a line being written right now
        if not isinstance(row, dict):
            continue
        # A trial restored from a checkpoint repeats epochs; keep the latest report of each epoch.
        rows[int(row.get("epoch", row.get("training_iteration", len(rows) + 1)))] = row
    return [rows[k] for k in sorted(rows)]


def _state_entries(payload: dict[str, Any]):
    """(static, runtime) dicts of each trial in a Tune ``experiment_state-*.json`` payload."""
    for entry in payload.get("trial_data", []):
        yield tuple(json.loads(e) if isinstance(e, str) else e for e in entry[:2])


def tune_trial_states(exp_dir: str | Path) -> dict[str, dict[str, Any]]:
    """Trial id -> ``{"status", "start_time", "num_failures"}`` from Tune's newest experiment state.

    Empty when Tune has not saved one yet or the file is being rewritten; callers infer the status.
    """
    # newest session by the time stamp in the name: after a resume Tune's sync rewrites the earlier sessions'
    # files too, so their modification times say nothing
    files = sorted(Path(exp_dir).glob("experiment_state-*.json"), key=lambda p: p.name)
    for path in reversed(files):
        try:
            payload = json.loads(path.read_text())
            out: dict[str, dict[str, Any]] = {}
            for static, runtime in _state_entries(payload):
                out[str(static["trial_id"])] = {"status": static.get("status"),
                                                "start_time": runtime.get("start_time"),
                                                "num_failures": runtime.get("num_failures", 0)}
            return out
        except (OSError, ValueError, KeyError, TypeError, IndexError):
            continue
    return {}


def stopped_by_signal(exp_dir: str | Path) -> bool:
    """Whether Tune's run of this experiment ended on Ctrl-C (or SIGTERM / SIGUSR1) rather than by finishing:
    its last saved state still has trials running, pending or paused. Tune saves that state before it ends the
    trials, and then returns as if they had ended (every trial ``TERMINATED`` in memory, no exception), so the
    saved state is what tells a stopped run from a finished one."""
    states = tune_trial_states(exp_dir)
    return any(str(s.get("status")).upper() not in ("TERMINATED", "ERROR") for s in states.values())


def load_trials(exp_dir: str | Path) -> list[TrialRecord]:
    """Every trial folder of an experiment (readable while the search still runs).

    A trial's epochs come from Tune's ``result.json``; the epochs it lacks come from the trial's newest kept
    checkpoint, whose ``metrics.json`` holds every epoch the trial trained (:func:`_with_checkpoint_epochs`). A
    trial folder that Tune's loggers never wrote into (no ``params.json``) is read from its checkpoints alone."""
    exp_dir = Path(exp_dir)
    if not exp_dir.is_dir():
        raise ExperimentError(f"{exp_dir}: experiment folder not found")
    states = tune_trial_states(exp_dir)
    folders = {p.parent for p in exp_dir.glob("*/params.json")}
    folders |= {p.parent.parent for p in exp_dir.glob(f"{TRIAL_PREFIX}*/checkpoint_*/metrics.json")}
    trials, sessions = [], None
    for folder in sorted(folders):
        config: Any = None
        if (folder / "params.json").is_file():
            try:
                config = json.loads((folder / "params.json").read_text())
            except (OSError, json.JSONDecodeError):
                continue
        saved = checkpoint_history(folder)
        config = config if isinstance(config, dict) else saved.config
        if not isinstance(config, dict):
            continue
        history = _with_checkpoint_epochs(_read_results(folder / "result.json"), saved.history)
        if any(not _is_number(r.get("timestamp")) for r in history):
            if sessions is None:
                sessions = tune_sessions(exp_dir)
            history = _stamped(history, sessions, folder.name[len(TRIAL_PREFIX):], saved.starts)
        trial_id = next((r["trial_id"] for r in reversed(history) if r.get("trial_id")), None)
        if not trial_id:
            name = folder.name
            trial_id = name[len(TRIAL_PREFIX):] if name.startswith(TRIAL_PREFIX) else name
        state = states.get(str(trial_id), {})
        trials.append(TrialRecord(trial_id=str(trial_id), path=folder, config=config, history=history,
                                  tune_status=state.get("status"),
                                  tune_info={k: v for k, v in state.items() if k != "status"}))
    return trials


def _with_checkpoint_epochs(results: list[dict[str, Any]], saved: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """Tune's epoch rows, with the checkpoint's rows of the epochs that Tune's files lack, in epoch order.

    Those can be missing when the driver stopped between a trial's checkpoint and Tune logging its result, or
    when a session's run configuration named no result loggers. A row taken from the checkpoint has the
    loop's metrics (its ``timestamp`` among them) and ``from_checkpoint: True``; its ``time_total_s`` adds each
    epoch's own time to the epoch before (it lacks the trial's set-up and reporting time)."""
    have = {int(r.get("epoch", 0)) for r in results}
    missing = [r for r in saved if int(r["epoch"]) not in have]
    if not missing:
        return results
    rows = {int(r.get("epoch", 0)): r for r in results}
    rows.update({int(r["epoch"]): {**r, "from_checkpoint": True} for r in missing})
    out: list[dict[str, Any]] = []
    total = 0.0
    for epoch in sorted(rows):
        row = rows[epoch]
        if row.get("from_checkpoint"):
            total += float(row.get("epoch_time_s") or 0.0)
            row = {**row, "time_total_s": total}
        else:
            total = float(row.get("time_total_s") or total)
        out.append(row)
    return out


def tune_sessions(exp_dir: str | Path) -> list[tuple[float, dict[str, int]]]:
    """Each session of a search (its start, and the last epoch each trial had reported when Tune last saved that
    session's state), oldest first, from Tune's ``experiment_state-*.json`` files (one per start or resume)."""
    out = []
    for path in sorted(Path(exp_dir).glob("experiment_state-*.json"), key=lambda p: p.name):
        try:
            payload = json.loads(path.read_text())
            start = float(payload["runner_data"]["_start_time"])
            ends: dict[str, int] = {}
            for static, runtime in _state_entries(payload):
                last = runtime.get("last_result") or {}
                if "epoch" in last:
                    ends[str(static["trial_id"])] = int(last["epoch"])
            out.append((start, ends))
        except (OSError, ValueError, KeyError, TypeError, IndexError):
            continue
    return sorted(out, key=lambda s: s[0])


def _stamped(history: list[dict[str, Any]], sessions: list[tuple[float, dict[str, int]]], trial_id: str,
             starts: Sequence[float] = ()) -> list[dict[str, Any]]:
    """Rows without a ``timestamp`` (checkpoint rows written before the loop stamped its epochs) get one
    estimated: the epoch's session is the first whose saved state had the trial at that epoch or later (else the
    last); the row ends its own time after the row before it in that session, or else after the trial's own
    start in that session (``starts``, from its checkpoint's provenance), or the session's start."""
    out: list[dict[str, Any]] = []
    prev_stamp, prev_session = None, None
    for row in history:
        epoch = int(row.get("epoch", 0))
        index = next((i for i, (_, ends) in enumerate(sessions) if ends.get(trial_id, -1) >= epoch),
                     len(sessions) - 1)
        if not _is_number(row.get("timestamp")) and index >= 0:
            begin = sessions[index][0]
            until = sessions[index + 1][0] if index + 1 < len(sessions) else math.inf
            begin = max([begin, *(s for s in starts if begin <= s < until)][:2])  # the trial's first start in it
            base = prev_stamp if prev_stamp is not None and prev_session == index else begin
            row = {**row, "timestamp": max(base, begin) + float(row.get("epoch_time_s") or 0.0)}
        if _is_number(row.get("timestamp")):
            prev_stamp, prev_session = float(row["timestamp"]), index
        out.append(row)
    return out


def load_confirmation(exp_dir: str | Path) -> dict[str, Any] | None:
    """``EXP/confirm.json`` when the experiment has one (None otherwise, or when it cannot be read)."""
    try:
        payload = json.loads((Path(exp_dir) / CONFIRM_FILE).read_text())
    except (OSError, ValueError):
        return None
    return payload if isinstance(payload, dict) and isinstance(payload.get("combos"), dict) else None


# ---------------------------------------------------------------------------------------------- Optuna storages
def journal_url(path: str | Path) -> str:
    """The storage string of an Optuna journal file (``journal:/abs/path``)."""
    return JOURNAL_PREFIX + str(Path(path).resolve())


def open_optuna_storage(url: str):
    """The Optuna storage behind a storage string: ``journal:PATH`` is Optuna's JournalStorage over that file
    (the default of an experiment: each write is one appended line and reads replay the file into memory,
    about five times faster per trial than SQLite's transactions); anything else is a SQLAlchemy URL
    (``sqlite:///...``, ``postgresql://...``) opened as an RDBStorage."""
    import optuna

    if url.startswith(JOURNAL_PREFIX):
        return optuna.storages.JournalStorage(JournalFile(url[len(JOURNAL_PREFIX):]))
    return optuna.storages.RDBStorage(url)


class JournalFile(JournalFileBackend):
    """Optuna's journal file backend, less its ``fsync`` after every write.

    Optuna syncs the file to the disk after each appended line: a trial's suggestions are one line per
    parameter, so a search's driver spent about 20 ms a trial waiting on the disk (25 ms with its results),
    the largest part of its own time per trial. Each line is still written whole under Optuna's lock and
    handed to the operating system at once, so a search killed at any point (Ctrl-C, SIGKILL, a lost driver)
    resumes from everything it wrote, as from Tune's own experiment state, which is not synced either; only the
    machine itself going down can lose the last lines."""

    def append_logs(self, logs: list[dict[str, Any]]) -> None:
        text = "\n".join(json.dumps(log, separators=(",", ":")) for log in logs) + "\n"
        self._lock.acquire()
        try:
            with open(self._file_path, "ab") as fh:
                fh.write(text.encode("utf-8"))
        finally:
            self._lock.release()


def study_storage_url(exp_dir: str | Path, recorded: str | None) -> str | None:
    """Where the experiment's Optuna studies live, or None when they cannot be read; ``recorded`` is the storage
    its record names (:attr:`ExperimentRecord.optuna_storage`).

    A journal or SQLite file inside the experiment folder wins over the storage recorded at search time, so a
    copied or moved experiment folder reads its own studies; a recorded file that is gone gives None (never
    create an empty storage by reading).
    """
    for name, make in ((OPTUNA_JOURNAL, journal_url), (OPTUNA_SQLITE, lambda p: f"sqlite:///{p.resolve()}")):
        local = Path(exp_dir) / name
        if local.is_file():
            return make(local)
    url = recorded
    if not url:
        return None
    for prefix in (JOURNAL_PREFIX, "sqlite:///"):
        if url.startswith(prefix):
            return url if Path(url[len(prefix):]).is_file() else None
    return url


def open_study_storage(exp_dir: str | Path, recorded: str | None = None):
    """The experiment's Optuna storage (see :func:`study_storage_url`; ``recorded`` read from its
    ``mathtune.json`` when not given), or None when it cannot be read."""
    if recorded is None:
        recorded = read_experiment(exp_dir, need=()).optuna_storage
    url = study_storage_url(exp_dir, recorded)
    return None if url is None else open_optuna_storage(url)
