"""Our best results beside the seed reports' figures (``reference.yaml``), metric by metric.

For each reference row of a family we ran, the best trial among those with the row's settings that ran their
whole schedule (not stopped early) is selected on the validation metric; its test figures sit beside the reference figure measuring the same
thing, with the difference in percentage points. Arithmetic rows compare per-character accuracy (what
the seed's Keras "accuracy" measured) and also show our whole-answer exact match, the honest figure.

Example::

    table, missing = versus_reference(load_tables("runs/exp"))
    print(table.to_markdown())
"""

from __future__ import annotations

import math
from functools import lru_cache
from pathlib import Path
from typing import Any

import pandas as pd

from .tables import CONFIG_PREFIX, Table, _int, _sort_best, data_description, is_rate, metric_label
from .tidy import Tables

__all__ = ["REFERENCE_FILE", "load_reference", "reference_notes", "versus_reference"]

REFERENCE_FILE = Path(__file__).resolve().parent / "reference.yaml"


@lru_cache(maxsize=4)
def _load(path: str) -> tuple[tuple[dict[str, Any], ...], tuple[str, ...]]:
    import yaml

    p = Path(path)
    if not p.is_file():
        raise FileNotFoundError(f"{p}: reference figures file missing (it ships with mathtune.analysis)")
    payload = yaml.safe_load(p.read_text()) or {}
    refs = payload.get("references") or []
    for i, ref in enumerate(refs):
        for key in ("family", "figures", "setting"):
            if key not in ref:
                raise ValueError(f"{p}: references[{i}] lacks {key!r}")
    notes = payload.get("notes") or []
    if not isinstance(notes, list) or not all(isinstance(n, str) for n in notes):
        raise ValueError(f"{p}: notes must be a list of sentences")
    return tuple(refs), tuple(notes)


def load_reference(path: str | Path | None = None) -> list[dict[str, Any]]:
    """The reference rows (see the comments in ``reference.yaml`` for the fields)."""
    return [dict(r) for r in _load(str(path or REFERENCE_FILE))[0]]


def reference_notes(path: str | Path | None = None) -> str:
    """What the reference file says about its rows (its ``notes``: how its figures read, which of our data they
    are compared on), one paragraph for the note under every table of them."""
    return " ".join(_load(str(path or REFERENCE_FILE))[1])


def _same(a: Any, b: Any) -> bool:
    if isinstance(a, (int, float)) and isinstance(b, (int, float)) and not isinstance(a, bool):
        return math.isclose(float(a), float(b), rel_tol=1e-9, abs_tol=1e-9)
    return str(a) == str(b)


def _matching(trials: pd.DataFrame, match: dict[str, Any]) -> pd.DataFrame:
    out = trials
    for key, want in (match or {}).items():
        col = CONFIG_PREFIX + key
        if col not in out.columns:
            return out.iloc[0:0]
        out = out[[_same(v, want) for v in out[col]]]
    return out


def versus_reference(tables: Tables, path: str | Path | None = None) -> tuple[Table, list[str]]:
    """(table, settings of reference rows for our families that no trial matched)."""
    rows: list[dict[str, Any]] = []
    missing: list[str] = []
    families = {m.family for m in tables.metas.values()}
    for ref in load_reference(path):
        family = ref["family"]
        if family not in families:
            continue
        exps = [e for e, m in tables.metas.items() if m.family == family]
        meta = tables.metas[exps[0]]
        metric, mode = meta.metric, meta.mode
        pool = tables.trials[tables.trials["experiment"].isin(exps)] if len(tables.trials) else tables.trials
        pool = _matching(pool, ref.get("match") or {})
        if "status" in pool.columns:  # a trial ASHA stopped after a few epochs does not answer a reference row
            pool = pool[pool["status"] == "finished"]
        col = f"best_{metric}"
        if col in pool.columns:
            pool = pool[pool[col].notna()]
        if not len(pool) or col not in pool.columns:
            missing.append(f"{family}: {ref['setting']}")
            continue
        best = _sort_best(pool, metric, mode).iloc[0]
        figures = ref["figures"]
        shown = {m: v for m, v in figures.items() if m.startswith("test_") or f"best_{m}" in best.index}
        extra = [f"{metric_label(m)} {_pct(v)}" for m, v in figures.items() if m not in shown]
        notes = "; ".join(x for x in ["reference " + ", ".join(extra) if extra else "", ref.get("context", "")] if x)
        for fig_metric, ref_value in shown.items():
            ours = best.get(f"best_{fig_metric}")
            ours = float(ours) if isinstance(ours, (int, float)) and not pd.isna(ours) else math.nan
            rows.append({
                "family": family, "reference setting": ref["setting"], "metric": metric_label(fig_metric),
                "reference": float(ref_value), "ours": ours,
                "difference": ours - float(ref_value) if not math.isnan(ours) else math.nan,
                "ours, test exact match": _get(best, "best_test_exact_match"),
                "ours, selected on": f"{metric_label(metric)} {_fmt_metric(metric, best.get(col))}",
                "our trial": f"{best['experiment']}/{best['trial_id']} epoch {_int(best.get('best_epoch'))}",
                "our data": data_description(best, tables.metas[best["experiment"]]),
                "source": ref.get("source", ""), "notes": notes})
    frame = pd.DataFrame(rows, columns=["family", "reference setting", "metric", "reference", "ours", "difference",
                                        "ours, test exact match", "ours, selected on", "our trial", "our data",
                                        "source", "notes"])
    if frame["ours, test exact match"].isna().all():
        frame = frame.drop(columns=["ours, test exact match"])
    pct = {"reference", "ours", "ours, test exact match"}
    note = ("Reference figures come from the seed reports, which picked their configurations on the test set; ours "
            "are the best trial that matches the row's settings in analysis/reference.yaml (its match: the task's "
            "settings, and an architecture setting where the row is about it; other settings as the search chose "
            "them), picked on the validation slice, measured on our test split of the same task. difference = ours "
            "- reference in percentage points. " + reference_notes(path)).strip()
    if not all(is_rate(m) for m in frame["metric"].str.replace(" ", "_")):
        note += " Non-rate metrics are shown as percentages too; read them as fractions."
    return Table("versus-reference", "Versus the reference reports", frame, note=note, percent=pct,
                 signed={"difference"}), missing


def _get(row: pd.Series, key: str) -> float:
    v = row.get(key)
    return float(v) if isinstance(v, (int, float)) and not pd.isna(v) else math.nan


def _pct(v: Any) -> str:
    return f"{100 * float(v):.2f}%" if isinstance(v, (int, float)) else str(v)


def _fmt_metric(metric: str, value: Any) -> str:
    if not isinstance(value, (int, float)) or pd.isna(value):
        return "-"
    return _pct(value) if is_rate(metric) else f"{float(value):.4g}"
