"""Trained text-to-program models that ship inside the package: ``pretrained:NAME`` checkpoints.

A shipped model is a folder under ``trainables/weights/NAME/`` holding what
:func:`~mathtune.trainables.checkpoints.load_trained` reads (``state.pt`` with the model's state dict in float16, its vocabularies included, and ``config.json``)
plus ``model.json``: the family, the command that trained it, and the figures measured *with the shipped
file itself* (dev execution accuracy and exact match per beam width, on all of dev and on its first 200
problems, with the data file's md5).

Use it wherever a checkpoint is accepted::

    mathtune evaluate pretrained:t2m problems.json --beam-width 10 --out predictions.json

Or from Python::

    from mathtune.trainables.checkpoints import load_trained
    from mathtune.trainables.t2m.shipped import resolve_pretrained
    from mathtune.trainables.t2m.evaluation import evaluate_file, vocabularies_of
    family, config, model, _ = load_trained(resolve_pretrained("pretrained:t2m"), data=vocabularies_of)
    out = evaluate_file(family, config, model, "dev.json", widths=[10])

:func:`export_model` writes such a folder from any checkpoint; ``mathtune ship NAME RUN --weights NAME``
(:mod:`.ship`, through :mod:`mathtune.analysis.ship`) exports a run's best checkpoint, measures it and records the
figures.
"""

from __future__ import annotations

import hashlib
import json
from pathlib import Path
from typing import Any

import torch

from ..atomic import atomic_file, write_text
from ..base import ConfigError
from ..loop import CHECKPOINT_FILE, load_checkpoint
from ..provenance import EXECUTION_KEYS

__all__ = ["PREFIX", "WEIGHTS_DIR", "MODEL_FILE", "shipped_names", "resolve_pretrained", "read_model_record",
           "export_model", "file_md5"]

PREFIX = "pretrained:"
WEIGHTS_DIR = Path(__file__).resolve().parents[1] / "weights"
MODEL_FILE = "model.json"


def shipped_names() -> list[str]:
    """Names of the models shipped in this installation (``pretrained:NAME``)."""
    if not WEIGHTS_DIR.is_dir():
        return []
    return sorted(d.name for d in WEIGHTS_DIR.iterdir() if (d / CHECKPOINT_FILE).is_file())


def resolve_pretrained(spec: str | Path) -> Path:
    """The folder of ``pretrained:NAME``; a one-line ConfigError naming the shipped models otherwise."""
    name = str(spec)[len(PREFIX):]
    folder = WEIGHTS_DIR / name
    if not name or not (folder / CHECKPOINT_FILE).is_file():
        have = ", ".join(PREFIX + n for n in shipped_names()) or "none"
        raise ConfigError(f"{spec}: no such shipped model (shipped: {have})")
    return folder


def read_model_record(folder: str | Path) -> dict[str, Any]:
    """``model.json`` of a shipped model folder (its provenance and recorded figures)."""
    path = Path(folder) / MODEL_FILE
    try:
        return json.loads(path.read_text())
    except (OSError, ValueError) as exc:
        raise ConfigError(f"{path}: cannot read the shipped model's record: {exc}") from None


def file_md5(path: str | Path) -> str:
    return hashlib.md5(Path(path).read_bytes()).hexdigest()


def export_model(checkpoint: str | Path, dest: str | Path, *, record: dict[str, Any],
                 dtype: torch.dtype = torch.float16) -> Path:
    """Write checkpoint folder ``checkpoint``'s model as a shipped model folder ``dest``: floating tensors in
    ``dtype`` (the vocabularies' byte buffer unchanged), no optimizer state, the run's ``config.json`` without
    how it was executed (threads, device: provenance, for ``record``), and ``record`` as ``model.json``.
    Each file is written atomically. Returns ``dest``."""
    state, config, metrics = load_checkpoint(checkpoint)
    if "meta_json" not in state.get("model", {}):
        raise ConfigError(f"{checkpoint}: not a text-to-program checkpoint (its model state has no vocabularies)")
    model = {k: (v.to(dtype) if v.is_floating_point() else v).contiguous() for k, v in state["model"].items()}
    dest = Path(dest)
    with atomic_file(dest / CHECKPOINT_FILE) as fh:
        torch.save({"model": model, "epoch": int(state["epoch"])}, fh)
    config = {k: v for k, v in config.items() if k not in EXECUTION_KEYS}
    write_text(dest / "config.json", json.dumps(config, indent=1, sort_keys=True) + "\n")
    write_text(dest / MODEL_FILE, json.dumps({**record, "epoch": int(state["epoch"]),
                                              "dtype": str(dtype).replace("torch.", "")}, indent=1) + "\n")
    return dest
