"""Family views of the best checkpoints in a report (optional; skipped cleanly when absent).

For the best trial per factor value, the kept checkpoint is loaded with its dataset built again from its
configuration (:func:`~mathtune.trainables.checkpoints.load_trained`) and the family shows what it wants of the
trained model through its one hook, :meth:`Family.report_views <mathtune.trainables.base.Family.report_views>`
(figures, tables and notes, :mod:`mathtune.trainables.reportviews`; ``report_figures`` is its simple case).
Here the figures are saved as PNGs and the tables become report tables.

Every problem (no checkpoint, family missing, the hook failing) becomes a one-line note, never an error.

Example::

    for view in family_views(load_tables("runs/exp"), "exp", "runs/exp/report_files"):
        print(view.title, view.figures, view.notes)
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

import torch

from mathtune.trainables.checkpoints import load_trained
from mathtune.trainables.registry import get_family
from mathtune.trainables.reportviews import ReportView, failure_note

from .plots import save_figure
from .tables import Table, _slug, best_rows
from .tidy import CONFIG_PREFIX, Tables

__all__ = ["View", "family_views"]


@dataclass
class View:
    """A family view as the report shows it: its figures written as PNGs."""

    title: str
    figures: list[tuple[Path, str]] = field(default_factory=list)  # (png, caption)
    tables: list[Table] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)


def _written(view: ReportView, out_dir: Path) -> View:
    """``view`` with its figures saved in ``out_dir`` and its tables as report tables."""
    return View(view.title,
                figures=[(save_figure(f.figure, out_dir / f"{f.name}.png"), f.caption) for f in view.figures],
                tables=[Table(t.name, t.title, t.frame, note=t.note, percent=set(t.percent)) for t in view.tables],
                notes=list(view.notes))


def family_views(tables: Tables, experiment: str, out_dir: str | Path, *, max_trials: int = 3,
                 device: str = "cpu") -> list[View]:
    """Views of the best trial per factor value (at most ``max_trials``) of ``experiment``."""
    out_dir = Path(out_dir)
    meta = tables.metas[experiment]
    try:
        family = get_family(meta.family)
    except Exception as exc:  # noqa: BLE001 - a family not installed here: the rest of the report still works
        return [View(f"{experiment}", notes=[f"family {meta.family} is not available here ({exc}); "
                                             f"family views skipped"])]
    if not family.has_report_views():
        return []  # no view to make: do not rebuild data and models for nothing
    factors = [CONFIG_PREFIX + f for f in meta.factors if CONFIG_PREFIX + f in tables.trials.columns]
    best = best_rows(tables, experiment, factors).head(max_trials)
    views: list[View] = []
    for _, row in best.iterrows():
        title = f"{experiment} {row['factors']} trial {row['trial_id']}"
        name = _slug(f"{experiment}-{row['trial_id']}")
        ckpt = row.get("best_checkpoint")
        if not isinstance(ckpt, str) or not Path(ckpt).is_dir():
            views.append(View(title, notes=["no kept checkpoint for this trial; family views skipped"]))
            continue
        try:  # the run's dataset built again from its config, for the views of its own test part
            family, config, model, data = load_trained(ckpt, family=meta.family, device=device)
        except Exception as exc:  # noqa: BLE001 - a missing family or an old checkpoint must not stop a report
            views.append(View(title, notes=[f"could not rebuild the model from {ckpt}: "
                                            f"{type(exc).__name__}: {str(exc).splitlines()[0] if str(exc) else ''}"]))
            continue
        try:
            made = family.report_views(model, data, config, torch.device(device), name=name, title=title,
                                       epoch=row.get("checkpoint_epoch"))
        except Exception as exc:  # noqa: BLE001 - a family's hook failing is a note, never an error
            made = [ReportView(title, notes=[failure_note(exc)])]
        for view in made:
            try:
                views.append(_written(view, out_dir))
            except Exception as exc:  # noqa: BLE001
                views.append(View(title, notes=[failure_note(exc)]))
    return views
