"""Datasets of the arithmetic image families: the text queries of :mod:`.data`, rendered as MNIST images.

:func:`build_image_arith` takes the same deterministic query split as arith-text2text
(:func:`~mathtune.trainables.arith.data.build_arith`: train, a validation slice carved from the training
portion, test = the rest) and renders one side of each query as 28x28 images:

* ``render="queries"`` (arith-img2text): the query characters ("22+13") -> (N, 5, 28, 28);
* ``render="answers"`` (arith-text2img): the answer characters ("35 ") -> (N, answer_len, 28, 28).

Training queries take their digit images from the ``train`` MNIST pool, validation queries from their own
``val`` pool (``val_pool=True``, the default; with ``False`` from the ``train`` pool, as before 2026-12-02),
test queries from the ``test`` pool, and a last pool is held apart for the digit classifier
(:func:`~mathtune.trainables.arith.images.build_image_split`). So neither a validation nor a test query
reuses an image a model was trained on, and selection on validation sees reading errors on new
handwriting as test does.

The result keeps only the queries in use (all of them unless ``limit`` is set), re-indexed: rows
``0 .. n_train-1`` are training, then validation, then test; ``source_index`` maps each row back to the
full query list. Images are uint8 (78 MB for all 20,000 ``+-`` queries as images), so the dataset is
cheap to share through Ray's object store.

Example::

    >>> ds = build_image_arith("+-", 0.65, seed=0, render="queries")          # doctest: +SKIP
    >>> ds.images.shape, ds.images.dtype, len(ds.train_index)                 # doctest: +SKIP
    ((20000, 5, 28, 28), dtype('uint8'), 11700)
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from .data import ArithData, build_arith
from .images import PoolSplit, build_image_split
from .mnist import MnistError, find_mnist_folder, load_mnist

__all__ = ["ImageArithData", "build_image_arith", "RENDER_SIDES"]

RENDER_SIDES = ("queries", "answers")


@dataclass
class ImageArithData(ArithData):
    """:class:`ArithData` (re-indexed to the rows in use) plus the rendered images and their MNIST pools.

    ``images``: uint8 (N, L, 28, 28), row ``i`` renders ``x[i]`` (queries) or ``y[i]`` (answers);
    ``image_index``: (N, L) MNIST index at each position, -1 for operators and padding;
    ``pools``: the disjoint MNIST pools (train / test / classifier_eval);
    ``source_index``: each row's index in the full query list of ``ops``;
    ``mnist_folder``: where MNIST was read; ``build_seconds``: wall time of rendering (MNIST read excluded);
    ``classifier``: for text2img, the digit classifier's weights (numpy) and metrics.
    """

    render: str = "queries"
    images: np.ndarray = field(default_factory=lambda: np.zeros((0, 0, 28, 28), np.uint8))
    image_index: np.ndarray = field(default_factory=lambda: np.zeros((0, 0), np.int64))
    pools: PoolSplit | None = None
    source_index: np.ndarray = field(default_factory=lambda: np.zeros(0, np.int64))
    mnist_folder: str = ""
    build_seconds: float = 0.0
    classifier: dict[str, Any] | None = None

    def describe(self) -> str:
        p = self.pools
        val = f" / val {len(p.val)}" if p is not None and len(p.val) else ""
        pools = (f"; MNIST t10k from {self.mnist_folder}, disjoint pools: train {len(p.train)}{val} / test "
                 f"{len(p.test)} / classifier-eval {len(p.classifier_eval)} images") if p is not None else ""
        clf = ""
        if self.classifier:
            m = self.classifier["metrics"]
            clf = (f"; digit classifier {m['eval_accuracy']:.4f} on {m['n_eval']} held-apart digits"
                   f"{' (cached)' if m.get('from_cache') else ''}")
        return super().describe() + f"; {self.render} as images{pools}{clf}"


def build_image_arith(ops: str, split: float, seed: int = 0, val_fraction: float = 0.1, *, limit: int = 0,
                      render: str = "queries", mnist_dir: str | None = None,
                      mnist: tuple[np.ndarray, np.ndarray] | None = None, mnist_source: str = "",
                      val_pool: bool = True, reverse: str = "none") -> ImageArithData:
    """The split of :func:`build_arith` with ``render`` ("queries" or "answers") drawn as MNIST images.

    ``mnist_dir`` ("" or None: the resolution rule of :func:`~mathtune.trainables.arith.mnist.find_mnist_folder`)
    or an already loaded ``mnist`` = (images, labels) read from ``mnist_source`` (a folder, named in
    descriptions and errors). Deterministic for ``seed`` (= the data seed: the
    query split, the pools and the choice of each image). ``val_pool``: validation queries draw from their own
    image pool (see the module docstring). ``reverse``: which character sequences are stored (and rendered)
    reversed, as in :func:`~mathtune.trainables.arith.data.build_arith`.
    """
    if render not in RENDER_SIDES:
        raise ValueError(f"render: {render!r} is not one of {', '.join(RENDER_SIDES)}")
    base = build_arith(ops, split, seed, val_fraction, limit=limit, reverse=reverse)
    folder = mnist_source if mnist is not None else ""
    if mnist is None:
        folder_path = find_mnist_folder(mnist_dir or None)
        mnist = load_mnist(folder_path)
        folder = str(folder_path)
    images, labels = mnist
    t0 = time.perf_counter()
    tr, va, te = base.train_index, base.val_index, base.test_index
    rows = np.concatenate([tr, va, te])
    chars = base.x if render == "queries" else base.y
    apart = val_pool and len(va) > 0
    try:
        split_images = build_image_split(chars[tr] if apart else chars[np.concatenate([tr, va])], chars[te],
                                         val_chars=chars[va] if apart else None, seed=seed, images=images,
                                         labels=labels)
    except ValueError as exc:  # e.g. a pool too small to hold every digit in every part
        raise MnistError(f"{folder or 'MNIST arrays'}: {exc} (expected the 10,000-image t10k set)") from None
    parts = [(split_images.train, split_images.train_index), (split_images.val, split_images.val_index),
             (split_images.test, split_images.test_index)]  # val is None without a pool of its own
    rendered = np.concatenate([images_ for images_, _ in parts if images_ is not None])
    index = np.concatenate([index_ for images_, index_ in parts if images_ is not None])
    build_seconds = time.perf_counter() - t0
    n_tr, n_va = len(tr), len(va)
    return ImageArithData(
        ops=ops, split=split, seed=seed, val_fraction=val_fraction,
        queries=[base.queries[i] for i in rows], answers=[base.answers[i] for i in rows],
        x=base.x[rows], y=base.y[rows],
        train_index=np.arange(n_tr), val_index=np.arange(n_tr, n_tr + n_va),
        test_index=np.arange(n_tr + n_va, len(rows)), reverse=base.reverse,
        render=render, images=rendered, image_index=index, pools=split_images.pools, source_index=rows,
        mnist_folder=folder or "(given arrays)", build_seconds=build_seconds)

