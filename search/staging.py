"""mathtune's own files in an experiment folder, kept out of Ray Tune's staging copy after a restore.

Restoring an experiment, Ray Tune copies every ``.json`` and ``.pkl`` file at the top of the experiment folder
into its driver staging directory (``/tmp/ray/session_*/artifacts/.../driver_artifacts``), and uploads that
directory back over the folder at every experiment snapshot: with ``CheckpointConfig(num_to_keep=2)`` after
every second trial checkpoint, every 15-30 s in a running campaign. mathtune's own top-level files came back
as they were when the session began. ``budget.json``, which the driver rewrites every few seconds, then read
as the session's starting count about a quarter of the time (17 of 60 reads a second apart in one campaign):
``mathtune status`` showed it, and a driver killed in such a moment lost the whole session's time from its
budget.

:class:`KeepOwnFiles` deletes those copies from the staging directory at the first step after the restore
(Tune has read what it needs from them by then), so the uploads carry only Tune's own files. A new search
has it in its run configuration; ``mathtune resume`` adds it to a restored one that lacks it.
"""

from __future__ import annotations

import contextlib
from pathlib import Path
from typing import Any

from ray.tune import Callback

from mathtune.analysis.store import BUDGET_FILE, CONFIRM_FILE, EXPERIMENT_FILE, PROVENANCE_FILE
from mathtune.search.driver import DRIVER_FILE

__all__ = ["KeepOwnFiles", "OWN_FILES", "keep_own_files"]

# the files mathtune writes at the top of an experiment folder that Tune's restore would copy
OWN_FILES = (EXPERIMENT_FILE, BUDGET_FILE, CONFIRM_FILE, DRIVER_FILE, PROVENANCE_FILE)


class KeepOwnFiles(Callback):
    """Deletes Tune's staging copies of :data:`OWN_FILES` once per session, at its first step with trials."""

    def __init__(self, names: tuple[str, ...] = OWN_FILES):
        self.names = tuple(names)
        self.done = False

    def setup(self, **info: Any) -> None:
        self.done = False  # every session (a restore unpickles the object as it was when the search began)

    def on_step_begin(self, iteration: int, trials: list, **info: Any) -> None:
        if self.done or not trials:
            return
        self.done = True
        staging = Path(trials[0].local_experiment_path)
        for name in self.names:
            with contextlib.suppress(FileNotFoundError):
                (staging / name).unlink()


def keep_own_files(callbacks: list) -> list:
    """``callbacks`` with a :class:`KeepOwnFiles` in it (added where it is missing, as in the run
    configuration of an experiment started before there was one)."""
    if not any(isinstance(c, KeepOwnFiles) for c in callbacks):
        callbacks.append(KeepOwnFiles())
    return callbacks
