"""The text-to-program commands: ``mathtune evaluate`` (decode a data file with a trained or the shipped
model) and ``mathtune score`` (score a prediction file), registered in the ``mathtune.commands`` group.

    mathtune evaluate runs/train/t2m-attn-20261122-101500 test.json --beam-width 1 10 --out preds.json
    mathtune evaluate pretrained:t2m problems.json --beam-width 10 --out preds.json   # the shipped model
    mathtune score preds.beam10.json --out scored.json

This module is loaded whenever the ``mathtune`` parser is built, so it holds only what the parser needs; what the
commands do is in :mod:`.cli_run`, imported when one of them runs.
"""

from __future__ import annotations

import argparse

from ..commands import Command

__all__ = ["EVALUATE", "SCORE"]


def _evaluate_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("checkpoint", metavar="CHECKPOINT_OR_TRIAL",
                   help="a checkpoint folder (state.pt + config.json), a `mathtune train` folder (uses best/), "
                        "a Tune trial folder (uses the checkpoint_* whose epoch scored best on validation), or "
                        "pretrained:t2m, the best text-to-program model shipped with mathtune (no training needed; "
                        "a shipped ensemble decodes with all its members)")
    p.add_argument("data_file", metavar="DATA_FILE", help="problems to decode, e.g. the held-apart test.json")
    p.add_argument("--beam-width", type=int, nargs="+", metavar="W",
                   help="beam widths (default: 1 and the model's beam_width); nested beams decode all in one pass")
    p.add_argument("--beam-mode", choices=("nested", "standard"), help="override the model's beam_mode")
    p.add_argument("--ensemble", action="append", metavar="CHECKPOINT",
                   help="decode with this model too (repeatable; any form CHECKPOINT_OR_TRIAL takes, a shipped "
                        "ensemble adding all its members): every step scores the mean of the models' next-token "
                        "probabilities. Members must be trained on the same training file; the first model's "
                        "decoding settings apply")
    p.add_argument("--out", metavar="FILE", help="write predictions here; with several widths FILE becomes "
                                                 "STEM.beamW.json per width")
    p.add_argument("--limit", type=int, metavar="N", help="only the first N problems")
    p.add_argument("--device", choices=("auto", "cpu", "cuda"), default="auto", help="torch device (default auto)")
    p.add_argument("--threads", type=int, help="torch CPU threads (default: all cores)")
    p.add_argument("--batch-size", type=int, help="problems per decoding batch (default: the model's "
                                                  "eval_batch_size)")
    p.add_argument("--breakdown", action="store_true",
                   help="also print, at the widest width, the scores by the number of operations of the gold "
                        "program and, for a file with categories (the original MathQA files), by category")


def _score_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("predictions", metavar="PREDICTIONS_FILE")
    p.add_argument("--out", metavar="FILE", help="write the items with predicted_answer, em, exec_correct and executes")
    p.add_argument("--breakdown", action="store_true",
                   help="also print the scores by the number of operations of the gold program and, for a file "
                        "with categories (the original MathQA files), by category")


EVALUATE = Command(
    help="score a trained text-to-program model on a data file",
    description="Decode every problem of DATA_FILE (COL775 or original MathQA JSON) with a trained t2m-* model at "
                "one or more beam widths, print exact match and execution accuracy per width, and optionally write "
                "the predictions in the scorer format (the file's objects plus `predicted`).",
    add_arguments=_evaluate_arguments, run="mathtune.trainables.t2m.cli_run:evaluate")

SCORE = Command(
    help="score a prediction file (exact match and execution accuracy)",
    description="Score a JSON array of objects with Problem, linear_formula, answer and predicted (as written by "
                "`mathtune evaluate --out`) with the course rules.",
    add_arguments=_score_arguments, run="mathtune.trainables.t2m.cli_run:score")
