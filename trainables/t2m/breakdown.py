"""Where a text-to-program model is right: scores by beam width and by program length (``mathtune report``).

:func:`accuracy_breakdown` decodes a part once with nested beams (every width in one pass) and scores it per
width and, at the narrowest and the widest width, per number of operations in the gold program (the
``|``-separated steps of its linear formula; long programs are grouped as "8+"). :func:`breakdown_figure`
draws both as one figure.

Example::

    rows = accuracy_breakdown(model, data.parts["val"], config=cfg, device=torch.device("cpu"))
    rows["by_width"][10]["exec_acc"], rows["by_ops"][1]["3"]["n"]
"""

from __future__ import annotations

from typing import Any, Sequence

import torch

from ..config import FamilyConfig
from .dataset import Part
from .decoding import decode_part
from .scoring import score_items

__all__ = ["LONG", "program_ops", "ops_bucket", "accuracy_breakdown", "breakdown_figure", "grouped_scores",
           "format_groups"]

LONG = 8  # programs with this many operations or more share one bucket


def program_ops(program: str) -> int:
    """Number of operations of a linear formula (``add(n0,n1)|multiply(#0,n2)|`` -> 2)."""
    return sum(1 for step in str(program).split("|") if step.strip())


def ops_bucket(n: int) -> str:
    return f"{LONG}+" if n >= LONG else str(n)


def _bucket_order(key: str) -> int:
    return int(key.rstrip("+"))


def accuracy_breakdown(model, part: Part, *, config: FamilyConfig, device: torch.device,
                       widths: Sequence[int] = (1, 5, 10)) -> dict[str, Any]:
    """``{"by_width": {w: {exec_acc, exact_match, n}}, "by_ops": {w: {bucket: {exec_acc, exact_match, n}}}}``
    in percent, for ``part``'s problems; ``by_ops`` holds the narrowest and the widest width."""
    widths = sorted(set(int(w) for w in widths))
    preds, _ = decode_part(model, part, widths=widths, config=config, device=device, with_loss=False)
    by_width: dict[int, dict[str, float]] = {}
    by_ops: dict[int, dict[str, dict[str, float]]] = {}
    buckets = [ops_bucket(program_ops(ex.program)) for ex in part.examples]
    for w in widths:
        result = score_items([ex.to_item(p) for ex, p in zip(part.examples, preds[w])])
        by_width[w] = {"exec_acc": result.execution_accuracy, "exact_match": result.exact_match, "n": result.n}
        if w not in (widths[0], widths[-1]):
            continue
        groups: dict[str, list[dict[str, Any]]] = {}
        for bucket, row in zip(buckets, result.items):
            groups.setdefault(bucket, []).append(row)
        by_ops[w] = {b: {"exec_acc": 100 * sum(r["exec_correct"] for r in rows) / len(rows),
                         "exact_match": 100 * sum(r["em"] for r in rows) / len(rows), "n": len(rows)}
                     for b, rows in sorted(groups.items(), key=lambda kv: _bucket_order(kv[0]))}
    return {"by_width": by_width, "by_ops": by_ops}


def breakdown_figure(rows: dict[str, Any], *, title: str = ""):
    """Two panels: execution accuracy and exact match against beam width; execution accuracy by the gold
    program's number of operations (bars at the narrowest and widest width, problem counts on top)."""
    import matplotlib

    matplotlib.use("Agg")
    from matplotlib.figure import Figure

    fig = Figure(figsize=(10, 3.6))
    a, b = fig.subplots(1, 2, gridspec_kw={"width_ratios": [1, 2]})
    widths = sorted(rows["by_width"])
    a.plot(widths, [rows["by_width"][w]["exec_acc"] for w in widths], "o-", label="execution accuracy")
    a.plot(widths, [rows["by_width"][w]["exact_match"] for w in widths], "s--", label="exact match")
    a.set_xlabel("beam width")
    a.set_ylabel("percent of problems")
    a.set_xticks(widths)
    a.legend(fontsize=8)
    a.grid(alpha=0.3)
    shown = sorted(rows["by_ops"])
    buckets = list(rows["by_ops"][shown[0]])
    step = 0.8 / len(shown)
    for i, w in enumerate(shown):
        xs = [j + (i - (len(shown) - 1) / 2) * step for j in range(len(buckets))]
        b.bar(xs, [rows["by_ops"][w][k]["exec_acc"] for k in buckets], width=step, label=f"beam {w}")
    for j, k in enumerate(buckets):
        b.text(j, 101, f"n={rows['by_ops'][shown[0]][k]['n']}", ha="center", va="bottom", fontsize=7)
    b.set_xticks(range(len(buckets)), buckets)
    b.set_xlabel("operations in the gold program")
    b.set_ylabel("execution accuracy, percent")
    b.set_ylim(0, 110)
    b.legend(fontsize=8, loc="lower left")
    if title:
        fig.suptitle(title, fontsize=10)
    fig.tight_layout()
    return fig


def grouped_scores(items: Sequence[dict[str, Any]], rows: Sequence[dict[str, Any]]) -> dict[str, dict[str, dict]]:
    """Scored problems (``items`` with their gold ``linear_formula``, ``rows`` from
    :func:`~.scoring.score_items`) grouped by the number of operations of the gold program (``by_ops``) and,
    when the file has one (the original MathQA files), by ``category`` (``by_category``): per group the
    problems, exact match and execution accuracy in percent."""
    groups: dict[str, dict[str, list[dict[str, Any]]]] = {"by_ops": {}}
    for item, row in zip(items, rows):
        groups["by_ops"].setdefault(ops_bucket(program_ops(item.get("linear_formula", ""))), []).append(row)
        if "category" in item:
            groups.setdefault("by_category", {}).setdefault(str(item["category"]), []).append(row)
    out: dict[str, dict[str, dict]] = {}
    for name, by in groups.items():
        keys = sorted(by, key=_bucket_order) if name == "by_ops" else sorted(by)
        out[name] = {k: {"n": len(by[k]), "exact_match": 100.0 * sum(r["em"] for r in by[k]) / len(by[k]),
                         "exec_acc": 100.0 * sum(r["exec_correct"] for r in by[k]) / len(by[k])} for k in keys}
    return out


def format_groups(groups: dict[str, dict[str, dict]]) -> list[str]:
    """The groups of :func:`grouped_scores` as printed lines, one table per grouping."""
    titles = {"by_ops": "operations in the gold program", "by_category": "category"}
    lines = []
    for name, by in groups.items():
        lines.append(f"{titles.get(name, name):>32}  problems  exact match  execution")
        lines.extend(f"{key:>32}  {g['n']:8d}  {g['exact_match']:10.2f}%  {g['exec_acc']:8.2f}%"
                     for key, g in by.items())
    return lines
