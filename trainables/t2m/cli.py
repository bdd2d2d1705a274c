"""The text-to-program commands: ``mathtune evaluate`` (decode a data file with a trained or the shipped
model) and ``mathtune score`` (score a prediction file), registered in the ``mathtune.commands`` group.

    mathtune evaluate runs/train/t2m-attn-20261122-101500 test.json --beam-width 1 10 --out preds.json
    mathtune evaluate pretrained:t2m problems.json --beam-width 10 --out preds.json   # the shipped model
    mathtune score preds.beam10.json --out scored.json
"""

from __future__ import annotations

import argparse
import time
from pathlib import Path
from typing import Any

from ..atomic import write_json
from ..checkpoints import load_trained
from ..commands import Command, CommandError
from ..loop import set_threads
from .scoring import score_items
from .shipped import PREFIX, read_model_record

__all__ = ["EVALUATE", "SCORE"]


# Every mathtune command line loads this module (the mathtune.commands entry points): the model code (models,
# decoding, data encoding) is imported when a command runs, so that `mathtune --help` and the other commands do
# not pay for it.
def _evaluate(args: argparse.Namespace) -> int:
    from mathtune.trainables.t2m.ensemble import check_members
    from mathtune.trainables.t2m.evaluation import evaluate_file, find_checkpoint, vocabularies_of

    if args.limit is not None and args.limit < 1:
        raise CommandError(f"--limit {args.limit}: expected a positive number of problems")
    if args.beam_width and min(args.beam_width) < 1:
        raise CommandError(f"--beam-width {min(args.beam_width)}: widths start at 1")
    if not Path(args.data_file).is_file():
        raise CommandError(f"{args.data_file}: data file not found")
    ckpt = find_checkpoint(args.checkpoint)
    if str(args.checkpoint).startswith(PREFIX):
        print(f"[mathtune] {args.checkpoint}: {_shipped_summary(ckpt)}", flush=True)
    overrides: dict[str, Any] = {"device": args.device}
    if args.threads is not None:
        overrides["threads"] = args.threads
    if args.beam_mode:
        overrides["beam_mode"] = args.beam_mode
    if args.batch_size:
        overrides["eval_batch_size"] = args.batch_size
    family, config, model, _ = load_trained(ckpt, data=vocabularies_of, overrides=overrides)
    set_threads(config)
    ensemble = []
    for other in args.ensemble or []:
        o_ckpt = find_checkpoint(other)
        o_family, o_config, o_model, _ = load_trained(o_ckpt, data=vocabularies_of,
                                                      overrides={k: v for k, v in overrides.items()
                                                                 if k != "eval_batch_size"})
        set_threads(o_config)
        try:
            check_members([model, o_model])
        except ValueError:
            raise CommandError(f"--ensemble {other}: trained on another program vocabulary than {args.checkpoint} "
                            f"(ensemble members must share their training file)") from None
        ensemble.append((o_model, o_config))
        print(f"[mathtune] ensemble member: {o_family.name} checkpoint {o_ckpt}", flush=True)
    widths = sorted(set(args.beam_width or [1, config.beam_width]))
    print(f"[mathtune] {family.name} checkpoint {ckpt}; decoding {args.data_file} at beam width "
          f"{', '.join(map(str, widths))} ({config.beam_mode} beam)"
          f"{f', an ensemble of {len(ensemble) + 1} models' if ensemble else ''}", flush=True)
    t0 = time.perf_counter()
    out = evaluate_file(family, config, model, args.data_file, widths=widths, limit=args.limit or 0,
                        ensemble=ensemble)
    wall = time.perf_counter() - t0
    for w in widths:
        r = out.scores[w]
        print(f"beam {w:3d}: exact match {r.exact_match:6.2f}%  execution accuracy {r.execution_accuracy:6.2f}%  "
              f"({r.n} problems of {out.source.name}; {r.unexecutable} programs do not execute)")
    print(f"[mathtune] {wall:.1f} s", flush=True)
    if args.breakdown:
        from mathtune.trainables.t2m.breakdown import format_groups, grouped_scores

        w = max(widths)
        print(f"beam {w}, by group:")
        print("\n".join(format_groups(grouped_scores(out.items[w], out.scores[w].items))))
    if args.out:
        target = Path(args.out)
        for w in widths:
            path = target if len(widths) == 1 else target.with_name(f"{target.stem}.beam{w}{target.suffix or '.json'}")
            write_json(path, out.items[w], ensure_ascii=False)
            print(f"[mathtune] predictions (beam {w}) written: {path}")
    return 0


def _shipped_summary(folder: Path) -> str:
    """One line on a shipped model: family, and its recorded dev figures per beam width."""
    rec = read_model_record(folder)
    dev = (rec.get("figures") or {}).get("dev") or {}
    figs = ", ".join(f"beam {w} {v['exec_acc']:.2f}% exec / {v['exact_match']:.2f}% EM" for w, v in
                     sorted(dev.items(), key=lambda kv: int(kv[0])))
    return f"{rec.get('family', '?')}, trained {rec.get('date', '?')}; recorded on dev: {figs or 'no figures'}"


def _score(args: argparse.Namespace) -> int:
    from mathtune.trainables.t2m.evaluation import read_predictions

    items = read_predictions(args.predictions)
    result = score_items(items)
    print(f"exact match {result.exact_match:6.2f}%  execution accuracy {result.execution_accuracy:6.2f}%  "
          f"({result.n} problems of {Path(args.predictions).name}; {result.unexecutable} programs do not execute)")
    if args.breakdown:
        from mathtune.trainables.t2m.breakdown import format_groups, grouped_scores

        print("\n".join(format_groups(grouped_scores(items, result.items))))
    if args.out:
        write_json(Path(args.out), [{**item, **row} for item, row in zip(items, result.items)], ensure_ascii=False)
        print(f"[mathtune] per-problem results written: {args.out}")
    return 0



def _evaluate_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("checkpoint", metavar="CHECKPOINT_OR_TRIAL",
                   help="a checkpoint folder (state.pt + config.json), a `mathtune train` folder (uses best/), "
                        "a Tune trial folder (uses the checkpoint_* whose epoch scored best on validation), or "
                        "pretrained:t2m, the best text-to-program model shipped with mathtune (no training needed)")
    p.add_argument("data_file", metavar="DATA_FILE", help="problems to decode, e.g. the held-apart test.json")
    p.add_argument("--beam-width", type=int, nargs="+", metavar="W",
                   help="beam widths (default: 1 and the model's beam_width); nested beams decode all in one pass")
    p.add_argument("--beam-mode", choices=("nested", "standard"), help="override the model's beam_mode")
    p.add_argument("--ensemble", action="append", metavar="CHECKPOINT",
                   help="decode with this model too (repeatable; any form CHECKPOINT_OR_TRIAL takes): every step "
                        "scores the mean of the models' next-token probabilities. Members must be trained on the "
                        "same training file; the first model's decoding settings apply")
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
    add_arguments=_evaluate_arguments, run=_evaluate)

SCORE = Command(
    help="score a prediction file (exact match and execution accuracy)",
    description="Score a JSON array of objects with Problem, linear_formula, answer and predicted (as written by "
                "`mathtune evaluate --out`) with the course rules.",
    add_arguments=_score_arguments, run=_score)
