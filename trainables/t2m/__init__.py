"""Text-to-math-program workload (MathQA linear formulas, COL775 splits): the model-free parts.

Number extraction (:mod:`.numbers`), an eval-free bounded executor (:mod:`.executor`), the course
scoring rules (:mod:`.scoring`) and data loading / tokenisation / vocabularies (:mod:`.data`).
Importing this package does not import torch.

The model parts import torch and are imported by path: :mod:`.programs` (decoder tokens and grammar),
:mod:`.glove` and :mod:`.pretrained` (offline embeddings and encoders), :mod:`.dataset` (splits, vocabularies,
batches), :mod:`.models`, :mod:`.beam` (greedy and beam decoding), :mod:`.family` (the four ``t2m-*``
families), :mod:`.evaluation` (``mathtune evaluate`` / ``mathtune score``), :mod:`.attention`
(attention heat maps for ``mathtune report``), :mod:`.shipped` (``pretrained:NAME`` models) and :mod:`.ship`
(``mathtune ship``: a run's configuration with dev figures per beam width, and its model).

Example::

    >>> from mathtune.trainables.t2m import execute, score_items
    >>> execute("power(n1,n0)|", "4 questions , 5 choices each")
    625.0
"""

from .data import (
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
from .executor import OPERATIONS, ExecutionError, Value, constant_value, execute, run_program
from .numbers import NumberAlignment, align_numbers, extract_numbers
from .scoring import ScoreResult, answer_matches, exact_match, execution_correct, normalise, score_items

__all__ = [
    "COL775",
    "MATHQA",
    "DataError",
    "Example",
    "Vocab",
    "detokenize",
    "load_split",
    "option_value",
    "parse_options",
    "problem_number_alignment",
    "tokenize_problem",
    "tokenize_program",
    "OPERATIONS",
    "ExecutionError",
    "Value",
    "constant_value",
    "execute",
    "run_program",
    "NumberAlignment",
    "align_numbers",
    "extract_numbers",
    "ScoreResult",
    "answer_matches",
    "exact_match",
    "execution_correct",
    "normalise",
    "score_items",
]
