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

    # any shipped model, an ensemble too: every member, the others decoding beside the first
    from mathtune.trainables.t2m.evaluation import find_members
    first, *others = [load_trained(f, data=vocabularies_of) for f in find_members("pretrained:NAME")]
    out = evaluate_file(first.family, first.config, first.model, "dev.json", widths=[10],
                        ensemble=[(t.model, t.config) for t in others])

A shipped model may be an *ensemble*: several trained models decoding as one (each step scores the mean of the
members' next-token probabilities, as ``mathtune evaluate --ensemble`` does, :mod:`.ensemble`). Its folder holds
no ``state.pt`` of its own: each member is a shipped model folder of its own under ``members/`` (``members/0/``,
``members/1/``, ...: ``state.pt``, ``config.json``, ``model.json`` with that member's provenance), and the top
``model.json`` lists them in decoding order (``members``: each entry's ``path`` relative to the folder, its
family, source checkpoint and provenance) beside the figures measured with all the shipped files decoding as one.
The first member's decoding settings apply (beam mode, maximum length, batch size). :func:`member_folders` gives
the folders to load, one for a single model; ``pretrained:NAME`` works the same for both wherever models are
decoded (``mathtune evaluate``), and an ensemble's members are at most :data:`MAX_ENSEMBLE_BYTES` in all.

:func:`export_model` writes such a folder from any checkpoint; ``mathtune ship NAME RUN --weights NAME``
(:mod:`.ship`, through :mod:`mathtune.analysis.ship`) exports a run's best checkpoint, measures it and records the
figures; ``mathtune ship NAME RUN1 RUN2 ... --weights NAME`` ships the runs as one ensemble.
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

__all__ = ["PREFIX", "WEIGHTS_DIR", "MODEL_FILE", "MEMBERS_DIR", "MAX_ENSEMBLE_BYTES", "shipped_names",
           "resolve_pretrained", "read_model_record", "is_ensemble", "member_folders", "folder_bytes", "export_model",
           "file_md5"]

PREFIX = "pretrained:"
WEIGHTS_DIR = Path(__file__).resolve().parents[1] / "weights"
MODEL_FILE = "model.json"
MEMBERS_DIR = "members"  # an ensemble's member folders: members/0, members/1, ...
MAX_ENSEMBLE_BYTES = 40_000_000  # an ensemble's files in all (float16 weights, vocabularies, records)


def shipped_names() -> list[str]:
    """Names of the models shipped in this installation (``pretrained:NAME``)."""
    if not WEIGHTS_DIR.is_dir():
        return []
    return sorted(d.name for d in WEIGHTS_DIR.iterdir() if _is_shipped(d))


def _is_shipped(folder: Path) -> bool:
    return (folder / CHECKPOINT_FILE).is_file() or is_ensemble(folder)


def resolve_pretrained(spec: str | Path) -> Path:
    """The folder of ``pretrained:NAME`` (a single model or an ensemble); a one-line ConfigError naming the
    shipped models otherwise."""
    name = str(spec)[len(PREFIX):]
    folder = WEIGHTS_DIR / name
    if not name or not _is_shipped(folder):
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


def is_ensemble(folder: str | Path) -> bool:
    """Whether ``folder`` is a shipped ensemble: no ``state.pt`` of its own, a ``model.json`` listing members."""
    folder = Path(folder)
    if (folder / CHECKPOINT_FILE).is_file() or not (folder / MODEL_FILE).is_file():
        return False
    try:
        return isinstance(json.loads((folder / MODEL_FILE).read_text()).get("members"), list)
    except (OSError, ValueError, AttributeError):
        return False


def member_folders(folder: str | Path) -> list[Path]:
    """The checkpoint folders that decode as shipped model ``folder``, in order: the folder itself for a single
    model, each member's folder (as its ``model.json`` lists them) for an ensemble. A listed member without its
    weights, or a path outside the folder, is a one-line ConfigError."""
    folder = Path(folder)
    if (folder / CHECKPOINT_FILE).is_file():
        return [folder]
    members = read_model_record(folder).get("members")
    if not isinstance(members, list) or not members:
        raise ConfigError(f"{folder}: neither a shipped model ({CHECKPOINT_FILE}) nor an ensemble "
                          f"({MODEL_FILE} lists no members)")
    out = []
    for i, member in enumerate(members):
        rel = member.get("path") if isinstance(member, dict) else None
        inside = isinstance(rel, str) and rel and not Path(rel).is_absolute() and ".." not in Path(rel).parts
        if not inside or not (folder / rel / CHECKPOINT_FILE).is_file():
            raise ConfigError(f"{folder / MODEL_FILE}: member {i}: no shipped weights at {rel!r} "
                              f"(expected {MEMBERS_DIR}/{i}/{CHECKPOINT_FILE} inside the folder)")
        out.append(folder / rel)
    return out


def folder_bytes(folder: str | Path) -> int:
    """The size of every file under ``folder``, members included."""
    return sum(f.stat().st_size for f in Path(folder).rglob("*") if f.is_file())


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
