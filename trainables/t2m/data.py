"""Loading MathQA splits, tokenising problems and programs, and vocabularies (no model code).

Two file formats are read, detected per file from the keys of its first entry:

* **COL775** (``Problem``, ``linear_formula``, ``answer``): the answer is a JSON number (a numeric string
  is also accepted);
* **original MathQA** (``Problem``, ``options``, ``correct``, ``linear_formula``, ...): the answer is the
  numeric value of the option named by ``correct``, read the way the COL775 answers were derived
  (see :func:`option_value`). An option that does not read as a number (``none of these``) gives
  ``answer=None`` with the reason in ``answer_note``; ask for ``require_answer=True`` to turn that into
  a :class:`DataError` instead.

Every problem in a file is a :class:`DataError` whose one-line message names the file, the entry index
and the field.

Example::

    >>> exs = load_split("../shared/data/mathqa/col775/dev.json")        # doctest: +SKIP
    >>> tokenize_program(exs[0].program)                                  # doctest: +SKIP
    ['power', '(', 'n1', ',', 'n0', ')', '|']
"""

from __future__ import annotations

import json
import math
import os
import re
from collections import Counter
from dataclasses import dataclass
from typing import Any, Iterable, Mapping, Sequence

from ..errors import MathtuneError
from .numbers import NumberAlignment, align_numbers

__all__ = [
    "DataError",
    "Example",
    "COL775",
    "MATHQA",
    "load_split",
    "parse_options",
    "option_value",
    "tokenize_program",
    "detokenize",
    "tokenize_problem",
    "problem_number_alignment",
    "Vocab",
]

COL775 = "col775"
MATHQA = "mathqa"


class DataError(MathtuneError, ValueError):
    """A bad data file or entry; the one-line message names file, entry index and field."""


@dataclass(frozen=True)
class Example:
    """One problem: its text, gold program, numeric answer (``None`` if unknown) and index in the file.

    Example::

        >>> Example("2 3", "add(n0,n1)|", 5, 0).answer
        5
    """

    problem: str
    program: str
    answer: int | float | None
    index: int
    answer_note: str | None = None
    """Why ``answer`` is ``None`` (original MathQA option that is not a number); else ``None``."""

    def to_item(self, predicted: str | None = None) -> dict[str, Any]:
        """The scorer-format object (``Problem``, ``linear_formula``, ``answer`` [, ``predicted``])."""
        item: dict[str, Any] = {"Problem": self.problem, "linear_formula": self.program, "answer": self.answer}
        if predicted is not None:
            item["predicted"] = predicted
        return item


# --------------------------------------------------------------------------------------------------
# original MathQA options

_OPTION = re.compile(r"([a-e])\s*\)(.*)$", re.S)
_NUMBER_OR_RATIO = re.compile(r"(-?[0-9]*\.?[0-9]+)(?:[/:](-?[0-9]*\.?[0-9]+))?")


def parse_options(options: str) -> dict[str, str]:
    """Split an options string into ``{letter: text}``, the way the COL775 answers were derived.

    The string is split on every comma (so ``1,785`` is read as ``1`` — the COL775 answers do this);
    both the ``"a ) 24 , b ) 36"`` style and the Python-list style ``"['a ) 24', 'b ) 36']"`` occur.
    The first text seen for a letter wins.

    Example::

        >>> parse_options("a ) 24 , b ) 1 / 2 , c ) rs . 1,200")
        {'a': ' 24', 'b': ' 1 / 2', 'c': ' rs . 1'}
    """
    out: dict[str, str] = {}
    for piece in options.split(","):
        m = _OPTION.match(piece.strip().strip("[]'\"").strip())
        if m:
            out.setdefault(m.group(1), m.group(2))
    return out


def option_value(text: str, letter: str = "") -> float:
    r"""Read one option's text as a number; raise ``ValueError`` when it is not one.

    Spaces are removed first ("22 1 / 2" becomes 221/2 and "4 and 12" becomes 412, as in COL775);
    then a repeated option letter (``a ) a ) 3``), abbreviations ending in a dot (``rs .``, ``s .``)
    and all remaining characters other than digits, ``.``, ``/``, ``:`` and ``-`` (the U+2212 minus
    sign counts as ``-``) are dropped, and ``a``, ``a / b`` or ``a : b`` is evaluated. This reproduces
    all 2,961 COL775 dev answers from the original MathQA dev options. Note that ``[^\W\d_]+\.``
    (letters then a dot) is what gets dropped as an abbreviation, so ``. 5`` still reads as 0.5.

    Example::

        >>> option_value(" rs . 1200 "), option_value(" 4 : 5 "), option_value(" $ 31 . ")
        (1200.0, 0.8, 31.0)
    """
    t = text.replace(" ", "").replace("\u2212", "-")  # U+2212 MINUS SIGN occurs in the options
    if letter:
        t = re.sub(rf"^{re.escape(letter)}[).\-]", "", t)
    t = re.sub(r"[^\W\d_]+\.", "", t)
    t = re.sub(r"[^0-9./:\-]", "", t).rstrip(".")
    m = _NUMBER_OR_RATIO.fullmatch(t)
    if not m:
        raise ValueError(f"option {text.strip()!r} is not a number")
    a = float(m.group(1))
    if m.group(2) is None:
        return a
    b = float(m.group(2))
    if b == 0:
        raise ValueError(f"option {text.strip()!r} divides by zero")
    return a / b


# --------------------------------------------------------------------------------------------------
# loading


def _fail(path: str, msg: str, index: int | None = None, field: str | None = None) -> DataError:
    where = path
    if index is not None:
        where += f": entry {index}"
    if field is not None:
        where += f": field {field!r}"
    return DataError(f"{where}: {msg}".replace("\n", " "))


def _get_str(path: str, i: int, entry: Mapping[str, Any], key: str) -> str:
    if key not in entry:
        raise _fail(path, "missing", i, key)
    v = entry[key]
    if not isinstance(v, str):
        raise _fail(path, f"expected a string, got {type(v).__name__}", i, key)
    return v


def _col775_answer(path: str, i: int, entry: Mapping[str, Any]) -> int | float:
    if "answer" not in entry:
        raise _fail(path, "missing", i, "answer")
    v = entry["answer"]
    if isinstance(v, bool) or not isinstance(v, (int, float, str)):
        raise _fail(path, f"expected a number, got {type(v).__name__}", i, "answer")
    if isinstance(v, str):
        try:
            v = float(v.strip())
        except ValueError:
            raise _fail(path, f"cannot parse {v[:40]!r} as a number", i, "answer") from None
    if isinstance(v, float) and not math.isfinite(v):
        raise _fail(path, f"not a finite number: {v!r}", i, "answer")
    return v


def _detect(path: str, first: Any) -> str:
    if not isinstance(first, dict):
        raise _fail(path, f"expected an object, got {type(first).__name__}", 0)
    if "answer" in first:
        return COL775
    if "options" in first or "correct" in first:
        return MATHQA
    raise _fail(
        path,
        "unknown format: neither 'answer' (COL775) nor 'options'/'correct' (original MathQA) present",
        0,
    )


def load_split(path: str | os.PathLike[str], require_answer: bool = False) -> list[Example]:
    """Load a COL775 or original-MathQA JSON split (format detected per file).

    With ``require_answer=True`` an original-format entry whose correct option is not a number
    raises :class:`DataError`; by default it gets ``answer=None`` and a note.

    Example::

        >>> load_split("../shared/data/mathqa/original/dev.json")[0].answer   # doctest: +SKIP
        625.0
    """
    p = os.fspath(path)
    try:
        with open(p, encoding="utf-8") as f:
            raw = f.read()
    except FileNotFoundError:
        raise _fail(p, "file not found") from None
    except (OSError, UnicodeDecodeError) as e:
        raise _fail(p, f"cannot read: {type(e).__name__}: {e}") from None
    try:
        data = json.loads(raw)
    except json.JSONDecodeError as e:
        raise _fail(p, f"not valid JSON: {e.msg} at line {e.lineno} column {e.colno}") from None
    if not isinstance(data, list):
        raise _fail(p, f"expected a JSON array of objects, got {type(data).__name__}")
    if not data:
        return []
    fmt = _detect(p, data[0])
    out: list[Example] = []
    for i, entry in enumerate(data):
        if not isinstance(entry, dict):
            raise _fail(p, f"expected an object, got {type(entry).__name__}", i)
        problem = _get_str(p, i, entry, "Problem")
        program = _get_str(p, i, entry, "linear_formula")
        note: str | None = None
        answer: int | float | None
        if fmt == COL775:
            answer = _col775_answer(p, i, entry)
        else:
            options = _get_str(p, i, entry, "options")
            correct = _get_str(p, i, entry, "correct").strip().lower()
            text = parse_options(options).get(correct)
            try:
                if text is None:
                    raise ValueError(f"no option {correct!r} in {options[:60]!r}")
                answer = option_value(text, correct)
            except ValueError as e:
                if require_answer:
                    raise _fail(p, str(e), i, "options") from None
                answer, note = None, str(e)
        out.append(Example(problem, program, answer, i, note))
    return out


# --------------------------------------------------------------------------------------------------
# tokenisation

_PROGRAM_TOKEN = re.compile(r"[(),|]|[^(),|]+")


def tokenize_program(program: str) -> list[str]:
    """Split a program into operation names, ``(``, arguments, ``,``, ``)`` and ``|``.

    ``detokenize(tokenize_program(p)) == p`` for every string ``p``.

    Example::

        >>> tokenize_program("divide(n0,const_100)|floor(#0)")
        ['divide', '(', 'n0', ',', 'const_100', ')', '|', 'floor', '(', '#0', ')']
    """
    return _PROGRAM_TOKEN.findall(program)


def detokenize(tokens: Iterable[str]) -> str:
    """Join program tokens back into a program string (gold programs contain no spaces).

    Example::

        >>> detokenize(['add', '(', 'n0', ',', 'n1', ')'])
        'add(n0,n1)'
    """
    return "".join(tokens)


def tokenize_problem(text: str) -> list[str]:
    """Whitespace tokens of a problem text (MathQA problems are already space-tokenised).

    Example::

        >>> tokenize_problem("rs . 2,000 at 5 %")
        ['rs', '.', '2,000', 'at', '5', '%']
    """
    return text.split()


def problem_number_alignment(text: str) -> tuple[list[str], NumberAlignment]:
    """Tokens of ``text`` and, for each token, the number indices ``nK`` it holds.

    ``alignment.numbers`` equals ``extract_numbers(text)``; ``alignment.first_number_of_token[i]``
    is the ``K`` that token ``i`` starts (``-1`` if none).

    Example::

        >>> toks, al = problem_number_alignment("a 10 % rise of 2,000")
        >>> al.first_number_of_token, al.numbers
        ((-1, 0, -1, -1, -1, 1), (10.0, 2000.0))
    """
    tokens = tokenize_problem(text)
    return tokens, align_numbers(tokens)


# --------------------------------------------------------------------------------------------------
# vocabulary


class Vocab:
    """Token <-> id mapping with ``<pad>``=0, ``<sos>``=1, ``<eos>``=2, ``<unk>``=3.

    Build it from training data only; save :meth:`to_dict` as JSON beside checkpoints.

    Example::

        >>> v = Vocab.build([["add", "(", "n0", ")"], ["add", "(", "n1", ")"]])
        >>> v.decode(v.encode(["add", "(", "n7", ")"], add_eos=True))
        ['add', '(', '<unk>', ')']
        >>> Vocab.from_dict(v.to_dict()) == v
        True
    """

    PAD, SOS, EOS, UNK = "<pad>", "<sos>", "<eos>", "<unk>"
    SPECIALS: tuple[str, ...] = (PAD, SOS, EOS, UNK)
    FORMAT = "mathtune.vocab/1"

    def __init__(self, tokens: Sequence[str]):
        """``tokens`` is the full id order and must start with :attr:`SPECIALS`, without duplicates."""
        tokens = list(tokens)
        if tuple(tokens[: len(self.SPECIALS)]) != self.SPECIALS:
            raise ValueError(f"vocabulary must start with {list(self.SPECIALS)}")
        if not all(isinstance(t, str) for t in tokens):
            raise ValueError("vocabulary tokens must be strings")
        index = {t: i for i, t in enumerate(tokens)}
        if len(index) != len(tokens):
            dup = next(t for t, c in Counter(tokens).items() if c > 1)
            raise ValueError(f"duplicate vocabulary token {dup!r}")
        self._tokens = tokens
        self._index = index

    @classmethod
    def build(cls, token_lists: Iterable[Sequence[str]], min_freq: int = 1, max_size: int | None = None) -> "Vocab":
        """Vocabulary of tokens seen at least ``min_freq`` times, most frequent first (ties by text).

        ``max_size`` caps the total size, specials included.
        """
        counts: Counter[str] = Counter()
        for toks in token_lists:
            counts.update(toks)
        kept = sorted((t for t, c in counts.items() if c >= min_freq and t not in cls.SPECIALS),
                      key=lambda t: (-counts[t], t))
        if max_size is not None:
            kept = kept[: max(0, max_size - len(cls.SPECIALS))]
        return cls([*cls.SPECIALS, *kept])

    @property
    def pad_id(self) -> int:
        return 0

    @property
    def sos_id(self) -> int:
        return 1

    @property
    def eos_id(self) -> int:
        return 2

    @property
    def unk_id(self) -> int:
        return 3

    @property
    def tokens(self) -> list[str]:
        """All tokens in id order (a copy)."""
        return list(self._tokens)

    def __len__(self) -> int:
        return len(self._tokens)

    def __contains__(self, token: object) -> bool:
        return token in self._index

    def __eq__(self, other: object) -> bool:
        return isinstance(other, Vocab) and self._tokens == other._tokens

    def __hash__(self) -> int:
        return hash(tuple(self._tokens))

    def __repr__(self) -> str:
        return f"Vocab({len(self)} tokens)"

    def id_of(self, token: str) -> int:
        """Id of ``token``, or the ``<unk>`` id."""
        return self._index.get(token, self.unk_id)

    def token_of(self, i: int) -> str:
        """Token with id ``i``; ``IndexError`` when out of range."""
        if not 0 <= i < len(self._tokens):
            raise IndexError(f"token id {i} out of range 0..{len(self._tokens) - 1}")
        return self._tokens[i]

    def encode(self, tokens: Iterable[str], add_sos: bool = False, add_eos: bool = False) -> list[int]:
        """Ids of ``tokens`` (unknown ones map to ``<unk>``), optionally wrapped in ``<sos>``/``<eos>``."""
        ids = [self._index.get(t, self.unk_id) for t in tokens]
        if add_sos:
            ids.insert(0, self.sos_id)
        if add_eos:
            ids.append(self.eos_id)
        return ids

    def decode(self, ids: Iterable[int], strip_special: bool = True) -> list[str]:
        """Tokens of ``ids``. With ``strip_special`` it stops at ``<eos>`` and drops ``<pad>``/``<sos>``."""
        out: list[str] = []
        for i in ids:
            i = int(i)
            if strip_special:
                if i == self.eos_id:
                    break
                if i in (self.pad_id, self.sos_id):
                    continue
            out.append(self.token_of(i))
        return out

    def to_dict(self) -> dict[str, Any]:
        """JSON-serialisable form: ``{"format": ..., "tokens": [...]}``."""
        return {"format": self.FORMAT, "tokens": list(self._tokens)}

    @classmethod
    def from_dict(cls, d: Mapping[str, Any]) -> "Vocab":
        """Inverse of :meth:`to_dict`; ``ValueError`` for anything else."""
        if not isinstance(d, Mapping) or d.get("format") != cls.FORMAT or not isinstance(d.get("tokens"), list):
            raise ValueError(f"not a {cls.FORMAT} dictionary")
        return cls(d["tokens"])
