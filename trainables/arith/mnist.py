"""Read the MNIST digit pool from standard IDX files (gzipped or not), with strict validation.

Only the 10,000-image MNIST test set is needed (``t10k-images-idx3-ubyte.gz`` and
``t10k-labels-idx1-ubyte.gz``); the arithmetic image families draw every digit image from it.
Every problem with the files raises :class:`MnistError`, a one-line message that names the file and
says what is wrong.

Where the files are looked for (first match wins): the ``folder`` argument, the ``MATHTUNE_MNIST``
environment variable, then ``<project root>/../shared/data/mnist`` (project root = the folder that holds
``trainables/``).

Example::

    >>> images, labels = load_mnist()          # doctest: +SKIP
    >>> images.shape, images.dtype, labels.shape  # doctest: +SKIP
    ((10000, 28, 28), dtype('uint8'), (10000,))
"""

from __future__ import annotations

import gzip
import os
import zlib
from pathlib import Path

import numpy as np

from ..errors import MathtuneError

__all__ = ["MnistError", "IMAGES_FILE", "LABELS_FILE", "ENV_VAR", "read_idx_images", "read_idx_labels",
           "find_mnist_folder", "load_mnist"]

IMAGES_FILE = "t10k-images-idx3-ubyte"
LABELS_FILE = "t10k-labels-idx1-ubyte"
ENV_VAR = "MATHTUNE_MNIST"
IMAGES_MAGIC = 2051
LABELS_MAGIC = 2049
_PROJECT_ROOT = Path(__file__).resolve().parents[2]  # trainables/arith/mnist.py -> project root


class MnistError(MathtuneError, ValueError):
    """A missing, unreadable or malformed MNIST file; the message names the file and the problem."""


def _read_bytes(path: str | os.PathLike) -> bytes:
    """The decompressed content of ``path`` (gzip when it starts with the gzip magic, else raw)."""
    path = Path(path)
    try:
        raw = path.read_bytes()
    except FileNotFoundError:
        raise MnistError(f"{path}: file not found") from None
    except OSError as exc:
        raise MnistError(f"{path}: cannot read ({exc.strerror or exc})") from None
    if raw[:2] == b"\x1f\x8b":
        try:
            return gzip.decompress(raw)
        except (OSError, EOFError, zlib.error) as exc:
            raise MnistError(f"{path}: not a readable gzip file ({exc})") from None
    if path.suffix == ".gz":
        raise MnistError(f"{path}: not a gzip file (no gzip header), although the name ends in .gz")
    return raw


def _header(path: Path, data: bytes, magic: int, ndim: int) -> tuple[int, ...]:
    """Check the big-endian IDX header (magic, then ``ndim`` sizes) and return the sizes."""
    need = 4 * (1 + ndim)
    if len(data) < need:
        raise MnistError(f"{path}: truncated header ({len(data)} bytes, need {need})")
    found = int.from_bytes(data[:4], "big")
    if found != magic:
        raise MnistError(f"{path}: wrong magic number {found} (expected {magic})")
    dims = tuple(int.from_bytes(data[4 * i:4 * i + 4], "big") for i in range(1, 1 + ndim))
    expected = need + int(np.prod(dims, dtype=np.int64))
    if len(data) < expected:
        raise MnistError(f"{path}: truncated file ({len(data)} bytes after decompression, "
                         f"header {dims} needs {expected})")
    if len(data) > expected:
        raise MnistError(f"{path}: {len(data) - expected} unexpected trailing bytes "
                         f"(header {dims} needs {expected})")
    return dims


def read_idx_images(path: str | os.PathLike) -> np.ndarray:
    """Images of an IDX3 file (magic 2051), shape (N, 28, 28), dtype uint8.

    Example::

        >>> read_idx_images("t10k-images-idx3-ubyte.gz").shape   # doctest: +SKIP
        (10000, 28, 28)
    """
    path = Path(path)
    data = _read_bytes(path)
    n, rows, cols = _header(path, data, IMAGES_MAGIC, 3)
    if n == 0:
        raise MnistError(f"{path}: header says 0 images")
    if (rows, cols) != (28, 28):
        raise MnistError(f"{path}: images are {rows}x{cols}, expected 28x28")
    return np.frombuffer(data, dtype=np.uint8, offset=16).reshape(n, rows, cols).copy()


def read_idx_labels(path: str | os.PathLike) -> np.ndarray:
    """Labels of an IDX1 file (magic 2049), shape (N,), dtype uint8, each in 0..9.

    Example::

        >>> read_idx_labels("t10k-labels-idx1-ubyte.gz")[:3]      # doctest: +SKIP
        array([7, 2, 1], dtype=uint8)
    """
    path = Path(path)
    data = _read_bytes(path)
    (n,) = _header(path, data, LABELS_MAGIC, 1)
    if n == 0:
        raise MnistError(f"{path}: header says 0 labels")
    labels = np.frombuffer(data, dtype=np.uint8, offset=8).copy()
    if labels.max() > 9:
        bad = int(np.argmax(labels > 9))
        raise MnistError(f"{path}: label {int(labels[bad])} at index {bad} is outside 0..9")
    return labels


def _how_to_get() -> str:
    return (f"MNIST not found: put {IMAGES_FILE}.gz and {LABELS_FILE}.gz (the MNIST test set, "
            f"from https://yann.lecun.com/exdb/mnist/ or a mirror; uncompressed copies without .gz work too) "
            f"in a folder and pass that folder as the MNIST folder option (load_mnist(folder)) "
            f"or set {ENV_VAR}=/that/folder "
            f"(default: {_PROJECT_ROOT.parent / 'shared' / 'data' / 'mnist'})")


def find_mnist_folder(folder: str | os.PathLike | None = None) -> Path:
    """The folder to read MNIST from: ``folder``, else ``$MATHTUNE_MNIST``, else the shared data folder.

    An explicit folder or environment variable is returned as given (a missing file is reported by the
    reader, naming the file); the default folder must exist, else :class:`MnistError` says how to get MNIST.
    """
    if folder is not None and str(folder) != "":
        return Path(folder).expanduser()
    env = os.environ.get(ENV_VAR, "")
    if env:
        return Path(env).expanduser()
    default = _PROJECT_ROOT.parent / "shared" / "data" / "mnist"
    if default.is_dir():
        return default
    raise MnistError(_how_to_get())


def _pick(folder: Path, stem: str) -> Path:
    for name in (stem + ".gz", stem):
        if (folder / name).is_file():
            return folder / name
    if not folder.is_dir():
        raise MnistError(f"{folder / (stem + '.gz')}: folder {folder} does not exist; " + _how_to_get())
    raise MnistError(f"{folder / (stem + '.gz')}: file not found (nor {stem} uncompressed); " + _how_to_get())


def load_mnist(folder: str | os.PathLike | None = None) -> tuple[np.ndarray, np.ndarray]:
    """(images uint8 (N, 28, 28), labels uint8 (N,)) of the MNIST test set, validated.

    Example::

        >>> images, labels = load_mnist("/data/mnist")            # doctest: +SKIP
        >>> len(images) == len(labels) == 10000  # doctest: +SKIP
        True
    """
    root = find_mnist_folder(folder)
    images_path, labels_path = _pick(root, IMAGES_FILE), _pick(root, LABELS_FILE)
    images = read_idx_images(images_path)
    labels = read_idx_labels(labels_path)
    if len(images) != len(labels):
        raise MnistError(f"{labels_path}: {len(labels)} labels but {images_path.name} has {len(images)} images")
    return images, labels
