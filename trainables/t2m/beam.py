"""Greedy decoding and batched beam search for :class:`~.models.Seq2Prog`, written from scratch.

A hypothesis scores the sum of its tokens' log-probabilities under the model (grammar-masked, ``<eos>``
included; no length normalisation). The width is a decode-time setting: one trained model can be
decoded at any width.

Two beam modes:

* ``nested`` (default): beam slot 0 follows the greedy path; slot j takes the best continuation of
  slots 0..j that slots 0..j-1 did not take. Slots 0..w-1 of a width-W search therefore evolve exactly
  as a width-w search, so (1) width 1 is greedy decoding, token for token; (2) a wider beam never ends
  with a lower model log-probability than a narrower one; (3) one width-W pass yields the results for
  every width w <= W (``widths=``).
* ``standard``: the textbook beam, the W best continuations of all hypotheses. Width 1 is still
  greedy, but a wider beam can end lower than a narrower one (its beam may drop the path a narrower
  search keeps).

In both, a hypothesis that emits ``<eos>`` keeps its slot and its score until a better continuation
displaces it, and each slot remembers the best finished hypothesis it held. A width's answer is the
best such record among its slots (a hypothesis cut off at ``max_len`` competes with its partial
score). The search stops as soon as no live hypothesis can beat the records any more (scores only
fall as hypotheses grow), which gives the same answers as running to ``max_len``.

Example::

    out = beam_search(model, batch, width=10, max_len=100, widths=(1, 5, 10))
    assert out[1].tokens == greedy_decode(model, batch, 100).tokens
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Sequence

import torch

from .programs import advance, initial_state

__all__ = ["Decoded", "greedy_decode", "beam_search", "decode_widths", "sequence_logprob", "MODES"]

MODES = ("nested", "standard")


@dataclass
class Decoded:
    """Per item: the output token ids (without ``<eos>``), model log-probability, whether it ended."""

    tokens: list[list[int]]
    scores: torch.Tensor
    finished: torch.Tensor


def _cut(rows: torch.Tensor, eos: int) -> list[list[int]]:
    out = []
    for row in rows.tolist():
        out.append(row[:row.index(eos)] if eos in row else row)
    return out


@torch.no_grad()
def greedy_decode(model, batch, max_len: int, *, start=None) -> Decoded:
    """The most probable token at every step, until ``<eos>`` or ``max_len`` tokens."""
    mem, state = start if start is not None else model.start(batch)
    B, device = mem.states.shape[0], mem.states.device
    eos = model.vocab.eos_id
    grammar = initial_state(B, device)
    prev = torch.full((B,), model.vocab.sos_id, dtype=torch.long, device=device)
    done = torch.zeros(B, dtype=torch.bool, device=device)
    score = torch.zeros(B, device=device)
    out = []
    for _ in range(max_len):
        logp, state = model.step_logp(mem, state, prev, grammar)
        tok = torch.where(done, torch.full_like(prev, eos), logp.argmax(-1))
        score = score + torch.where(done, torch.zeros_like(score), logp.gather(1, tok[:, None]).squeeze(1))
        grammar = advance(model.table, grammar, tok)
        out.append(tok)
        done = done | (tok == eos)
        prev = tok
        if bool(done.all()):
            break
    rows = torch.stack(out, 1) if out else torch.zeros((B, 0), dtype=torch.long, device=device)
    return Decoded(_cut(rows, eos), score, done)


def _nested_select(cand: torch.Tensor, logp: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """(parent, token, dead) per slot (B, W): slot j takes the best untaken continuation of slots 0..j;
    ``dead`` marks slots left with nothing (their score must be -inf)."""
    B, W, V = cand.shape
    ar = torch.arange(B, device=cand.device)
    parent = torch.zeros((B, W), dtype=torch.long, device=cand.device)
    token = torch.zeros((B, W), dtype=torch.long, device=cand.device)
    dead = torch.zeros((B, W), dtype=torch.bool, device=cand.device)
    token[:, 0] = logp[:, 0].argmax(-1)          # exactly the greedy decoder's choice
    if W == 1:
        return parent, token, dead
    k = min(W, V)
    top_v, top_i = cand.topk(k, dim=2)           # no slot needs more than W children of one parent
    top_v = top_v.clone()
    top_v[:, 0] = top_v[:, 0].masked_fill(top_i[:, 0] == token[:, :1], float("-inf"))
    flat = top_v.reshape(B, W * k)
    parent_of = torch.arange(W * k, device=cand.device) // k
    for j in range(1, W):
        masked = flat.masked_fill(parent_of[None, :] > j, float("-inf"))
        idx = masked.argmax(-1)
        dead[:, j] = masked.gather(1, idx[:, None]).squeeze(1) == float("-inf")
        parent[:, j] = idx // k
        token[:, j] = top_i.reshape(B, W * k).gather(1, idx[:, None]).squeeze(1)
        flat[ar, idx] = float("-inf")
    return parent, token, dead


@torch.no_grad()
def beam_search(model, batch, width: int, max_len: int, *, mode: str = "nested",
                widths: Sequence[int] | None = None, start=None) -> Decoded | dict[int, Decoded]:
    """Beam search of ``width`` (see the module docstring). With ``widths`` (nested mode only; each
    at most ``width``) returns ``{w: Decoded}`` for each of them from this one pass."""
    if width < 1:
        raise ValueError("width must be at least 1")
    if mode not in MODES:
        raise ValueError(f"mode must be one of {MODES}")
    if widths is not None and (mode != "nested" and list(widths) != [width]
                               or any(not 1 <= w <= width for w in widths)):
        raise ValueError("widths needs nested mode and values between 1 and width")
    mem, state = start if start is not None else model.start(batch)
    B, device = mem.states.shape[0], mem.states.device
    W, V = width, len(model.vocab)
    eos, inf = model.vocab.eos_id, float("inf")
    if W > 1:
        mem = mem.repeat(W)
        state = tuple(s.repeat_interleave(W, 1) for s in state)
    grammar = initial_state(B * W, device)
    prev = torch.full((B * W,), model.vocab.sos_id, dtype=torch.long, device=device)
    scores = torch.full((B, W), -inf, device=device)
    scores[:, 0] = 0.0
    finished = torch.zeros((B, W), dtype=torch.bool, device=device)
    hist = torch.zeros((B, W, max_len), dtype=torch.long, device=device)
    rec_score = torch.full((B, W), -inf, device=device)
    rec_tokens = torch.zeros_like(hist)
    fin_row = torch.full((V,), -inf, device=device)
    fin_row[eos] = 0.0
    base = (torch.arange(B, device=device) * W)[:, None]
    nested = mode == "nested" or W == 1
    for t in range(max_len):
        logp, new_state = model.step_logp(mem, state, prev, grammar)
        logp = torch.where(finished[..., None], fin_row, logp.view(B, W, V))
        cand = scores[..., None] + logp
        if nested:
            parent, tok, dead = _nested_select(cand, logp)
        else:
            idx = cand.view(B, W * V).topk(W, dim=1).indices
            parent, tok, dead = idx // V, idx % V, None
        scores = cand.view(B, W * V).gather(1, parent * V + tok)
        if dead is not None:
            scores = scores.masked_fill(dead, -inf)
        rows = (base + parent).view(-1)
        state = tuple(s.index_select(1, rows) for s in new_state)
        grammar = advance(model.table, grammar.select(rows), tok.view(-1))
        finished = finished.gather(1, parent) | (tok == eos)
        hist = hist.gather(1, parent[..., None].expand(-1, -1, max_len))
        hist[:, :, t] = tok
        better = finished & (scores > rec_score)
        rec_score = torch.where(better, scores, rec_score)
        rec_tokens = torch.where(better[..., None], hist, rec_tokens)
        prev = tok.view(-1)
        live = scores.masked_fill(finished, -inf)
        if nested:  # every width w: the records of slots < w beat every live hypothesis of slots < w
            stop = (rec_score.cummax(1).values > live.cummax(1).values).all()
        else:
            stop = (rec_score.max(1).values > live.max(1).values).all()
        if bool(stop):
            break
    use_live = ~finished & (scores > rec_score)
    final = torch.where(use_live, scores, rec_score)
    seqs = torch.where(use_live[..., None], hist, rec_tokens)

    def answer(w: int) -> Decoded:
        best = final[:, :w].argmax(1)
        rows_ = seqs[torch.arange(B, device=device), best]
        done = ~use_live[torch.arange(B, device=device), best]
        return Decoded(_cut(rows_, eos), final[torch.arange(B, device=device), best], done)

    if widths is None:
        return answer(W)
    return {w: answer(w) for w in widths}


@torch.no_grad()
def decode_widths(model, widths: Sequence[int], max_len: int, *, mode: str, start) -> dict[int, Decoded]:
    """``{w: Decoded}`` for each of the sorted ``widths`` from one ``start``: greedy alone for ``[1]``, one
    nested pass for all widths, else greedy for width 1 and one standard beam per wider width."""
    if list(widths) == [1]:
        return {1: greedy_decode(model, None, max_len, start=start)}
    if mode == "nested":
        return beam_search(model, None, max(widths), max_len, widths=widths, start=start)
    return {w: greedy_decode(model, None, max_len, start=start) if w == 1 else
            beam_search(model, None, w, max_len, mode=mode, start=start) for w in widths}


@torch.no_grad()
def sequence_logprob(model, batch, decoded: Decoded, *, start=None) -> torch.Tensor:
    """Model log-probability (B,) of decoded outputs, recomputed with teacher forcing (``<eos>``
    included for finished ones): the quantity beam search maximises."""
    mem, state = start if start is not None else model.start(batch)
    B, device = mem.states.shape[0], mem.states.device
    eos, pad = model.vocab.eos_id, model.vocab.pad_id
    seqs = [list(t) + ([eos] if bool(f) else []) for t, f in zip(decoded.tokens, decoded.finished)]
    T = max(1, max(len(s) for s in seqs))
    tgt = torch.full((B, T), pad, dtype=torch.long, device=device)
    for i, s in enumerate(seqs):
        tgt[i, :len(s)] = torch.tensor(s, dtype=torch.long)
    logp = model.teacher_forced(mem, state, tgt)
    picked = logp.gather(-1, tgt.unsqueeze(-1)).squeeze(-1)
    return picked.masked_fill(tgt == pad, 0.0).sum(1)
