"""Two-digit arithmetic queries as padded character sequences, and their deterministic splits.

Example::

    >>> ds = build_arith("+-", split=0.5, seed=0)
    >>> len(ds.queries), ds.query_len, ds.answer_len
    (20000, 5, 3)
    >>> decode(ds.x[0]), decode(ds.y[0])   # doctest: +SKIP
    ('23+7 ', '30 ')
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

__all__ = ["ALPHABET", "OPERATOR_SETS", "DIGITS", "ArithData", "make_queries", "encode", "decode", "build_arith",
           "split_indices", "fixed_width", "as_written"]

ALPHABET = "0123456789+-* "
PAD = " "
CHAR_TO_ID = {c: i for i, c in enumerate(ALPHABET)}
OPERATOR_SETS = {"+-": ("+", "-"), "*": ("*",)}
# Queries have at most 5 characters ("99+99"); answers at most 3 for +- ("198", "-99") and 4 for *
# ("9801"); the seed kept 5 for * and we keep that for parity with its models.
QUERY_LEN = 5
ANSWER_LEN = {"+-": 3, "*": 5}
# How numbers are written in the sequences: as the reference wrote them ("7*5" -> "35"), or with leading
# zeros to a fixed width ("07*05" -> "00035"), so that every digit keeps its place value at one position.
DIGITS = ("as-written", "fixed")


def fixed_width(text: str, width: int) -> str:
    """``text`` (a query "a OP b" or an answer) with each number zero-padded: operands to two digits, an answer
    to ``width`` characters, a minus sign first (``fixed_width("-5", 3) == "-05"``)."""
    for op in "+-*":
        a, sep, b = text.partition(op)
        if sep and a:  # a query (an answer's leading minus leaves ``a`` empty)
            return f"{int(a):02d}{op}{int(b):02d}"
    sign, digits = ("-", text[1:]) if text.startswith("-") else ("", text)
    return sign + digits.zfill(width - len(sign))


def as_written(text: str) -> str:
    """An answer of fixed width (or a model's guess at one) back as the reference writes it: leading zeros
    dropped, blanks stripped (``as_written("00035") == "35"``, ``as_written("-05") == "-5"``)."""
    text = text.strip()
    sign, digits = ("-", text[1:]) if text.startswith("-") else ("", text)
    digits = digits.lstrip("0") or ("0" if digits else "")
    return sign + digits


def make_queries(ops: str) -> tuple[list[str], list[str]]:
    """All queries ``a OP b`` for a, b in 0..99 and the operators of ``ops``, with their answers."""
    if ops not in OPERATOR_SETS:
        raise ValueError(f"ops: {ops!r} is not one of {', '.join(OPERATOR_SETS)}")
    queries, answers = [], []
    for op in OPERATOR_SETS[ops]:
        for a in range(100):
            for b in range(100):
                queries.append(f"{a}{op}{b}")
                answers.append(str(a + b if op == "+" else a - b if op == "-" else a * b))
    return queries, answers


def encode(strings: list[str], length: int) -> np.ndarray:
    """Right-padded character ids, shape (N, length), dtype int64."""
    out = np.full((len(strings), length), CHAR_TO_ID[PAD], dtype=np.int64)
    for i, s in enumerate(strings):
        if len(s) > length:
            raise ValueError(f"{s!r} is longer than {length} characters")
        out[i, : len(s)] = [CHAR_TO_ID[c] for c in s]
    return out


def decode(ids) -> str:
    """Inverse of :func:`encode` for one row (padding kept)."""
    return "".join(ALPHABET[int(i)] for i in ids)


def split_indices(n: int, split: float, val_fraction: float, seed: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Deterministic disjoint (train, val, test) index arrays.

    ``split`` is the fraction of all queries used for training (validation included); the validation
    slice is ``val_fraction`` of that training portion; the rest of the queries are the test set.
    """
    if not 0.0 < split < 1.0:
        raise ValueError(f"split: {split} must be between 0 and 1 (exclusive)")
    perm = np.random.default_rng(seed).permutation(n)
    n_train_all = int(round(n * split))
    n_val = max(1, int(round(n_train_all * val_fraction)))
    if n_train_all - n_val < 1 or n - n_train_all < 1:
        raise ValueError(f"split {split} leaves an empty train, validation or test set for {n} queries")
    train_all, test = perm[:n_train_all], perm[n_train_all:]
    return np.sort(train_all[n_val:]), np.sort(train_all[:n_val]), np.sort(test)


@dataclass
class ArithData:
    """Encoded queries and answers plus the split; the unit shared with trials through the object store."""

    ops: str
    split: float
    seed: int
    val_fraction: float
    queries: list[str]
    answers: list[str]
    x: np.ndarray  # (N, QUERY_LEN) int64 ids
    y: np.ndarray  # (N, answer_len) int64 ids
    train_index: np.ndarray
    val_index: np.ndarray
    test_index: np.ndarray
    reverse: str = "none"  # which sequences are stored reversed: none, query, answer or both
    digits: str = "as-written"  # how numbers are written in x and y (DIGITS)
    y_written: np.ndarray | None = None  # with digits="fixed": the answers as the reference wrote them (N, answer_len)

    @property
    def query_len(self) -> int:
        return self.x.shape[1]

    @property
    def answer_len(self) -> int:
        return self.y.shape[1]

    @property
    def vocab_size(self) -> int:
        return len(ALPHABET)

    def part(self, name: str) -> np.ndarray:
        return {"train": self.train_index, "val": self.val_index, "test": self.test_index}[name]

    def written(self, ids: np.ndarray) -> np.ndarray:
        """Answer ids in the model's format (reversed and/or fixed width) -> the reference's format: the answer
        as written, right-padded with blanks, in reading order. Metrics compare answers in this format."""
        ids = np.asarray(ids)
        if self.reverse in ("answer", "both"):
            ids = ids[:, ::-1]
        if self.digits == "as-written":
            return np.ascontiguousarray(ids)
        return encode([as_written(decode(row)) for row in ids], ids.shape[1])

    def describe(self) -> str:
        rev = f", reversed {self.reverse}" if self.reverse != "none" else ""
        rev += ", numbers at fixed width" if self.digits == "fixed" else ""
        return (f"arith {self.ops}{rev}: {len(self.queries)} queries, split {self.split} -> "
                f"train {len(self.train_index)} / val {len(self.val_index)} / test {len(self.test_index)} "
                f"(data_seed {self.seed})")


REVERSE_CHOICES = ("none", "query", "answer", "both")


def build_arith(ops: str, split: float, seed: int = 0, val_fraction: float = 0.1, *, limit: int = 0,
                reverse: str = "none", digits: str = "as-written") -> ArithData:
    """All queries of ``ops``, encoded, with a deterministic split (see :func:`split_indices`).

    ``limit`` > 0 keeps only that many training queries and shrinks validation and test in proportion
    (at least 16 each); for quick runs and tests. ``reverse`` stores queries and/or answers reversed
    (padding included), so the decoder can emit the least significant digit first; a bijection, so exact
    match and per-character accuracy mean the same. ``digits="fixed"`` writes every number with leading zeros
    (:func:`fixed_width`) in ``x`` and ``y`` and keeps the reference's answers in ``y_written``.
    """
    if reverse not in REVERSE_CHOICES:
        raise ValueError(f"reverse: {reverse!r} is not one of {', '.join(REVERSE_CHOICES)}")
    if digits not in DIGITS:
        raise ValueError(f"digits: {digits!r} is not one of {', '.join(DIGITS)}")
    queries, answers = make_queries(ops)
    train, val, test = split_indices(len(queries), split, val_fraction, seed)
    if limit:
        scale = min(1.0, limit / len(train))
        train = train[:limit]
        val = val[:max(16, int(len(val) * scale))]
        test = test[:max(16, int(len(test) * scale))]
    width = ANSWER_LEN[ops]
    y_written = encode(answers, width) if digits == "fixed" else None
    if digits == "fixed":
        x = encode([fixed_width(q, 0) for q in queries], QUERY_LEN)
        y = encode([fixed_width(a, width) for a in answers], width)
    else:
        x, y = encode(queries, QUERY_LEN), encode(answers, width)
    if reverse in ("query", "both"):
        x = np.ascontiguousarray(x[:, ::-1])
    if reverse in ("answer", "both"):
        y = np.ascontiguousarray(y[:, ::-1])
    return ArithData(ops=ops, split=split, seed=seed, val_fraction=val_fraction, queries=queries,
                     answers=answers, x=x, y=y, train_index=train, val_index=val, test_index=test, reverse=reverse,
                     digits=digits, y_written=y_written)
