"""Commands a family adds to ``mathtune``, found through the ``mathtune.commands`` entry-point group.

mathtune's own text-to-program commands (``evaluate``, ``score``) are registered there in its
``pyproject.toml``; a package of your own adds one the same way::

    # pyproject.toml of your package
    [project.entry-points."mathtune.commands"]
    my-command = "my_package.cli:MY_COMMAND"      # a mathtune.trainables.commands.Command

A command's module is imported whenever the ``mathtune`` parser is built, so keep its imports light and
import the heavy parts inside ``run``. Bad input is reported by raising :class:`~mathtune.trainables.errors.
MathtuneError` (one line, exit status 2), as everywhere in mathtune.
"""

from __future__ import annotations

import argparse
from dataclasses import dataclass
from importlib.metadata import entry_points
from typing import Callable

from .errors import MathtuneError

__all__ = ["Command", "CommandError", "family_commands", "COMMAND_GROUP"]

COMMAND_GROUP = "mathtune.commands"
BUILT_IN = ("families", "spaces", "train", "search", "resume", "dashboard", "report", "reference", "best", "ship")


class CommandError(MathtuneError):
    """Bad input to a family's command (shown as one line, exit 2)."""


@dataclass(frozen=True)
class Command:
    """One ``mathtune NAME`` subcommand: its one-line help, its --help description, a function that adds its
    arguments to an ``argparse`` parser, and the function that runs it (returns the exit status)."""

    help: str
    description: str
    add_arguments: Callable[[argparse.ArgumentParser], None]
    run: Callable[[argparse.Namespace], int]


def family_commands() -> dict[str, Command]:
    """Name -> command, for every entry point of the group; a name that shadows a built-in command, or an
    entry that cannot be imported or is not a :class:`Command`, is skipped with a warning on stderr, so one
    broken plugin never takes the whole command line down."""
    import sys

    found: dict[str, Command] = {}
    for ep in entry_points(group=COMMAND_GROUP):
        if ep.name in BUILT_IN or ep.name in found:
            continue
        try:
            command = ep.load()
        except Exception as exc:  # noqa: BLE001 - a plugin's import error becomes one warning line
            print(f"mathtune: warning: command {ep.name!r} ({ep.value}) cannot be imported: "
                  f"{type(exc).__name__}: {exc}", file=sys.stderr)
            continue
        if not isinstance(command, Command):
            print(f"mathtune: warning: command {ep.name!r} ({ep.value}) is not a mathtune Command", file=sys.stderr)
            continue
        found[ep.name] = command
    return found
