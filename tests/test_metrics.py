"""The one rule for "best": by mode, NaN and None never win, the first on ties."""

import math

import numpy as np
import pytest

from mathtune.trainables.metrics import best_of, is_better, rank, sign

NAN = float("nan")


@pytest.mark.parametrize("mode, values, index", [
    ("max", [0.5, 0.9, 0.9, 0.1], 1),
    ("min", [0.5, 0.1, 0.9, 0.1], 1),
    ("max", [NAN, 0.2, None, 0.2], 1),
    ("min", [None, NAN], None),
])
def test_best_of_is_the_first_best_and_skips_missing_values(mode, values, index):
    rows = [{"epoch": i + 1, "v": v} for i, v in enumerate(values)]
    best = best_of(rows, mode, key=lambda r: r["v"])
    assert best is (None if index is None else rows[index])
    assert best_of([], mode) is None


def test_rank_puts_the_best_first_keeps_ties_in_order_and_missing_values_last():
    rows = [("a", 0.2), ("b", NAN), ("c", 0.7), ("d", 0.2), ("e", None), ("f", 0.7)]
    assert [n for n, _ in rank(rows, "max", key=lambda r: r[1])] == ["c", "f", "a", "d", "b", "e"]
    assert [n for n, _ in rank(rows, "min", key=lambda r: r[1])] == ["a", "d", "c", "f", "b", "e"]
    assert rank(rows, "max", key=lambda r: r[1])[0] is best_of(rows, "max", key=lambda r: r[1])


def test_is_better_and_sign_agree_with_best_of():
    assert is_better(0.3, None, "max") and is_better(0.3, NAN, "min") and not is_better(NAN, 0.3, "max")
    assert not is_better(0.3, 0.3, "max") and is_better(0.2, 0.3, "min")
    values = np.array([0.3, 0.1, 0.5, 0.4])
    for mode in ("max", "min"):
        running = sign(mode) * np.maximum.accumulate(sign(mode) * values)
        assert running.tolist() == [best_of(values[:i + 1].tolist(), mode) for i in range(len(values))]
    assert math.copysign(1, sign("min")) == -1
