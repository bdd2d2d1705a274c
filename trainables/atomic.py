"""Writing a file so that a reader (or a crash) never sees half of it: write a hidden temporary sibling,
then rename it into place. The one implementation every writer of mathtune uses.

Example::

    write_json(Path("runs/x/result.json"), {"best": 0.99})
    with atomic_file(Path("model.pt")) as fh:
        torch.save(state, fh)
"""

from __future__ import annotations

import contextlib
import json
import os
import tempfile
from pathlib import Path
from typing import Any, BinaryIO, Iterator

__all__ = ["atomic_file", "write_text", "write_json", "read_json"]


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
