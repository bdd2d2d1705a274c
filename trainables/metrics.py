"""The two rules every part of mathtune applies to metrics, in one place.

* Selection reads ``val_*`` metrics; each has a ``test_*`` counterpart measured at the same epoch and only
  reported (:func:`test_metric_for`).
* "Better" depends on the metric's mode (:func:`is_better`); NaN is never better, and anything beats no
  value yet.
"""

from __future__ import annotations

import math

__all__ = ["test_metric_for", "is_better"]


def test_metric_for(metric: str) -> str:
    """The test counterpart of a validation metric (``val_exec_acc`` -> ``test_exec_acc``)."""
    return "test_" + metric[4:] if metric.startswith("val_") else metric


def is_better(value: float, best: float | None, mode: str) -> bool:
    """Whether ``value`` beats ``best`` for a metric of this ``mode`` ("max" or "min")."""
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return False
    if best is None or (isinstance(best, float) and math.isnan(best)):
        return True
    return value > best if mode == "max" else value < best
