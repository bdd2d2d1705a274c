"""Comparison tables from the tidy trials table, rendered as Markdown, HTML or LaTeX.

Every selection here uses the validation metric named in the experiment's ``mathtune.json``; test
figures ride along for reporting only. Each row says which trial, epoch, seeds and data it comes from.

Example::

    tables = load_tables("runs/exp")
    print(best_per_factor(tables, "exp").to_markdown())
    print(per_param_value(tables, "exp", "extra_layers").to_latex())
"""

from __future__ import annotations

import html
import math
from dataclasses import dataclass, field
from typing import Any, Sequence

import pandas as pd

from mathtune.trainables.registry import get_family

from .store import ExperimentRecord
from .tidy import CONFIG_PREFIX, Tables, test_metric_for

__all__ = ["Table", "best_per_factor", "per_param_value", "top_k", "family_summary", "trial_overview",
           "metric_label", "is_rate", "best_rows", "data_description"]

RATE_HINTS = ("acc", "exact", "match", "readable", "_em")
HIDDEN_CONFIG = {"threads", "device"}
SEED_KEYS = ("seed", "data_seed")


def is_rate(name: str) -> bool:
    """True for metrics that are fractions in [0, 1] shown as percentages (accuracies, exact match)."""
    low = name.lower()
    return any(h in low for h in RATE_HINTS) and "loss" not in low


def metric_label(name: str) -> str:
    """``val_exact_match`` -> ``val exact match``."""
    return name.replace("_", " ")


def format_value(value: Any, percent: bool = False) -> str:
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return "-"
    if isinstance(value, bool):
        return str(value)
    if isinstance(value, float) and percent:
        return f"{100 * value:.2f}%"
    if isinstance(value, float):
        return str(int(value)) if value.is_integer() and abs(value) < 1e15 else f"{value:.4g}"
    try:
        if pd.isna(value):
            return "-"
    except (TypeError, ValueError):
        pass
    return str(value)


@dataclass
class Table:
    """A titled table of raw values; ``percent`` columns render as percentages, ``signed`` with a sign."""

    name: str
    title: str
    frame: pd.DataFrame
    note: str = ""
    percent: set[str] = field(default_factory=set)
    signed: set[str] = field(default_factory=set)  # differences in percentage points

    def cells(self) -> list[list[str]]:
        out = []
        for _, row in self.frame.iterrows():
            line = []
            for col in self.frame.columns:
                value = row[col]
                if col in self.signed and isinstance(value, (int, float)) and not pd.isna(value):
                    line.append(f"{100 * value:+.2f} pp")
                else:
                    line.append(format_value(value, col in self.percent))
            out.append(line)
        return out

    def to_markdown(self) -> str:
        cols = [str(c) for c in self.frame.columns]
        esc = lambda s: s.replace("|", "\\|").replace("\n", " ")  # noqa: E731
        lines = ["| " + " | ".join(esc(c) for c in cols) + " |", "|" + "---|" * len(cols)]
        rows = self.cells() or [["-"] * len(cols)]
        lines += ["| " + " | ".join(esc(c) for c in row) + " |" for row in rows]
        return "\n".join(lines)

    def to_html(self) -> str:
        head = "".join(f"<th>{html.escape(str(c))}</th>" for c in self.frame.columns)
        body = "".join("<tr>" + "".join(f"<td>{html.escape(c)}</td>" for c in row) + "</tr>"
                       for row in self.cells())
        if not body:
            body = f'<tr><td colspan="{max(1, len(self.frame.columns))}">no rows</td></tr>'
        return f'<table class="t" id="table-{html.escape(self.name)}"><thead><tr>{head}</tr></thead>' \
               f"<tbody>{body}</tbody></table>"

    def to_latex(self) -> str:
        cols = [str(c) for c in self.frame.columns]
        spec = "".join("r" if self._numeric(c) else "l" for c in self.frame.columns)
        lines = ["\\begin{table}[ht]", "\\centering", f"\\caption{{{latex_escape(self.title)}}}",
                 f"\\label{{tab:{latex_escape(self.name)}}}", "\\small", f"\\begin{{tabular}}{{{spec}}}",
                 "\\toprule", " & ".join(latex_escape(c) for c in cols) + " \\\\", "\\midrule"]
        for row in self.cells():
            lines.append(" & ".join(latex_escape(c) for c in row) + " \\\\")
        lines += ["\\bottomrule", "\\end{tabular}"]
        if self.note:
            lines.append(f"\\par\\smallskip\\footnotesize {latex_escape(self.note)}")
        lines.append("\\end{table}")
        return "\n".join(lines)

    def _numeric(self, col: Any) -> bool:
        return pd.api.types.is_numeric_dtype(self.frame[col]) and not pd.api.types.is_bool_dtype(self.frame[col])


def latex_escape(text: str) -> str:
    repl = {"\\": r"\textbackslash{}", "&": r"\&", "%": r"\%", "$": r"\$", "#": r"\#", "_": r"\_", "{": r"\{",
            "}": r"\}", "~": r"\textasciitilde{}", "^": r"\textasciicircum{}"}
    return "".join(repl.get(ch, ch) for ch in str(text))


# --------------------------------------------------------------------------- selection helpers
def _sort_best(frame: pd.DataFrame, metric: str, mode: str) -> pd.DataFrame:
    """The trials with a value of ``metric``, best first: the report's ranking of trials (its tables, the
    reference comparison, ``mathtune best``).

    Trials tied on the metric are ranked before the trial order of :func:`~mathtune.trainables.metrics.rank`
    (the one rule for epochs and the search's own printouts) by two more validation figures: the lower
    validation loss, then the earlier best epoch (the cheaper model); then the trial id, for a stable order.
    On metrics that saturate (exact match 1.0) the loss separates trials that the metric cannot."""
    col = f"best_{metric}"
    if col not in frame.columns:
        return frame.iloc[0:0]
    frame = frame[frame[col].notna()]
    keys, ascending = [col], [mode != "max"]
    if "best_val_loss" in frame.columns and col != "best_val_loss":
        keys, ascending = keys + ["best_val_loss"], ascending + [True]
    return frame.sort_values(keys + ["best_epoch", "trial_id"], ascending=ascending + [True, True], kind="mergesort",
                             na_position="last")


def best_rows(tables: Tables, experiment: str, by: Sequence[str] = ()) -> pd.DataFrame:
    """The best trial (on the validation metric) of ``experiment`` per value of the ``by`` columns."""
    meta = tables.metas[experiment]
    ranked = _sort_best(tables.trials_of(experiment), meta.metric, meta.mode)
    if not by:
        return ranked.head(1)
    by = list(by)
    key = ranked[by].astype(str).agg("\x1f".join, axis=1) if len(ranked) else pd.Series(dtype=str)
    return ranked[~key.duplicated()].sort_values(by, kind="mergesort")


def _shown_metrics(tables: Tables, experiment: str) -> list[str]:
    """Selection metric, its test counterpart, then the other val/test metrics (losses last)."""
    meta = tables.metas[experiment]
    metric = meta.metric
    have = tables.metrics_of(experiment)
    first = [m for m in (metric, test_metric_for(metric)) if m in have]
    others = [m for m in have if m.startswith(("val_", "test_")) and m not in first and not m.startswith("best_")]
    rates = sorted((m for m in others if is_rate(m)), key=lambda m: (m[m.index("_") + 1:], not m.startswith("val")))
    rest = sorted((m for m in others if not is_rate(m)), key=lambda m: (m[m.index("_") + 1:], not m.startswith("val")))
    return first + rates + rest


def data_description(row: pd.Series, meta: ExperimentRecord) -> str:
    """The configuration keys that determine the data (family's ``data_params``), e.g. split and seed; for a family
    not installed here, the experiment's study factors."""
    keys = _data_params(meta.family) or list(meta.factors or [])
    parts = [f"{k}={row.get(CONFIG_PREFIX + k)}" for k in keys if CONFIG_PREFIX + k in row
             and not _missing(row.get(CONFIG_PREFIX + k))]
    return ", ".join(parts)


def _missing(value: Any) -> bool:
    try:
        return value is None or bool(pd.isna(value))
    except (TypeError, ValueError):
        return False


def _data_params(family: str | None) -> list[str]:
    if not family:
        return []
    try:
        return list(get_family(family).data_params)
    except Exception:  # noqa: BLE001 - a family not installed here still gets a report
        return []


def _config_text(row: pd.Series, skip: set[str]) -> str:
    parts = []
    for col in row.index:
        if not col.startswith(CONFIG_PREFIX):
            continue
        key = col[len(CONFIG_PREFIX):]
        value = row[col]
        if key in skip or key in HIDDEN_CONFIG or _missing(value):
            continue
        parts.append(f"{key}={'auto' if key == 'threads' and value == 0 else format_value(value)}")
    return ", ".join(parts)


def _metric_block(row: pd.Series, metrics: Sequence[str]) -> dict[str, Any]:
    return {metric_label(m): row.get(f"best_{m}") for m in metrics}


def _provenance(row: pd.Series, meta: ExperimentRecord) -> dict[str, Any]:
    return {"epoch": _int(row.get("best_epoch")), "status": row.get("status"), "trial": row.get("trial_id"),
            "seed": _int(row.get(CONFIG_PREFIX + "seed")), "data": data_description(row, meta)}


def _int(value: Any) -> Any:
    return int(value) if isinstance(value, (int, float)) and not _missing(value) and float(value).is_integer() \
        else value


# --------------------------------------------------------------------------- the tables
def best_per_factor(tables: Tables, experiment: str) -> Table:
    """Seed-style table: the best trial per study-factor value (e.g. per split), selected on validation."""
    meta = tables.metas[experiment]
    factors = [f for f in meta.factors if CONFIG_PREFIX + f in tables.trials.columns]
    metrics = _shown_metrics(tables, experiment)
    best = best_rows(tables, experiment, [CONFIG_PREFIX + f for f in factors])
    rows = []
    for _, row in best.iterrows():
        out = {f: row[CONFIG_PREFIX + f] for f in factors}
        out.update(_metric_block(row, metrics))
        out.update(_provenance(row, meta))
        out["config"] = _config_text(row, set(factors) | set(_data_params(meta.family)) | set(SEED_KEYS))
        rows.append(out)
    cols = factors + [metric_label(m) for m in metrics] + ["epoch", "status", "trial", "seed", "data", "config"]
    frame = pd.DataFrame(rows, columns=cols)
    title = f"{experiment}: best trial per " + (", ".join(factors) if factors else "experiment")
    return Table(f"{_slug(experiment)}-best-per-factor", title, frame,
                 note=_selection_note(meta), percent={metric_label(m) for m in metrics if is_rate(m)})


def per_param_value(tables: Tables, experiment: str, param: str) -> Table:
    """The best trial per value of ``param`` (within each factor value), e.g. per number of extra layers."""
    meta = tables.metas[experiment]
    metric = meta.metric
    factors = [f for f in meta.factors if CONFIG_PREFIX + f in tables.trials.columns and f != param]
    col = CONFIG_PREFIX + param
    frame = tables.trials_of(experiment)
    if col not in frame.columns:
        raise KeyError(f"{experiment}: no parameter {param!r} in the trials (known: "
                       f"{', '.join(c[len(CONFIG_PREFIX):] for c in tables.config_columns(experiment))})")
    metrics = [m for m in (metric, test_metric_for(metric)) if m in tables.metrics_of(experiment)]
    metrics += [m for m in _shown_metrics(tables, experiment) if is_rate(m) and m not in metrics]
    best = best_rows(tables, experiment, [CONFIG_PREFIX + f for f in factors] + [col])
    rows = []
    for _, row in best.iterrows():
        group = frame[(frame[col].astype(str) == str(row[col]))]
        for f in factors:
            group = group[group[CONFIG_PREFIX + f].astype(str) == str(row[CONFIG_PREFIX + f])]
        values = group[f"best_{metric}"].dropna()
        out = {f: row[CONFIG_PREFIX + f] for f in factors}
        out[param] = row[col]
        out["trials"] = int(len(group))
        out.update(_metric_block(row, metrics))
        out[f"median {metric_label(metric)}"] = float(values.median()) if len(values) else math.nan
        out.update(_provenance(row, meta))
        rows.append(out)
    cols = factors + [param, "trials"] + [metric_label(m) for m in metrics] + \
        [f"median {metric_label(metric)}", "epoch", "status", "trial", "seed", "data"]
    pct = {metric_label(m) for m in metrics if is_rate(m)} | ({f"median {metric_label(metric)}"} if is_rate(metric)
                                                              else set())
    return Table(f"{_slug(experiment)}-per-{_slug(param)}", f"{experiment}: best trial per {param}",
                 pd.DataFrame(rows, columns=cols), percent=pct,
                 note=_selection_note(meta) + f" 'trials' counts every trial with that {param}; the median is over "
                                              f"their best validation values.")


def top_k(tables: Tables, experiment: str, k: int = 10) -> Table:
    """The ``k`` best trials on the validation metric with the parameters the search varied."""
    meta = tables.metas[experiment]
    metric = meta.metric
    factors = [f for f in meta.factors if CONFIG_PREFIX + f in tables.trials.columns]
    params = [p for p in tables.searched(experiment) if p not in factors]
    metrics = [m for m in (metric, test_metric_for(metric)) if m in tables.metrics_of(experiment)]
    metrics += [m for m in _shown_metrics(tables, experiment) if is_rate(m) and m not in metrics]
    ranked = _sort_best(tables.trials_of(experiment), metric, meta.mode).head(k)
    rows = []
    for rank, (_, row) in enumerate(ranked.iterrows(), 1):
        out = {"rank": rank, **{f: row[CONFIG_PREFIX + f] for f in factors}}
        out.update({p: row.get(CONFIG_PREFIX + p) for p in params})
        out.update(_metric_block(row, metrics))
        out.update({"epoch": _int(row.get("best_epoch")), "epochs run": _int(row.get("epochs_run")),
                    "status": row.get("status"), "trial": row.get("trial_id")})
        rows.append(out)
    cols = ["rank"] + factors + params + [metric_label(m) for m in metrics] + ["epoch", "epochs run", "status", "trial"]
    note = _selection_note(meta)
    if len(factors) and tables.trials_of(experiment)[[CONFIG_PREFIX + f for f in factors]].astype(str) \
            .drop_duplicates().shape[0] > 1:
        note += " Rows with different factor values were measured on different data and are not comparable."
    return Table(f"{_slug(experiment)}-top-{k}", f"{experiment}: top {k} trials", pd.DataFrame(rows, columns=cols),
                 note=note, percent={metric_label(m) for m in metrics if is_rate(m)})


def trial_overview(tables: Tables, experiment: str) -> Table:
    """Status counts, epochs and time of one experiment."""
    frame = tables.trials_of(experiment)
    meta = tables.metas[experiment]
    rows = []
    for status in ("finished", "stopped early", "running", "pending", "errored"):
        group = frame[frame["status"] == status] if len(frame) else frame
        if not len(group):
            continue
        rows.append({"status": status, "trials": int(len(group)), "epochs": int(group["epochs_run"].sum()),
                     "wall time (s)": float(group["wall_time_s"].fillna(0).sum()),
                     "example error": next((e for e in group.get("error", pd.Series(dtype=object)) if e), "")})
    res = meta.resources
    return Table(f"{_slug(experiment)}-trials", f"{experiment}: trials", pd.DataFrame(
        rows, columns=["status", "trials", "epochs", "wall time (s)", "example error"]),
        note=f"Resources per trial: {res.get('cpu', '-')} CPU, {res.get('gpu', '-')} GPU.")


def _report_metrics(family: str | None) -> tuple[tuple[str, str], ...]:
    """The family's extra test metrics for the summary, (metric, column); none for a family not installed here."""
    try:
        return tuple(get_family(family).report_metrics)
    except Exception:  # noqa: BLE001 - a family not installed here: its rows show the common columns only
        return ()


def family_summary(tables: Tables) -> Table:
    """One row per family: experiments, trials by status, time, and the best result per factor value, with the
    test metrics each family declares (``Family.report_metrics``) beside its selection metric's."""
    rows = []
    families = sorted({m.family for m in tables.metas.values()}, key=str)
    extra = {family: _report_metrics(family) for family in families}
    extra_columns = list(dict.fromkeys(column for family in families for _, column in extra[family]))
    for family in families:
        exps = [e for e, m in tables.metas.items() if m.family == family]
        for exp in exps:
            meta = tables.metas[exp]
            metric = meta.metric
            test = test_metric_for(metric)
            frame = tables.trials_of(exp)
            factors = [f for f in meta.factors if CONFIG_PREFIX + f in frame.columns]
            best = best_rows(tables, exp, [CONFIG_PREFIX + f for f in factors])
            statuses = frame["status"].value_counts().to_dict() if len(frame) else {}
            for _, row in (best.iterrows() if len(best) else iter([(None, None)])):
                shown = {column: row.get(f"best_{m}") if row is not None else math.nan for m, column in extra[family]}
                rows.append({
                    "family": family, "experiment": exp,
                    "factors": row["factors"] if row is not None else "-",
                    "trials": int(len(frame)),
                    "finished / stopped / errored / running": "{} / {} / {} / {}".format(
                        statuses.get("finished", 0), statuses.get("stopped early", 0), statuses.get("errored", 0),
                        statuses.get("running", 0) + statuses.get("pending", 0)),
                    "selection metric": metric,
                    "best val": row.get(f"best_{metric}") if row is not None else math.nan,
                    "its test": row.get(f"best_{test}") if row is not None else math.nan,
                    **{column: shown.get(column, math.nan) for column in extra_columns},
                    "trial hours": float(frame["wall_time_s"].fillna(0).sum() / 3600) if len(frame) else 0.0,
                })
    frame = pd.DataFrame(rows, columns=["family", "experiment", "factors", "trials",
                                        "finished / stopped / errored / running", "selection metric", "best val",
                                        "its test", *extra_columns, "trial hours"])
    frame = frame.drop(columns=[c for c in extra_columns if frame[c].isna().all()])
    pct = {column for family in families for m, column in extra[family] if is_rate(m)}
    if all(is_rate(m.metric) for m in tables.metas.values()):
        pct |= {"best val", "its test"}
    return Table("family-summary", "Family-by-family summary", frame, percent=pct,
                 note="best val: the best validation value of the selection metric per factor value; its test: "
                      "the same trial and epoch on the test set (reported only, never used to select).")


def _selection_note(meta: ExperimentRecord) -> str:
    metric = meta.metric
    return (f"Selected on {metric} ({meta.mode}) over the validation slice; the test columns are the "
            f"same trial and epoch on the test set, reported only.")


def _slug(text: str) -> str:
    return "".join(c if c.isalnum() or c in "-_." else "-" for c in str(text)).strip("-") or "x"
