"""Writing files and folders so that a reader (or a crash) never sees half of one. The one implementation every
writer of mathtune uses.

* A file: write a hidden temporary sibling, then rename it into place (:func:`atomic_file`, :func:`write_text`,
  :func:`write_json`).
* A folder (a checkpoint, a shipped model): fill a hidden temporary sibling, then swap it in
  (:func:`atomic_folder`, :func:`swap_folder`). A folder cannot be replaced by one rename, so the swap moves the
  old folder to a backup name first; at every moment one complete folder is at the final name or at the backup
  name, and :func:`readable_folder` (a reader) and :func:`recover_folder` (the writer, e.g. a resumed run) find
  it after a crash at any step.

Example::

    write_json(Path("runs/x/result.json"), {"best": 0.99})
    with atomic_file(Path("model.pt")) as fh:
        torch.save(state, fh)
    with atomic_folder(Path("runs/x/last")) as tmp:
        (tmp / "config.json").write_text("{}")
"""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import tempfile
from pathlib import Path
from typing import Any, BinaryIO, Iterator

__all__ = ["atomic_file", "write_text", "write_json", "read_json", "atomic_folder", "swap_folder", "backup_of",
           "readable_folder", "recover_folder"]


@contextlib.contextmanager
def atomic_file(path: str | os.PathLike) -> Iterator[BinaryIO]:
    """A binary handle on a temporary sibling of ``path`` (its folder created), renamed to ``path`` when the
    block ends without an exception; on an exception the temporary file goes and ``path`` is untouched."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    try:
        with os.fdopen(fd, "wb") as fh:
            yield fh
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def write_text(path: str | os.PathLike, text: str) -> Path:
    with atomic_file(path) as fh:
        fh.write(text.encode("utf-8"))
    return Path(path)


def write_json(path: str | os.PathLike, payload: Any, *, indent: int = 1, **dumps: Any) -> Path:
    """``payload`` as JSON (``default=str`` unless given, so paths and numpy scalars are written as text)."""
    dumps.setdefault("default", str)
    return write_text(path, json.dumps(payload, indent=indent, **dumps))


def read_json(path: str | os.PathLike) -> Any:
    """The JSON in ``path``; OSError and ValueError (JSON or encoding) as the callers already expect."""
    return json.loads(Path(path).read_text(encoding="utf-8"))


# ---------------------------------------------------------------------------------------------- folders
def backup_of(path: str | os.PathLike) -> Path:
    """The name :func:`swap_folder` keeps the previous folder of ``path`` under while it swaps (hidden: globs over
    a run or trial folder do not see it)."""
    path = Path(path)
    return path.with_name(f".{path.name}.old")


@contextlib.contextmanager
def atomic_folder(path: str | os.PathLike) -> Iterator[Path]:
    """A fresh, empty temporary sibling folder of ``path`` (its parent created) to fill; when the block ends
    without an exception it replaces ``path`` (:func:`swap_folder`); on an exception it is removed and ``path``
    is untouched."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent))
    try:
        yield tmp
        swap_folder(tmp, path)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise


def swap_folder(new: str | os.PathLike, path: str | os.PathLike) -> Path:
    """Replace folder ``path`` by the complete folder ``new`` (a sibling on the same file system, so that each
    step is one rename). The steps:

    1. the previous folder is renamed to its backup name (:func:`backup_of`); when a swap interrupted before
       step 2 left only the backup, it stays the previous folder;
    2. ``new`` is renamed to ``path``;
    3. the backup is removed.

    At every moment a complete folder is at ``path`` or, between steps 1 and 2 only, at the backup name. A
    backup beside a folder at ``path`` is never needed (the folder at ``path`` is complete). Returns ``path``.
    """
    new, path = Path(new), Path(path)
    backup = backup_of(path)
    if path.exists():
        if backup.exists():
            shutil.rmtree(backup)  # left by a swap interrupted after its step 2: ``path`` is complete
        os.rename(path, backup)
    os.rename(new, path)
    shutil.rmtree(backup, ignore_errors=True)
    return path


def readable_folder(path: str | os.PathLike) -> Path | None:
    """The complete folder to read for ``path``: ``path`` itself, else the backup a swap interrupted between its
    steps 1 and 2 left (:func:`swap_folder`); None when there is neither. Renames nothing (readers may run
    beside the writer)."""
    path = Path(path)
    if path.is_dir():
        return path
    backup = backup_of(path)
    return backup if backup.is_dir() else None


def recover_folder(path: str | os.PathLike) -> Path | None:
    """For the writer of ``path``, before it reads or writes ``path`` again (a resumed run): finish what an
    interrupted :func:`swap_folder` left. A backup that is the only folder is renamed back to ``path``; a backup
    beside ``path`` is removed. Returns ``path`` when a folder is there afterwards, else None."""
    path = Path(path)
    backup = backup_of(path)
    if backup.is_dir():
        if path.is_dir():
            shutil.rmtree(backup, ignore_errors=True)
        else:
            os.rename(backup, path)
    return path if path.is_dir() else None
