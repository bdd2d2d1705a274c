"""Several trained text-to-program models decoding as one.

At every step an :class:`Ensemble` scores the next token with the mean of its members' next-token
probabilities (each member grammar-masked, so the mean is too; with ``votes``, a member with two votes counts
as two members), and greedy decoding and beam search run on
that as on one model (:mod:`.beam` needs nothing else). Members may differ in everything but the program
vocabulary and the number of number slots, which come from the training file: a GloVe BiLSTM beside a
MiniLM model is the usual case. Each member reads the problems through its own encoding (its own input
vocabulary or word pieces), so :func:`decode_ensemble` encodes the problems once per member and collates
the same rows for all of them.

Example::

    members = [(t.model, t.config) for t in (load_trained(find_checkpoint(p), data=vocabularies_of)
                                             for p in ("pretrained:t2m", "runs/frozen30"))]
    preds = decode_ensemble(members, examples, widths=[1, 10], config=members[0][1], device=torch.device("cpu"))
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any, Sequence

import numpy as np
import torch

from ..config import FamilyConfig
from .beam import decode_widths
from .dataset import Part, collate, encode_part
from .programs import tokens_to_program

__all__ = ["Ensemble", "EnsembleMemory", "decode_ensemble", "check_members", "same_programs"]


def same_programs(meta: dict[str, Any], other: dict[str, Any]) -> bool:
    """Whether two text-to-program models' metadata (their state's vocabularies) have the same program
    vocabulary and number slots, which members of one ensemble must share."""
    return meta["program_vocab"] == other["program_vocab"] and meta["max_numbers"] == other["max_numbers"]


def check_members(models: Sequence[Any]) -> None:
    """Raise ``ValueError`` unless the models share the program vocabulary and number slots."""
    if not models:
        raise ValueError("an ensemble needs at least one model")
    first = models[0].meta
    for i, m in enumerate(models[1:], 2):
        if not same_programs(m.meta, first):
            raise ValueError(f"model {i} ({m.meta['family']}) was trained with another program vocabulary than "
                             f"model 1 ({first['family']}): ensemble members must share their training file")


@dataclass
class EnsembleMemory:
    """The members' memories side by side (``states`` and ``num_count`` are the first member's, for the
    batch size, device and grammar) and how many tensors of the flat decoder state each member owns."""

    members: list
    sizes: tuple[int, ...]

    @property
    def states(self) -> torch.Tensor:
        return self.members[0].states

    @property
    def num_count(self) -> torch.Tensor:
        return self.members[0].num_count

    def repeat(self, width: int) -> "EnsembleMemory":
        return EnsembleMemory([m.repeat(width) for m in self.members], self.sizes)


class Ensemble:
    """Members decode in step; the decoder state is every member's state tensors ((h, c) for the token
    decoder, more for the operation decoder) in one flat tuple, so the beam's reordering of state rows
    applies to all of them."""

    def __init__(self, models: Sequence[Any], votes: Sequence[int] | None = None):
        check_members(models)
        self.models = list(models)
        self.vocab, self.table, self.meta = models[0].vocab, models[0].table, models[0].meta
        self._log_m = math.log(len(self.models))
        self._log_w = None  # equal votes: the plain mean
        if votes is not None and (len(votes) != len(self.models) or min(votes) < 1):
            raise ValueError(f"votes {list(votes)}: one whole number of at least 1 per member")
        if votes is not None and len(set(votes)) > 1:
            total = sum(votes)
            self._log_w = torch.tensor([math.log(v / total) for v in votes])[:, None, None]

    def eval(self) -> "Ensemble":
        for m in self.models:
            m.eval()
        return self

    def start_from(self, batches: Sequence[dict[str, torch.Tensor]]):
        """(memory, state) from one collated batch per member (the same problems, in the same order)."""
        mems, state, sizes = [], [], []
        for model, batch in zip(self.models, batches):
            mem, own = model.start(batch)
            mems.append(mem)
            state += list(own)
            sizes.append(len(own))
        return EnsembleMemory(mems, tuple(sizes)), tuple(state)

    def step_logp(self, mem: EnsembleMemory, state, prev: torch.Tensor, grammar):
        logps, new_state, at = [], [], 0
        for model, m, size in zip(self.models, mem.members, mem.sizes):
            logp, own = model.step_logp(m, tuple(state[at:at + size]), prev, grammar)
            logps.append(logp)
            new_state += list(own)
            at += size
        if len(logps) == 1:
            return logps[0], tuple(new_state)
        if self._log_w is not None:
            stacked = torch.stack(logps)
            return torch.logsumexp(stacked + self._log_w.to(stacked), 0), tuple(new_state)
        return torch.logsumexp(torch.stack(logps), 0) - self._log_m, tuple(new_state)


@torch.no_grad()
def decode_ensemble(members: Sequence[tuple[Any, FamilyConfig]], examples: Sequence[Any], *,
                    widths: Sequence[int], config: FamilyConfig, device: torch.device,
                    parts: Sequence[Part] | None = None, source: str = "",
                    votes: Sequence[int] | None = None) -> dict[int, list[str]]:
    """Programs of ``examples`` at each width, decoded by the ensemble of ``members`` ((model, its config)
    pairs; each config says how that model reads problems), each with its ``votes`` (default one each).
    ``config`` gives ``max_decode_len``, ``beam_mode`` and ``eval_batch_size``; ``parts``: the examples already
    encoded by each member."""
    ens = Ensemble([m for m, _ in members], votes).eval()
    if parts is None:
        parts = [encode_part("eval", list(examples), m.meta, cfg, source=source, device=device)
                 for m, cfg in members]
    widths = sorted(set(int(w) for w in widths))
    max_len, mode, size = config.max_decode_len, config.beam_mode, config.eval_batch_size
    n = len(parts[0])
    preds: dict[int, list[str]] = {w: [""] * n for w in widths}
    order = np.argsort(parts[-1].src.lengths, kind="stable")  # the slowest encoder last: batch by its lengths
    for begin in range(0, n, size):
        rows = order[begin:begin + size]
        start = ens.start_from([collate(p, rows, device) for p in parts])
        out = decode_widths(ens, widths, max_len, mode=mode, start=start)
        for w, decoded in out.items():
            for r, ids in zip(rows, decoded.tokens):
                preds[w][int(r)] = tokens_to_program(ens.vocab.decode(ids))
    return preds
