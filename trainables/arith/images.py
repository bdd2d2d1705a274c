"""Arithmetic strings as sequences of 28x28 images: MNIST digits, drawn operator glyphs, blank padding.

Characters are those of the query alphabet ``"0123456789+-* "`` (ids 0..13, the same ids as
:mod:`mathtune.trainables.arith.data`). Each digit becomes a random MNIST image of that class, each
operator a randomly jittered drawn glyph (plus, minus, times), padding a blank image. Everything is
vectorised: building 20,000 x 5 images takes a few tens of milliseconds.

Pools (see :func:`split_mnist_pool`): the MNIST test set is cut, stratified by class, into three
disjoint pools:

* ``classifier_eval`` -- ``classifier_fraction`` (20%) held apart; no query ever uses these images. It is
  the digit classifier's own evaluation set. It depends only on the seed, not on the query split.
* ``train`` -- images for training queries (and for validation queries when there is no ``val`` pool);
* ``val`` -- images for validation queries (when the split is asked for one), so that validation, like
  test, reads handwriting the model never trained on and selection sees reading errors;
* ``test`` -- images for test queries, so a test query never reuses a training image.

The remaining 80% is divided between ``train`` and ``test`` in proportion to the number of train and
test queries, each getting at least ``min_fraction`` (10%) of the whole pool; a ``val`` pool is then cut
from the ``train`` share in proportion to the validation queries, at least ``min_val_fraction`` (5%) of
the whole pool. The digit classifier trains on every pool but its evaluation set (the same images for
every split of a seed);
see :mod:`mathtune.trainables.arith.classifier` for why that is honest.

Example::

    >>> images, labels = load_mnist()                                   # doctest: +SKIP
    >>> s = build_image_split(x[train_idx], x[test_idx], seed=0, images=images, labels=labels)  # doctest: +SKIP
    >>> s.train.shape, s.train.dtype                                    # doctest: +SKIP
    ((10000, 5, 28, 28), dtype('uint8'))
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Sequence

import numpy as np

from .mnist import load_mnist

__all__ = ["ALPHABET", "DIGITS", "OPERATORS", "PAD_ID", "MINUS_ID", "BLANK", "to_ids", "draw_glyphs",
           "glyph_bank", "render_sequences", "split_pool", "pool_fractions", "PoolSplit", "split_mnist_pool",
           "ImageSplit", "build_image_split"]

ALPHABET = "0123456789+-* "
DIGITS = "0123456789"
OPERATORS = "+-*"
OP_IDS = {c: ALPHABET.index(c) for c in OPERATORS}  # '+': 10, '-': 11, '*': 12
MINUS_ID = ALPHABET.index("-")
PAD_ID = ALPHABET.index(" ")
BLANK = np.zeros((28, 28), dtype=np.uint8)
BLANK.setflags(write=False)

_LUT = np.full(128, -1, dtype=np.int16)
for _i, _c in enumerate(ALPHABET):
    _LUT[ord(_c)] = _i


def to_ids(chars: np.ndarray | Sequence[str]) -> np.ndarray:
    """Character ids (N, L) int64 from ids, a (N, L) array of 1-char strings, or N equal-length strings.

    Example::

        >>> to_ids(["9-7  ", "22+13"])[0]
        array([ 9, 11,  7, 13, 13])
    """
    arr = np.asarray(chars)
    if arr.dtype.kind in "iu":
        if arr.ndim != 2:
            raise ValueError(f"character ids must have shape (N, L), got {arr.shape}")
        if arr.size and (arr.min() < 0 or arr.max() >= len(ALPHABET)):
            raise ValueError(f"character ids must be in 0..{len(ALPHABET) - 1}")
        return arr.astype(np.int64, copy=False)
    if arr.dtype.kind != "U":
        raise ValueError(f"expected character ids or strings, got dtype {arr.dtype}")
    if arr.ndim == 1:  # N strings of equal length -> (N, L) of single characters
        lengths = np.char.str_len(arr)
        if arr.size and (lengths != lengths[0]).any():
            raise ValueError("strings must all have the same (padded) length")
        width = int(lengths[0]) if arr.size else 0
        arr = np.ascontiguousarray(arr.astype(f"<U{max(width, 1)}")).view("<U1").reshape(len(arr), width)
    if arr.ndim != 2:
        raise ValueError(f"characters must have shape (N, L), got {arr.shape}")
    if arr.dtype.itemsize != 4:
        raise ValueError("expected single characters in the (N, L) array")
    points = np.ascontiguousarray(arr).view(np.uint32)
    ids = _LUT[np.minimum(points, 127)]
    if (points > 127).any() or (ids < 0).any():
        bad = sorted(set(arr[(points > 127) | (ids < 0)].tolist()))
        raise ValueError(f"characters {bad} are not in the alphabet {ALPHABET!r}")
    return ids.astype(np.int64)


# --------------------------------------------------------------------------------------------- glyphs
# Stroke templates: (angle in degrees, relative length) per stroke.
_STROKES = {"+": ((0.0, 1.0), (90.0, 1.0)), "-": ((0.0, 1.0),), "*": ((45.0, 1.0), (-45.0, 1.0))}


def draw_glyphs(op: str, n: int, rng: np.random.Generator, *, jitter: float = 1.0) -> np.ndarray:
    """``n`` drawn images of operator ``op`` ('+', '-' or '*'), uint8 (n, 28, 28), MNIST-like strokes.

    Each glyph has random stroke jitter: centre (+-2 px), length (12-20 px), thickness (2-3.5 px),
    angle (+-8 degrees), each stroke also nudged on its own; ``jitter=0`` gives the clean glyph.

    Example::

        >>> g = draw_glyphs("+", 4, np.random.default_rng(0))
        >>> g.shape, g.dtype, bool((g[0] != g[1]).any())
        ((4, 28, 28), dtype('uint8'), True)
    """
    if op not in _STROKES:
        raise ValueError(f"op: {op!r} is not one of {OPERATORS!r}")
    strokes = np.array(_STROKES[op])  # (S, 2)
    s = len(strokes)
    j = float(jitter)
    centre = 13.5 + j * rng.uniform(-2.0, 2.0, (n, 1, 2)) + j * rng.uniform(-0.7, 0.7, (n, s, 2))
    base_len = 16.0 + j * rng.uniform(-4.0, 4.0, (n, 1))
    length = base_len * strokes[None, :, 1] * (1.0 + j * rng.uniform(-0.12, 0.12, (n, s)))
    angle = np.deg2rad(strokes[None, :, 0] + j * rng.uniform(-8.0, 8.0, (n, 1)) + j * rng.uniform(-5.0, 5.0, (n, s)))
    thick = 2.75 + j * rng.uniform(-0.75, 0.75, (n, 1))
    peak = 1.0 - j * rng.uniform(0.0, 0.1, (n, 1, 1))
    direction = np.stack([np.cos(angle), -np.sin(angle)], axis=-1)  # (n, S, 2) as (x, y); y grows downwards
    a = centre - direction * length[..., None] / 2
    d = direction * length[..., None]  # b - a
    yy, xx = np.mgrid[0:28, 0:28].astype(np.float64)
    px = xx[None, None] - a[..., 0, None, None]
    py = yy[None, None] - a[..., 1, None, None]
    dd = (d ** 2).sum(-1)[..., None, None]
    t = np.clip((px * d[..., 0, None, None] + py * d[..., 1, None, None]) / dd, 0.0, 1.0)
    dist = np.hypot(px - t * d[..., 0, None, None], py - t * d[..., 1, None, None])  # (n, S, 28, 28)
    # Antialiased stroke with a soft edge about 1.5 px wide, like MNIST's grey rims.
    ink = np.clip((thick[..., None, None] / 2 + 0.75 - dist) / 1.5, 0.0, 1.0).max(axis=1)
    return np.round(255.0 * ink * peak).astype(np.uint8)


def glyph_bank(rng: np.random.Generator, per_op: int = 200) -> np.ndarray:
    """Jittered glyphs for every operator, uint8 (3, per_op, 28, 28), in the order '+', '-', '*'.

    Example::

        >>> glyph_bank(np.random.default_rng(0), 8).shape
        (3, 8, 28, 28)
    """
    if per_op < 1:
        raise ValueError(f"per_op: {per_op} must be at least 1")
    return np.stack([draw_glyphs(op, per_op, rng) for op in OPERATORS])


# --------------------------------------------------------------------------------------------- rendering
def render_sequences(chars: np.ndarray | Sequence[str], pool_images: np.ndarray, pool_labels: np.ndarray,
                     rng: np.random.Generator, *, pool_index: np.ndarray | None = None,
                     glyphs: np.ndarray | None = None, glyphs_per_op: int = 200,
                     return_index: bool = False) -> np.ndarray | tuple[np.ndarray, np.ndarray]:
    """Images uint8 (N, L, 28, 28) for character sequences (N, L).

    Each digit gets a uniformly random image of its class from the pool (``pool_images[pool_index]``
    when ``pool_index`` restricts the pool, else all of it), each operator a random glyph of
    ``glyphs`` (a :func:`glyph_bank`; drawn from ``rng`` when omitted), padding the blank image.
    Deterministic for the state of ``rng``. With ``return_index=True`` also returns the pool index
    (into ``pool_images``) used at each position, -1 where there is no digit.

    Example::

        >>> out = render_sequences(["9-7  "], images, labels, np.random.default_rng(0))   # doctest: +SKIP
        >>> out.shape  # doctest: +SKIP
        (1, 5, 28, 28)
    """
    ids = to_ids(chars)
    pool_labels = np.asarray(pool_labels)
    if pool_images.shape[1:] != (28, 28) or len(pool_images) != len(pool_labels):
        raise ValueError(f"pool images {pool_images.shape} and labels {pool_labels.shape} do not match")
    if glyphs is None:
        glyphs = glyph_bank(rng, glyphs_per_op)
    candidates = np.arange(len(pool_labels)) if pool_index is None else np.asarray(pool_index, dtype=np.int64)
    # Per-class index arrays as one class-sorted array with class offsets.
    cand_labels = pool_labels[candidates].astype(np.int64)
    order = candidates[np.argsort(cand_labels, kind="stable")]
    counts = np.bincount(cand_labels, minlength=10)[:10]
    starts = np.concatenate([[0], np.cumsum(counts)[:-1]])

    # One gather from a table [pool images | glyph bank | blank]: a single pass over the output.
    n_pool, n_glyph = len(pool_images), glyphs.shape[1]
    source = np.full(ids.shape, n_pool + glyphs.shape[0] * n_glyph, dtype=np.int64)  # blank by default
    index = np.full(ids.shape, -1, dtype=np.int64)
    digit = ids < 10
    cls = ids[digit]
    if cls.size:
        missing = np.setdiff1d(np.unique(cls), np.flatnonzero(counts))
        if missing.size:
            raise ValueError(f"the image pool has no image of digit(s) {missing.tolist()}")
        pick = starts[cls] + (rng.random(cls.size) * counts[cls]).astype(np.int64)
        chosen = order[np.minimum(pick, starts[cls] + counts[cls] - 1)]
        index[digit] = chosen
        source[digit] = chosen
    op = (ids >= 10) & (ids < 13)
    if op.any():
        which = ids[op] - 10
        source[op] = n_pool + which * n_glyph + rng.integers(0, n_glyph, size=which.size)
    table = np.concatenate([pool_images.reshape(n_pool, 28, 28), glyphs.reshape(-1, 28, 28), BLANK[None]])
    out = np.take(table, source, axis=0)
    return (out, index) if return_index else out


# --------------------------------------------------------------------------------------------- pools
def split_pool(images: np.ndarray | None, labels: np.ndarray, fractions: Sequence[float],
               rng: np.random.Generator) -> list[np.ndarray]:
    """Disjoint index arrays (sorted int64) cutting the pool by ``fractions``, stratified by class.

    ``fractions`` are positive and sum to 1; every index lands in exactly one part, and each class is
    cut in the same proportions (per-class rounding). ``images`` is only checked against ``labels``.

    Example::

        >>> parts = split_pool(None, labels, [0.2, 0.8], np.random.default_rng(0))   # doctest: +SKIP
        >>> [len(p) for p in parts]  # doctest: +SKIP
        [2000, 8000]
    """
    labels = np.asarray(labels)
    if images is not None and len(images) != len(labels):
        raise ValueError(f"{len(images)} images but {len(labels)} labels")
    f = np.asarray(fractions, dtype=np.float64)
    if f.ndim != 1 or f.size == 0 or (f < 0).any() or abs(f.sum() - 1.0) > 1e-6:
        raise ValueError(f"fractions {list(fractions)} must be non-negative and sum to 1")
    bounds = np.cumsum(f)
    bounds[-1] = 1.0
    parts: list[list[np.ndarray]] = [[] for _ in f]
    for c in np.unique(labels):
        members = rng.permutation(np.flatnonzero(labels == c))
        cuts = np.round(bounds * len(members)).astype(np.int64)
        for k, piece in enumerate(np.split(members, cuts[:-1])):
            parts[k].append(piece)
    return [np.sort(np.concatenate(p)).astype(np.int64) for p in parts]


def pool_fractions(n_train: int, n_test: int, *, classifier_fraction: float = 0.2,
                   min_fraction: float = 0.1) -> tuple[float, float, float]:
    """(train, test, classifier_eval) fractions of the whole pool; see the module docstring.

    Example::

        >>> pool_fractions(13000, 7000)
        (0.52, 0.28, 0.2)
    """
    if not 0.0 <= classifier_fraction < 1.0:
        raise ValueError(f"classifier_fraction: {classifier_fraction} must be in [0, 1)")
    rest = 1.0 - classifier_fraction
    if not 0.0 <= 2 * min_fraction <= rest:
        raise ValueError(f"min_fraction: {min_fraction} leaves no room in the {rest:.2f} of the pool left")
    total = n_train + n_test
    share = rest * (n_train / total if total else 0.5)
    f_train = float(np.clip(share, min_fraction, rest - min_fraction))
    return round(f_train, 12), round(rest - f_train, 12), classifier_fraction


@dataclass(frozen=True)
class PoolSplit:
    """Disjoint index arrays into the MNIST pool: ``train``, ``test`` and ``classifier_eval``."""

    train: np.ndarray
    test: np.ndarray
    classifier_eval: np.ndarray
    val: np.ndarray = field(default_factory=lambda: np.zeros(0, np.int64))

    @property
    def classifier_train(self) -> np.ndarray:
        """What the digit classifier trains on: every image outside its evaluation set."""
        return np.sort(np.concatenate([self.train, self.val, self.test]))


def split_mnist_pool(labels: np.ndarray, n_train: int, n_test: int, seed: int, *, n_val: int = 0,
                     classifier_fraction: float = 0.2, min_fraction: float = 0.1,
                     min_val_fraction: float = 0.05) -> PoolSplit:
    """Cut the pool for ``n_train`` train(+validation) and ``n_test`` test sequences; with ``n_val`` > 0
    (the validation sequences among the ``n_train``) validation gets its own ``val`` pool.

    The ``classifier_eval`` part depends only on ``seed`` and ``classifier_fraction`` (so the digit
    classifier is the same for every query split); the rest is divided as :func:`pool_fractions` says.

    Example::

        >>> p = split_mnist_pool(labels, 13000, 7000, seed=0)                      # doctest: +SKIP
        >>> len(p.train), len(p.test), len(p.classifier_eval)  # doctest: +SKIP
        (5200, 2800, 2000)
        >>> p = split_mnist_pool(labels, 13000, 7000, seed=0, n_val=1300)          # doctest: +SKIP
        >>> len(p.train), len(p.val), len(p.test), len(p.classifier_eval)  # doctest: +SKIP
        (4681, 519, 2800, 2000)
    """
    f_train, f_test, f_cls = pool_fractions(n_train, n_test, classifier_fraction=classifier_fraction,
                                            min_fraction=min_fraction)
    if not 0 <= n_val < max(n_train, 1):
        raise ValueError(f"n_val: {n_val} validation sequences must be fewer than the {n_train} fitted ones")
    labels = np.asarray(labels)
    seq = np.random.SeedSequence([int(seed), 0x6D6E])
    held_rng, rest_rng = (np.random.default_rng(s) for s in seq.spawn(2))
    held, rest = split_pool(None, labels, [f_cls, 1.0 - f_cls], held_rng)
    if not n_val:
        train_rel, test_rel = split_pool(None, labels[rest], [f_train / (1.0 - f_cls), f_test / (1.0 - f_cls)],
                                         rest_rng)
        return PoolSplit(train=rest[train_rel], test=rest[test_rel], classifier_eval=held)
    f_val = float(np.clip(f_train * n_val / n_train, min_val_fraction, f_train - min_fraction))
    rest_f = 1.0 - f_cls
    train_rel, val_rel, test_rel = split_pool(None, labels[rest], [(f_train - f_val) / rest_f, f_val / rest_f,
                                                                  f_test / rest_f], rest_rng)
    return PoolSplit(train=rest[train_rel], test=rest[test_rel], classifier_eval=held, val=rest[val_rel])


@dataclass
class ImageSplit:
    """Rendered train and test sequences plus the pools they were drawn from.

    ``train`` / ``test``: uint8 (N, L, 28, 28); ``train_index`` / ``test_index``: the MNIST index used at
    each position (-1 for operators and padding); ``pools``: the :class:`PoolSplit`.
    """

    train: np.ndarray
    test: np.ndarray
    train_index: np.ndarray
    test_index: np.ndarray
    pools: PoolSplit
    seed: int
    val: np.ndarray | None = None
    val_index: np.ndarray | None = None

    def describe(self) -> str:
        p = self.pools
        val = f" / val {len(p.val)}" if len(p.val) else ""
        return (f"MNIST pools (seed {self.seed}): train {len(p.train)}{val} / test {len(p.test)} / "
                f"classifier-eval {len(p.classifier_eval)} images")


def build_image_split(train_chars: np.ndarray | Sequence[str], test_chars: np.ndarray | Sequence[str], *,
                      seed: int, images: np.ndarray | None = None, labels: np.ndarray | None = None,
                      mnist_folder: str | None = None, classifier_fraction: float = 0.2,
                      min_fraction: float = 0.1, glyphs_per_op: int = 200,
                      val_chars: np.ndarray | Sequence[str] | None = None) -> ImageSplit:
    """Render train(+validation) and test character sequences from disjoint MNIST pools.

    ``train_chars`` are the training sequences (queries for img2text, answers for text2img), drawn from
    the ``train`` pool, the validation ones among them unless ``val_chars`` gives validation apart: those
    are drawn from their own ``val`` pool. ``test_chars`` come from the ``test`` pool; the
    ``classifier_eval`` pool is never used (see the module docstring for the proportions). Each part gets
    its own glyph bank. ``images``/``labels`` default to :func:`load_mnist`. Deterministic for ``seed``.

    Example::

        >>> s = build_image_split(["9-7  "] * 4, ["22+13"] * 2, seed=0)             # doctest: +SKIP
        >>> s.train.shape, s.test.shape  # doctest: +SKIP
        ((4, 5, 28, 28), (2, 5, 28, 28))
    """
    if images is None or labels is None:
        images, labels = load_mnist(mnist_folder)
    train_ids, test_ids = to_ids(train_chars), to_ids(test_chars)
    val_ids = to_ids(val_chars) if val_chars is not None and len(val_chars) else None
    n_val = 0 if val_ids is None else len(val_ids)
    pools = split_mnist_pool(labels, len(train_ids) + n_val, len(test_ids), seed, n_val=n_val,
                             classifier_fraction=classifier_fraction, min_fraction=min_fraction)
    train_rng, test_rng = (np.random.default_rng(s) for s in np.random.SeedSequence([int(seed), 0x696D]).spawn(2))
    train, train_index = render_sequences(train_ids, images, labels, train_rng, pool_index=pools.train,
                                          glyphs_per_op=glyphs_per_op, return_index=True)
    test, test_index = render_sequences(test_ids, images, labels, test_rng, pool_index=pools.test,
                                        glyphs_per_op=glyphs_per_op, return_index=True)
    val = val_index = None
    if val_ids is not None:
        val_rng = np.random.default_rng(np.random.SeedSequence([int(seed), 0x7661]))
        val, val_index = render_sequences(val_ids, images, labels, val_rng, pool_index=pools.val,
                                          glyphs_per_op=glyphs_per_op, return_index=True)
    return ImageSplit(train=train, test=test, train_index=train_index, test_index=test_index, pools=pools,
                      seed=int(seed), val=val, val_index=val_index)
