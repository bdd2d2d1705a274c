"""A small CNN that reads answer images: digits 0-9, the minus sign and blank padding (12 classes).

It scores the text2img family: generated answer images are read back with :func:`read_digits` and
compared with the true answer ("readable answer" exact match). The classifier is a measuring
instrument, so its own accuracy is reported next to every readable score.

Design (honest and split-independent):

* It trains on every MNIST image outside the held-apart ``classifier_eval`` pool (that is, the train and
  test query pools of :func:`~mathtune.trainables.arith.images.split_mnist_pool`), plus drawn minus glyphs
  and blank/noisy-blank images; and it is evaluated on the ``classifier_eval`` pool, which neither it nor
  any query ever sees. The held-apart pool depends only on the data seed, so the same classifier (one
  cache entry) serves every train/test split of a seed, and the readable metric stays comparable across
  splits. Training it on test-pool images leaks nothing to the models under test: a text2img model
  generates its test answers from text and never sees a test-pool image; the classifier only reads what
  the model generated. (Training it on the train-query pool alone would tie its quality to the split:
  a 10/90 split leaves it 1,000 images.)
* Small shifts, rotations and rescaling augment the training images; with about 8,000 MNIST digits it
  reaches about 99% on the held-apart digits in about a minute on two CPU cores.
* Weights are cached on disk under a content hash of the training images and labels plus every
  hyperparameter (``cache_dir`` argument, else ``$MATHTUNE_CACHE``, else ``~/.cache/mathtune``), written
  atomically and loaded with ``torch.load(weights_only=True)``. Accuracy is recomputed on the given
  evaluation set at every call (about a second), so it always belongs to the data passed in.

Example::

    >>> from mathtune.trainables.arith.images import split_mnist_pool
    >>> from mathtune.trainables.arith.mnist import load_mnist
    >>> images, labels = load_mnist()                                                  # doctest: +SKIP
    >>> model, acc = classifier_for_pools(images, labels, split_mnist_pool(labels, 1, 1, seed=0))  # doctest: +SKIP
    >>> read_digits(model, answer_images)           # (N, 3, 28, 28) floats in [0, 1]  # doctest: +SKIP
    array([[ 3,  5, 11], ...])
"""

from __future__ import annotations

import hashlib
import json
import math
import os
import time
import warnings
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np
import torch
from torch import nn
from torch.nn import functional as F

from ..atomic import atomic_file
from ..cache import CACHE_ENV, default_cache_dir  # noqa: F401  (re-exported: CACHE_ENV, default_cache_dir)
from ..loop import load_state_file
from .images import ALPHABET, draw_glyphs

__all__ = ["NUM_CLASSES", "MINUS_CLASS", "BLANK_CLASS", "CLASS_CHARS", "ClassifierConfig", "DigitCNN",
           "make_blanks", "cache_key", "default_cache_dir", "get_digit_classifier", "classifier_for_pools",
           "read_digits", "classes_to_ids", "classes_to_strings", "accuracy"]

NUM_CLASSES = 12
MINUS_CLASS = 10
BLANK_CLASS = 11
CLASS_CHARS = "0123456789- "  # class k reads as CLASS_CHARS[k]
_CLASS_TO_ID = np.array([ALPHABET.index(c) for c in CLASS_CHARS], dtype=np.int64)
_VERSION = 3  # bump when the architecture or training procedure changes (invalidates the cache)


@dataclass(frozen=True)
class ClassifierConfig:
    """Training hyperparameters (all part of the cache key)."""

    epochs: int = 6
    batch_size: int = 128
    lr: float = 3e-3
    weight_decay: float = 1e-4
    max_shift: float = 2.0  # pixels
    max_rotate: float = 10.0  # degrees
    max_scale: float = 0.1  # relative
    synthetic_per_class: int = 800  # minus glyphs and blanks added to training
    seed: int = 0


class DigitCNN(nn.Module):
    """conv32-pool-conv64-pool-dense128-dropout -> 12 logits (3x3 convs with batch-norm); input (B, 1, 28, 28).

    Small on purpose: about 4 MFLOP-multiply-adds per image, so it trains on two CPU cores in about a minute.
    """

    def __init__(self, num_classes: int = NUM_CLASSES):
        super().__init__()

        def block(cin: int, cout: int) -> list[nn.Module]:
            return [nn.Conv2d(cin, cout, 3, padding=1, bias=False), nn.BatchNorm2d(cout), nn.ReLU(inplace=True)]

        self.features = nn.Sequential(*block(1, 32), nn.MaxPool2d(2), *block(32, 64), nn.MaxPool2d(2))
        self.head = nn.Sequential(nn.Flatten(), nn.Linear(64 * 7 * 7, 128), nn.ReLU(inplace=True),
                                  nn.Dropout(0.3), nn.Linear(128, num_classes))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.head(self.features(x))


def make_blanks(n: int, rng: np.random.Generator) -> np.ndarray:
    """``n`` blank-position images, float32 (n, 28, 28) in [0, 1]: empty, faint noise, or faint smudges.

    Generated answers put near-empty images at padding positions; these teach the "blank" class.
    """
    out = np.zeros((n, 28, 28), dtype=np.float32)
    kind = rng.integers(0, 3, n)
    noisy = kind >= 1
    k = int(noisy.sum())
    out[noisy] = np.abs(rng.normal(0.0, 1.0, (k, 28, 28))) * rng.uniform(0.0, 0.06, (k, 1, 1))
    smudge = np.flatnonzero(kind == 2)
    if smudge.size:
        yy, xx = np.mgrid[0:28, 0:28].astype(np.float32)
        cy, cx = rng.uniform(6, 22, (2, smudge.size, 1, 1)).astype(np.float32)
        sigma = rng.uniform(2.0, 6.0, (smudge.size, 1, 1)).astype(np.float32)
        height = rng.uniform(0.02, 0.15, (smudge.size, 1, 1)).astype(np.float32)
        out[smudge] += height * np.exp(-((yy - cy) ** 2 + (xx - cx) ** 2) / (2 * sigma ** 2))
    return np.clip(out, 0.0, 1.0)


def _as_float(images: np.ndarray | torch.Tensor) -> torch.Tensor:
    x = torch.as_tensor(np.asarray(images) if not isinstance(images, torch.Tensor) else images)
    if x.dtype == torch.uint8:
        return x.float().div_(255.0)
    return x.float()


def _with_synthetic(images: np.ndarray, labels: np.ndarray, n: int, seed: int) -> tuple[torch.Tensor, torch.Tensor]:
    """MNIST digits (float) plus ``n`` minus glyphs and ``n`` blanks, with labels 0..11."""
    x = _as_float(images).reshape(-1, 28, 28)
    y = torch.as_tensor(np.asarray(labels).astype(np.int64))
    if n <= 0:
        return x, y
    rng = np.random.default_rng([seed, 0x636C])
    minus = torch.from_numpy(draw_glyphs("-", n, rng).astype(np.float32) / 255.0)
    blank = torch.from_numpy(make_blanks(n, rng))
    xs = torch.cat([x, minus, blank])
    ys = torch.cat([y, torch.full((n,), MINUS_CLASS), torch.full((n,), BLANK_CLASS)])
    return xs, ys


def _augment(x: torch.Tensor, cfg: ClassifierConfig, gen: torch.Generator) -> torch.Tensor:
    """Random shift/rotation/scale of a batch (B, 1, 28, 28) with one affine grid sample."""
    b = x.shape[0]
    u = torch.rand(b, 4, generator=gen) * 2 - 1
    angle = u[:, 0] * math.radians(cfg.max_rotate)
    scale = 1.0 + u[:, 1] * cfg.max_scale
    shift = u[:, 2:] * (2.0 * cfg.max_shift / 28.0)  # normalised coordinates span 2 over 28 px
    cos, sin = torch.cos(angle) / scale, torch.sin(angle) / scale
    theta = torch.stack([torch.stack([cos, -sin, shift[:, 0]], 1), torch.stack([sin, cos, shift[:, 1]], 1)], 1)
    grid = F.affine_grid(theta, list(x.shape), align_corners=False)
    return F.grid_sample(x, grid, mode="bilinear", padding_mode="zeros", align_corners=False)


def _train_classifier(x: torch.Tensor, y: torch.Tensor, cfg: ClassifierConfig) -> DigitCNN:
    """Train a fresh :class:`DigitCNN` on (x float (N, 28, 28), y (N,)) with augmentation, on CPU.

    Reproducible for ``cfg.seed`` (init and dropout under a forked, seeded global RNG; batch order and
    augmentation from their own generator) and leaves the caller's RNG state untouched.
    """
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(cfg.seed)
        model = DigitCNN()
        gen = torch.Generator().manual_seed(cfg.seed)
        opt = torch.optim.AdamW(model.parameters(), lr=cfg.lr, weight_decay=cfg.weight_decay)
        steps_per_epoch = math.ceil(len(x) / cfg.batch_size)
        sched = torch.optim.lr_scheduler.OneCycleLR(opt, max_lr=cfg.lr, total_steps=cfg.epochs * steps_per_epoch,
                                                    pct_start=0.2)
        x = x.unsqueeze(1)
        model.train()
        for _ in range(cfg.epochs):
            order = torch.randperm(len(x), generator=gen)
            for start in range(0, len(x), cfg.batch_size):
                idx = order[start:start + cfg.batch_size]
                xb = _augment(x[idx], cfg, gen)
                loss = F.cross_entropy(model(xb), y[idx], label_smoothing=0.05)
                opt.zero_grad(set_to_none=True)
                loss.backward()
                opt.step()
                sched.step()
    model.eval()
    return model


def cache_key(train_images: np.ndarray, train_labels: np.ndarray, config: ClassifierConfig) -> str:
    """sha256 (hex, 24 chars) of the training images and labels, the hyperparameters and the version."""
    h = hashlib.sha256()
    h.update(json.dumps({"version": _VERSION, **asdict(config)}, sort_keys=True).encode())
    images = np.ascontiguousarray(train_images)
    labels = np.ascontiguousarray(np.asarray(train_labels).astype(np.int64))
    for arr in (images, labels):
        h.update(f"{arr.dtype.str}{arr.shape}".encode())
        h.update(arr.tobytes())
    return h.hexdigest()[:24]


def _save_atomic(payload: dict, path: Path) -> None:
    with atomic_file(path) as fh:
        torch.save(payload, fh)


@torch.no_grad()
def _predict(model: nn.Module, x: torch.Tensor, batch: int = 2048) -> torch.Tensor:
    was_training = model.training
    model.eval()
    device = next(model.parameters()).device
    out = [model(x[i:i + batch].unsqueeze(1).to(device)).argmax(1).cpu() for i in range(0, len(x), batch)]
    model.train(was_training)
    return torch.cat(out) if out else torch.zeros(0, dtype=torch.long)


def accuracy(model: nn.Module, images: np.ndarray, labels: np.ndarray) -> float:
    """Fraction of ``images`` (N, 28, 28), uint8 or float in [0, 1], classified as ``labels`` (0..11)."""
    x = _as_float(images).reshape(-1, 28, 28)
    y = torch.as_tensor(np.asarray(labels).astype(np.int64))
    return float((_predict(model, x) == y).float().mean()) if len(y) else float("nan")


def get_digit_classifier(train_images: np.ndarray, train_labels: np.ndarray, eval_images: np.ndarray,
                         eval_labels: np.ndarray, cache_dir: str | os.PathLike | None = None, *,
                         config: ClassifierConfig | None = None, verbose: bool = False) -> tuple[DigitCNN, float]:
    """(model, accuracy on the evaluation digits), trained once per training data and config, then cached.

    ``train_images`` (N, 28, 28) uint8 MNIST digits with ``train_labels`` 0..9; the minus and blank classes
    are added from drawn glyphs and synthetic blanks. The returned accuracy is on ``eval_images`` /
    ``eval_labels`` (held-apart MNIST digits). ``model.metrics`` also holds ``eval_minus_blank_accuracy``
    (on fresh synthetic minus/blank images), ``train_seconds`` (of the run that produced the weights),
    ``from_cache`` and ``cache_path``. The model is on CPU in eval mode.

    Example::

        >>> model, acc = get_digit_classifier(x_tr, y_tr, x_ev, y_ev)   # doctest: +SKIP
        >>> acc >= 0.98  # doctest: +SKIP
        True
    """
    cfg = config or ClassifierConfig()
    train_images = np.asarray(train_images)
    train_labels = np.asarray(train_labels)
    if train_images.shape[1:] != (28, 28) or len(train_images) != len(train_labels):
        raise ValueError(f"train images {train_images.shape} and labels {train_labels.shape} do not match")
    path = default_cache_dir(cache_dir) / "digit_classifier" / f"{cache_key(train_images, train_labels, cfg)}.pt"
    model: DigitCNN | None = None
    meta: dict = {}
    if path.is_file():
        try:
            payload = load_state_file(path)
            model = DigitCNN()
            model.load_state_dict(payload["state_dict"])
            meta = dict(payload.get("meta", {}))
            from_cache = True
        except Exception as exc:  # a corrupt or incompatible cache entry: retrain and overwrite it
            warnings.warn(f"{path}: unreadable classifier cache ({exc}); retraining", stacklevel=2)
            model = None
    if model is None:
        x, y = _with_synthetic(train_images, train_labels, cfg.synthetic_per_class, cfg.seed)
        start, cpu = time.perf_counter(), time.process_time()
        model = _train_classifier(x, y, cfg)
        meta = {"train_seconds": time.perf_counter() - start, "train_cpu_seconds": time.process_time() - cpu,
                "n_train": int(len(y)), "version": _VERSION,
                "config": json.dumps(asdict(cfg), sort_keys=True), "torch_threads": torch.get_num_threads()}
        _save_atomic({"state_dict": {k: v.detach().cpu() for k, v in model.state_dict().items()}, "meta": meta},
                     path)
        from_cache = False
    model.eval()
    acc = accuracy(model, eval_images, eval_labels)
    extra_x, extra_y = _with_synthetic(np.zeros((0, 28, 28), np.uint8), np.zeros(0, np.int64), 200, cfg.seed + 1)
    extra_acc = float((_predict(model, extra_x) == extra_y).float().mean())
    model.metrics = {"eval_accuracy": acc, "eval_minus_blank_accuracy": extra_acc, "n_eval": int(len(eval_labels)),
                     "from_cache": from_cache, "cache_path": str(path), **meta}
    if verbose:
        print(f"digit classifier: {acc:.4f} on {len(eval_labels)} held-apart digits, minus/blank {extra_acc:.4f}"
              f" ({'loaded from cache; ' if from_cache else ''}trained in {meta.get('train_seconds', 0):.1f}s; {path})")
    return model, acc


def classifier_for_pools(images: np.ndarray, labels: np.ndarray, pools, cache_dir: str | os.PathLike | None = None,
                         *, config: ClassifierConfig | None = None, verbose: bool = False) -> tuple[DigitCNN, float]:
    """:func:`get_digit_classifier` on ``pools.classifier_train``, evaluated on ``pools.classifier_eval``.

    ``pools`` is a :class:`~mathtune.trainables.arith.images.PoolSplit`.
    """
    tr, ev = pools.classifier_train, pools.classifier_eval
    return get_digit_classifier(images[tr], labels[tr], images[ev], labels[ev], cache_dir, config=config,
                                verbose=verbose)


def read_digits(model: nn.Module, images: np.ndarray | torch.Tensor) -> np.ndarray:
    """Classes (N, L) int64 for image sequences (N, L, 28, 28), floats in [0, 1] or uint8.

    0..9 are digits, :data:`MINUS_CLASS` (10) the minus sign, :data:`BLANK_CLASS` (11) blank padding.

    Example::

        >>> classes_to_strings(read_digits(model, generated))   # doctest: +SKIP
        ['35 ', '-98']
    """
    x = _as_float(images)
    if x.dim() != 4 or tuple(x.shape[2:]) != (28, 28):
        raise ValueError(f"expected images of shape (N, L, 28, 28), got {tuple(x.shape)}")
    n, length = x.shape[:2]
    return _predict(model, x.reshape(n * length, 28, 28)).reshape(n, length).numpy()


def classes_to_ids(classes: np.ndarray) -> np.ndarray:
    """Classifier classes (0..11) -> ids of the query/answer alphabet (minus -> '-', blank -> ' ')."""
    return _CLASS_TO_ID[np.asarray(classes)]


def classes_to_strings(classes: np.ndarray) -> list[str]:
    """Classifier classes (N, L) -> answer strings, padding kept (e.g. ``'35 '``)."""
    table = np.array(list(CLASS_CHARS))
    return ["".join(row) for row in table[np.asarray(classes)]]
