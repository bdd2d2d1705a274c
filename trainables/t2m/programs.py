"""Programs as decoder token sequences, the program vocabulary and the decoding grammar.

The decoders emit a *compact* form of a linear formula: each step is its operation name followed by
its arguments, with no brackets, commas or bars, so ``divide(n0,n1)|multiply(#0,const_100)|`` becomes
``divide n0 n1 multiply #0 const_100``. The arity of an operation is fixed by its name (spec section
6.1) and every gold step in the COL775 train and dev files has exactly that many arguments, written
``op(a,b)`` without spaces; so :func:`tokens_to_program` rebuilds every gold program exactly (up to the
optional trailing ``|``, which scoring ignores) from half as many decoder steps.

The vocabulary (:func:`build_program_vocab`) holds the checker's 48 operations (a fixed grammar, most
frequent in training first) and the constants seen in training data, then ``n0 .. n{K-1}`` (K = most numbers in a training problem) and ``#0 .. #{S-2}`` (S = most steps in a
training program), each range contiguous so a decoder can point at numbers by index.

:class:`TokenTable` describes every token (operation and its arity, constant, number ``nK``, step
reference ``#k``). With it :func:`allowed_tokens` and :func:`advance` implement *constrained decoding*:
after an operation come exactly its arguments, ``nK`` only for numbers the problem has, ``#k`` only for
finished steps, and ``<eos>`` only after a complete step. Every constrained output executes unless the
arithmetic itself fails.

Example::

    >>> program_to_tokens("divide(n0,n1)|multiply(#0,const_100)|")
    ['divide', 'n0', 'n1', 'multiply', '#0', 'const_100']
    >>> tokens_to_program(['divide', 'n0', 'n1', 'multiply', '#0', 'const_100'])
    'divide(n0,n1)|multiply(#0,const_100)|'
"""

from __future__ import annotations

import re
from collections import Counter
from dataclasses import dataclass
from typing import Iterable

import torch

from .data import Vocab
from .executor import OPERATIONS

__all__ = [
    "program_to_tokens",
    "tokens_to_program",
    "build_program_vocab",
    "TokenTable",
    "GrammarState",
    "initial_state",
    "advance",
    "allowed_tokens",
]

_NUM = re.compile(r"n(\d+)")
_REF = re.compile(r"#(\d+)")

_UNK_ID = Vocab(list(Vocab.SPECIALS)).unk_id

# token kinds
SPECIAL, EOS, OP, CONST, NUM, REF, OTHER = range(7)


def program_to_tokens(program: str) -> list[str]:
    """The compact decoder tokens of a program: per step the operation, then its arguments.

    Lenient like the checker: empty pieces between bars are skipped, a missing ``)`` is tolerated and
    arguments are trimmed.

    Example::

        >>> program_to_tokens("power(n1,n0)")
        ['power', 'n1', 'n0']
    """
    out: list[str] = []
    for piece in program.split("|"):
        if not piece:
            continue
        op, _, rest = piece.partition("(")
        out.append(op)
        args = rest.split(")", 1)[0]
        out.extend(a.strip() for a in args.split(",") if a.strip())
    return out


def tokens_to_program(tokens: Iterable[str]) -> str:
    """Rebuild ``op(a,b)|op(c)|`` from compact tokens; a token that is not an operation is an argument.

    Arguments before the first operation form a step with an empty name (which fails to execute).

    Example::

        >>> tokens_to_program(["add", "n0", "n1", "sqrt", "#0"])
        'add(n0,n1)|sqrt(#0)|'
    """
    steps: list[tuple[str, list[str]]] = []
    for tok in tokens:
        if tok in OPERATIONS or not steps:
            steps.append((tok, []) if tok in OPERATIONS else ("", [tok]))
        else:
            steps[-1][1].append(tok)
    return "".join(f"{op}({','.join(args)})|" for op, args in steps)


def build_program_vocab(programs: Iterable[str], max_numbers: int) -> Vocab:
    """Program vocabulary from training programs only (see the module docstring for the order).

    Example::

        >>> v = build_program_vocab(["add(n0,const_2)|divide(#0,n1)"], 2)
        >>> v.tokens[4:6], v.tokens[-4:]
        (['add', 'divide'], ['const_2', 'n0', 'n1', '#0'])
    """
    ops: Counter[str] = Counter()
    consts: Counter[str] = Counter()
    max_steps = 1
    for program in programs:
        toks = program_to_tokens(program)
        n_ops = 0
        for tok in toks:
            if tok in OPERATIONS:
                ops[tok] += 1
                n_ops += 1
            elif tok.startswith("const_"):
                consts[tok] += 1
        max_steps = max(max_steps, n_ops)
    by_count = lambda c: sorted(c, key=lambda t: (-c[t], t))  # noqa: E731
    tokens = [*Vocab.SPECIALS, *by_count({op: ops[op] for op in OPERATIONS}), *by_count(consts)]
    tokens += [f"n{k}" for k in range(max(1, max_numbers))]
    tokens += [f"#{k}" for k in range(max_steps - 1)]
    return Vocab(tokens)


@dataclass(frozen=True)
class TokenTable:
    """Per-token facts as tensors of length ``V``: kind, arity (operations), number and step index.

    ``num_start`` and ``num_count`` locate the contiguous ``n0 ..`` block.
    """

    kind: torch.Tensor
    arity: torch.Tensor
    num_index: torch.Tensor
    ref_index: torch.Tensor
    num_start: int
    num_count: int
    eos_id: int
    sos_id: int

    @classmethod
    def from_vocab(cls, vocab: Vocab) -> "TokenTable":
        kinds, arity, num, ref = [], [], [], []
        for tok in vocab.tokens:
            k, a, n, r = OTHER, 0, -1, -1
            if tok == Vocab.EOS:
                k = EOS
            elif tok in Vocab.SPECIALS:
                k = SPECIAL
            elif tok in OPERATIONS:
                k, a = OP, OPERATIONS[tok]
            elif tok.startswith("const_"):
                k = CONST
            elif _NUM.fullmatch(tok):
                k, n = NUM, int(tok[1:])
            elif _REF.fullmatch(tok):
                k, r = REF, int(tok[1:])
            kinds.append(k)
            arity.append(a)
            num.append(n)
            ref.append(r)
        nums = [i for i, k in enumerate(kinds) if k == NUM]
        if nums and (nums != list(range(nums[0], nums[0] + len(nums)))
                     or [num[i] for i in nums] != list(range(len(nums)))):
            raise ValueError("number tokens must be n0, n1, ... in order and contiguous in the vocabulary")
        t = lambda xs: torch.tensor(xs, dtype=torch.long)  # noqa: E731
        return cls(t(kinds), t(arity), t(num), t(ref), nums[0] if nums else 0, len(nums), vocab.eos_id,
                   vocab.sos_id)

    def to(self, device: torch.device) -> "TokenTable":
        return TokenTable(self.kind.to(device), self.arity.to(device), self.num_index.to(device),
                          self.ref_index.to(device), self.num_start, self.num_count, self.eos_id, self.sos_id)


@dataclass(frozen=True)
class GrammarState:
    """Per hypothesis: arguments still needed by the current step, and steps started so far."""

    need: torch.Tensor  # (N,) long
    steps: torch.Tensor  # (N,) long

    def select(self, rows: torch.Tensor) -> "GrammarState":
        return GrammarState(self.need.index_select(0, rows), self.steps.index_select(0, rows))

    def repeat(self, width: int) -> "GrammarState":
        return GrammarState(self.need.repeat_interleave(width, 0), self.steps.repeat_interleave(width, 0))


def initial_state(n: int, device: torch.device) -> GrammarState:
    zeros = torch.zeros(n, dtype=torch.long, device=device)
    return GrammarState(zeros, zeros.clone())


def advance(table: TokenTable, state: GrammarState, tokens: torch.Tensor) -> GrammarState:
    """The state after emitting ``tokens`` (N,): an operation opens a step, an argument fills a slot."""
    kind = table.kind[tokens]
    is_op = kind == OP
    unk = tokens == _UNK_ID  # an unseen gold token (validation data) most often is a constant
    is_arg = (kind == CONST) | (kind == NUM) | (kind == REF) | (kind == OTHER) | unk
    need = torch.where(is_op, table.arity[tokens], torch.where(is_arg, (state.need - 1).clamp(min=0), state.need))
    return GrammarState(need, state.steps + is_op.long())


def allowed_tokens(table: TokenTable, state: GrammarState, num_count: torch.Tensor,
                   constrained: bool = True) -> torch.Tensor:
    """(N, V) bool: which tokens may come next.

    Unconstrained, everything but ``<pad>``, ``<sos>`` and ``<unk>`` is allowed. Constrained: while a
    step needs arguments, constants, ``nK`` with K below the problem's ``num_count`` and ``#k`` for
    finished steps; otherwise an operation, or ``<eos>`` once a step exists.
    """
    kind = table.kind[None, :]
    if not constrained:
        ok = (kind != SPECIAL) & (kind != OTHER)
        return ok.expand(state.need.shape[0], -1)
    args = (kind == CONST) | ((kind == NUM) & (table.num_index[None, :] < num_count[:, None])) | (
        (kind == REF) & (table.ref_index[None, :] < (state.steps - 1)[:, None]))
    ops = (kind == OP) | ((kind == EOS) & (state.steps > 0)[:, None])
    return torch.where((state.need > 0)[:, None], args, ops)
