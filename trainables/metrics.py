"""The rules every part of mathtune applies to metrics, in one place.

* Selection reads ``val_*`` metrics; each has a ``test_*`` counterpart measured at the same epoch and only
  reported (:func:`test_metric_for`).
* "Better" depends on the metric's mode, ``"max"`` or ``"min"`` (:func:`is_better`); NaN and None are never
  better, and any value beats no value yet.
* The best of several (epochs of a run, trials of a study, kept checkpoints, decode settings, shipped files)
  is the first one in the order given on ties (:func:`best_of`, :func:`rank`): callers give epochs earliest
  first, so the earliest epoch that reached the best value is the one selected, and trials in the order the
  experiment folder lists them. The report's tables rank trials tied on the metric by two more validation
  figures first (lower loss, then the earlier best epoch: ``mathtune.analysis.tables._sort_best``).

Example::

    >>> best_of([{"epoch": 1, "v": 0.5}, {"epoch": 2, "v": 0.9}, {"epoch": 3, "v": 0.9}], "max", key=lambda r: r["v"])
    {'epoch': 2, 'v': 0.9}
    >>> rank([0.2, float("nan"), 0.1, 0.2], "min")
    [0.1, 0.2, 0.2, nan]
"""

from __future__ import annotations

import math
from typing import Any, Callable, Iterable, TypeVar

__all__ = ["MODES", "test_metric_for", "is_better", "best_of", "rank", "sign"]

T = TypeVar("T")
MODES = ("max", "min")


def test_metric_for(metric: str) -> str:
    """The test counterpart of a validation metric (``val_exec_acc`` -> ``test_exec_acc``)."""
    return "test_" + metric[4:] if metric.startswith("val_") else metric


def _missing(value: Any) -> bool:
    return value is None or (isinstance(value, float) and math.isnan(value))


def is_better(value: float | None, best: float | None, mode: str) -> bool:
    """Whether ``value`` beats ``best`` for a metric of this ``mode`` ("max" or "min"); a tie does not."""
    if _missing(value):
        return False
    if _missing(best):
        return True
    return value > best if mode == "max" else value < best


def best_of(items: Iterable[T], mode: str, key: Callable[[T], Any] = lambda v: v) -> T | None:
    """The item whose ``key`` is best for ``mode``, the first one on ties; items whose key is None or NaN
    never win; None when no item has a value."""
    chosen, best = None, None
    for item in items:
        value = key(item)
        if is_better(value, best, mode):
            chosen, best = item, value
    return chosen


def rank(items: Iterable[T], mode: str, key: Callable[[T], Any] = lambda v: v) -> list[T]:
    """``items`` best first for ``mode``; ties keep their order (so ``rank(...)[0]`` is :func:`best_of`'s
    item) and items without a value (None, NaN) come last, in their order."""
    items = list(items)
    scored = [(key(item), i) for i, item in enumerate(items)]
    valued = sorted(((v, i) for v, i in scored if not _missing(v)), key=lambda vi: vi[0], reverse=mode == "max")
    return [items[i] for _, i in valued] + [items[i] for v, i in scored if _missing(v)]


def sign(mode: str) -> float:
    """+1 for "max", -1 for "min": ``sign(mode) * value`` is larger when better (for array code: running bests,
    dominance)."""
    return 1.0 if mode == "max" else -1.0
