"""The arith families' views of a trained model in ``mathtune report`` (their ``report_views``).

* the error analysis of the test answers (:mod:`.errors`): a family whose :meth:`predict` returns the answers as
  strings (``arithmetic_answers``), for data holding ``queries``, ``answers`` and ``part(name)``;
* a grid of generated answers for a spread of test queries, with what ``predict`` reads: a family whose
  :meth:`generate` draws answer images (arith-text2img).

Each view is made on its own (:func:`~mathtune.trainables.reportviews.view_or_note`): one that fails is a
one-line note beside the others.

Example::

    trained = load_trained("runs/exp/trial_5e57/checkpoint_000002", family="arith-text2text", device="cpu")
    views = arith_views(trained.family, trained.model, trained.data, torch.device("cpu"),
                        name="exp-5e57", title="exp trial 5e57", epoch=2)
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

import numpy as np
import torch

from ..reportviews import ReportFigure, ReportView, view_or_note
from .errors import arith_errors, errors_figure, errors_tables

if TYPE_CHECKING:
    from .text2text import ArithFamily

__all__ = ["arith_views", "errors_view", "grid_view"]

TEST_PARTS = ("queries", "answers", "part")  # what the data must hold for a view of its test queries


def _has_test_queries(data: Any) -> bool:
    return all(hasattr(data, a) for a in TEST_PARTS)


def errors_view(family: ArithFamily, model: torch.nn.Module, data: Any, device: torch.device, *, name: str,
                title: str, epoch: Any = None) -> ReportView | None:
    """The arithmetic error analysis of the test answers; None where it does not apply."""
    if not family.arithmetic_answers or not _has_test_queries(data):
        return None
    preds = family.predict(model, data, "test", device)
    if not isinstance(preds, (list, tuple)) or not all(isinstance(p, str) for p in preds):
        return None  # e.g. a family that predicts images
    index = data.part("test")
    queries = [data.queries[i] for i in index]
    answers = [data.answers[i] for i in index]
    width = getattr(data, "answer_len", None)
    e = arith_errors(queries, answers, preds, width=width)
    view = ReportView(f"{title}: arithmetic error analysis (test set, {e.n} queries)")
    view.figures.append(ReportFigure(
        errors_figure(e, f"{title}: test errors"),
        f"Error analysis of the best checkpoint (epoch {epoch}) on the test set: |predicted - true| on a log "
        f"scale, carries, positions, confusions.", f"{name}-errors"))
    view.tables.extend(errors_tables(e, name, title))
    return view


def grid_view(family: ArithFamily, model: torch.nn.Module, data: Any, device: torch.device, *, name: str,
              title: str, rows: int = 12) -> ReportView | None:
    """Generated answer images of a few test queries (a family whose ``generate`` draws them), each labelled
    with its query, true answer and what ``predict`` reads; None for a family that draws none."""
    if not _has_test_queries(data):
        return None
    from matplotlib.figure import Figure  # plotting only: trials import this module, and never draw

    generated = family.generate(model, data, "test", device)
    if generated is None:
        return None
    images = np.asarray(generated)
    if images.ndim != 4 or not len(images):
        return None
    index = data.part("test")
    pick = np.linspace(0, len(index) - 1, min(rows, len(index))).round().astype(int)
    read = family.predict(model, data, "test", device) if family.arithmetic_answers else None
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
    view = ReportView(f"{title}: generated answer images")
    view.figures.append(ReportFigure(fig, "Answers drawn by the best checkpoint for test queries spread over the "
                                          "test set" + (", with what the digit classifier reads." if read else "."),
                                     f"{name}-generated"))
    return view


def arith_views(family: ArithFamily, model: torch.nn.Module, data: Any, device: torch.device, *, name: str,
                title: str, epoch: Any = None) -> list[ReportView]:
    """The error analysis, then the generated answers, each where it applies; a view that fails is a note."""
    made = [view_or_note(title, lambda: errors_view(family, model, data, device, name=name, title=title,
                                                    epoch=epoch)),
            view_or_note(title, lambda: grid_view(family, model, data, device, name=name, title=title))]
    return [v for v in made if v is not None]
