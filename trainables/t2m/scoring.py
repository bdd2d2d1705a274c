"""Exact match and execution accuracy, as the course checker computes them (spec section 5).

One deliberate deviation: the checker counts a NaN relative error as correct; here a NaN result (and
any non-finite relative error) is wrong. Say so wherever these scores are compared with the checker's.

Example::

    >>> r = score_items([{"Problem": "4 questions , 5 choices", "answer": 625,
    ...                   "linear_formula": "power(n1,n0)|", "predicted": "power(n1,n0)"}])
    >>> r.exact_match, r.execution_accuracy, r.items[0]["predicted_answer"]
    (100.0, 100.0, 625.0)
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Any, Iterable, Mapping, Sequence

from .executor import Value, execute

__all__ = [
    "REL_TOLERANCE",
    "ScoreResult",
    "normalise",
    "exact_match",
    "answer_matches",
    "execution_correct",
    "score_items",
]

REL_TOLERANCE = 0.02
"""Relative tolerance of the execution check (bound included)."""


def normalise(program: str) -> str:
    """Drop one trailing ``|`` (and nothing else).

    Example::

        >>> normalise("add(n0,n1)||")
        'add(n0,n1)|'
    """
    return program[:-1] if program.endswith("|") else program


def exact_match(pred: str, gold: str) -> bool:
    """True when the normalised strings are identical; an empty prediction never matches.

    Example::

        >>> exact_match("add(n0,n1)", "add(n0,n1)|"), exact_match("add(n0, n1)", "add(n0,n1)")
        (True, False)
    """
    if not pred:
        return False
    return normalise(pred) == normalise(gold)


def answer_matches(value: Value | None, answer: float) -> bool:
    """True when ``value`` is a real number within 2% (inclusive) of ``answer``.

    ``None``, complex values, NaN and overflowing comparisons are wrong; so is anything when
    ``answer`` is 0 (as in the checker).

    Example::

        >>> answer_matches(102, 100), answer_matches(102.01, 100), answer_matches(2j, 2)
        (True, False, False)
    """
    if value is None or isinstance(value, complex) or isinstance(value, bool):
        return False
    try:
        rel = abs((value - answer) / answer)
    except (ZeroDivisionError, OverflowError, TypeError, ValueError):
        return False
    return not math.isnan(rel) and rel <= REL_TOLERANCE


def execution_correct(pred: str, problem: str, answer: float) -> bool:
    """Execute ``pred`` (raw, not normalised) on ``problem`` and compare with ``answer``.

    Example::

        >>> execution_correct("multiply(n0,const_0_2778)", "100", 27.78)
        True
    """
    if not pred:
        return False
    return answer_matches(execute(pred, problem), answer)


@dataclass(frozen=True)
class ScoreResult:
    """Scores of a list of items, in percent, plus one dict per item.

    Each item dict has ``predicted_answer`` (the executed value when it is within tolerance,
    else ``None``, like the reference scorer's field), ``em``, ``exec_correct`` and ``executes`` (the
    program ran to a value, right or wrong); ``unexecutable`` counts the items whose program did not.
    """

    n: int
    exact_match: float
    execution_accuracy: float
    items: list[dict[str, Any]] = field(default_factory=list)
    unexecutable: int = 0


def _score_one(item: Mapping[str, Any]) -> dict[str, Any]:
    if not isinstance(item, Mapping):
        item = {}
    pred = item.get("predicted") or ""
    if not isinstance(pred, str):
        pred = ""
    gold = item.get("linear_formula", "")
    em = bool(pred) and isinstance(gold, str) and exact_match(pred, gold)
    value = execute(pred, item.get("Problem", "")) if pred else None
    ok = answer_matches(value, item.get("answer"))  # type: ignore[arg-type]
    return {"predicted_answer": value if ok else None, "em": em, "exec_correct": ok, "executes": value is not None}


def score_items(items: Iterable[Mapping[str, Any]]) -> ScoreResult:
    """Score items with keys ``Problem``, ``answer``, ``linear_formula`` and ``predicted``.

    Never raises on a malformed item: whatever cannot be scored counts as wrong. With no items,
    both percentages are 0.0.

    Example::

        >>> score_items([{"Problem": "2 3", "answer": 5, "linear_formula": "add(n0,n1)|",
        ...               "predicted": ""}]).execution_accuracy
        0.0
    """
    rows: Sequence[dict[str, Any]] = [_score_one(it) for it in items]
    n = len(rows)
    if n == 0:
        return ScoreResult(0, 0.0, 0.0, [])
    em = sum(r["em"] for r in rows) / n * 100
    ex = sum(r["exec_correct"] for r in rows) / n * 100
    return ScoreResult(n, em, ex, list(rows), sum(not r["executes"] for r in rows))
