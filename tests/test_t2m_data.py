"""Loading, tokenisation and vocabularies of the text-to-math-program workload, on the real data."""

from __future__ import annotations

import json
from collections import Counter
from pathlib import Path

import pytest

from mathtune.trainables.t2m.data import (
    COL775,
    MATHQA,
    DataError,
    Example,
    Vocab,
    detokenize,
    load_split,
    option_value,
    parse_options,
    problem_number_alignment,
    tokenize_problem,
    tokenize_program,
)
from mathtune.trainables.t2m.executor import OPERATIONS, execute
from mathtune.trainables.t2m.numbers import extract_numbers
from mathtune.trainables.t2m.scoring import answer_matches

DATA = Path(__file__).resolve().parents[1].parent / "shared" / "data" / "mathqa"


def _need(path: Path) -> Path:
    if not path.exists():
        pytest.skip(f"real data file {path} is absent (see shared/data/PROVENANCE.md)")
    return path


@pytest.fixture(scope="module")
def train() -> list[Example]:
    return load_split(_need(DATA / "col775" / "train.json"))


@pytest.fixture(scope="module")
def dev() -> list[Example]:
    return load_split(_need(DATA / "col775" / "dev.json"))


@pytest.fixture(scope="module")
def original_dev() -> list[Example]:
    return load_split(_need(DATA / "original" / "dev.json"))


# ---------------------------------------------------------------------------------------------
# loading the real files


def test_col775_splits_load(train: list[Example], dev: list[Example]) -> None:
    assert (len(train), len(dev)) == (19791, 2961)
    assert [e.index for e in dev] == list(range(len(dev)))
    assert dev[0] == Example(
        dev[0].problem, "power(n1,n0)|", 625, 0
    ) and dev[0].problem.startswith("a multiple choice test consists of 4 questions")
    kinds = Counter(type(e.answer).__name__ for e in train)
    assert kinds == {"int": 15184, "float": 4607}
    assert all(e.answer != 0 for e in train) and sum(e.answer < 0 for e in train) == 56  # type: ignore[operator]
    assert min(e.answer for e in train) == -4212 and max(e.answer for e in train) == 100000000010  # type: ignore[type-var]
    assert all(e.answer_note is None for e in train + dev)
    assert len({e.problem for e in train}) == len(train)
    assert not {e.problem for e in train} & {e.problem for e in dev}


def test_original_dev_loads_with_option_answers(original_dev: list[Example]) -> None:
    assert len(original_dev) == 4475
    assert original_dev[0].answer == 625.0 and original_dev[0].program == "power(n1,n0)|"
    missing = [e for e in original_dev if e.answer is None]
    # "none of these", "four", "10 : 00", "can not be determined", ...: 31 of 4,475
    assert len(missing) == 31
    assert all(e.answer_note and "option" in e.answer_note for e in missing)


def test_original_dev_require_answer_raises_one_line(tmp_path: Path) -> None:
    path = _need(DATA / "original" / "dev.json")
    with pytest.raises(DataError) as err:
        load_split(path, require_answer=True)
    msg = str(err.value)
    assert "\n" not in msg and str(path) in msg and "entry " in msg and "'options'" in msg


def test_original_gold_programs_reach_option_answer(original_dev: list[Example], dev: list[Example]) -> None:
    """Only about two thirds of original MathQA dev gold programs reproduce the marked option.

    COL775 dev is exactly (up to 8 rows) the subset whose gold program does: all 2,961 of its rows are
    among the 2,969 that execute within 2% of the option value read here.
    """
    ok = [e.answer is not None and answer_matches(execute(e.program, e.problem), e.answer) for e in original_dev]
    rate = sum(ok) / len(original_dev)
    assert sum(ok) == 2969 and 0.66 < rate < 0.67
    kept = {(e.problem, e.program) for e in dev}
    assert all(good for e, good in zip(original_dev, ok) if (e.problem, e.program) in kept)


def test_option_answers_reproduce_col775_dev(original_dev: list[Example], dev: list[Example]) -> None:
    by_key = {(e.problem, e.program): e for e in original_dev}
    for e in dev:
        o = by_key[(e.problem, e.program)]
        assert o.answer == pytest.approx(e.answer, rel=1e-12), (o.index, e.index)


def test_original_dev_uses_only_checker_operations(original_dev: list[Example]) -> None:
    used = {p.partition("(")[0] for e in original_dev for p in e.program.split("|") if p}
    assert used <= set(OPERATIONS) and len(used) == 46


# ---------------------------------------------------------------------------------------------
# options


@pytest.mark.parametrize(
    "text, value",
    [
        (" 24 ", 24), (" 22 1 / 2", 110.5), (" 4 and 12", 412), (" rs . 1200", 1200), (" s . 9060", 9060),
        (" 4 : 5", 0.8), (" $ 31 .", 31), (" . 5", 0.5), (" - 57 : 11", -57 / 11), (" \u2212 120", -120),
        (" 36.8 seconds", 36.8), (" 7 th", 7), (" 1 / 4", 0.25),
    ],
)
def test_option_value(text: str, value: float) -> None:
    assert option_value(text) == pytest.approx(value)


@pytest.mark.parametrize("text", [" none of these", " four", " 10 : 00", " rs . 495 / -", " 10.5 by 3.5", ""])
def test_option_value_rejects(text: str) -> None:
    with pytest.raises(ValueError):
        option_value(text)


def test_parse_options_styles() -> None:
    assert parse_options("a ) 24 , b ) 120 , c ) 625")["c"].strip() == "625"
    listed = parse_options("['a ) 34 cm', 'b ) 35 cm']")
    assert {k: v.strip() for k, v in listed.items()} == {"a": "34 cm", "b": "35 cm"}
    doubled = parse_options("a ) a ) 3 , b ) b ) 2")
    assert option_value(doubled["b"], "b") == 2
    assert option_value(parse_options("a ) a - 4500 , b ) b - 9000")["b"], "b") == 9000
    assert parse_options("a ) 1,785 , b ) 2")["a"].strip() == "1"  # split on every comma, as COL775 did


# ---------------------------------------------------------------------------------------------
# bad files: one-line messages naming file, index and field


def _write(tmp_path: Path, content: object, raw: bool = False) -> Path:
    p = tmp_path / "bad.json"
    p.write_text(content if raw else json.dumps(content), encoding="utf-8")  # type: ignore[arg-type]
    return p


GOOD = {"Problem": "2 3", "linear_formula": "add(n0,n1)|", "answer": 5}
GOOD_ORIG = {"Problem": "2 3", "linear_formula": "add(n0,n1)|", "options": "a ) 5 , b ) 6", "correct": "a"}


@pytest.mark.parametrize(
    "content, raw, needles",
    [
        ("[{", True, ["not valid JSON", "line 1"]),
        ({"Problem": "x"}, False, ["JSON array", "dict"]),
        ([GOOD, 7], False, ["entry 1", "expected an object", "int"]),
        ([GOOD, {k: v for k, v in GOOD.items() if k != "linear_formula"}], False, ["entry 1", "'linear_formula'", "missing"]),
        ([GOOD, GOOD, {**GOOD, "Problem": 3}], False, ["entry 2", "'Problem'", "expected a string", "int"]),
        ([GOOD, {**GOOD, "answer": "twelve"}], False, ["entry 1", "'answer'", "cannot parse"]),
        ([GOOD, {**GOOD, "answer": None}], False, ["entry 1", "'answer'", "expected a number", "NoneType"]),
        ([GOOD, {**GOOD, "answer": True}], False, ["entry 1", "'answer'", "bool"]),
        ([{**GOOD, "answer": 1e999}], False, ["entry 0", "'answer'", "finite"]),
        ([{"Problem": "x", "linear_formula": "y"}], False, ["entry 0", "unknown format"]),
        ([GOOD_ORIG, {**GOOD_ORIG, "correct": 1}], False, ["entry 1", "'correct'", "expected a string"]),
        ([GOOD_ORIG, {k: v for k, v in GOOD_ORIG.items() if k != "options"}], False, ["entry 1", "'options'", "missing"]),
        (["x"], False, ["entry 0", "expected an object", "str"]),
    ],
)
def test_bad_files_rejected(tmp_path: Path, content: object, raw: bool, needles: list[str]) -> None:
    p = _write(tmp_path, content, raw)
    with pytest.raises(DataError) as err:
        load_split(p)
    msg = str(err.value)
    assert "\n" not in msg and msg.startswith(str(p))
    for needle in needles:
        assert needle in msg


def test_missing_file_and_empty_list(tmp_path: Path) -> None:
    with pytest.raises(DataError, match="file not found") as err:
        load_split(tmp_path / "nope.json")
    assert str(tmp_path / "nope.json") in str(err.value)
    assert load_split(_write(tmp_path, [])) == []
    assert isinstance(err.value, ValueError)


def test_small_files_of_each_format(tmp_path: Path) -> None:
    col = load_split(_write(tmp_path, [GOOD, {**GOOD, "answer": " 2.5 "}]))
    assert [e.answer for e in col] == [5, 2.5] and col[1].index == 1
    orig = load_split(_write(tmp_path, [GOOD_ORIG, {**GOOD_ORIG, "options": "a ) none , b ) 6"}]))
    assert orig[0].answer == 5.0 and orig[1].answer is None and "none" in (orig[1].answer_note or "")
    with pytest.raises(DataError, match="entry 1"):
        load_split(tmp_path / "bad.json", require_answer=True)
    assert orig[0].to_item("add(n0,n1)") == {
        "Problem": "2 3", "linear_formula": "add(n0,n1)|", "answer": 5.0, "predicted": "add(n0,n1)"
    }
    assert (COL775, MATHQA) == ("col775", "mathqa")


# ---------------------------------------------------------------------------------------------
# tokenisation


def test_program_tokens(train: list[Example]) -> None:
    assert tokenize_program("divide(n0,const_100)|floor(#0)") == [
        "divide", "(", "n0", ",", "const_100", ")", "|", "floor", "(", "#0", ")"
    ]
    types: set[str] = set()
    for e in train:
        toks = tokenize_program(e.program)
        assert detokenize(toks) == e.program
        types.update(toks)
    assert len(types) == 140
    ops = {t for t in types if t in OPERATIONS}
    assert len(ops) == len({p.partition("(")[0] for e in train for p in e.program.split("|") if p})
    assert {"(", ")", ",", "|"} <= types


def test_detokenize_round_trips_arbitrary_strings() -> None:
    for s in ["", "|", "add( n0 ,n1 )|x", "((,,))", "add(n0,n1)xyz|", "a b\tc"]:
        assert detokenize(tokenize_program(s)) == s


def test_problem_number_alignment_matches_extract_numbers(train: list[Example]) -> None:
    """Token-wise extraction equals whole-text extraction on every training problem (no exceptions)."""
    mismatched = []
    for e in train:
        toks, al = problem_number_alignment(e.problem)
        assert toks == tokenize_problem(e.problem)
        if list(al.numbers) != extract_numbers(e.problem):
            mismatched.append(e.index)
        for k, i in enumerate(al.token_of_number):
            assert al.first_number_of_token[i] <= k
    assert mismatched == []


def test_problem_alignment_example() -> None:
    toks, al = problem_number_alignment("a sum of rs . 2,000 at 5 % for 1.5.2 years")
    assert toks[5] == "2,000" and al.first_number_of_token[5] == 0
    assert al.numbers == (2000.0, 5.0, 1.5, 0.2)
    assert al.first_number_of_token[toks.index("1.5.2")] == 2
    assert sum(k >= 0 for k in al.first_number_of_token) == 3


# ---------------------------------------------------------------------------------------------
# vocabulary


def test_vocab_from_train_round_trips_through_json(train: list[Example], dev: list[Example]) -> None:
    vocab = Vocab.build(tokenize_program(e.program) for e in train)
    assert len(vocab) == 144
    assert vocab.tokens[:4] == ["<pad>", "<sos>", "<eos>", "<unk>"]
    assert (vocab.pad_id, vocab.sos_id, vocab.eos_id, vocab.unk_id) == (0, 1, 2, 3)
    assert vocab.tokens[4] == "("  # most frequent first
    again = Vocab.from_dict(json.loads(json.dumps(vocab.to_dict())))
    assert again == vocab and again.tokens == vocab.tokens
    for e in train[:2000]:
        toks = tokenize_program(e.program)
        ids = again.encode(toks, add_sos=True, add_eos=True)
        assert ids[0] == 1 and ids[-1] == 2 and 3 not in ids
        assert detokenize(again.decode(ids + [0, 0])) == e.program
    unseen = [t for e in dev for t in tokenize_program(e.program) if t not in vocab]
    assert all(vocab.id_of(t) == vocab.unk_id for t in unseen)


def test_vocab_behaviour_and_validation() -> None:
    v = Vocab.build([["b", "a", "a"], ["c"]], min_freq=1)
    assert v.tokens[4:] == ["a", "b", "c"]
    assert Vocab.build([["b", "a", "a"], ["c"]], min_freq=2).tokens[4:] == ["a"]
    assert len(Vocab.build([["b", "a", "a"], ["c"]], max_size=5)) == 5
    assert v.decode([1, 4, 3, 2, 5], strip_special=True) == ["a", "<unk>"]
    assert v.decode([1, 4, 2], strip_special=False) == ["<sos>", "a", "<eos>"]
    assert "a" in v and "z" not in v
    with pytest.raises(IndexError):
        v.decode([99])
    for bad in ({}, {"format": "x", "tokens": []}, {"format": Vocab.FORMAT, "tokens": ["a"]},
                {"format": Vocab.FORMAT, "tokens": [*Vocab.SPECIALS, "a", "a"]}):
        with pytest.raises(ValueError):
            Vocab.from_dict(bad)
