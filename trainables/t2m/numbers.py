"""Extracting the numbers n0, n1, ... from a MathQA problem text (spec section 4).

The rule reproduces the course checker exactly:

1. thousands separators are removed inside runs like ``2,000`` or ``1,234,567`` (a run of 1-3 digits,
   then one or more groups of comma + exactly 3 digits, starting and ending on a word boundary);
2. numbers are the non-overlapping matches of ``[+-]?[0-9]*\\.[0-9]+|[0-9]+``, left to right
   (only decimals keep a sign; no word boundaries, so digits inside words count).

Example::

    >>> extract_numbers("a - 26 < f < 2,000 and -0.5")
    [26.0, 2000.0, -0.5]

Because no match can cross whitespace, extracting token by token from the whitespace-split text gives
the same list as extracting from the whole text; :func:`align_numbers` uses that to tell, for each
problem token, which number indices it holds (so a model can point at or copy ``nK``).
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Sequence

__all__ = ["extract_numbers", "NumberAlignment", "align_numbers"]

# Python's default (Unicode) \b and \d, as the reference checker is a Python script using ``re``.
_THOUSANDS = re.compile(r"\b\d{1,3}(?:,\d{3})+\b")
_NUMBER = re.compile(r"[+-]?[0-9]*\.[0-9]+|[0-9]+")


def _drop_thousands_commas(text: str) -> str:
    return _THOUSANDS.sub(lambda m: m.group(0).replace(",", ""), text)


def extract_numbers(text: str) -> list[float]:
    """Return the numbers of ``text`` in order of appearance, as floats (spec section 4).

    Example::

        >>> extract_numbers("3,5 and 12,34 ; .5 ; 1.5.2 ; x2y ; 1,0000")
        [3.0, 5.0, 12.0, 34.0, 0.5, 1.5, 0.2, 2.0, 1.0, 0.0]
    """
    return [float(m) for m in _NUMBER.findall(_drop_thousands_commas(text))]


@dataclass(frozen=True)
class NumberAlignment:
    """Where the numbers of a tokenised problem are.

    ``numbers[k]`` is ``nK``; ``token_of_number[k]`` is the index of the token it comes from;
    ``first_number_of_token[i]`` is the first ``K`` found in token ``i`` or ``-1`` when the token holds
    no number; ``numbers_in_token[i]`` lists every ``K`` in token ``i`` (a token like ``1.5.2`` or
    ``x2y3`` holds more than one).
    """

    numbers: tuple[float, ...]
    token_of_number: tuple[int, ...]
    first_number_of_token: tuple[int, ...]
    numbers_in_token: tuple[tuple[int, ...], ...]


def align_numbers(tokens: Sequence[str]) -> NumberAlignment:
    """Apply the extraction rule token by token and record which token each ``nK`` comes from.

    For a space-tokenised problem, ``align_numbers(text.split()).numbers`` equals
    ``extract_numbers(text)`` (no match of either regex can cross whitespace).

    Example::

        >>> a = align_numbers("rs . 2,000 at 5 %".split())
        >>> a.numbers, a.first_number_of_token
        ((2000.0, 5.0), (-1, -1, 0, -1, 1, -1))
    """
    numbers: list[float] = []
    token_of_number: list[int] = []
    first: list[int] = []
    per_token: list[tuple[int, ...]] = []
    for i, tok in enumerate(tokens):
        found = extract_numbers(tok)
        ks = tuple(range(len(numbers), len(numbers) + len(found)))
        numbers.extend(found)
        token_of_number.extend([i] * len(found))
        first.append(ks[0] if ks else -1)
        per_token.append(ks)
    return NumberAlignment(tuple(numbers), tuple(token_of_number), tuple(first), tuple(per_token))
