"""A bounded, eval-free executor for MathQA linear formulas (spec sections 6 and 7).

It reproduces the course checker: the checker's meanings of all 48 operations (quirks included, such
as ``volume_cube = 6 a^2`` and ``permutation = F(a) / F(b)``), its constants, its ``#k`` / ``nk``
resolution (negative indices count from the end) and its lenient cutting of argument text. The only
deviations are the limits that keep every call cheap; each of them makes execution fail:

* a program longer than :data:`MAX_PROGRAM_CHARS` characters or with more than :data:`MAX_STEPS` steps;
* ``factorial`` (also inside ``choose`` / ``permutation``) of an argument above :data:`MAX_FACTORIAL_ARG`;
* an exact integer result (or an integer ``power`` that would give one) above :data:`MAX_INT_BITS` bits.

Python's own semantics do the rest: float ``**`` overflow raises, ``sqrt`` / ``**`` of a negative number
gives a complex value (which scores wrong), division by zero raises, and so on.

One reading the spec leaves open: every argument written in a step is resolved, including ones the
operation then ignores, so ``add(n0,n1,n9)`` fails when there is no ``n9``.

Example::

    >>> run_program("divide(n0,n1)|multiply(#0,const_100)|", [1.0, 4.0])
    25.0
    >>> execute("power(n1,n0)|", "4 questions , each with 5 choices")
    625.0
    >>> execute("sqrt(", "4") is None
    True
"""

from __future__ import annotations

import math
from typing import Callable, Sequence, Union

from ..errors import MathtuneError
from .numbers import extract_numbers

__all__ = [
    "ExecutionError",
    "Value",
    "UNARY_OPS",
    "BINARY_OPS",
    "TERNARY_OPS",
    "OPERATIONS",
    "MAX_PROGRAM_CHARS",
    "MAX_STEPS",
    "MAX_FACTORIAL_ARG",
    "MAX_INT_BITS",
    "constant_value",
    "apply_operation",
    "run_program",
    "execute",
]

Value = Union[int, float, complex]

MAX_PROGRAM_CHARS = 10_000
"""Longest program text accepted (gold programs are at most 645 characters)."""
MAX_STEPS = 200
"""Most steps (non-empty ``|`` pieces) accepted (gold programs have at most 49)."""
MAX_FACTORIAL_ARG = 1000
"""Largest argument of ``factorial`` (1000! has 2,568 digits)."""
MAX_INT_BITS = 16_384
"""Largest exact integer a step may produce (about 4,900 decimal digits)."""


class ExecutionError(MathtuneError):
    """A program could not be executed; the message says which step and why."""


# --------------------------------------------------------------------------------------------------
# operations


def _int_guard(v: Value) -> Value:
    if type(v) is int and v.bit_length() > MAX_INT_BITS:
        raise ExecutionError(f"integer result above {MAX_INT_BITS} bits")
    return v


def _fact(a: Value) -> int:
    """Checker factorial: product of 1..floor(a) for a >= 0, 1 for a < 0 (exact integer)."""
    if a < 0:  # type: ignore[operator]  # complex raises TypeError, as in the checker
        return 1
    if a > MAX_FACTORIAL_ARG:  # type: ignore[operator]
        raise ExecutionError(f"factorial argument {a!r} above {MAX_FACTORIAL_ARG}")
    return math.factorial(int(a))  # type: ignore[arg-type]  # int(nan) raises


def _power(a: Value, b: Value) -> Value:
    if type(a) is int and type(b) is int and b > 0 and abs(a) > 1:
        if (abs(a).bit_length() - 1) * b >= MAX_INT_BITS:
            raise ExecutionError(f"integer power above {MAX_INT_BITS} bits")
    return a**b  # type: ignore[operator]


def _trunc(a: Value) -> int:
    return int(a)  # type: ignore[arg-type]  # complex -> TypeError, inf -> OverflowError, nan -> ValueError


def _lcm(a: Value, b: Value) -> int:
    x, y = _trunc(a), _trunc(b)
    return abs(x * y) // math.gcd(x, y)  # both zero -> ZeroDivisionError


def _heron(a: Value, b: Value, c: Value) -> float:
    s = (a + b + c) / 2
    return math.sqrt(s * (s - a) * (s - b) * (s - c))  # type: ignore[arg-type]  # negative -> ValueError


_PI = math.pi

UNARY_OPS: dict[str, Callable[[Value], Value]] = {
    "negate": lambda a: -a,
    "inverse": lambda a: 1 / a,
    "sqrt": lambda a: a**0.5,
    "floor": _trunc,
    "factorial": _fact,
    "log": lambda a: math.log(a),  # type: ignore[arg-type]
    "square_area": lambda a: a**2,
    "circle_area": lambda a: _PI * a**2,
    "circumface": lambda a: 2 * _PI * a,
    "surface_sphere": lambda a: 4 * _PI * a**2,
    "volume_sphere": lambda a: 4 / 3 * _PI * a**3,
    "surface_cube": lambda a: 6 * a**2,
    "volume_cube": lambda a: 6 * a**2,  # checker quirk: same as surface_cube
    "cube_edge_by_volume": lambda a: a ** (1 / 3),
    "square_perimeter": lambda a: 4 * a,
    "rhombus_perimeter": lambda a: 4 * a,
    "square_edge_by_area": lambda a: a**0.5,
    "square_edge_by_perimeter": lambda a: a / 4,
    "negate_prob": lambda a: 1 - a,
}
"""The 19 one-argument operations, with the checker's meanings."""

BINARY_OPS: dict[str, Callable[[Value, Value], Value]] = {
    "add": lambda a, b: a + b,
    "subtract": lambda a, b: a - b,
    "multiply": lambda a, b: a * b,
    "divide": lambda a, b: a / b,
    "power": _power,
    "speed": lambda a, b: a / b,
    "p_after_gain": lambda a, b: a / b,  # checker quirk
    "rectangle_area": lambda a, b: a * b,
    "rectangle_perimeter": lambda a, b: 2 * (a + b),
    "triangle_area": lambda a, b: a * b / 2,
    "max": lambda a, b: max(a, b),  # type: ignore[type-var]
    "min": lambda a, b: min(a, b),  # type: ignore[type-var]
    "stream_speed": lambda a, b: (a + b) / 2,
    "gcd": lambda a, b: math.gcd(_trunc(a), _trunc(b)),
    "lcm": _lcm,
    "reminder": lambda a, b: _trunc(a) % _trunc(b),
    "choose": lambda a, b: _fact(a) / (_fact(b) * _fact(a - b)),
    "permutation": lambda a, b: _fact(a) / _fact(b),  # checker quirk: not a!/(a-b)!
    "volume_cylinder": lambda a, b: _PI / 3 * b**2 * a,  # checker quirk
    "volume_cone": lambda a, b: _PI * a**3 / 3,  # checker quirk: b ignored
    "surface_cylinder": lambda a, b: 2 * _PI * a * b + 2 * _PI * a**2,
    "rhombus_area": lambda a, b: (a + b) / 2,  # checker quirk
    "original_price_before_gain": lambda a, b: (100 + a) / 100 * b,
    "original_price_before_loss": lambda a, b: (100 - a) / 100 * b,
}
"""The 24 two-argument operations (the spec's table lists max and min on one row)."""

TERNARY_OPS: dict[str, Callable[[Value, Value, Value], Value]] = {
    "quadrilateral_area": lambda a, b, c: (b + c) / 2 * a,
    "volume_rectangular_prism": lambda a, b, c: a * b * c,
    "surface_rectangular_prism": lambda a, b, c: 2 * (a * b + b * c + c * a),
    "triangle_perimeter": lambda a, b, c: a + b + c,
    "triangle_area_three_edges": _heron,
}
"""The 5 three-argument operations."""

OPERATIONS: dict[str, int] = {
    **{k: 1 for k in UNARY_OPS},
    **{k: 2 for k in BINARY_OPS},
    **{k: 3 for k in TERNARY_OPS},
}
"""All 48 operation names the checker knows, with their arity."""


def apply_operation(name: str, args: Sequence[Value]) -> Value:
    """Apply operation ``name`` to ``args`` with checker semantics; extra arguments are ignored.

    Raises :class:`ExecutionError` for an unknown name, missing arguments or any arithmetic failure.

    Example::

        >>> apply_operation("permutation", [5.0, 2.0])
        60.0
    """
    arity = 1 if name in UNARY_OPS else 3 if name in TERNARY_OPS else 2
    if len(args) < arity:
        raise ExecutionError(f"{name!r} needs {arity} arguments, got {len(args)}")
    fn: Callable[..., Value] | None = UNARY_OPS.get(name) or BINARY_OPS.get(name) or TERNARY_OPS.get(name)
    if fn is None:
        raise ExecutionError(f"unknown operation {name!r}")
    try:
        return _int_guard(fn(*args[:arity]))
    except ExecutionError:
        raise
    except Exception as e:  # ZeroDivisionError, OverflowError, ValueError, TypeError, ...
        raise ExecutionError(f"{name}: {type(e).__name__}: {e}") from None


# --------------------------------------------------------------------------------------------------
# arguments and programs


def constant_value(name: str) -> float:
    """Value of ``const_<name>``: ``pi``, else ``name`` with ``_`` read as ``.`` parsed as a float.

    Example::

        >>> constant_value("0_2778"), constant_value("2.0")
        (0.2778, 2.0)
    """
    if name == "pi":
        return math.pi
    try:
        return float(name.replace("_", "."))
    except ValueError:
        raise ExecutionError(f"bad constant 'const_{name}'") from None


def _index(text: str, what: str) -> int:
    try:
        return int(text)
    except ValueError:
        raise ExecutionError(f"bad {what} index {text!r}") from None


def _pick(seq: Sequence[Value], i: int, arg: str) -> Value:
    if not -len(seq) <= i < len(seq):
        raise ExecutionError(f"{arg!r} out of range ({len(seq)} available)")
    return seq[i]


def _resolve(arg: str, numbers: Sequence[float], results: Sequence[Value]) -> Value:
    if "#" in arg:
        return _pick(results, _index(arg.partition("#")[2], "step"), arg)
    if "const_" in arg:
        return constant_value(arg[6:])
    if "n" in arg:
        return _pick(numbers, _index(arg[1:], "number"), arg)
    raise ExecutionError(f"bad argument {arg!r}")


def run_program(program: str, numbers: Sequence[float]) -> Value:
    """Execute ``program`` against the extracted ``numbers``; return the last step's value.

    Raises :class:`ExecutionError` on any failure (syntax, range, arithmetic or resource limit).

    Example::

        >>> run_program("negate(n0)|add(#0,const_1)|add(#1,const_1)|add(#1,#2)|", [26.0, 24.0])
        -49.0
    """
    if not isinstance(program, str):
        raise ExecutionError(f"program must be a string, got {type(program).__name__}")
    if len(program) > MAX_PROGRAM_CHARS:
        raise ExecutionError(f"program longer than {MAX_PROGRAM_CHARS} characters")
    pieces = [p for p in program.split("|") if p]
    if not pieces:
        raise ExecutionError("empty program")
    if len(pieces) > MAX_STEPS:
        raise ExecutionError(f"program has {len(pieces)} steps, more than {MAX_STEPS}")
    results: list[Value] = []
    for k, piece in enumerate(pieces):
        name, paren, rest = piece.partition("(")
        if not paren:
            raise ExecutionError(f"step {k}: no '(' in {piece!r}")
        arg_text = rest.partition("(")[0].partition(")")[0]
        try:
            args = [_resolve(a.strip(), numbers, results) for a in arg_text.split(",")]
            results.append(apply_operation(name, args))
        except ExecutionError as e:
            raise ExecutionError(f"step {k}: {e}") from None
    return results[-1]


def execute(program: str, problem: str | Sequence[float]) -> Value | None:
    """Execute ``program`` on a problem text (or on already extracted numbers); ``None`` on failure.

    Never raises for any input.

    Example::

        >>> execute("quadrilateral_area(const_4,n2,n1)|", "sides 5 and bases 11 and 17")
        56.0
    """
    try:
        numbers = extract_numbers(problem) if isinstance(problem, str) else list(problem)
        return run_program(program, numbers)
    except Exception:
        return None
