"""One driver per experiment folder: a search, a resume or a confirmation holds the folder while it runs.

Two drivers on one experiment (a ``mathtune resume`` typed while the search still runs in the background, or
started twice by a scheduler) would both restore Tune's state, run the same trials and write the same files.
So the driver takes an exclusive, non-blocking ``flock`` on ``EXP/driver.lock`` for as long as it runs, and
writes who it is to ``EXP/driver.json`` (pid, host, start, command). The operating system releases the lock
when the process ends, however it ends (Ctrl-C, an exception, ``kill -9``, a lost session), so a driver that
died never blocks the next resume. A second driver is refused with one line naming the first.

``mathtune status`` asks :func:`running_driver` whether one holds the folder now. Where ``fcntl`` is missing
(Windows) nothing is locked and nothing is refused.

Example::

    with hold_experiment(exp_dir, "mathtune resume runs/EXP"):
        ...  # Tune runs the trials
"""

from __future__ import annotations

import contextlib
import json
import os
import socket
import sys
import time
from pathlib import Path
from typing import Any, Iterator

from mathtune.trainables.atomic import write_json
from mathtune.trainables.errors import MathtuneError

try:
    import fcntl
except ImportError:  # Windows
    fcntl = None

__all__ = ["LOCK_FILE", "DRIVER_FILE", "ExperimentBusy", "hold_experiment", "running_driver", "describe_driver"]

LOCK_FILE = "driver.lock"
DRIVER_FILE = "driver.json"
_TRIES = 10  # a `mathtune status` probing the lock holds it for microseconds: retry for a moment before refusing
_PAUSE_S = 0.05


class ExperimentBusy(MathtuneError, RuntimeError):
    """Another driver runs the experiment."""


def _try_lock(path: Path, mode: int) -> int | None:
    """An open descriptor of ``path`` holding a ``mode`` lock, or None when another process holds a conflicting
    one."""
    fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o644)  # not inherited by child processes (PEP 446)
    try:
        fcntl.flock(fd, mode | fcntl.LOCK_NB)
    except BlockingIOError:
        os.close(fd)
        return None
    return fd


def _read_driver(exp_dir: Path) -> dict[str, Any]:
    try:
        payload = json.loads((exp_dir / DRIVER_FILE).read_text())
        return payload if isinstance(payload, dict) else {}
    except (OSError, ValueError):
        return {}


def describe_driver(info: dict[str, Any]) -> str:
    """``pid 123 on host, since 2026-12-07 15:53:52 (mathtune resume runs/EXP)``, from what is known."""
    text = f"pid {info.get('pid', '?')} on {info.get('host', '?')}"
    if info.get("started"):
        text += f", since {info['started']}"
    return text + (f" ({info['command']})" if info.get("command") else "")


@contextlib.contextmanager
def hold_experiment(exp_dir: str | Path, command: str | None = None) -> Iterator[None]:
    """Hold ``exp_dir`` for this process while the block runs; :class:`ExperimentBusy` (one line) when another
    driver holds it."""
    exp_dir = Path(exp_dir)
    if fcntl is None:
        yield
        return
    fd = None
    for attempt in range(_TRIES):
        fd = _try_lock(exp_dir / LOCK_FILE, fcntl.LOCK_EX)
        if fd is not None:
            break
        time.sleep(_PAUSE_S)
    if fd is None:
        info = _read_driver(exp_dir)
        pid = info.get("pid")
        stop = f"; stop it with Ctrl-C in its terminal or `kill -INT {pid}`" if pid else ""
        raise ExperimentBusy(f"{exp_dir}: another driver is running this experiment ({describe_driver(info)}); "
                             f"wait for it to end{stop}, then resume")
    try:
        write_json(exp_dir / DRIVER_FILE, {"pid": os.getpid(), "host": socket.gethostname(),
                                           "started": time.strftime("%Y-%m-%d %H:%M:%S"),
                                           "command": command or " ".join(["mathtune", *sys.argv[1:]])})
        yield
    finally:
        os.close(fd)  # releases the lock; driver.json stays as the record of the last driver


def running_driver(exp_dir: str | Path) -> dict[str, Any] | None:
    """What ``driver.json`` says of the driver that holds ``exp_dir`` now, or None when none holds it (or locks
    are not available here)."""
    exp_dir = Path(exp_dir)
    if fcntl is None or not (exp_dir / LOCK_FILE).is_file():
        return None
    fd = _try_lock(exp_dir / LOCK_FILE, fcntl.LOCK_SH)
    if fd is not None:
        os.close(fd)
        return None
    return _read_driver(exp_dir)
