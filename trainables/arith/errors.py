"""Arithmetic error analysis: what the wrong answers of a model look like.

From test queries ("22+13"), true answers ("35") and predicted answers: the distribution of
|predicted - true| on a log scale, error rates with and without a carry (borrow for ``-``), the error
rate per answer character position, and the most frequent character confusions. The arith families show it
in ``mathtune report`` (:mod:`.views`).

Example::

    e = arith_errors(["22+13", "9+9"], ["35", "18"], ["35", "17"])
    e.exact_match, e.abs_errors.tolist(), e.confusions.most_common(1)
    # (0.5, [1], [(('8', '7'), 1)])
"""

from __future__ import annotations

import math
import re
from collections import Counter
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Sequence

import numpy as np
import pandas as pd

from ..reportviews import PALETTE, ReportTable

if TYPE_CHECKING:
    from matplotlib.figure import Figure

__all__ = ["ArithErrors", "arith_errors", "has_carry", "errors_figure", "errors_tables"]

QUERY = re.compile(r"^\s*(-?\d+)\s*([+\-*])\s*(-?\d+)\s*$")
SHOW_PAD = "␣"


def has_carry(a: int, op: str, b: int) -> bool:
    """Carry in the units column for ``+`` (7+5), a borrow for ``-`` (12-5), a carried digit for ``*`` (7*5)."""
    ua, ub = abs(a) % 10, abs(b) % 10
    if op == "+":
        return ua + ub >= 10
    if op == "-":
        return ua < ub
    return ua * ub >= 10


@dataclass
class ArithErrors:
    n: int
    exact_match: float
    unreadable: int  # predictions that are not an integer at all
    abs_errors: np.ndarray  # |predicted - true| of the readable wrong answers
    carry: pd.DataFrame  # op, carry, n, wrong, error rate
    positions: list[float]  # character error rate per answer position (left to right, padding included)
    confusions: Counter = field(default_factory=Counter)  # (true char, predicted char) -> count
    wrong_examples: list[tuple[str, str, str]] = field(default_factory=list)  # (query, true, predicted)


def _int(text: str) -> int | None:
    try:
        return int(text.strip())
    except ValueError:
        return None


def arith_errors(queries: Sequence[str], answers: Sequence[str], predictions: Sequence[str], *,
                 width: int | None = None, examples: int = 12) -> ArithErrors:
    """Error analysis of ``predictions`` against ``answers`` for arithmetic ``queries``."""
    if not (len(queries) == len(answers) == len(predictions)):
        raise ValueError(f"lengths differ: {len(queries)} queries, {len(answers)} answers, "
                         f"{len(predictions)} predictions")
    answers = [str(a).strip() for a in answers]
    predictions = [str(p).strip() for p in predictions]
    width = width or max([len(a) for a in answers] + [len(p) for p in predictions] + [1])
    n = len(answers)
    correct = [p == a for p, a in zip(predictions, answers)]
    abs_errors, unreadable = [], 0
    carry_rows: dict[tuple[str, bool], list[int]] = {}
    pos_wrong = np.zeros(width)
    confusions: Counter = Counter()
    wrong = []
    for q, a, p, ok in zip(queries, answers, predictions, correct):
        m = QUERY.match(q)
        if m:
            key = (m.group(2), has_carry(int(m.group(1)), m.group(2), int(m.group(3))))
            carry_rows.setdefault(key, [0, 0])
            carry_rows[key][0] += 1
            carry_rows[key][1] += 0 if ok else 1
        if ok:
            continue
        wrong.append((q, a, p))
        value = _int(p)
        if value is None:
            unreadable += 1
        else:
            abs_errors.append(abs(value - int(a)))
        pa, pp = a.ljust(width), p.ljust(width)[:width]
        for i, (ca, cp) in enumerate(zip(pa, pp)):
            if ca != cp:
                pos_wrong[i] += 1
                confusions[(ca, cp)] += 1
    carry = pd.DataFrame([{"op": op, "carry": _carry_name(op, c), "n": v[0], "wrong": v[1], "error rate": v[1] / v[0]}
                          for (op, c), v in sorted(carry_rows.items())],
                         columns=["op", "carry", "n", "wrong", "error rate"])
    if len(wrong) > examples:  # a spread of examples, not the first queries in data order
        pick = np.sort(np.random.default_rng(0).choice(len(wrong), examples, replace=False))
        wrong = [wrong[i] for i in pick]
    return ArithErrors(n=n, exact_match=sum(correct) / n if n else math.nan, unreadable=unreadable,
                       abs_errors=np.array(abs_errors, dtype=float), carry=carry,
                       positions=list(pos_wrong / max(1, n)), confusions=confusions, wrong_examples=wrong)


def _carry_name(op: str, carry: bool) -> str:
    word = "borrow" if op == "-" else "carry"
    return word if carry else f"no {word}"


def _show(ch: str) -> str:
    return SHOW_PAD if ch == " " else ch


def errors_figure(e: ArithErrors, title: str) -> Figure:
    """Four panels: |error| histogram (log x), carry vs no carry, per-position errors, top confusions."""
    from matplotlib.figure import Figure  # plotting only: trials import this module, and never draw

    fig = Figure(figsize=(12, 7.5), layout="constrained")
    (a1, a2), (a3, a4) = fig.subplots(2, 2)
    # 1. |predicted - true| on a log scale
    if len(e.abs_errors):
        top = max(10.0, float(e.abs_errors.max()) * 1.5)
        bins = np.unique(np.round(np.logspace(0, math.log10(top), 16)))
        a1.hist(e.abs_errors, bins=bins, color=PALETTE[0], edgecolor="white")
        a1.set_xscale("log")
    else:
        a1.text(0.5, 0.5, "no readable wrong answers", ha="center", va="center", transform=a1.transAxes)
    a1.set_xlabel("|predicted - true| (log scale)")
    a1.set_ylabel("wrong answers")
    a1.set_title(f"{len(e.abs_errors)} readable wrong, {e.unreadable} unreadable, "
                 f"{100 * e.exact_match:.1f}% exact of {e.n}", fontsize=9)
    # 2. carries
    if len(e.carry):
        labels = [f"{op} {c}" for op, c in zip(e.carry["op"], e.carry["carry"])]
        a2.bar(labels, e.carry["error rate"],
               color=[PALETTE[2] if c.startswith("no ") else PALETTE[1] for c in e.carry["carry"]])
        for i, (rate, wrong, n) in enumerate(zip(e.carry["error rate"], e.carry["wrong"], e.carry["n"])):
            a2.text(i, rate, f"{wrong}/{n}", ha="center", va="bottom", fontsize=8)
    a2.set_ylabel("answer error rate")
    a2.set_title("errors with and without a carry in the units column", fontsize=9)
    a2.yaxis.set_major_formatter(lambda v, _: f"{100 * v:.0f}%")
    # 3. per-position character errors
    pos = list(range(1, len(e.positions) + 1))
    a3.bar([str(p) for p in pos], e.positions, color=PALETTE[3])
    a3.set_xlabel("answer character position (left to right, padding included)")
    a3.set_ylabel("character error rate")
    a3.yaxis.set_major_formatter(lambda v, _: f"{100 * v:.0f}%")
    a3.set_title("where in the answer the wrong characters are", fontsize=9)
    # 4. most frequent confusions
    common = e.confusions.most_common(10)[::-1]
    if common:
        a4.barh([f"{_show(t)} -> {_show(p)}" for (t, p), _ in common], [c for _, c in common], color=PALETTE[4])
    else:
        a4.text(0.5, 0.5, "no confusions", ha="center", va="center", transform=a4.transAxes)
    a4.set_xlabel("count")
    a4.set_title(f"most frequent confusions (true -> predicted; {SHOW_PAD} = padding)", fontsize=9)
    fig.suptitle(title, fontsize=11)
    return fig


def errors_tables(e: ArithErrors, name: str, title: str) -> list[ReportTable]:
    """The confusions and a few wrong answers as tables."""
    conf = pd.DataFrame([{"true": _show(t), "predicted": _show(p), "count": c,
                          "share of wrong characters": c / max(1, sum(e.confusions.values()))}
                         for (t, p), c in e.confusions.most_common(10)],
                        columns=["true", "predicted", "count", "share of wrong characters"])
    carry = e.carry.copy()
    ex = pd.DataFrame([(q, a, p or "(empty)") for q, a, p in e.wrong_examples], columns=["query", "true", "predicted"])
    return [ReportTable(f"{name}-confusions", f"{title}: most frequent character confusions", conf,
                        percent={"share of wrong characters"}),
            ReportTable(f"{name}-carry", f"{title}: error rate with and without a carry", carry,
                        percent={"error rate"}),
            ReportTable(f"{name}-wrong", f"{title}: some wrong answers", ex)]
