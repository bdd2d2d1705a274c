"""Scoring trained text-to-program models on any data file, and reading prediction files.

What ``mathtune evaluate`` and ``mathtune score`` run:

* :func:`find_checkpoint`: a checkpoint folder (``state.pt`` + ``config.json``), a ``mathtune train``
  output folder (its ``best/``), a Tune trial folder (the ``checkpoint_*`` whose own epoch scored
  best on the family's validation metric), or ``pretrained:NAME``, a model shipped in the package;
* :func:`load_trained`: family, config and model from a checkpoint folder alone (the model's state
  carries its vocabularies);
* :func:`evaluate_file`: decode a COL775 or original-MathQA file at several beam widths and score it;
  the prediction items are the file's own objects plus ``predicted`` (and ``answer`` where the file
  had none), the scorer input format;
* :func:`read_predictions`: validate a prediction file for :func:`~.scoring.score_items`.

Example::

    ckpt = find_checkpoint("runs/t2m-attn")
    family, config, model = load_trained(ckpt)
    out = evaluate_file(family, config, model, "test.json", widths=[1, 10])
    out.scores[10].execution_accuracy
"""

from __future__ import annotations

import json
import math
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Sequence

from ..base import ConfigError
from ..loop import CHECKPOINT_FILE, load_state_file
from ..metrics import is_better
from ..registry import get_family
from .data import DataError, load_split
from .dataset import T2MData, encode_part
from .models import meta_of_state
from .scoring import ScoreResult, score_items
from .shipped import PREFIX, resolve_pretrained

__all__ = ["find_checkpoint", "load_state", "load_trained", "evaluate_file", "EvalOutput", "read_predictions",
           "REQUIRED_KEYS"]

REQUIRED_KEYS = ("Problem", "linear_formula", "answer", "predicted")


def load_state(ckpt: Path) -> dict[str, Any]:
    """``state.pt`` of a checkpoint folder (tensors only); a damaged file is a one-line CheckpointError."""
    return load_state_file(ckpt / CHECKPOINT_FILE)


def _state_meta(ckpt: Path) -> dict[str, Any]:
    state = load_state(ckpt)
    try:
        return meta_of_state(state["model"])
    except (KeyError, ValueError):
        raise ConfigError(f"{ckpt}: not a text-to-program checkpoint (its model state has no vocabularies)") from None


def _epoch_value(ckpt: Path, metric: str) -> float:
    try:
        history = json.loads((ckpt / "metrics.json").read_text()).get("history") or []
        value = float(history[-1][metric])
    except (OSError, ValueError, KeyError, IndexError, TypeError):
        return float("nan")
    return value


def find_checkpoint(path: str | Path) -> Path:
    """The checkpoint folder to use for ``path`` (see the module docstring); ``pretrained:NAME`` is a model
    shipped inside the package (:mod:`.shipped`)."""
    if str(path).startswith(PREFIX):
        return resolve_pretrained(path)
    p = Path(path)
    if not p.is_dir():
        raise FileNotFoundError(f"{path}: no such checkpoint or trial folder")
    if (p / CHECKPOINT_FILE).is_file():
        return p
    if (p / "best" / CHECKPOINT_FILE).is_file():
        return p / "best"
    ckpts = sorted(d for d in p.glob("checkpoint_*") if (d / CHECKPOINT_FILE).is_file())
    if not ckpts:
        raise FileNotFoundError(f"{path}: neither a checkpoint folder ({CHECKPOINT_FILE} + config.json) nor a "
                                f"trial folder with checkpoint_* subfolders")
    family = get_family(_state_meta(ckpts[-1])["family"])
    best, best_value = ckpts[-1], None
    for d in ckpts:
        v = _epoch_value(d, family.metric)
        if math.isnan(v):
            continue
        if is_better(v, best_value, family.mode):
            best, best_value = d, v
    return best


def load_trained(ckpt: str | Path, *, overrides: dict[str, Any] | None = None):
    """(family, config, model in eval mode on the config's device) from a checkpoint folder: its
    ``state.pt`` and ``config.json`` are all that is read (``overrides`` replace config values)."""
    ckpt = Path(ckpt)
    if not (ckpt / CHECKPOINT_FILE).is_file() or not (ckpt / "config.json").is_file():
        raise FileNotFoundError(f"{ckpt}: a checkpoint folder needs {CHECKPOINT_FILE} and config.json")
    state = load_state(ckpt)
    try:
        config = json.loads((ckpt / "config.json").read_text())
    except (OSError, ValueError) as exc:
        raise ConfigError(f"{ckpt / 'config.json'}: cannot read: {exc}") from None
    if not isinstance(config, dict):
        raise ConfigError(f"{ckpt / 'config.json'}: expected a JSON object of parameter values")
    try:
        meta = meta_of_state(state["model"])
    except (KeyError, ValueError):
        raise ConfigError(f"{ckpt}: not a text-to-program checkpoint (its model state has no vocabularies)") from None
    family = get_family(meta["family"])
    known = family.all_params()
    config = family.make_config({**{k: v for k, v in config.items() if k in known}, **(overrides or {})},
                                where=str(ckpt / "config.json"))
    from ..device import resolve_device
    from ..loop import set_threads

    set_threads(config)
    model = family.build_model(config, T2MData(meta=meta, parts={}))
    model.load_state_dict(state["model"])
    return family, config, model.to(resolve_device(config)).eval()


@dataclass
class EvalOutput:
    """Predictions (scorer items) and scores per beam width, for one data file."""

    source: Path
    items: dict[int, list[dict[str, Any]]]
    scores: dict[int, ScoreResult]


def evaluate_file(family, config: dict[str, Any], model, data_file: str | Path, *, widths: Sequence[int],
                  limit: int = 0, ensemble: Sequence[tuple[Any, dict[str, Any]]] = ()) -> EvalOutput:
    """Decode the problems of ``data_file`` (the first ``limit`` when > 0) at each width and score them.
    With ``ensemble`` ((model, config) pairs) those models decode beside ``model`` as one (see
    :mod:`.ensemble`)."""
    from ..device import resolve_device
    from .family import decode_part

    path = Path(data_file)
    examples = load_split(path)
    raw = json.loads(path.read_text(encoding="utf-8"))
    if limit:
        examples, raw = examples[:limit], raw[:limit]
    if not examples:
        raise DataError(f"{path}: no problems to evaluate")
    device = resolve_device(config)
    if ensemble:
        from .ensemble import decode_ensemble

        preds = decode_ensemble([(model, config), *ensemble], examples, widths=widths, config=config,
                                device=device, source=path.name)
    else:
        part = encode_part("eval", examples, model.meta, config, source=path.name, device=device)
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
