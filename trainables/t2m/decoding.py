"""A part of the data decoded and scored: what the families' evaluation, ``mathtune evaluate`` and the report's
breakdown share.

:func:`decode_part` decodes every problem of a :class:`~.dataset.Part` at one or more beam widths (nested beams:
all widths in one pass) with the teacher-forced loss beside; :func:`score_part` scores predictions with the
course rules (:mod:`.scoring`).

Example::

    preds, loss = decode_part(model, data.parts["val"], widths=[1, 10], config=cfg, device=torch.device("cpu"))
    score_part(data.parts["val"], preds[10]).execution_accuracy
"""

from __future__ import annotations

from typing import Sequence

import torch

from ..config import FamilyConfig
from .beam import decode_widths
from .dataset import Part, eval_batches
from .models import Seq2Prog
from .programs import tokens_to_program
from .scoring import ScoreResult, score_items

__all__ = ["decode_part", "score_part"]


@torch.no_grad()
def decode_part(model: Seq2Prog, part: Part, *, widths: Sequence[int], config: FamilyConfig,
                device: torch.device, with_loss: bool = True) -> tuple[dict[int, list[str]], float]:
    """Predicted programs of every problem of ``part`` at each width, and the teacher-forced validation
    loss (mean per scored token; NaN without ``with_loss``). Nested beams decode all widths in one pass."""
    model.eval()
    widths = sorted(set(int(w) for w in widths))
    vocab, max_len, mode = model.vocab, config.max_decode_len, config.beam_mode
    preds: dict[int, list[str]] = {w: [""] * len(part) for w in widths}
    total, count = 0.0, 0
    for rows, batch in eval_batches(part, config.eval_batch_size, device):
        start = model.start(batch)
        if with_loss:
            s, n = model.token_losses(model.teacher_forced(*start, batch["tgt"]), batch["tgt"])
            total, count = total + float(s), count + int(n)
        out = decode_widths(model, widths, max_len, mode=mode, start=start)
        for w, decoded in out.items():
            for r, ids in zip(rows, decoded.tokens):
                preds[w][int(r)] = tokens_to_program(vocab.decode(ids))
    return preds, (total / count if count else float("nan"))


def score_part(part: Part, predictions: Sequence[str]) -> ScoreResult:
    """Course scores (percent) of ``predictions`` for the problems of ``part``."""
    return score_items([ex.to_item(p) for ex, p in zip(part.examples, predictions)])
