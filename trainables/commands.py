"""Commands a family adds to ``mathtune``, found through the ``mathtune.commands`` entry-point group.

mathtune's own text-to-program commands (``evaluate``, ``score``) are registered there in its
``pyproject.toml``; a package of your own adds one the same way::

    # pyproject.toml of your package
    [project.entry-points."mathtune.commands"]
    my-command = "my_package.cli:MY_COMMAND"      # a mathtune.trainables.commands.Command

The module an entry point names is imported whenever the ``mathtune`` parser is built (every ``mathtune`` command
line, ``--help`` included), so it should hold only the :class:`Command` and its arguments. Give ``run`` as a
"module:function" string and the function's module, with whatever heavy code it imports at its top, is loaded
only when the command runs::

    MY_COMMAND = Command(help="...", description="...", add_arguments=_arguments,
                         run="my_package.cli_run:my_command")     # my_command(args) -> exit status

(``run`` may also be the function itself, for a light command.) Bad input is reported by raising
:class:`~mathtune.trainables.errors.MathtuneError` (one line, exit status 2), as everywhere in mathtune.
"""

from __future__ import annotations

import argparse
import importlib
from dataclasses import dataclass
from importlib.metadata import entry_points
from typing import Callable, Union

from .errors import MathtuneError

__all__ = ["Command", "CommandError", "family_commands", "COMMAND_GROUP"]

COMMAND_GROUP = "mathtune.commands"
BUILT_IN = ("families", "spaces", "train", "search", "resume", "dashboard", "report", "reference", "best", "ship")


class CommandError(MathtuneError):
    """Bad input to a family's command (shown as one line, exit 2)."""


Handler = Callable[[argparse.Namespace], int]


@dataclass(frozen=True)
class Command:
    """One ``mathtune NAME`` subcommand: its one-line help, its --help description, a function that adds its
    arguments to an ``argparse`` parser, and the function that runs it (returns the exit status), or that
    function's "module:function" path, imported when the command runs."""

    help: str
    description: str
    add_arguments: Callable[[argparse.ArgumentParser], None]
    run: Union[Handler, str]

    def __post_init__(self) -> None:
        if isinstance(self.run, str):
            module, _, function = self.run.partition(":")
            if not (module and function and all(p.isidentifier() for p in (*module.split("."), *function.split(".")))):
                raise ValueError(f"Command.run {self.run!r}: expected \"module:function\"")
        elif not callable(self.run):
            raise TypeError(f"Command.run: expected a function or a \"module:function\" string, not "
                            f"{type(self.run).__name__}")

    def handler(self) -> Handler:
        """The function that runs the command (importing its module when ``run`` names it by path); a module that
        cannot be imported, or a name it lacks, raises :class:`CommandError`."""
        if not isinstance(self.run, str):
            return self.run
        module, _, function = self.run.partition(":")
        try:
            found = importlib.import_module(module)
            for part in function.split("."):
                found = getattr(found, part)
        except (ImportError, AttributeError) as exc:
            raise CommandError(f"{self.run} cannot be imported: {type(exc).__name__}: {exc}") from None
        if not callable(found):
            raise CommandError(f"{self.run} is not a function")
        return found

    def __call__(self, args: argparse.Namespace) -> int:
        """Run the command on the parsed ``args``."""
        return self.handler()(args)


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
