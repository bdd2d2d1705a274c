"""Family-specific report views on the best checkpoints (optional; skipped cleanly when absent).

A view needs the family installed, a kept checkpoint of the trial, and a hook the family provides:

* families with ``arithmetic_answers`` (the arith families) whose ``predict(model, data, part, device)`` returns answer strings and
  whose data holds ``queries``/``answers``: the error analysis of :mod:`mathtune.analysis.errors`;
* families with ``generate(model, data, part, device)`` returning images (n, positions, H, W), e.g.
  arith-text2img: a grid of generated answers for a spread of test queries (with what ``predict`` reads);
* any family with ``report_figures(model, data, config, device) -> {title: matplotlib Figure}`` (e.g.
  image grids of generated answers, attention heat maps): each figure goes into the report.

Every problem (no checkpoint, family missing, a hook failing) becomes a one-line note, never an error.

Example::

    for view in family_views(load_tables("runs/exp"), "exp", "runs/exp/report_files"):
        print(view.title, view.figures, view.notes)
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

import pandas as pd

from mathtune.trainables.checkpoints import load_trained
from mathtune.trainables.registry import get_family

from .errors import arith_errors, errors_figure, errors_tables
from .plots import save_figure
from .tables import Table, _slug, best_rows
from .tidy import CONFIG_PREFIX, Tables

__all__ = ["View", "family_views"]


@dataclass
class View:
    title: str
    figures: list[tuple[Path, str]] = field(default_factory=list)  # (png, caption)
    tables: list[Table] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)


def _wants_arith(family) -> bool:
    return bool(getattr(family, "arithmetic_answers", False))


def _arith_view(family, model, data, device, row: pd.Series, out_dir: Path, name: str, title: str) -> View | None:
    if not _wants_arith(family):
        return None
    if not all(hasattr(data, a) for a in ("queries", "answers", "part")):
        return None
    import torch

    preds = family.predict(model, data, "test", torch.device(device))
    if not isinstance(preds, (list, tuple)) or not all(isinstance(p, str) for p in preds):
        return None  # e.g. a family that predicts images
    index = data.part("test")
    queries = [data.queries[i] for i in index]
    answers = [data.answers[i] for i in index]
    width = getattr(data, "answer_len", None)
    e = arith_errors(queries, answers, preds, width=width)
    view = View(f"{title}: arithmetic error analysis (test set, {e.n} queries)")
    png = errors_figure(e, f"{title}: test errors", out_dir / f"{name}-errors.png")
    view.figures.append((png, f"Error analysis of the best checkpoint (epoch {row.get('checkpoint_epoch')}) on the "
                              f"test set: |predicted - true| on a log scale, carries, positions, confusions."))
    view.tables.extend(errors_tables(e, name, title))
    return view


def _grid_view(family, model, data, device, row: pd.Series, out_dir: Path, name: str, title: str,
               rows: int = 12) -> View | None:
    """Generated answer images of a few test queries (families with ``generate``, e.g. arith-text2img)."""
    if not all(hasattr(data, a) for a in ("queries", "answers", "part")):
        return None
    import numpy as np
    import torch
    from matplotlib.figure import Figure

    generated = family.generate(model, data, "test", torch.device(device))
    if generated is None:
        return None
    images = np.asarray(generated)
    if images.ndim != 4 or not len(images):
        return None
    index = data.part("test")
    pick = np.linspace(0, len(index) - 1, min(rows, len(index))).round().astype(int)
    read = family.predict(model, data, "test", torch.device(device)) if _wants_arith(family) else None
    n, width = len(pick), images.shape[1]
    fig = Figure(figsize=(0.9 * width + 1.8, 0.95 * n + 0.6), layout="constrained")
    axes = fig.subplots(n, width, squeeze=False)
    for r, k in enumerate(pick):
        i = index[k]
        for c in range(width):
            ax = axes[r][c]
            ax.imshow(images[k, c], cmap="gray_r", vmin=0, vmax=255)
            ax.set_xticks([])
            ax.set_yticks([])
        label = f"{data.queries[i]} = {data.answers[i]}" + (f"\nread: {read[k] or '(blank)'}" if read else "")
        axes[r][0].set_ylabel(label, rotation=0, ha="right", va="center", fontsize=8)
    fig.suptitle(f"{title}: generated answers (test queries)", fontsize=10)
    png = save_figure(fig, out_dir / f"{name}-generated.png")
    view = View(f"{title}: generated answer images")
    view.figures.append((png, "Answers drawn by the best checkpoint for test queries spread over the test set"
                              + (", with what the digit classifier reads." if read else ".")))
    return view


def _hook_view(family, model, data, config, device, out_dir: Path, name: str, title: str) -> View | None:
    import torch

    figures = family.report_figures(model, data, config, torch.device(device)) or {}
    view = View(f"{title}: {family.name} views")
    for i, (caption, fig) in enumerate(figures.items()):
        view.figures.append((save_figure(fig, out_dir / f"{name}-view{i + 1}.png"), str(caption)))
    return view if view.figures else None


def family_views(tables: Tables, experiment: str, out_dir: str | Path, *, max_trials: int = 3,
                 device: str = "cpu") -> list[View]:
    """Views of the best trial per factor value (at most ``max_trials``) of ``experiment``."""
    out_dir = Path(out_dir)
    meta = tables.metas[experiment]
    try:
        family = get_family(meta["family"])
    except Exception as exc:  # noqa: BLE001 - a family not installed here: the rest of the report still works
        return [View(f"{experiment}", notes=[f"family {meta.get('family')} is not available here ({exc}); "
                                             f"family views skipped"])]
    if not family.has_report_views():
        return []  # no view to make: do not rebuild data and models for nothing
    factors = [CONFIG_PREFIX + f for f in meta.get("factors") or [] if CONFIG_PREFIX + f in tables.trials.columns]
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
            family, config, model, data = load_trained(ckpt, family=meta["family"], device=device)
        except Exception as exc:  # noqa: BLE001 - a missing family or an old checkpoint must not stop a report
            views.append(View(title, notes=[f"could not rebuild the model from {ckpt}: "
                                            f"{type(exc).__name__}: {str(exc).splitlines()[0] if str(exc) else ''}"]))
            continue
        for make in (lambda: _arith_view(family, model, data, device, row, out_dir, name, title),
                     lambda: _grid_view(family, model, data, device, row, out_dir, name, title),
                     lambda: _hook_view(family, model, data, config, device, out_dir, name, title)):
            try:
                view = make()
            except Exception as exc:  # noqa: BLE001
                view = View(title, notes=[f"a family view failed: {type(exc).__name__}: {exc}"])
            if view is not None:
                views.append(view)
    return views
