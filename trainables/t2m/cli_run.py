"""What ``mathtune evaluate`` and ``mathtune score`` do (:mod:`.cli` declares them and their arguments).

The ``mathtune.commands`` entry points load :mod:`.cli` whenever the ``mathtune`` parser is built; this module
imports the model code (models, decoding, data encoding) and is loaded only when one of its commands runs
(``Command.run`` names its functions as "module:function", :mod:`mathtune.trainables.commands`).
"""

from __future__ import annotations

import argparse
import time
from pathlib import Path
from typing import Any

from ..atomic import write_json
from ..checkpoints import load_trained
from ..commands import CommandError
from ..loop import set_threads
from .breakdown import format_groups, grouped_scores
from .ensemble import check_members
from .evaluation import evaluate_file, find_members, member_votes, read_predictions, vocabularies_of
from .scoring import score_items
from .shipped import PREFIX, read_model_record, resolve_pretrained

__all__ = ["evaluate", "score"]


def evaluate(args: argparse.Namespace) -> int:
    """``mathtune evaluate``: decode a data file at each beam width, print the scores, write the predictions."""
    if args.limit is not None and args.limit < 1:
        raise CommandError(f"--limit {args.limit}: expected a positive number of problems")
    if args.beam_width and min(args.beam_width) < 1:
        raise CommandError(f"--beam-width {min(args.beam_width)}: widths start at 1")
    if not Path(args.data_file).is_file():
        raise CommandError(f"{args.data_file}: data file not found")
    ckpt, *shipped_members = find_members(args.checkpoint)  # a shipped ensemble: its members decode as one
    if str(args.checkpoint).startswith(PREFIX):
        print(f"[mathtune] {args.checkpoint}: {_shipped_summary(resolve_pretrained(args.checkpoint))}", flush=True)
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
    others = [(args.checkpoint, c) for c in shipped_members]  # --ensemble with a shipped ensemble adds its members
    others += [(other, c) for other in args.ensemble or [] for c in find_members(other)]
    votes = member_votes(args.checkpoint) + [v for other in args.ensemble or [] for v in member_votes(other)]
    for other, o_ckpt in others:
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
        weight = votes[len(ensemble)]
        print(f"[mathtune] ensemble member: {o_family.name} checkpoint {o_ckpt}"
              + (f" ({weight} votes)" if weight != 1 else ""), flush=True)
    widths = sorted(set(args.beam_width or [1, config.beam_width]))
    weighting = f" with votes {', '.join(map(str, votes))}" if len(set(votes)) > 1 else ""
    print(f"[mathtune] {family.name} checkpoint {ckpt}; decoding {args.data_file} at beam width "
          f"{', '.join(map(str, widths))} ({config.beam_mode} beam)"
          f"{f', an ensemble of {len(ensemble) + 1} models' if ensemble else ''}{weighting}", flush=True)
    t0 = time.perf_counter()
    out = evaluate_file(family, config, model, args.data_file, widths=widths, limit=args.limit or 0,
                        ensemble=ensemble, votes=votes)
    wall = time.perf_counter() - t0
    for w in widths:
        r = out.scores[w]
        print(f"beam {w:3d}: exact match {r.exact_match:6.2f}%  execution accuracy {r.execution_accuracy:6.2f}%  "
              f"({r.n} problems of {out.source.name}; {r.unexecutable} programs do not execute)")
    print(f"[mathtune] {wall:.1f} s", flush=True)
    if args.breakdown:
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
    members = rec.get("members")
    kind = f"an ensemble of {len(members)} models, " if isinstance(members, list) else ""
    return f"{kind}{rec.get('family', '?')}, trained {rec.get('date', '?')}; recorded on dev: {figs or 'no figures'}"


def score(args: argparse.Namespace) -> int:
    """``mathtune score``: score a prediction file."""
    items = read_predictions(args.predictions)
    result = score_items(items)
    print(f"exact match {result.exact_match:6.2f}%  execution accuracy {result.execution_accuracy:6.2f}%  "
          f"({result.n} problems of {Path(args.predictions).name}; {result.unexecutable} programs do not execute)")
    if args.breakdown:
        print("\n".join(format_groups(grouped_scores(items, result.items))))
    if args.out:
        write_json(Path(args.out), [{**item, **row} for item, row in zip(items, result.items)], ensure_ascii=False)
        print(f"[mathtune] per-problem results written: {args.out}")
    return 0
