"""Scoring trained text-to-program models on any data file, and reading prediction files.

What ``mathtune evaluate`` and ``mathtune score`` run:

* :func:`find_checkpoint`: a checkpoint folder (``state.pt`` + ``config.json``), a ``mathtune train``
  output folder (its ``best/``), a Tune trial folder (the ``checkpoint_*`` whose own epoch scored
  best on the family's validation metric, :func:`~mathtune.trainables.checkpoints.best_checkpoint`), or
  ``pretrained:NAME``, a model shipped in the package; :func:`find_members`: the folders that decode as one
  model, several for a shipped ensemble;
* :func:`vocabularies_of`: what :func:`~mathtune.trainables.checkpoints.load_trained` needs to rebuild a
  text-to-program model from its checkpoint folder alone (the model's state carries its vocabularies);
* :func:`evaluate_file`: decode a COL775 or original-MathQA file at several beam widths and score it;
  the prediction items are the file's own objects plus ``predicted`` (and ``answer`` where the file
  had none), the scorer input format;
* :func:`read_predictions`: validate a prediction file for :func:`~.scoring.score_items`.

Example::

    ckpt = find_checkpoint("runs/t2m-attn")
    trained = load_trained(ckpt, data=vocabularies_of)
    out = evaluate_file(trained.family, trained.config, trained.model, "test.json", widths=[1, 10])
    out.scores[10].execution_accuracy
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Sequence

from ..base import ConfigError, FamilyConfig
from ..checkpoints import best_checkpoint, run_checkpoint
from ..device import resolve_device
from ..errors import CheckpointError
from ..loop import CHECKPOINT_FILE, load_state_file
from ..registry import get_family
from .data import DataError, load_split
from .dataset import Part, T2MData, encode_part
from .decoding import decode_part
from .ensemble import decode_ensemble
from .models import meta_of_state
from .scoring import ScoreResult, score_items
from .shipped import PREFIX, is_ensemble, member_folders, read_model_record, resolve_pretrained

__all__ = ["find_checkpoint", "find_members", "member_votes", "load_state", "vocabularies_of", "evaluate_file", "EvalOutput", "read_predictions",
           "REQUIRED_KEYS"]

REQUIRED_KEYS = ("Problem", "linear_formula", "answer", "predicted")


def load_state(ckpt: Path) -> dict[str, Any]:
    """``state.pt`` of a checkpoint folder (tensors only); a damaged file is a one-line CheckpointError."""
    return load_state_file(ckpt / CHECKPOINT_FILE)


def _meta(model_state: dict[str, Any], where: Path) -> dict[str, Any]:
    try:
        return meta_of_state(model_state)
    except (KeyError, ValueError):
        raise ConfigError(f"{where}: not a text-to-program checkpoint (its model state has no vocabularies)") from None


def vocabularies_of(config: FamilyConfig, model_state: dict[str, Any]) -> T2MData:
    """The data a text-to-program model is built with when it is rebuilt from its checkpoint alone: the
    vocabularies its state carries, no problems (``data=`` of :func:`~mathtune.trainables.checkpoints.load_trained`;
    the problems to decode come from a data file, :func:`evaluate_file`)."""
    try:
        return T2MData(meta=meta_of_state(model_state), parts={})
    except (KeyError, ValueError):
        raise ConfigError("not a text-to-program checkpoint (its model state has no vocabularies)") from None


def find_checkpoint(path: str | Path) -> Path:
    """The checkpoint folder to use for ``path`` (see the module docstring); ``pretrained:NAME`` is a model
    shipped inside the package (:mod:`.shipped`); a shipped ensemble is no one checkpoint (:func:`find_members`).
    Anything else is a one-line :class:`CheckpointError`."""
    if str(path).startswith(PREFIX):
        folder = resolve_pretrained(path)
        if is_ensemble(folder):
            raise CheckpointError(f"{path}: a shipped ensemble of {len(member_folders(folder))} models, not one "
                                  f"checkpoint (it decodes with `mathtune evaluate {path} FILE`)")
        return folder
    p = Path(path)
    if not p.is_dir():
        raise CheckpointError(f"{path}: no such checkpoint or trial folder")
    if (p / CHECKPOINT_FILE).is_file():
        return p
    best = run_checkpoint(p, "best")
    if best is not None:
        return best
    ckpts = sorted(d for d in p.glob("checkpoint_*") if (d / CHECKPOINT_FILE).is_file())
    if not ckpts:
        raise CheckpointError(f"{path}: neither a checkpoint folder ({CHECKPOINT_FILE} + config.json) nor a "
                              f"trial folder with checkpoint_* subfolders")
    family = get_family(_meta(load_state(ckpts[-1])["model"], ckpts[-1])["family"])
    chosen, _ = best_checkpoint(p, family.metric, family.mode)
    return chosen if chosen is not None else ckpts[-1]


def find_members(path: str | Path) -> list[Path]:
    """The checkpoint folders that decode as ``path``, in order: a shipped ensemble's members for
    ``pretrained:NAME`` of an ensemble, else the one folder :func:`find_checkpoint` gives."""
    if str(path).startswith(PREFIX):
        return member_folders(resolve_pretrained(path))
    return [find_checkpoint(path)]


def member_votes(path: str | Path) -> list[int]:
    """The votes of :func:`find_members`'s folders, in the same order: what a shipped ensemble records of each
    member (one where it records none), one for anything else."""
    if str(path).startswith(PREFIX):
        folder = resolve_pretrained(path)
        if is_ensemble(folder):
            return [int(m.get("votes", 1)) for m in read_model_record(folder)["members"]]
    return [1]


@dataclass
class EvalOutput:
    """Predictions (scorer items) and scores per beam width, for one data file."""

    source: Path
    items: dict[int, list[dict[str, Any]]]
    scores: dict[int, ScoreResult]


def evaluate_file(family, config: FamilyConfig, model, data_file: str | Path, *, widths: Sequence[int],
                  limit: int = 0, ensemble: Sequence[tuple[Any, FamilyConfig]] = (),
                  votes: Sequence[int] | None = None, parts: Sequence[Part] | None = None) -> EvalOutput:
    """Decode the problems of ``data_file`` (the first ``limit`` when > 0) at each width and score them.
    With ``ensemble`` ((model, config) pairs) those models decode beside ``model`` as one (see
    :mod:`.ensemble`), with ``votes`` (``model``'s first, then the ensemble's; default one each). ``parts``:
    every problem of the file already encoded by ``model`` and by each ensemble member, in that order (a caller
    that decodes the same file many times encodes it once)."""
    if parts is not None and limit:
        raise ValueError("parts hold every problem of the file; give no limit with them")
    path = Path(data_file)
    examples = load_split(path)
    raw = json.loads(path.read_text(encoding="utf-8"))
    if limit:
        examples, raw = examples[:limit], raw[:limit]
    if not examples:
        raise DataError(f"{path}: no problems to evaluate")
    device = resolve_device(config)
    if ensemble:
        preds = decode_ensemble([(model, config), *ensemble], examples, widths=widths, config=config,
                                device=device, source=path.name, votes=votes, parts=parts)
    else:
        part = parts[0] if parts else encode_part("eval", examples, model.meta, config, source=path.name,
                                                  device=device)
        preds, _ = decode_part(model, part, widths=widths, config=config, device=device, with_loss=False)
    items: dict[int, list[dict[str, Any]]] = {}
    scores: dict[int, ScoreResult] = {}
    for w, programs in preds.items():
        rows = []
        for obj, ex, program in zip(raw, examples, programs):
            item = dict(obj)
            item.setdefault("answer", ex.answer)
            item["predicted"] = program
            rows.append(item)
        items[w], scores[w] = rows, score_items(rows)
    return EvalOutput(path, items, scores)


def read_predictions(path: str | Path) -> list[dict[str, Any]]:
    """The items of a prediction file; a one-line :class:`DataError` when it is not one."""
    p = Path(path)
    try:
        payload = json.loads(p.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise DataError(f"{path}: file not found") from None
    except (OSError, UnicodeDecodeError) as exc:
        raise DataError(f"{path}: cannot read: {exc}") from None
    except json.JSONDecodeError as exc:
        raise DataError(f"{path}: not valid JSON: {exc.msg} at line {exc.lineno} column {exc.colno}") from None
    if not isinstance(payload, list):
        raise DataError(f"{path}: expected a JSON array of prediction objects, got {type(payload).__name__}")
    for i, item in enumerate(payload):
        if not isinstance(item, dict):
            raise DataError(f"{path}: entry {i}: expected an object, got {type(item).__name__}")
        for key in REQUIRED_KEYS:
            if key not in item:
                raise DataError(f"{path}: entry {i}: field {key!r}: missing (a prediction file has "
                                f"{', '.join(REQUIRED_KEYS)})")
    return payload
