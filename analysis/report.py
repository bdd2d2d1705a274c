"""The report of one or more experiments: Markdown (images beside it) and self-contained HTML.

``write_report`` reads only the experiment folders (safe while a search runs) and writes into ``out``
(default: the first experiment's folder)::

    report.md             tables and figures (figures as files under report_files/)
    report.html           the same page with the figures inlined (base64): one file, no network needed
    tables.tex            every comparison table as a LaTeX table (booktabs)
    report_files/*.png    the figures
    tables/trials.parquet, tables/epochs.parquet, tables/experiments.json   the tidy tables

Selection is always on the validation metric of each experiment's ``mathtune.json``; test metrics are
shown beside it for reporting only.

Example::

    write_report([Path("runs/arith-text2text-addsub-20261122-101500")], formats=("md", "html"))
"""

from __future__ import annotations

import base64
import html
import math
import os
import re
import time
import traceback
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable, Sequence

import pandas as pd

from mathtune.spaces.loader import load_space
from mathtune.trainables.atomic import write_text
from mathtune.trainables.loop import format_duration

from .importance import Importance, load_studies, param_importances
from .pareto import objectives_of, pareto_front, pareto_plot
from .plots import importance_plot, learning_curves, metric_vs_params, optimisation_history
from .reference import versus_reference
from .found import search_found
from .store import read_budget
from .store import load_confirmation
from .tables import (Table, _slug, best_per_factor, family_summary, is_rate, metric_label, per_param_value, top_k,
                     trial_overview)
from .tidy import CONFIG_PREFIX, TableExperiment, Tables, load_tables, test_metric_for
from .views import family_views

__all__ = ["Section", "Report", "build_report", "write_report", "markdown_report", "FORMATS"]

FORMATS = ("md", "html", "tex")
FILES_DIR = "report_files"
TABLES_DIR = "tables"


@dataclass
class Section:
    title: str
    level: int = 2
    paragraphs: list[str] = field(default_factory=list)  # plain text with `code` spans
    tables: list[Table] = field(default_factory=list)
    figures: list[tuple[Path, str]] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)

    @property
    def anchor(self) -> str:
        return "s-" + _slug(self.title).lower()


@dataclass
class Report:
    title: str
    sections: list[Section]
    tables: Tables
    generated: str

    def all_tables(self) -> list[Table]:
        return [t for s in self.sections for t in s.tables]


def _guard(section: Section, what: str, fn: Callable[[], object]) -> object:
    """Run one part of the report; a failure becomes a note in the section instead of an aborted report."""
    try:
        return fn()
    except Exception as exc:  # noqa: BLE001
        last = traceback.extract_tb(exc.__traceback__)[-1]
        section.notes.append(f"{what} failed: {type(exc).__name__}: {str(exc).splitlines()[0] if str(exc) else ''} "
                             f"({Path(last.filename).name}:{last.lineno})")
        return None


def _fmt_time(ts: float | None) -> str:
    if ts is None or (isinstance(ts, float) and math.isnan(ts)):
        return "-"
    return time.strftime("%Y-%m-%d %H:%M", time.localtime(ts))



def _samples_and_budget(meta: TableExperiment) -> str:
    """``32 samples`` or ``budget 8 h wall-clock (7 h 58 min spent), no trial cap``, from the record and
    ``budget.json`` (the search's clock, counted across resumes)."""
    opts = meta.options
    n = opts.get("num_samples", "-")
    samples = "no trial cap" if n == -1 else f"{n} samples"
    if not opts.get("budget"):
        return samples
    stored = read_budget(meta.dir)
    spent = f" ({format_duration(float(stored['spent_s']))} spent)" if stored else ""
    return f"budget {format_duration(float(opts['budget']))} wall-clock{spent}, {samples}"


def _experiment_sections(tables: Tables, experiment: str, files: Path, *, params: Sequence[str] | None, top: int,
                         predictions: bool) -> list[Section]:
    meta = tables.metas[experiment]
    metric, mode = meta.metric, meta.mode
    trials = tables.trials_of(experiment)
    opts = meta.options
    slug = _slug(experiment)
    head = Section(f"Experiment {experiment}", level=2)
    statuses = trials["status"].value_counts().to_dict() if len(trials) else {}
    head.paragraphs.append(
        f"Family `{meta.family}`, space `{meta.space_name}`, folder `{meta.dir}`, created "
        f"{meta.created or '-'}. {len(trials)} trials: " +
        (", ".join(f"{n} {s}" for s, n in statuses.items()) or "none yet") + ".")
    head.paragraphs.append(
        f"Selected on `{metric}` ({mode}) on validation data (the family's validation part, never its test part); test figures "
        f"are the same trial and epoch on the test set, reported only, never used to select or stop. Search: "
        f"{_samples_and_budget(meta)}, scheduler {opts.get('scheduler', '-')}, sampler "
        f"{opts.get('sampler', '-')} (seed {opts.get('seed', '-')}), fixed with --set: "
        f"{', '.join(f'{k}={v}' for k, v in (opts.get('overrides') or {}).items()) or 'nothing'}.")
    if statuses.get("running") or statuses.get("pending"):
        head.notes.append("some trials are still running (or their search was interrupted): figures are a snapshot.")
    if not len(trials):
        head.notes.append("no trial has reported yet.")
        return [head]
    _guard(head, "trial overview", lambda: head.tables.append(trial_overview(tables, experiment)))
    out = [head]

    sec = Section("Best trial per study factor", level=3)
    _guard(sec, "best-per-factor table", lambda: sec.tables.append(best_per_factor(tables, experiment)))
    out.append(sec)

    objectives = objectives_of(meta)
    if objectives:
        sec = Section("Pareto front", level=3)
        sec.paragraphs.append(
            "Objectives: " + ", ".join(f"`{m}` ({mode})" for m, mode in objectives) + ". Each trial counts with its "
            f"selected epoch (the best `{objectives[0][0]}`), the other objectives read at that epoch; a trial is on "
            "the front when no trial of the same factor value is as good on every objective and better on one. "
            "ASHA, when on, stopped trials on the first objective only; stopped trials count with their kept "
            "checkpoint. Test figures are reported only.")
        path = _guard(sec, "Pareto plot", lambda: pareto_plot(tables, experiment, files / f"{slug}-pareto.png"))
        if path:
            sec.figures.append((path, f"{metric_label(objectives[0][0])} against {metric_label(objectives[1][0])} "
                                      "for every trial; the front in red, labelled with trial ids."))
        _guard(sec, "Pareto table", lambda: sec.tables.append(_pareto_table(tables, experiment, slug, objectives)))
        out.append(sec)

    confirmation = load_confirmation(meta.dir) if meta.dir else None
    if confirmation:
        sec = Section("Winners confirmed over new seeds", level=3)
        sec.paragraphs.append(
            f"The {confirmation.get('top')} best trial(s) by {metric_label(metric)} of each factor value, retrained "
            f"with {confirmation.get('seeds')} new training seed(s) each for all their epochs (`--confirm-top`); "
            f"the winner is the best mean over the new seeds, the search's own run shown beside it (it is the "
            f"draw that was selected, so it is not averaged in). Test figures are reported only.")
        _guard(sec, "confirmation table", lambda: sec.tables.append(_confirmation_table(confirmation, slug, metric)))
        out.append(sec)

    chosen = list(params) if params else tables.discrete_params(experiment)
    for param in chosen:
        s = Section(f"Best trial per {param}", level=3)
        _guard(s, f"per-{param} table", lambda p=param, s=s: s.tables.append(per_param_value(tables, experiment, p)))
        out.append(s)

    sec = Section(f"Top {top} trials", level=3)
    _guard(sec, "top-k table", lambda: sec.tables.append(top_k(tables, experiment, top)))
    out.append(sec)

    sec = Section("Learning curves and parameters", level=3)
    for what, fn, caption in (
            ("learning curves", lambda: learning_curves(tables, experiment, files / f"{slug}-learning-curves.png"),
             "Loss and validation metric per epoch; the best trial per factor value in colour."),
            ("metric vs parameters", lambda: metric_vs_params(tables, experiment, files / f"{slug}-params.png"),
             f"Best {metric_label(metric)} of each trial against each searched parameter.")):
        path = _guard(sec, what, fn)
        if path:
            sec.figures.append((path, caption))
        elif path is None and not any(what in n for n in sec.notes):
            sec.notes.append(f"{what}: nothing to plot yet.")
    out.append(sec)

    sec = Section("Optimisation history and parameter importance", level=3)
    studies = _guard(sec, "reading the Optuna studies", lambda: load_studies(meta.dir, meta)) or []
    if not studies:
        sec.notes.append("no Optuna study readable for this experiment (storage missing or unreachable).")
    else:
        path = _guard(sec, "optimisation history", lambda: optimisation_history(studies, experiment, metric,
                                                                               files / f"{slug}-history.png"))
        if path:
            sec.figures.append((path, "Validation value of each Optuna trial in ask order (pruned trials: their best "
                                      "value before the stop) and the best so far, per study."))
        results = _guard(sec, "parameter importance", lambda: _importances(tables, experiment, studies)) or []
        path = _guard(sec, "importance plot",
                      lambda: importance_plot(results, experiment, files / f"{slug}-importance.png"))
        if path:
            sec.figures.append((path, "Parameter importance from Optuna's evaluator on the persisted studies: of "
                                      "the selection metric over the complete trials (Optuna's own view; with ASHA "
                                      "only the trials that ran to the end), of the same metric at the first ASHA "
                                      "rung over every trial that reached it (the stopped ones included), and of "
                                      "the lowest validation loss. The table says which trials each rests on."))
        rows = [{"study": r.study, "target": metric_label(r.target), "parameter": k, "importance": v,
                 "rests on": r.basis, "evaluator": r.evaluator}
                for r in results if r.importances for k, v in r.importances.items()]
        if rows:
            sec.tables.append(Table(f"{slug}-importance", f"{experiment}: parameter importance", pd.DataFrame(rows)))
        sec.notes.extend(f"importance of {metric_label(r.target)} in {r.study}: {r.reason}" for r in results
                         if r.reason)
    out.append(sec)

    if predictions:
        sec = Section("Family views of the best checkpoints", level=3)
        views = _guard(sec, "family views", lambda: family_views(tables, experiment, files)) or []
        for view in views:
            sec.figures.extend(view.figures)
            sec.tables.extend(view.tables)
            sec.notes.extend(f"{view.title}: {n}" for n in view.notes)
        if not views and not sec.notes:
            sec.notes.append(f"family {meta.family} provides no report views.")
        out.append(sec)
    return out


def _found_section(tables: Tables, experiment: str, files: Path) -> Section:
    """The report's opening for one experiment: what the search found (:mod:`.found`)."""
    sec = Section(f"What the search found: {experiment}", level=2)
    found = _guard(sec, "what-the-search-found table", lambda: search_found(tables, experiment, files))
    if found:
        table, figure, lines = found
        sec.tables.append(table)
        sec.paragraphs.extend(lines)
        if figure is not None:
            sec.figures.append((figure, "Best validation figure so far against wall-clock time spent, per factor "
                                        "value; dashed: the hand-tuned shipped configuration's validation figure "
                                        "for the same setting, where one ships."))
    return sec


def _pareto_table(tables: Tables, experiment: str, slug: str, objectives) -> Table:
    front = pareto_front(tables, experiment)
    test = test_metric_for(objectives[0][0])
    cols = ["factors", "trial_id", "status", "best_epoch"] + [f"best_{m}" for m, _ in objectives] + \
        ([f"best_{test}"] if f"best_{test}" in front else []) + \
        [CONFIG_PREFIX + p for p in tables.searched(experiment) if CONFIG_PREFIX + p in front]
    frame = front[cols].rename(columns=lambda c: c[len(CONFIG_PREFIX):] if c.startswith(CONFIG_PREFIX) else
                               metric_label(c[len("best_"):]) if c.startswith("best_") and c != "best_epoch"
                               else "epoch" if c == "best_epoch" else c)
    percent = {metric_label(m) for m, _ in objectives if is_rate(m)} | ({metric_label(test)} if is_rate(test) else set())
    return Table(f"{slug}-pareto", f"{experiment}: the Pareto front ({len(frame)} trials)", frame.reset_index(drop=True),
                 percent=percent)


def _confirmation_table(summary: dict, slug: str, metric: str) -> Table:
    def pm(mean, sd):
        return "-" if mean is None else f"{100 * mean:.2f} ± {100 * (sd or 0):.2f}"

    rows = []
    for label, combo in summary["combos"].items():
        for c in combo["candidates"]:
            single = c.get("single") or {}
            rows.append({"factors": label, "trial": c["trial_id"],
                         "search run": "-" if single.get("value") is None else f"{100 * single['value']:.2f}",
                         "new seeds": ", ".join(str(r["seed"]) for r in c["runs"]) or "-",
                         "mean ± sd": pm(c.get("mean"), c.get("sd")),
                         "test mean ± sd": pm(c.get("test_mean"), c.get("test_sd")),
                         "runs complete": "yes" if c.get("complete") else "no",
                         "selected": "winner" if c["trial_id"] == combo.get("winner") else ""})
    return Table(f"{slug}-confirmation", f"{metric_label(metric)} (%) of each candidate over new seeds",
                 pd.DataFrame(rows))


def first_rung(meta: TableExperiment) -> int | None:
    """The epoch of the experiment's first ASHA rung (its grace period), or None without ASHA."""
    if meta.options.get("scheduler", "asha") not in ("asha", "optuna"):
        return None
    given = (meta.options.get("asha") or {}).get("grace_period")  # --grace-period
    if given:
        return int(given)
    try:
        return int(load_space(Path(meta.dir) / "space.yaml").scheduler.get("grace_period", 1))
    except Exception:  # noqa: BLE001 - a folder without its space file: no common epoch to read
        return None


def _importances(tables: Tables, experiment: str, studies) -> list[Importance]:
    """Importance of the selection metric (study values: complete trials only), of the same metric at the
    first ASHA rung (every trial that reached it, the ones ASHA stopped included) and of the lowest
    validation loss, per study."""
    epochs = tables.epochs_of(experiment)
    meta = tables.metas[experiment]
    metric = meta.metric
    results = [param_importances(s, target=metric) for s in studies]
    rung = first_rung(meta)
    if rung is not None and metric in epochs.columns and len(epochs):
        rung = min(rung, int(epochs["epoch"].max()))  # a search shorter than its grace period: its last epoch
        at_rung = epochs[epochs["epoch"] == rung].set_index("trial_id")[metric].dropna().to_dict()
        results += [param_importances(s, values=at_rung, target=f"{metric} at epoch {rung}",
                                      maximize=meta.mode == "max", states=("COMPLETE", "PRUNED"),
                                      at=f"at epoch {rung}") for s in studies]
    if "val_loss" in epochs.columns and epochs["val_loss"].notna().any():
        lowest = epochs.groupby("trial_id")["val_loss"].min().dropna().to_dict()
        results += [param_importances(s, values=lowest, target="lowest val_loss", maximize=False) for s in studies]
    return results


def build_report(exp_dirs: Sequence[str | Path], out: str | Path, *, params: Sequence[str] | None = None,
                 top: int = 10, predictions: bool = True, tables: Tables | None = None) -> Report:
    """Load the experiments, make every table and figure (figures into ``out/report_files``)."""
    out = Path(out)
    files = out / FILES_DIR
    files.mkdir(parents=True, exist_ok=True)
    tables = tables or load_tables(exp_dirs)
    sections: list[Section] = []

    intro = Section("Experiments", level=2)
    rows = []
    for name, meta in tables.metas.items():
        t = tables.trials_of(name)
        rows.append({"experiment": name, "family": meta.family, "space": meta.space_name,
                     "selection metric": f"{meta.metric} ({meta.mode})",
                     "factors": ", ".join(meta.factors) or "-", "trials": int(len(t)),
                     "epochs": int(t["epochs_run"].sum()) if len(t) else 0,
                     "last report": _fmt_time(float(t["last_report_time"].max())) if len(t)
                     and "last_report_time" in t and t["last_report_time"].notna().any() else "-",
                     "folder": meta.dir})
    intro.tables.append(Table("experiments", "Experiments in this report", pd.DataFrame(rows)))
    intro.paragraphs.append(f"Tidy tables (one row per trial, one per trial-epoch) are in "
                            f"`{TABLES_DIR}/trials.parquet` and `{TABLES_DIR}/epochs.parquet`; every table below is also in `tables.tex`.")
    sections.append(intro)

    for experiment in tables.experiments():
        sections.append(_found_section(tables, experiment, files))

    for experiment in tables.experiments():
        sections.extend(_experiment_sections(tables, experiment, files, params=params, top=top,
                                             predictions=predictions))

    vs = Section("Versus the reference", level=2)
    result = _guard(vs, "versus-reference table", lambda: versus_reference(tables))
    if result:
        table, missing = result
        vs.tables.append(table)
        if missing:
            vs.notes.append("reference rows of these families that no finished trial here matches (run a search "
                            "with those settings to compare): " + "; ".join(missing))
    vs.paragraphs.append("Every reference row beside the shipped configuration that answers it: `mathtune reference`.")
    sections.append(vs)

    fam = Section("Family-by-family summary", level=2)
    _guard(fam, "family summary", lambda: fam.tables.append(family_summary(tables)))
    sections.append(fam)
    names = ", ".join(tables.experiments())
    return Report(f"mathtune report: {names}", sections, tables, time.strftime("%Y-%m-%d %H:%M:%S"))


# --------------------------------------------------------------------------- rendering
def _inline_html(text: str) -> str:
    parts = re.split(r"(`[^`]*`)", text)
    return "".join(f"<code>{html.escape(p[1:-1])}</code>" if p.startswith("`") and p.endswith("`") and len(p) > 1
                   else html.escape(p) for p in parts)


def render_markdown(report: Report, out: Path) -> str:
    lines = [f"# {report.title}", "", f"Generated {report.generated} by `mathtune report`.", ""]
    for s in report.sections:
        lines += [f"{'#' * s.level} {s.title}", ""]
        for p in s.paragraphs:
            lines += [p, ""]
        for t in s.tables:
            lines += [f"**{t.title}**", "", t.to_markdown(), ""]
            if t.note:
                lines += [f"_{t.note}_", ""]
        for path, caption in s.figures:
            rel = os.path.relpath(path, out)
            lines += [f"![{caption}]({rel})", "", f"_{caption}_", ""]
        for n in s.notes:
            lines += [f"> Note: {n}", ""]
    return "\n".join(lines)


CSS = """
body{font-family:system-ui,-apple-system,"Segoe UI",Roboto,"DejaVu Sans",sans-serif;margin:0;color:#1b1b1b;
background:#fff;line-height:1.45}
main{max-width:1400px;margin:0 auto;padding:24px 32px 64px}
h1{font-size:1.6rem;margin:0 0 .2rem}h2{font-size:1.3rem;margin-top:2.2rem;border-bottom:2px solid #dfe3e8;
padding-bottom:.2rem}h3{font-size:1.08rem;margin-top:1.6rem}
.meta{color:#555;font-size:.9rem}
nav{background:#f6f8fa;border:1px solid #e1e4e8;border-radius:6px;padding:8px 16px;font-size:.88rem;margin:1rem 0}
nav ul{margin:.2rem 0;padding-left:1.2rem}
.tw{overflow-x:auto;margin:.5rem 0 .3rem}
table.t{border-collapse:collapse;font-size:.82rem;font-variant-numeric:tabular-nums}
table.t th,table.t td{border:1px solid #d0d7de;padding:3px 8px;text-align:left;vertical-align:top}
table.t th{background:#eef2f6;position:sticky;top:0}
table.t tbody tr:nth-child(even){background:#fafbfc}
.caption{font-weight:600;font-size:.9rem;margin-top:1rem}
.tnote{color:#555;font-size:.8rem;max-width:1100px}
figure{margin:1rem 0}figure img{max-width:100%;height:auto;border:1px solid #e1e4e8}
figcaption{color:#444;font-size:.85rem}
.note{background:#fff8e1;border-left:4px solid #f0b400;padding:4px 10px;font-size:.85rem;margin:.4rem 0}
code{background:#f3f4f6;padding:0 3px;border-radius:3px;font-size:.85em}
"""


def _data_uri(path: Path) -> str:
    return "data:image/png;base64," + base64.b64encode(Path(path).read_bytes()).decode("ascii")


def render_html(report: Report) -> str:
    """One self-contained page: inline CSS, images as data URIs, no scripts, no external requests."""
    body = [f"<h1>{html.escape(report.title)}</h1>",
            f'<p class="meta">Generated {html.escape(report.generated)} by <code>mathtune report</code>.</p>']
    anchors: dict[int, str] = {}
    for i, s in enumerate(report.sections):  # unique ids: sections repeat per experiment
        anchor, k = s.anchor, 2
        while anchor in anchors.values():
            anchor, k = f"{s.anchor}-{k}", k + 1
        anchors[i] = anchor
    toc = "".join(f'<li><a href="#{anchors[i]}">{html.escape(s.title)}</a></li>'
                  for i, s in enumerate(report.sections) if s.level == 2)
    body.append(f"<nav><strong>Contents</strong><ul>{toc}</ul></nav>")
    for i, s in enumerate(report.sections):
        body.append(f'<h{s.level} id="{anchors[i]}">{html.escape(s.title)}</h{s.level}>')
        body += [f"<p>{_inline_html(p)}</p>" for p in s.paragraphs]
        for t in s.tables:
            body.append(f'<div class="caption">{html.escape(t.title)}</div><div class="tw">{t.to_html()}</div>')
            if t.note:
                body.append(f'<div class="tnote">{html.escape(t.note)}</div>')
        for path, caption in s.figures:
            body.append(f'<figure><img src="{_data_uri(path)}" alt="{html.escape(caption)}">'
                        f"<figcaption>{html.escape(caption)}</figcaption></figure>")
        body += [f'<div class="note">{_inline_html(n)}</div>' for n in s.notes]
    return ("<!DOCTYPE html>\n<html lang=\"en\"><head><meta charset=\"utf-8\">"
            "<meta name=\"viewport\" content=\"width=device-width, initial-scale=1\">"
            "<link rel=\"icon\" href=\"data:,\">"
            f"<title>{html.escape(report.title)}</title><style>{CSS}</style></head>"
            f"<body><main>{''.join(body)}</main></body></html>\n")


def render_latex(report: Report) -> str:
    head = ["% mathtune report tables; needs \\usepackage{booktabs}", f"% {report.title}, generated {report.generated}",
            ""]
    return "\n".join(head + [t.to_latex() + "\n" for t in report.all_tables()])


def _write_text(path: Path, text: str) -> Path:
    return write_text(path, text)


def write_report(exp_dirs: Sequence[str | Path], out: str | Path | None = None, *,
                 formats: Sequence[str] = FORMATS, params: Sequence[str] | None = None, top: int = 10,
                 predictions: bool = True) -> Path:
    """Write the report of ``exp_dirs`` into ``out`` (default: the first experiment's folder).

    Returns the Markdown path (or the first format written when ``md`` is not among ``formats``).
    The tidy tables are always written as Parquet under ``out/tables``.
    """
    if not exp_dirs:
        raise ValueError("write_report: no experiment folders given")
    formats = [f.strip().lower() for f in formats if f.strip()]
    unknown = [f for f in formats if f not in FORMATS]
    if unknown or not formats:
        raise ValueError(f"--format: {', '.join(unknown) or 'nothing'} not among {', '.join(FORMATS)}")
    out = Path(out) if out else Path(exp_dirs[0])
    out.mkdir(parents=True, exist_ok=True)
    tables = load_tables(exp_dirs)
    tables.write_parquet(out / TABLES_DIR)
    report = build_report(exp_dirs, out, params=params, top=top, predictions=predictions, tables=tables)
    written: dict[str, Path] = {}
    if "md" in formats:
        written["md"] = _write_text(out / "report.md", render_markdown(report, out))
    if "html" in formats:
        written["html"] = _write_text(out / "report.html", render_html(report))
    if "tex" in formats:
        written["tex"] = _write_text(out / "tables.tex", render_latex(report))
    return written.get("md") or next(iter(written.values()))


def markdown_report(exp_dirs: Sequence[str | Path]) -> str:
    """The comparison tables of ``exp_dirs`` as Markdown text (no figures, nothing written)."""
    tables = load_tables(exp_dirs)
    parts = ["# mathtune report", ""]
    table, _ = versus_reference(tables)
    for t in [table, family_summary(tables)] + [t for e in tables.experiments() for t in
                                                (best_per_factor(tables, e), top_k(tables, e))]:
        parts += [f"**{t.title}**", "", t.to_markdown(), ""]
    return "\n".join(parts)
