"""Where mathtune keeps what it computes once and reuses across runs (digit classifiers, frozen encoder states).

``default_cache_dir()`` is the ``cache_dir`` argument when given, else ``$MATHTUNE_CACHE``, else
``~/.cache/mathtune``; each user of it keys its entries by a content hash, so a stale entry is never read.
"""

from __future__ import annotations

import os
from pathlib import Path

__all__ = ["CACHE_ENV", "default_cache_dir"]

CACHE_ENV = "MATHTUNE_CACHE"


def default_cache_dir(cache_dir: str | os.PathLike | None = None) -> Path:
    """``cache_dir``, else ``$MATHTUNE_CACHE``, else ``~/.cache/mathtune``."""
    if cache_dir is not None and str(cache_dir) != "":
        return Path(cache_dir).expanduser()
    return Path(os.environ.get(CACHE_ENV) or Path.home() / ".cache" / "mathtune").expanduser()
