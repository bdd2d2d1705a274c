"""The JSON files mathtune writes for other commands to read, as typed records: each record is the only writer
and the only reader of its file.

* :class:`RunRecord`: ``RUN/result.json``, what a ``mathtune train`` run ended with (written by ``mathtune
  train``; read by ``mathtune ship``, ``mathtune report RUN`` and the benchmarks).
* :class:`ShippedRecord`: ``trainables/configs/NAME.json``, a shipped configuration with its figure and where it
  came from (written by ``mathtune ship``, a family's ``ship_model`` included; read by ``mathtune reference``,
  a search's report and ``mathtune train --config FILE``).
* ``mathtune.analysis.store.ExperimentRecord``: ``EXP/mathtune.json``, on the same base (:class:`Record`).

Every record file carries a format ``version``; a file without one is version 1. A file newer than this code
reads is refused in one line ("written by a newer mathtune (version 3); this one reads up to 2"), an older one
is read with the later fields' defaults. A key the record does not know is kept in ``extra`` and written back
as it was, so a file shipped with a note of its own keeps it. Bad files raise :class:`RecordError` (or the
error class the caller asks for), one line that names the file.

Example::

    RunRecord(family="arith-text2text", config=config, best=best, last=last, wall_time_s=12.5).write("runs/x")
    RunRecord.read("runs/x").best["val_exact_match"]
    ShippedRecord.read(CONFIGS_DIR / "t2m-lstm.json").figure["val_exec_acc"]
"""

from __future__ import annotations

import copy
import dataclasses
import json
import types
import typing
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, ClassVar, Sequence, TypeVar

from .atomic import write_text
from .errors import RecordError
from .provenance import configuration_of

__all__ = ["Record", "RecordError", "RunRecord", "ShippedRecord", "RUN_FILE", "RUN_VERSION", "SHIPPED_VERSION",
           "CONFIGS_DIR"]

RUN_FILE = "result.json"  # a `mathtune train` folder's record
RUN_VERSION = 1
SHIPPED_VERSION = 1
CONFIGS_DIR = Path(__file__).resolve().parent / "configs"  # the shipped configurations, inside the package

R = TypeVar("R", bound="Record")


def _accepted(hint: Any) -> tuple[type, ...]:
    """The JSON value types a field's annotation accepts, the first one giving an empty value (``str()``,
    ``dict()``); a whole number is a float too."""
    if hint is Any:
        return (object,)
    if hint is float:
        return (float, int)
    if typing.get_origin(hint) in (typing.Union, types.UnionType):
        return tuple(t for arg in typing.get_args(hint) for t in _accepted(arg))
    return (typing.get_origin(hint) or hint,)


class Record:
    """What the records share: a dataclass whose last two fields are ``extra`` (the keys of the file that the
    record does not know, written back as they were) and ``version`` (the format the file was written in).

    A subclass names its ``KIND`` (in messages), its current ``VERSION``, the keys a file must hold
    (``REQUIRED``), the fields left out of the file while None (``OPTIONAL``) and whether the file ends with a
    newline. Its fields' order is the order of the keys in the file."""

    KIND: ClassVar[str] = "record"
    VERSION: ClassVar[int] = 1
    REQUIRED: ClassVar[tuple[str, ...]] = ()
    OPTIONAL: ClassVar[tuple[str, ...]] = ()
    NEWLINE: ClassVar[bool] = False

    extra: dict[str, Any]
    version: int

    def to_dict(self) -> dict[str, Any]:
        """The record as the file holds it: its fields in order (an ``OPTIONAL`` one only when set), the extra
        keys, then ``version``."""
        out: dict[str, Any] = {}
        for f in dataclasses.fields(self):  # type: ignore[arg-type]
            value = getattr(self, f.name)
            if f.name not in ("extra", "version") and not (value is None and f.name in self.OPTIONAL):
                out[f.name] = copy.deepcopy(value)
        out.update(copy.deepcopy(self.extra))
        out["version"] = self.version
        return out

    def to_json(self) -> str:
        """The file's text, in the current format (``version`` is this code's)."""
        text = json.dumps({**self.to_dict(), "version": self.VERSION}, indent=1, default=str)
        return text + "\n" if self.NEWLINE else text

    @classmethod
    def from_dict(cls: type[R], raw: Any, *, where: str | Path, need: Sequence[str] | None = None,
                  error: type[Exception] = RecordError, problem: str = "unreadable") -> R:
        """The record of a file's parsed JSON ``raw`` (``where`` names the file in messages). ``need``: the keys
        it must hold (default ``REQUIRED``); any other field missing gets its default (an empty value for a
        required field the caller does not need). ``error`` (one line) when it is not a JSON object, was written
        by a newer mathtune, lacks a key of ``need`` or holds a value of the wrong type."""
        need = cls.REQUIRED if need is None else tuple(need)
        bad = f"{where}: {problem} {cls.KIND}"
        if not isinstance(raw, dict):
            raise error(f"{bad} ({f'no {need[0]!r}' if need else 'not a JSON object'})")
        version = raw.get("version", 1)
        if not isinstance(version, int) or isinstance(version, bool) or version < 1:
            raise error(f"{bad} ('version' is {version!r}, not a whole number from 1)")
        if version > cls.VERSION:
            raise error(f"{where}: written by a newer mathtune (version {version}); this one reads up to "
                        f"{cls.VERSION}")
        missing = [k for k in need if k not in raw]
        if missing:
            raise error(f"{bad} (no {missing[0]!r})")
        hints = typing.get_type_hints(cls)
        values: dict[str, Any] = {}
        known = set()
        for f in dataclasses.fields(cls):  # type: ignore[arg-type]
            if f.name in ("extra", "version"):
                continue
            known.add(f.name)
            accepted = _accepted(hints[f.name])
            value = raw.get(f.name)
            if f.name not in raw or (value is None and type(None) not in accepted and f.name not in need):
                if f.default is dataclasses.MISSING and f.default_factory is dataclasses.MISSING:
                    values[f.name] = accepted[0]()
                continue
            if not isinstance(value, accepted) or (isinstance(value, bool) and bool not in accepted):
                raise error(f"{bad} ({f.name!r} is not a {accepted[0].__name__})")
            values[f.name] = value
        extra = {k: v for k, v in raw.items() if k not in known and k != "version"}
        return cls(**values, extra=extra, version=version)

    @classmethod
    def _load(cls: type[R], path: Path, *, need: Sequence[str] | None = None, error: type[Exception] = RecordError,
              problem: str = "unreadable") -> R:
        """The record in the file ``path`` (which exists): ``error`` when it is not JSON, else as
        :meth:`from_dict`."""
        try:
            raw = json.loads(path.read_text(encoding="utf-8"))
        except (json.JSONDecodeError, UnicodeDecodeError) as exc:
            raise error(f"{path}: {problem} {cls.KIND} ({exc})") from None
        return cls.from_dict(raw, where=path, need=need, error=error, problem=problem)


@dataclass(kw_only=True)
class RunRecord(Record):
    """``RUN/result.json``: what a ``mathtune train`` run ended with, written when it ends (a resumed run
    rewrites it). ``best`` and ``last`` are the selected and the last epoch's figures (validation selects,
    test is reported only); ``wall_time_s`` is the whole run's, earlier processes' epochs included; a resumed
    run adds the epoch it resumed after and this process's own wall time. ``provenance``: where it trained, one
    entry per start and resume (None in runs from before runs recorded it)."""

    family: str
    config: dict[str, Any]
    best: dict[str, Any]
    last: dict[str, Any] | None = None
    wall_time_s: float = 0.0
    data: str = ""
    provenance: list[Any] | None = None
    resumed_after_epoch: int | None = None
    this_process_wall_time_s: float | None = None
    extra: dict[str, Any] = field(default_factory=dict)
    version: int = RUN_VERSION

    KIND = "run record"
    VERSION = RUN_VERSION
    REQUIRED = ("family", "config", "best")
    OPTIONAL = ("provenance", "resumed_after_epoch", "this_process_wall_time_s")

    @classmethod
    def read(cls, folder: str | Path, *, error: type[Exception] = RecordError) -> "RunRecord":
        """The record of the ``mathtune train`` folder ``folder``; ``error`` (one line) when the folder or its
        ``result.json`` is missing (a run still training has none) or the file cannot be read."""
        folder = Path(folder)
        if not folder.is_dir():
            raise error(f"{folder}: no such run folder")
        path = folder / RUN_FILE
        if not path.is_file():
            raise error(f"{folder}: not a finished `mathtune train` run (no {RUN_FILE})")
        return cls._load(path, error=error)

    def write(self, folder: str | Path) -> Path:
        """Write ``folder/result.json`` whole (:mod:`.atomic`); returns its path."""
        return write_text(Path(folder) / RUN_FILE, self.to_json())


@dataclass(kw_only=True)
class ShippedRecord(Record):
    """``trainables/configs/NAME.json``: a shipped configuration. ``config`` is a ``mathtune train FAMILY
    --config FILE`` input (no thread count or device: how the runs were executed is their ``provenance``; a file
    shipped before that may still hold them in ``config``, kept as written and left out by :meth:`train_config`);
    ``figure`` what its runs measured, selected on validation (a mean over training seeds keeps each seed's
    value under ``figure["seeds"]``); ``search`` what the search that found it recorded (None for a hand run).
    The other fields say what the figure was measured on, how it was selected, how long the runs trained, where,
    when and by which command."""

    family: str
    figure: dict[str, Any]
    measured_on: str = ""
    selected: str = ""
    wall_time_s: float = 0.0
    machine: str = ""
    provenance: list[Any] | None = None
    date: str = ""
    produced_by: str = ""
    train_command: str = ""
    note: str | None = None
    search: dict[str, Any] | None = None
    config: dict[str, Any]
    extra: dict[str, Any] = field(default_factory=dict)
    version: int = SHIPPED_VERSION

    KIND = "shipped configuration"
    VERSION = SHIPPED_VERSION
    REQUIRED = ("family", "figure", "config")
    OPTIONAL = ("provenance", "note", "search")
    NEWLINE = True

    @classmethod
    def read(cls, path: str | Path, *, error: type[Exception] = RecordError) -> "ShippedRecord":
        """The shipped configuration in ``path``; ``error`` (one line) when it is missing or cannot be read."""
        path = Path(path)
        if not path.is_file():
            raise error(f"{path}: no such shipped configuration")
        return cls._load(path, error=error)

    def write(self, path: str | Path) -> Path:
        """Write ``path`` whole (:mod:`.atomic`); returns it."""
        return write_text(path, self.to_json())

    def train_config(self) -> dict[str, Any]:
        """What ``mathtune train --config FILE`` takes from the file: ``config`` without how its runs were executed
        (threads, device; an older file may still hold them), so the run uses the machine at hand (the family's
        defaults) unless ``--set`` says otherwise."""
        return configuration_of(self.config)
