"""Arithmetic datasets: counts, encodings, splits."""

import numpy as np
import pytest

from mathtune.trainables.arith.data import ALPHABET, build_arith, decode, encode, make_queries, split_indices


def test_query_counts_and_answers_are_correct():
    q, a = make_queries("+-")
    assert len(q) == 20_000 and len(set(q)) == 20_000
    assert q[0] == "0+0" and a[q.index("99-7")] == "92" and a[q.index("3-50")] == "-47"
    qm, am = make_queries("*")
    assert len(qm) == 10_000 and am[qm.index("99*99")] == "9801"
    for query, answer in zip(q[::997] + qm[::331], a[::997] + am[::331]):
        left, right = (query.replace("+", " ").replace("-", " ").replace("*", " ").split())
        op = next(c for c in "+-*" if c in query)
        value = {"+": int(left) + int(right), "-": int(left) - int(right), "*": int(left) * int(right)}[op]
        assert int(answer) == value


def test_encode_decode_round_trip_with_padding():
    strings = ["1+1", "99*99", "0-99"]
    ids = encode(strings, 5)
    assert ids.shape == (3, 5) and ids.dtype == np.int64
    assert [decode(r).rstrip() for r in ids] == strings
    assert decode(ids[0]) == "1+1  "
    with pytest.raises(ValueError):
        encode(["123456"], 5)


def test_split_is_disjoint_complete_and_deterministic():
    tr, va, te = split_indices(20_000, 0.5, 0.1, seed=3)
    assert len(tr) + len(va) == 10_000 and len(te) == 10_000 and len(va) == 1_000
    assert not (set(tr) & set(va)) and not (set(tr) & set(te)) and not (set(va) & set(te))
    assert len(set(tr) | set(va) | set(te)) == 20_000
    again = split_indices(20_000, 0.5, 0.1, seed=3)
    assert all(np.array_equal(a, b) for a, b in zip((tr, va, te), again))
    other = split_indices(20_000, 0.5, 0.1, seed=4)
    assert not np.array_equal(tr, other[0])


def test_build_arith_shapes_and_limit():
    ds = build_arith("*", 0.6, seed=0)
    assert ds.x.shape == (10_000, 5) and ds.y.shape == (10_000, 5)
    assert len(ds.test_index) == 4_000
    small = build_arith("+-", 0.5, seed=0, limit=100)
    assert len(small.train_index) == 100 and 16 <= len(small.val_index) < 1000
    assert set(small.train_index) <= set(build_arith("+-", 0.5, seed=0).train_index)
    assert set(ALPHABET) >= set("".join(small.queries))


@pytest.mark.parametrize("split", [0.0, 1.0, 1.5])
def test_bad_split_is_rejected(split):
    with pytest.raises(ValueError, match="split"):
        split_indices(100, split, 0.1, 0)
