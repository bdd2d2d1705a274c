"""An operation-level decoder: the recurrent state advances once per operation, and arguments are chosen by
pointing at candidate representations (``decoder: op`` of the text-to-program families).

The token decoder (:class:`~.models.Decoder`) runs one LSTM step per compact program token
(``divide n0 n1 multiply #0 const_100``), and a step reference ``#0`` is just a learned embedding. Here:

* one LSTM step per **operation**: it advances when an operation's last argument has been read, and its
  input is that finished step's *result representation*
  ``r_k = tanh(W [h; embedding of the operation; its arguments' representations])`` (``hidden`` wide; a
  projection of it to ``emb`` is the step's candidate vector for later ``#k`` arguments);
* an **operation** position (a step may start, or ``<eos>``) is scored from the per-operation state ``h``
  and the embedding of the last operation (with ``attention``: plus a context over the encoder states,
  additive or multiplicative as ``attention_style`` says, with ``h`` as the query) through a vocabulary
  layer;
* an **argument** position is scored by pointing: a query built from ``h`` (and the context), the open
  operation, the argument slot and the previous argument of the step, against every candidate:
  problem number ``k`` (the encoder state at its position, projected, plus an embedding of ``k``; with
  ``copy=False`` the embedding alone), constant ``c`` (a learned vector) or an earlier step ``#k``
  (its candidate vector, plus a learned bias by how many steps back it lies), plus a learned bias per
  token. The scores land on the vocabulary ids of ``nK``, ``const_*`` and ``#k``; the grammar mask
  (``programs.allowed_tokens``) still decides which of them may come.

It keeps the token interface, so training (teacher forcing, label smoothing), grammar masks, greedy and
beam decoding (:mod:`.beam`), ensembles and scoring work unchanged: ``start`` gives a memory and a state,
``step(mem, state, prev_token)`` gives logits over the program vocabulary. The decoder state is a tuple of
tensors with the batch on dimension 1, so beam search reorders and repeats it like the token decoder's
``(h, c)``: ``(h, c, bank, args, info)`` with ``bank`` (S, N, E) the candidate vectors of finished
steps (grown as programs get longer, at most one per ``#k`` token), ``args`` (A, N, E) the open step's
arguments so far, and ``info`` (4, N) the arguments the open step still needs, the arguments it has, the
steps started and the open operation's token. Rows at different places of their programs advance
together under masks (``torch.where``); the token fed decides what happens to each row.

Fully teacher-forced inputs (teacher forcing 1.0, validation loss, re-scoring) take :meth:`OpDecoder.sequence`:
the program's structure is known from the inputs, so the LSTM runs once per operation (a Python loop over
operations, not tokens) and every position is scored in one batched pass; it gives what :meth:`OpDecoder.step`
gives token by token.

A malformed input (only possible unconstrained) is absorbed: an argument where no step is open is ignored, an
operation before the open step is complete starts the next step without finishing that one, and a reference
to a step that has no result reads zeros.

Example::

    model = Seq2Prog(data.meta, encoder, emb=100, hidden=512, layers=1, dropout=0.3, attention=False,
                     copy=True, constrained=True, decoder="op")
    out = beam_search(model, batch, width=10, max_len=100)
"""

from __future__ import annotations

import math

import torch
from torch import nn

from .data import Vocab
from .lstm import lstm_step
from .memory import Memory
from .programs import CONST, NUM, OP, OTHER, REF, TokenTable

__all__ = ["DECODERS", "OpDecoder"]

DECODERS = ("token", "op")
_UNK_ID = Vocab(list(Vocab.SPECIALS)).unk_id
_STYLES = ("bahdanau", "luong")


class OpDecoder(nn.Module):
    """One LSTM step per operation, pointer-scored arguments; see the module docstring.

    The constructor takes :class:`~.models.Decoder`'s arguments. ``emb`` is the size of the operation
    embeddings and of every argument candidate (numbers, constants, step results); ``hidden`` the LSTM's.
    """

    fused = True  # Seq2Prog.teacher_forced may run fully teacher-forced inputs through sequence()

    def __init__(self, table: TokenTable, *, enc_dim: int, summary_dim: int, emb: int, hidden: int, layers: int,
                 dropout: float, attention: bool, copy: bool, attention_style: str = "bahdanau"):
        super().__init__()
        if attention_style not in _STYLES:
            raise ValueError(f"attention_style: {attention_style!r} is not one of {', '.join(_STYLES)}")
        kind = table.kind
        V = int(kind.numel())
        self.num_start, self.max_numbers = table.num_start, max(1, table.num_count)
        self.hidden, self.layers, self.emb = hidden, layers, emb
        self.attention, self.copy = attention, copy
        self.luong = attention and attention_style == "luong"
        self.max_arity = max(1, int(table.arity.max()))
        const_ids = (kind == CONST).nonzero().flatten()
        ref_pos = (kind == REF).nonzero().flatten()
        ref_ids = ref_pos[table.ref_index[ref_pos].argsort()]
        if table.ref_index[ref_ids].tolist() != list(range(len(ref_ids))):
            raise ValueError("step references must be #0, #1, ... without gaps")
        num_ids = torch.arange(table.num_start, table.num_start + table.num_count)
        arg_ids = torch.cat([num_ids, const_ids, ref_ids])
        is_arg_tok = torch.zeros(V, dtype=torch.bool)
        is_arg_tok[arg_ids] = True
        self.num_refs = len(ref_ids)
        for name, value in (("kind", kind), ("arity", table.arity), ("ref_index", table.ref_index),
                            ("const_ids", const_ids), ("arg_ids", arg_ids), ("is_arg_tok", is_arg_tok)):
            self.register_buffer(f"_{name}", value.clone(), persistent=False)

        ctx = enc_dim if attention else 0
        self.embed = nn.Embedding(V, emb)                      # operations; constants' candidate vectors
        self.bridge = nn.Linear(summary_dim, 2 * layers * hidden)
        if attention:
            self.att_q = nn.Linear(hidden, hidden, bias=False)
            self.att_k = nn.Linear(enc_dim, hidden)
            if not self.luong:
                self.att_v = nn.Linear(hidden, 1, bias=False)
        self.lstm = nn.LSTM(hidden, hidden, layers, batch_first=True, dropout=dropout if layers > 1 else 0.0)
        self.combine = nn.Linear(hidden + ctx + emb, hidden)         # operation positions
        self.out = nn.Linear(hidden, V)
        self.num_index = nn.Embedding(self.max_numbers, emb)
        if copy:
            self.num_in = nn.Linear(enc_dim, emb, bias=False)
        self.slot = nn.Embedding(self.max_arity, emb)
        self.arg_combine = nn.Linear(hidden + ctx + 3 * emb, hidden)   # argument positions
        self.arg_q = nn.Linear(hidden, emb)
        self.arg_bias = nn.Parameter(torch.zeros(V))
        self.recency = nn.Parameter(torch.zeros(max(1, self.num_refs)))
        self.result = nn.Linear(hidden + emb + self.max_arity * emb, hidden)
        self.result_key = nn.Linear(hidden, emb)
        self.drop = nn.Dropout(dropout)
        self.attention_log: list[torch.Tensor] | None = None  # see models.record_attention

    # ------------------------------------------------------------------ start
    def start(self, states, mask, summary, num_pos, num_count):
        """(memory, state) for a batch: the number candidates live in ``Memory.num_keys`` (N, K, emb)."""
        N, D = states.shape[0], states.shape[-1]
        K = num_pos.shape[1]
        num_states = states.gather(1, num_pos.unsqueeze(-1).expand(-1, -1, D))
        num_keys = self.num_index.weight[:K].unsqueeze(0).expand(N, -1, -1)
        if self.copy:
            num_keys = num_keys + self.num_in(num_states)
        keys = self.att_k(states) if self.attention else None
        init = self.bridge(summary).view(N, 2, self.layers, self.hidden).permute(1, 2, 0, 3)
        h, c = torch.tanh(init[0]).contiguous(), init[1].contiguous()
        bank = h.new_zeros(1, N, self.emb)
        args = h.new_zeros(self.max_arity, N, self.emb)
        info = torch.zeros(4, N, dtype=torch.long, device=states.device)
        return Memory(states, mask, keys, num_states, num_keys.contiguous(), num_count), (h, c, bank, args, info)

    # ------------------------------------------------------------------ pieces
    def _attend(self, mem: Memory, query: torch.Tensor, log: bool = True) -> torch.Tensor:
        """Context (N, D) over the encoder states for one query (the per-operation state) per row."""
        if self.luong:
            scores = torch.einsum("nh,nlh->nl", self.att_q(query), mem.keys) / math.sqrt(self.hidden)
        else:
            scores = self.att_v(torch.tanh(mem.keys + self.att_q(query).unsqueeze(1))).squeeze(-1)
        alpha = torch.softmax(scores.masked_fill(~mem.mask, float("-inf")), dim=-1)
        if log and self.attention_log is not None:
            self.attention_log.append(alpha.detach())
        return torch.bmm(alpha.unsqueeze(1).to(mem.states.dtype), mem.states).squeeze(1)

    def _candidates(self, mem: Memory, bank: torch.Tensor, tokens: torch.Tensor,
                    limit: torch.Tensor | None = None) -> torch.Tensor:
        """(B, T, E) the representation of argument tokens (B, T): number, constant or step result.

        ``bank`` (B, S, E) holds the step results; ``#k`` reads zeros for k >= S or k >= ``limit`` (B, T)."""
        E, kind = self.emb, self._kind[tokens]
        rep = self.embed(tokens)  # constants (and an unseen <unk> argument)
        K = mem.num_keys.shape[1]
        k = (tokens - self.num_start).clamp(0, K - 1)
        num = mem.num_keys.gather(1, k.unsqueeze(-1).expand(-1, -1, E))
        S = bank.shape[1]
        r = self._ref_index[tokens]
        ref = bank.gather(1, r.clamp(0, S - 1).unsqueeze(-1).expand(-1, -1, E))
        readable = r < S if limit is None else (r < S) & (r < limit)
        ref = ref.masked_fill(~readable.unsqueeze(-1), 0.0)
        rep = torch.where((kind == NUM).unsqueeze(-1), num.to(rep.dtype), rep)
        return torch.where((kind == REF).unsqueeze(-1), ref.to(rep.dtype), rep)

    def _result(self, h, c, op, args):
        """Finish a step for every row: (its result as LSTM input (N, H), as a candidate (N, E), the
        advanced LSTM state). ``args`` (N, A * E)."""
        top = h[-1]
        res = torch.tanh(self.result(torch.cat([top, self.embed(op).to(top.dtype), args.to(top.dtype)], dim=-1)))
        _, (h2, c2) = lstm_step(self.lstm, self.drop(res), (h, c))
        return self.result_key(res), h2, c2

    def _score(self, mem: Memory, top, ctx, need, nargs, steps, op, last, bank, visible=None) -> torch.Tensor:
        """Logits (B, T, V) at T positions per row: from the per-operation state ``top`` (B, T, H) and context
        ``ctx`` at operation positions, by pointing at the candidates where an argument comes next
        (``need`` > 0). ``bank`` (B, S, E) holds the step results, ``visible`` (B, T, S) which of them
        exist at each position (None: every row of ``bank``)."""
        feat_in = [top] if ctx is None else [top, ctx.to(top.dtype)]
        feat = torch.cat([*feat_in, self.embed(op).to(top.dtype)], dim=-1)  # state (+ context) + last operation
        feat = self.drop(torch.tanh(self.combine(self.drop(feat))))
        logits = self.out(feat)
        at_arg = need > 0
        if not bool(at_arg.any()):
            return logits
        A, E, R, device = self.max_arity, self.emb, self.num_refs, top.device
        q_in = [*feat_in, self.embed(op), self.slot(nargs.clamp(0, A - 1)), last]
        q = self.arg_q(self.drop(torch.tanh(self.arg_combine(torch.cat([t.to(top.dtype) for t in q_in], dim=-1)))))
        K = mem.num_keys.shape[1]
        num_s = torch.einsum("bte,bke->btk", q, mem.num_keys.to(q.dtype))
        absent = torch.arange(K, device=device)[None, None, :] >= mem.num_count[:, None, None]
        num_s = num_s.masked_fill(absent, 0.0)
        const_s = q @ self.embed.weight[self._const_ids].to(q.dtype).t()
        S = bank.shape[1]
        ref_s = torch.einsum("bte,bse->bts", q, bank.to(q.dtype))[..., :R]
        if visible is not None:
            ref_s = ref_s.masked_fill(~visible[..., :R], 0.0)
        if S < R:
            ref_s = torch.cat([ref_s, ref_s.new_zeros(*ref_s.shape[:2], R - S)], dim=-1)
        ptr = torch.cat([num_s, const_s, ref_s], dim=-1) / math.sqrt(E) + self.arg_bias[self._arg_ids]
        if R:  # plus a learned bias by how many finished steps back #k lies
            back = (steps - 2).unsqueeze(-1) - torch.arange(R, device=device)
            recency = self.recency[back.clamp(0, R - 1)].masked_fill(back < 0, 0.0)
            ptr = torch.cat([ptr[..., :-R], ptr[..., -R:] + recency.to(ptr.dtype)], dim=-1)
        full = logits.new_zeros(logits.shape).index_copy(2, self._arg_ids, ptr.to(logits.dtype))
        return torch.where(at_arg.unsqueeze(-1) & self._is_arg_tok, full, logits)

    # ------------------------------------------------------------------ the token interface
    def step(self, mem: Memory, state, prev: torch.Tensor):
        """Read token ``prev`` (N,) for every row, then score the next token: (logits (N, V), new state)."""
        h, c, bank, args, info = state
        need, nargs, steps, op = info.unbind(0)
        N, A, device = prev.shape[0], self.max_arity, prev.device
        kind = self._kind[prev]
        is_arg = ((kind == CONST) | (kind == NUM) | (kind == REF) | (kind == OTHER) | (prev == _UNK_ID)) & (need > 0)
        is_op = kind == OP
        if bool(is_arg.any()):
            rep = self._candidates(mem, bank.transpose(0, 1), prev.unsqueeze(1)).squeeze(1)
            hit = (torch.arange(A, device=device)[:, None] == nargs[None, :]) & is_arg[None, :]
            args = torch.where(hit.unsqueeze(-1), rep.unsqueeze(0).to(args.dtype), args)
            finish = is_arg & (need == 1)
            if bool(finish.any()):
                key, h2, c2 = self._result(h, c, op, args.transpose(0, 1).reshape(N, -1))
                f = finish.view(1, N, 1)
                h, c = torch.where(f, h2, h), torch.where(f, c2, c)
                index = steps - 1
                rows = min(self.num_refs, int(index.masked_fill(~finish, -1).max()) + 1)  # bank rows worth keeping
                if rows > bank.shape[0]:
                    bank = torch.cat([bank, bank.new_zeros(rows - bank.shape[0], N, bank.shape[-1])])
                slots = torch.arange(bank.shape[0], device=device)
                write = (slots[:, None] == index[None, :]) & finish[None, :]
                bank = torch.where(write.unsqueeze(-1), key.unsqueeze(0).to(bank.dtype), bank)
            need, nargs = need - is_arg.long(), nargs + is_arg.long()
        if bool(is_op.any()):
            need = torch.where(is_op, self._arity[prev], need)
            nargs = nargs.masked_fill(is_op, 0)
            steps = steps + is_op.long()
            op = torch.where(is_op, prev, op)
            args = args.masked_fill(is_op.view(1, -1, 1), 0.0)
        info = torch.stack([need, nargs, steps, op])
        top = h[-1]
        ctx = self._attend(mem, top).unsqueeze(1) if self.attention else None
        last = args[(nargs - 1).clamp(min=0), torch.arange(N, device=device)]
        last = last.masked_fill((nargs == 0).unsqueeze(-1), 0.0)
        col = lambda t: t.unsqueeze(1)  # noqa: E731
        logits = self._score(mem, col(top), ctx, col(need), col(nargs), col(steps), col(op), col(last),
                             bank.transpose(0, 1))
        return logits.squeeze(1), (h, c, bank, args, info)

    # ------------------------------------------------------------------ teacher forcing, one step per operation
    def sequence(self, mem: Memory, state, inputs: torch.Tensor) -> torch.Tensor:
        """Logits (B, T, V) for fed tokens ``inputs`` (B, T) (``<sos>`` first): what :meth:`step` gives token
        by token, with one LSTM step per *operation* (the program's structure is known from the inputs) and
        every position scored at once. Inputs that are not well-formed programs (possible unconstrained)
        go step by step."""
        B, T = inputs.shape
        A, E, device = self.max_arity, self.emb, inputs.device
        kind = self._kind[inputs]
        t = torch.arange(T, device=device).expand(B, T)
        is_op = kind == OP
        takes_arg = (kind == CONST) | (kind == NUM) | (kind == REF) | (kind == OTHER) | (inputs == _UNK_ID)
        last_op = torch.where(is_op, t, torch.full_like(t, -1)).cummax(1).values   # latest operation so far
        has_op = last_op >= 0
        op = torch.where(has_op, inputs.gather(1, last_op.clamp(min=0)), torch.zeros_like(inputs))
        arity = self._arity[op]
        nread = t - last_op
        open_ = has_op & (nread < arity)                  # the step still needs arguments after this token
        inside = has_op & (nread >= 1) & (nread <= arity)  # this token fills one of the step's argument slots
        was_open = torch.cat([torch.zeros_like(open_[:, :1]), open_[:, :-1]], dim=1)
        if bool(((takes_arg != inside) | (is_op & was_open)).any()):
            return self._stepwise(mem, state, inputs)
        steps = is_op.long().cumsum(1)
        need = torch.where(open_, arity - nread, torch.zeros_like(nread))
        nargs = torch.where(has_op, torch.minimum(nread, arity), torch.zeros_like(nread))
        finished = steps - open_.long()
        n_ops = steps[:, -1]
        J = int(n_ops.max())
        op_pos = torch.zeros(B, J + 1, dtype=torch.long, device=device)
        op_pos.scatter_(1, torch.where(is_op, steps - 1, torch.full_like(steps, J)), t.contiguous())
        h, c = state[0], state[1]
        tops, keys = [h[-1]], []
        slot_ok = torch.arange(A, device=device)
        for j in range(J):
            p = op_pos[:, j]
            op_j = inputs.gather(1, p.unsqueeze(1)).squeeze(1)
            a_j = self._arity[op_j]
            arg_tok = inputs.gather(1, (p.unsqueeze(1) + 1 + slot_ok).clamp(max=T - 1))
            bank = torch.stack(keys, 1) if keys else h.new_zeros(B, 1, E)
            reps = self._candidates(mem, bank, arg_tok).masked_fill((slot_ok >= a_j.unsqueeze(1)).unsqueeze(-1), 0.0)
            key, h2, c2 = self._result(h, c, op_j, reps.reshape(B, A * E))
            complete = ((j < n_ops) & (p + a_j <= T - 1)).view(1, B, 1)
            h, c = torch.where(complete, h2, h), torch.where(complete, c2, c)
            keys.append(key.masked_fill(~complete.view(B, 1), 0.0))
            tops.append(h[-1])
        gather = lambda seq: torch.stack(seq, 1).gather(  # noqa: E731
            1, finished.unsqueeze(-1).expand(-1, -1, seq[0].shape[-1]))
        top = gather(tops)
        ctx = gather([self._attend(mem, q, log=False) for q in tops]) if self.attention else None
        R = self.num_refs
        bank = torch.stack(keys[:R], 1) if keys[:R] else top.new_zeros(B, 1, E)
        visible = torch.arange(bank.shape[1], device=device) < finished.unsqueeze(-1)
        last = self._candidates(mem, bank, inputs, limit=steps - 1).masked_fill(~inside.unsqueeze(-1), 0.0)
        return self._score(mem, top, ctx, need, nargs, steps, op, last, bank, visible)

    def _stepwise(self, mem: Memory, state, inputs: torch.Tensor) -> torch.Tensor:
        out = []
        for t in range(inputs.shape[1]):
            logits, state = self.step(mem, state, inputs[:, t])
            out.append(logits)
        return torch.stack(out, dim=1)
