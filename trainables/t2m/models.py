"""Encoder-decoder models that translate a problem into compact program tokens.

Encoders (each returns per-position states, a mask and one summary vector per problem):

* :class:`GloveEncoder`: GloVe embeddings (projected when ``emb`` differs from the GloVe size) plus a
  learned embedding of "this token holds number k", then a BiLSTM;
* :class:`PretrainedEncoder`: a BERT-family model run inside the model (fine-tuning);
* :class:`TopLayers`: its top layers only, over states its frozen lower layers computed once per dataset;
* :class:`CachedStates`: states computed once per dataset by a frozen encoder arrive with the batch.

:class:`Decoder`: an LSTM over the previous token (plus, with ``attention``, a Bahdanau additive-attention
context computed from the previous decoder state), then a combined feature that scores the vocabulary.
``attention_style="luong"`` moves the attention after the LSTM (multiplicative scores, the LSTM output as
query, context into the combined feature only): the LSTM then no longer waits for each step's context,
so fully teacher-forced training runs all steps in one fused LSTM call and one batched attention.
With ``copy`` the scores of ``n0 .. nK`` add a pointer term: the feature against the encoder state at
number k's input position plus a learned embedding of k; the embedding of an emitted ``nK`` also adds
that encoder state. Without attention the number pointer is the decoder's only access to the encoder
states beyond the initial state (``copy=False`` gives the plain model).

:class:`~.opdecoder.OpDecoder` (``decoder="op"``) is the same interface with one LSTM step per operation and
arguments chosen by pointing at numbers, constants and earlier steps' result representations.

:class:`Seq2Prog` ties them together with the grammar (``programs.allowed_tokens``): log-probabilities
are normalised over allowed tokens only, in training and decoding alike. The model's vocabularies and
family name (and ``decoder`` when it is not the token decoder) live in a byte buffer of its state dict
(``meta_json``), so ``state.pt`` plus ``config.json`` rebuild it.

:func:`record_attention` collects the decoder's attention weights step by step (report heat maps).

Example::

    model = Seq2Prog(data.meta, GloveEncoder(...), emb=100, hidden=512, layers=1, dropout=0.3,
                     attention=True, copy=True, constrained=True)
    mem, state = model.start(batch)
    logp, state = model.step_logp(mem, state, prev_tokens, grammar_state)
"""

from __future__ import annotations

import contextlib
import json
import math
from dataclasses import replace
from typing import Any, Iterator

import numpy as np
import torch
from torch import nn

from ..checkpoints import state_meta
from .data import Vocab
from .lstm import lstm_step
from .memory import Memory
from .opdecoder import DECODERS, OpDecoder
from .programs import GrammarState, TokenTable, advance, allowed_tokens, initial_state

__all__ = ["Memory", "GloveEncoder", "PretrainedEncoder", "TopLayers", "CachedStates", "Decoder", "OpDecoder",
           "DECODERS", "Seq2Prog", "meta_of_state", "record_attention"]


def _masked_mean(states: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    m = mask.unsqueeze(-1).to(states.dtype)
    return (states * m).sum(1) / m.sum(1).clamp(min=1.0)


def _reverse_index(lengths: torch.Tensor, T: int) -> torch.Tensor:
    """(N, T) positions that reverse each row's first ``lengths[n]`` entries and leave its padding in place;
    the map is its own inverse."""
    t = torch.arange(T, device=lengths.device)[None, :]
    return torch.where(t < lengths[:, None], lengths[:, None] - 1 - t, t)


def padded_bilstm(lstm: nn.LSTM, x: torch.Tensor, mask: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """A batch-first bidirectional ``lstm`` over right-padded ``x`` (N, T, E) without packing.

    Gives what ``pack_padded_sequence`` gives (states (N, T, 2H) with zeros at padding; the top layer's last
    forward and backward hidden states (N, 2H)) but runs each direction of each layer as one padded LSTM
    call, about twice as fast on CPU: the forward direction reads padding only after the real tokens, and
    the backward direction runs forward over each row reversed within its length. The module's own
    weights are used, so checkpoints are the same either way.
    """
    N, T = mask.shape
    lengths = mask.sum(1).clamp(min=1)
    rev = _reverse_index(lengths, T).unsqueeze(-1)
    keep = mask.unsqueeze(-1).to(x.dtype)
    H, out, last = lstm.hidden_size, x, None
    for layer in range(lstm.num_layers):
        if layer and lstm.dropout and lstm.training:
            out = nn.functional.dropout(out, lstm.dropout, training=True)
        zeros = out.new_zeros(1, N, H)
        halves = []
        for suffix, seq in (("", out), ("_reverse", out.gather(1, rev.expand(-1, -1, out.shape[-1])))):
            w = [getattr(lstm, f"{name}_l{layer}{suffix}") for name in ("weight_ih", "weight_hh", "bias_ih", "bias_hh")]
            y = torch._VF.lstm(seq, (zeros, zeros), w, True, 1, 0.0, lstm.training, False, True)[0]
            halves.append(y if not suffix else y.gather(1, rev.expand(-1, -1, H)))
        out = torch.cat(halves, dim=-1) * keep
        last = (halves[0].gather(1, (lengths - 1).view(N, 1, 1).expand(-1, 1, H)).squeeze(1), halves[1][:, 0])
    return out, torch.cat(last, dim=-1)


class GloveEncoder(nn.Module):
    def __init__(self, vocab_size: int, glove_dim: int, *, emb: int, hidden: int, layers: int, dropout: float,
                 max_numbers: int, glove: np.ndarray | None = None, found: np.ndarray | None = None,
                 freeze: bool = False):
        super().__init__()
        self.embed = nn.Embedding(vocab_size, glove_dim, padding_idx=0)
        if glove is not None:
            with torch.no_grad():
                keep = torch.from_numpy(~found) if found is not None else torch.zeros(vocab_size, dtype=torch.bool)
                scale = float(np.std(glove[found])) if found is not None and found.any() else 0.1
                init = torch.tensor(np.asarray(glove, dtype=np.float32))
                init[keep] = torch.randn(int(keep.sum()), glove_dim) * scale
                init[0] = 0.0
                self.embed.weight.copy_(init)
        self.embed.weight.requires_grad_(not freeze)
        self.proj = nn.Linear(glove_dim, emb) if emb != glove_dim else nn.Identity()
        self.slot = nn.Embedding(max_numbers + 1, emb, padding_idx=0)
        self.drop = nn.Dropout(dropout)
        self.lstm = nn.LSTM(emb, hidden, layers, batch_first=True, bidirectional=True,
                            dropout=dropout if layers > 1 else 0.0)
        self.out_dim = self.summary_dim = 2 * hidden

    def forward(self, batch: dict[str, torch.Tensor]):
        src, mask = batch["src"], batch["src_mask"]
        x = self.drop(self.proj(self.embed(src)) + self.slot(batch["num_slot"]))
        states, summary = padded_bilstm(self.lstm, x, mask)
        return states, mask, summary


class PretrainedEncoder(nn.Module):
    """A BERT-family encoder trained with the decoder; summary = mean of its states."""

    def __init__(self, model: nn.Module):
        super().__init__()
        self.model = model
        self.out_dim = self.summary_dim = int(model.config.hidden_size)

    def forward(self, batch):
        mask = batch["src_mask"]
        states = self.model(input_ids=batch["src"], attention_mask=mask.long()).last_hidden_state
        return states, mask, _masked_mean(states, mask)


class TopLayers(nn.Module):
    """The top ``trained`` transformer layers of a BERT-family encoder, trained with the decoder, over states
    that the frozen layers below computed once per dataset (``batch["states"]``); summary = mean of the
    states. The same outputs as the whole encoder with its lower layers frozen, at a fraction of the cost."""

    def __init__(self, model: nn.Module, trained: int):
        super().__init__()
        layers = model.encoder.layer
        if not 0 < trained <= len(layers):
            raise ValueError(f"trained layers must be 1..{len(layers)}, not {trained}")
        self.config = model.config
        self.layers = nn.ModuleList(layers[len(layers) - trained:])
        self.out_dim = self.summary_dim = int(model.config.hidden_size)

    def forward(self, batch):
        from transformers.masking_utils import create_bidirectional_mask

        states, mask = batch["states"], batch["src_mask"]
        full = create_bidirectional_mask(config=self.config, inputs_embeds=states, attention_mask=mask.long())
        for layer in self.layers:
            states = layer(states, full)
        return states, mask, _masked_mean(states, mask)


class CachedStates(nn.Module):
    """Frozen-encoder states computed once per dataset; summary = mean of the states."""

    def __init__(self, dim: int):
        super().__init__()
        self.out_dim = self.summary_dim = dim

    def forward(self, batch):
        states, mask = batch["states"], batch["src_mask"]
        return states, mask, _masked_mean(states, mask)


ATTENTION_STYLES = ("bahdanau", "luong")


class Decoder(nn.Module):
    def __init__(self, table: TokenTable, *, enc_dim: int, summary_dim: int, emb: int, hidden: int, layers: int,
                 dropout: float, attention: bool, copy: bool, attention_style: str = "bahdanau"):
        super().__init__()
        if attention_style not in ATTENTION_STYLES:
            raise ValueError(f"attention_style: {attention_style!r} is not one of {', '.join(ATTENTION_STYLES)}")
        V = int(table.kind.numel())
        self.num_start, self.max_numbers = table.num_start, table.num_count
        self.hidden, self.layers, self.attention, self.copy = hidden, layers, attention, copy
        self.luong = attention and attention_style == "luong"
        self.embed = nn.Embedding(V, emb)
        self.bridge = nn.Linear(summary_dim, 2 * layers * hidden)
        ctx = enc_dim if attention else 0
        if attention:
            self.att_q = nn.Linear(hidden, hidden, bias=False)
            self.att_k = nn.Linear(enc_dim, hidden)
            if not self.luong:
                self.att_v = nn.Linear(hidden, 1, bias=False)
        lstm_in = emb if self.luong else emb + ctx
        self.lstm = nn.LSTM(lstm_in, hidden, layers, batch_first=True, dropout=dropout if layers > 1 else 0.0)
        self.combine = nn.Linear(hidden + ctx + emb, hidden)
        self.out = nn.Linear(hidden, V)
        if copy:
            self.copy_in = nn.Linear(enc_dim, emb, bias=False)
            self.ptr_q = nn.Linear(hidden, hidden, bias=False)
            self.ptr_k = nn.Linear(enc_dim, hidden)
            self.num_index = nn.Embedding(max(1, self.max_numbers), hidden)
        self.drop = nn.Dropout(dropout)
        self.attention_log: list[torch.Tensor] | None = None  # see record_attention

    def start(self, states, mask, summary, num_pos, num_count) -> tuple[Memory, tuple[torch.Tensor, torch.Tensor]]:
        N, D = states.shape[0], states.shape[-1]
        num_states = states.gather(1, num_pos.unsqueeze(-1).expand(-1, -1, D))
        keys = self.att_k(states) if self.attention else None
        num_keys = self.ptr_k(num_states) + self.num_index.weight[: num_pos.shape[1]] if self.copy else None
        init = self.bridge(summary).view(N, 2, self.layers, self.hidden).permute(1, 2, 0, 3)
        state = (torch.tanh(init[0]).contiguous(), init[1].contiguous())
        return Memory(states, mask, keys, num_states, num_keys, num_count), state

    def _embed(self, mem: Memory, tokens: torch.Tensor) -> torch.Tensor:
        """(N, T) tokens -> (N, T, emb); an emitted nK also carries the encoder state of number k."""
        e = self.embed(tokens)
        if self.copy:
            k = tokens - self.num_start
            is_num = (k >= 0) & (k < self.max_numbers)
            idx = k.clamp(0, max(0, self.max_numbers - 1))
            picked = mem.num_states.gather(1, idx.unsqueeze(-1).expand(-1, -1, mem.num_states.shape[-1]))
            e = e + self.copy_in(picked) * is_num.unsqueeze(-1).to(e.dtype)
        return self.drop(e)

    @property
    def fused(self) -> bool:
        """Whether fully teacher-forced training can run every step in one LSTM call (:meth:`sequence`)."""
        return not self.attention or self.luong

    def _attend(self, mem: Memory, query: torch.Tensor) -> torch.Tensor:
        """Context (N, D) for one query per row (N, H), or (N, T, D) for a sequence of queries (N, T, H)."""
        if self.luong:   # multiplicative scores against the keys: all T queries in one batched matmul
            q = self.att_q(query)
            seq = q.dim() == 3
            scores = torch.matmul(q if seq else q.unsqueeze(1), mem.keys.transpose(1, 2)) / math.sqrt(self.hidden)
            alpha = torch.softmax(scores.masked_fill(~mem.mask[:, None, :], float("-inf")), dim=-1)
            if self.attention_log is not None and not seq:
                self.attention_log.append(alpha[:, 0].detach())
            ctx = torch.bmm(alpha, mem.states)
            return ctx if seq else ctx.squeeze(1)
        scores = self.att_v(torch.tanh(mem.keys + self.att_q(query).unsqueeze(1))).squeeze(-1)
        alpha = torch.softmax(scores.masked_fill(~mem.mask, float("-inf")), dim=-1)
        if self.attention_log is not None:
            self.attention_log.append(alpha.detach())
        return torch.bmm(alpha.unsqueeze(1), mem.states).squeeze(1)

    def _logits(self, mem: Memory, out: torch.Tensor, ctx: torch.Tensor | None, e: torch.Tensor) -> torch.Tensor:
        parts = [out, e] if ctx is None else [out, ctx, e]
        feat = self.drop(torch.tanh(self.combine(self.drop(torch.cat(parts, dim=-1)))))
        logits = self.out(feat)
        if not self.copy:
            return logits
        q = self.ptr_q(feat)                                            # (N, [T,] H)
        if q.dim() == 2:
            ptr = torch.einsum("nh,nkh->nk", q, mem.num_keys)
            valid = torch.arange(mem.num_keys.shape[1], device=q.device)[None, :] < mem.num_count[:, None]
        else:
            ptr = torch.einsum("nth,nkh->ntk", q, mem.num_keys)
            valid = (torch.arange(mem.num_keys.shape[1], device=q.device)[None, :] < mem.num_count[:, None])[:, None]
        ptr = (ptr / math.sqrt(self.hidden)).masked_fill(~valid, 0.0)
        lo, K = self.num_start, ptr.shape[-1]
        return torch.cat([logits[..., :lo], logits[..., lo:lo + K] + ptr, logits[..., lo + K:]], dim=-1)

    def step(self, mem: Memory, state, prev: torch.Tensor):
        """One step for every row: (logits (N, V), new state)."""
        e = self._embed(mem, prev.unsqueeze(1)).squeeze(1)
        if self.luong:
            out, state = lstm_step(self.lstm, e, state)
            return self._logits(mem, out, self._attend(mem, out), e), state
        ctx = self._attend(mem, state[0][-1]) if self.attention else None
        inp = e if ctx is None else torch.cat([e, ctx], dim=-1)
        out, state = lstm_step(self.lstm, inp, state)
        return self._logits(mem, out, ctx, e), state

    def sequence(self, mem: Memory, state, inputs: torch.Tensor) -> torch.Tensor:
        """All steps at once for fully teacher-forced inputs (N, T); only for :attr:`fused` decoders (no
        attention, or Luong attention, whose queries are the LSTM outputs)."""
        assert self.fused
        e = self._embed(mem, inputs)
        out, _ = self.lstm(e, state)
        return self._logits(mem, out, self._attend(mem, out) if self.attention else None, e)


@contextlib.contextmanager
def record_attention(model: "Seq2Prog") -> Iterator[list[torch.Tensor]]:
    """Collect the attention weights of every decoder step run inside the block, in order.

    Each entry is ``(N, L)``: one row per decoder row (per hypothesis in a beam search) over the encoder
    positions, summing to 1 over the real positions and 0 at padding. Outside the block nothing is
    recorded (one ``None`` check per step). Needs a decoder with ``attention``.

    Example::

        with record_attention(model) as log:
            out = greedy_decode(model, batch, 100)
        weights = torch.stack(log, 1)        # (B, steps, L); step t produced token t (then <eos>)
    """
    decoder = model.decoder
    if not decoder.attention:
        raise ValueError("record_attention: this model's decoder has no attention")
    previous, decoder.attention_log = decoder.attention_log, []
    try:
        yield decoder.attention_log
    finally:
        decoder.attention_log = previous


def meta_of_state(model_state: dict[str, torch.Tensor]) -> dict[str, Any]:
    """The metadata (family, vocabularies) stored in a model state dict (ValueError for another model's)."""
    meta = state_meta(model_state)
    if meta is None:
        raise ValueError("not a text-to-program model state (no meta_json)")
    return meta


class Seq2Prog(nn.Module):
    """Encoder + decoder + grammar; see the module docstring."""

    def __init__(self, meta: dict[str, Any], encoder: nn.Module, *, emb: int, hidden: int, layers: int,
                 dropout: float, attention: bool, copy: bool, constrained: bool, attention_style: str = "bahdanau",
                 decoder: str = "token"):
        super().__init__()
        if decoder not in DECODERS:
            raise ValueError(f"decoder: {decoder!r} is not one of {', '.join(DECODERS)}")
        if decoder != "token":  # recorded in the state; token models keep the meta they always had
            meta = {**meta, "decoder": decoder}
        self.meta = meta
        self.vocab = Vocab.from_dict(meta["program_vocab"])
        table = TokenTable.from_vocab(self.vocab)
        self.constrained = constrained
        blob = json.dumps(meta, sort_keys=True).encode("utf-8")
        self.register_buffer("meta_json", torch.tensor(list(blob), dtype=torch.uint8))
        for name in ("kind", "arity", "num_index", "ref_index"):
            self.register_buffer(f"_table_{name}", getattr(table, name), persistent=False)
        self._table = table
        self.encoder = encoder
        kind = OpDecoder if decoder == "op" else Decoder
        self.decoder = kind(table, enc_dim=encoder.out_dim, summary_dim=encoder.summary_dim, emb=emb,
                            hidden=hidden, layers=layers, dropout=dropout, attention=attention, copy=copy,
                            attention_style=attention_style)

    @property
    def table(self) -> TokenTable:
        t = self._table
        if t.kind.device != self._table_kind.device:
            self._table = t = replace(t, kind=self._table_kind, arity=self._table_arity,
                                      num_index=self._table_num_index, ref_index=self._table_ref_index)
        return t

    # ------------------------------------------------------------------ encoding and one step
    def start(self, batch: dict[str, torch.Tensor]):
        """(memory, initial decoder state) for a batch."""
        states, mask, summary = self.encoder(batch)
        return self.decoder.start(states, mask, summary, batch["num_pos"], batch["num_count"])

    def masked_logp(self, logits: torch.Tensor, allowed: torch.Tensor) -> torch.Tensor:
        return torch.log_softmax(logits.masked_fill(~allowed, float("-inf")), dim=-1)

    def step_logp(self, mem: Memory, state, prev: torch.Tensor, grammar: GrammarState):
        """(log-probabilities over allowed next tokens (N, V), new decoder state)."""
        logits, state = self.decoder.step(mem, state, prev)
        allowed = allowed_tokens(self.table, grammar, mem.num_count, self.constrained)
        return self.masked_logp(logits, allowed), state

    # ------------------------------------------------------------------ training
    def teacher_forced(self, mem: Memory, state, tgt: torch.Tensor, *, teacher_forcing: float = 1.0,
                       coins: torch.Tensor | None = None, force_steps: bool = False) -> torch.Tensor:
        """Log-probabilities (B, T, V) of each gold position given the gold prefix (teacher forcing 1) or,
        per position with probability 1 - ``teacher_forcing``, the model's own previous argmax token.

        The grammar mask always follows the gold prefix (the target must stay reachable).
        """
        B, T = tgt.shape
        table = self.table
        grammar = initial_state(B, tgt.device)
        allowed = []
        for t in range(T):
            allowed.append(allowed_tokens(table, grammar, mem.num_count, self.constrained))
            grammar = advance(table, grammar, tgt[:, t])
        allowed_all = torch.stack(allowed, dim=1)
        sos = torch.full((B, 1), self.vocab.sos_id, dtype=torch.long, device=tgt.device)
        mixing = teacher_forcing < 1.0 and coins is not None
        if self.decoder.fused and not mixing and not force_steps:
            logits = self.decoder.sequence(mem, state, torch.cat([sos, tgt[:, :-1]], dim=1))
            return self.masked_logp(logits, allowed_all)
        prev = sos[:, 0]
        out = []
        for t in range(T):
            logits, state = self.decoder.step(mem, state, prev)
            logp = self.masked_logp(logits, allowed_all[:, t])
            out.append(logp)
            prev = tgt[:, t]
            if mixing:
                prev = torch.where(coins[:, t] < teacher_forcing, prev, logp.detach().argmax(-1))
        return torch.stack(out, dim=1)

    def token_losses(self, logp: torch.Tensor, tgt: torch.Tensor, label_smoothing: float = 0.0):
        """(sum of per-token losses, number of scored tokens); padding and <unk> targets are not scored.

        Label smoothing spreads its share over the allowed tokens only."""
        scored = (tgt != self.vocab.pad_id) & (tgt != self.vocab.unk_id)
        nll = -logp.gather(-1, tgt.unsqueeze(-1)).squeeze(-1)
        if label_smoothing > 0:
            finite = torch.isfinite(logp)
            smooth = -(logp.masked_fill(~finite, 0.0).sum(-1) / finite.sum(-1).clamp(min=1))
            nll = (1 - label_smoothing) * nll + label_smoothing * smooth
        nll = nll.masked_fill(~scored, 0.0)
        return nll.sum(), scored.sum()
