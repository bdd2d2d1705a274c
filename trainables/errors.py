"""The error classes of bad input a user can fix: a parameter, a space or data file, a checkpoint, a folder.

Every user-facing error of mathtune and of its families derives from :class:`MathtuneError`; the CLI prints
its first line and exits 2, with no traceback. A family of your own raises a subclass (or ``ConfigError``)
for bad input and gets the same treatment. Kept free of imports so that light modules can use it.
"""

from __future__ import annotations

__all__ = ["MathtuneError", "CheckpointError", "ShipError", "RecordError"]


class MathtuneError(Exception):
    """Bad input, reported as one line that says what and where."""


class CheckpointError(MathtuneError, ValueError):
    """A checkpoint that is missing or cannot be read: no such folder, a file missing, truncated or corrupt, or
    holding more than tensors."""


class ShipError(MathtuneError, ValueError):
    """Runs that cannot ship as asked (a missing folder or checkpoint, differing runs, an unknown name)."""


class RecordError(MathtuneError, ValueError):
    """A record file (a run's ``result.json``, a shipped configuration, an experiment's ``mathtune.json``) that is
    missing, not JSON, lacks a key, holds a value of the wrong type or was written by a newer mathtune."""
