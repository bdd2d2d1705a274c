"""What a family's report views are made of: figures, tables and notes about one trained model.

A family shows its trained models in ``mathtune report`` through one hook,
:meth:`Family.report_views <mathtune.trainables.base.Family.report_views>`, which returns :class:`ReportView` s:
matplotlib figures (each with the file name the report saves it under), :class:`ReportTable` s of raw values
and one-line notes. The families build them, ``analysis/views.py`` saves the figures and renders the tables;
this module is the ground both stand on, so neither imports the other. :data:`PALETTE` is the report's colour
cycle, for family figures that look like the report's own. Kept free of heavy imports (no matplotlib, no
pandas), so that a family can import it in every trial.

Example::

    fig = Figure()
    fig.subplots().plot([1, 2, 3], color=PALETTE[0])
    view = ReportView("exp trial 5e57: a curve", figures=[ReportFigure(fig, "What it shows.", "exp-5e57-curve")])
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Callable

if TYPE_CHECKING:  # annotations only: pandas is the report's, not every trial's
    import pandas as pd

__all__ = ["PALETTE", "ReportFigure", "ReportTable", "ReportView", "failure_note", "view_or_note"]

PALETTE = ["#1f77b4", "#d62728", "#2ca02c", "#ff7f0e", "#9467bd", "#8c564b", "#e377c2", "#17becf", "#bcbd22"]


@dataclass
class ReportFigure:
    """A matplotlib Figure for the report, saved as ``NAME.png`` in the report's files folder."""

    figure: Any  # matplotlib.figure.Figure
    caption: str
    name: str  # the file name without ".png": start it with the ``name`` the hook was given (unique per model)


@dataclass
class ReportTable:
    """A titled table of raw values; ``percent`` columns render as percentages."""

    name: str  # unique in the report: start it with the ``name`` the hook was given
    title: str
    frame: pd.DataFrame
    note: str = ""
    percent: set[str] = field(default_factory=set)


@dataclass
class ReportView:
    """One view of a trained model: its figures, tables and one-line notes, under a title."""

    title: str
    figures: list[ReportFigure] = field(default_factory=list)
    tables: list[ReportTable] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)


def failure_note(exc: BaseException) -> str:
    """The one line a report shows for a view that failed."""
    return f"a family view failed: {type(exc).__name__}: {exc}"


def view_or_note(title: str, make: Callable[[], ReportView | None]) -> ReportView | None:
    """``make()``, or a view under ``title`` holding the one-line :func:`failure_note` when it raises: a view
    never stops a report, nor the views beside it."""
    try:
        return make()
    except Exception as exc:  # noqa: BLE001 - any failure of one view is a note in the report
        return ReportView(title, notes=[failure_note(exc)])
