"""Which checkpoint of a run to use, and the trained model in it: the one picker and the one loader.

* :func:`trial_checkpoints`: epoch -> ``checkpoint_*`` folder of a Tune trial folder (the ones Tune kept);
* :func:`checkpoint_history`: the configuration and every epoch's metrics as the newest kept checkpoint holds
  them (the loop's own record, written before Tune's result files);
* :func:`best_checkpoint`: the kept checkpoint whose epoch scored best on validation (the earliest on ties,
  :func:`~mathtune.trainables.metrics.best_of`): what the report, ``mathtune best``, decode-time scoring and
  ``mathtune evaluate`` use;
* :func:`run_checkpoint`: the ``best/`` or ``last/`` checkpoint of a ``mathtune train`` folder (also when a
  swap of it was cut short, :mod:`~mathtune.trainables.atomic`);
* :func:`load_trained`: family, configuration, model in eval mode and data from a checkpoint folder.

Example::

    ckpt, epoch = best_checkpoint("runs/exp/trial_5e57", "val_exact_match", "max")
    trained = load_trained(ckpt, family="arith-text2text", device="cpu")
    trained.family.predict(trained.model, trained.data, "test", torch.device("cpu"))
"""

from __future__ import annotations

import json
import math
import os
from datetime import datetime
from pathlib import Path
from typing import Any, NamedTuple, Sequence

import torch

from .atomic import readable_folder
from .base import Family, FamilyConfig
from .device import resolve_device
from .errors import CheckpointError
from .files import CHECKPOINT_FILE
from .loop import load_checkpoint
from .metrics import best_of
from .registry import get_family

__all__ = ["Trained", "SavedHistory", "trial_checkpoints", "checkpoint_history", "best_checkpoint", "run_checkpoint",
           "state_meta", "load_trained"]

META_KEY = "meta_json"  # a model state's own metadata (JSON bytes), e.g. a text-to-program model's family and vocabularies


def _number(value: Any) -> float | None:
    if isinstance(value, bool) or not isinstance(value, (int, float)) or math.isnan(value):
        return None
    return float(value)


def _kept(trial_dir: Path) -> dict[int, tuple[Path, dict[str, Any]]]:
    out: dict[int, tuple[Path, dict[str, Any]]] = {}
    for ckpt in sorted(trial_dir.glob("checkpoint_*")):
        if not (ckpt / CHECKPOINT_FILE).is_file():
            continue
        try:
            metrics = json.loads((ckpt / "metrics.json").read_text())
            epoch = int(metrics["epoch"])
        except (OSError, ValueError, KeyError, TypeError):
            continue
        out[epoch] = (ckpt, metrics)
    return out


def trial_checkpoints(trial_dir: str | os.PathLike) -> dict[int, Path]:
    """Epoch -> checkpoint folder, for the checkpoints Tune kept in a trial folder (``checkpoint_*/`` holding
    ``state.pt`` and a ``metrics.json`` that names its epoch)."""
    return {epoch: ckpt for epoch, (ckpt, _) in _kept(Path(trial_dir)).items()}


class SavedHistory(NamedTuple):
    """What :func:`checkpoint_history` returns."""

    config: dict[str, Any] | None  # the checkpoint's config.json
    history: list[dict[str, Any]]  # one row per epoch trained, oldest first
    starts: list[float]  # when each session of the run started (seconds since the epoch), from its provenance


def checkpoint_history(trial_dir: str | os.PathLike) -> SavedHistory:
    """The newest checkpoint kept in a trial folder: its ``config.json``, the ``history`` its ``metrics.json``
    holds (every epoch the trial has trained, one row each, written by the loop with the checkpoint) and when
    each session of the run started (its ``provenance``). Empty when the folder keeps no readable checkpoint."""
    kept = _kept(Path(trial_dir))
    if not kept:
        return SavedHistory(None, [], [])
    ckpt, metrics = kept[max(kept)]
    history = [dict(r) for r in metrics.get("history") or [] if isinstance(r, dict) and "epoch" in r]
    starts = []
    for entry in metrics.get("provenance") or []:
        try:
            starts.append(datetime.strptime(entry["started"], "%Y-%m-%d %H:%M:%S %z").timestamp())
        except (KeyError, TypeError, ValueError):
            continue
    try:
        config = json.loads((ckpt / "config.json").read_text())
    except (OSError, ValueError):
        config = None
    return SavedHistory(config if isinstance(config, dict) else None, history, sorted(starts))


def best_checkpoint(trial_dir: str | os.PathLike, metric: str, mode: str, *,
                    history: Sequence[dict[str, Any]] | None = None) -> tuple[Path | None, int | None]:
    """(folder, epoch) of the kept checkpoint whose epoch scored best on ``metric`` (the earliest on ties); the
    latest kept one when no kept epoch has a value; ``(None, None)`` when Tune kept none.

    Each epoch's value comes from ``history`` (the trial's epoch rows, e.g. its ``result.json``) when given, else
    from the checkpoint's own ``metrics.json``. Tune keeps the best checkpoints by the metric, so this is the
    best epoch's own checkpoint whenever it was kept."""
    kept = _kept(Path(trial_dir))
    if not kept:
        return None, None
    if history is not None:
        values = {int(r.get("epoch", -1)): r.get(metric) for r in history}
    else:
        values = {e: ((m.get("history") or [{}])[-1] or {}).get(metric) for e, (_, m) in kept.items()}
    epoch = best_of(sorted(kept), mode, key=lambda e: _number(values.get(e)))
    if epoch is None:
        epoch = max(kept)
    return kept[epoch][0], epoch


def run_checkpoint(run_dir: str | os.PathLike, which: str = "best") -> Path | None:
    """The ``best/`` (the selected epoch) or ``last/`` checkpoint folder of a ``mathtune train`` folder, where
    a complete one is (:func:`~mathtune.trainables.atomic.readable_folder`); None when the run has none."""
    folder = readable_folder(Path(run_dir) / which)
    return folder if folder is not None and (folder / CHECKPOINT_FILE).is_file() else None


def state_meta(model_state: dict[str, Any]) -> dict[str, Any] | None:
    """The metadata a model keeps in its own state (a ``meta_json`` byte buffer: the text-to-program models'
    family and vocabularies), or None when it keeps none."""
    blob = model_state.get(META_KEY)
    if blob is None:
        return None
    return json.loads(bytes(blob.cpu().numpy().tobytes()).decode("utf-8"))


class Trained(NamedTuple):
    """What :func:`load_trained` returns."""

    family: Family
    config: FamilyConfig  # the family's typed config, from the checkpoint's config.json
    model: torch.nn.Module  # in eval mode, on the device asked for
    data: Any  # what the model was built with (see load_trained's ``data``)


def load_trained(checkpoint: str | os.PathLike, *, family: str | Family | None = None,
                 data: Any = None, overrides: dict[str, Any] | None = None,
                 device: str | torch.device | None = None) -> Trained:
    """The trained model of a checkpoint folder, from its ``state.pt`` and ``config.json`` (``metrics.json`` is
    not needed): the one way mathtune rebuilds a model from a checkpoint.

    * ``family``: a name or a :class:`~mathtune.trainables.base.Family`; None for the family the model state
      names (:func:`state_meta`; the text-to-program models name theirs).
    * ``data``: what ``build_model`` is given. None builds the run's dataset from the checkpoint's
      configuration (``family.build_data``), to score the model on its own parts; a callable is called with
      ``(config, model_state)`` and returns it (e.g. :func:`mathtune.trainables.t2m.evaluation.vocabularies_of`:
      a text-to-program model needs only the vocabularies its state carries); anything else is used as is.
    * ``overrides``: values that replace the checkpoint's configuration (threads, device, decoding settings);
      keys of the checkpoint that the family does not know (parameters of older versions) are left out.
    * ``device``: where the model goes; None for the configuration's (``device``, after ``overrides``).

    Torch's thread count is left as it is (:func:`~mathtune.trainables.loop.set_threads` applies the
    configuration's). A missing or damaged file is a one-line :class:`CheckpointError`; a bad configuration
    value a :class:`~mathtune.trainables.base.ConfigError` naming ``config.json``.
    """
    ckpt = Path(checkpoint)
    if not ckpt.is_dir():
        raise CheckpointError(f"{ckpt}: no such checkpoint folder")
    state, saved, _ = load_checkpoint(ckpt, need_metrics=False)
    model_state = state.get("model")
    if not isinstance(model_state, dict):
        raise CheckpointError(f"{ckpt / CHECKPOINT_FILE}: holds no model state")
    if family is None:
        meta = state_meta(model_state) or {}
        if not isinstance(meta.get("family"), str):
            raise CheckpointError(f"{ckpt}: its model state does not say which family trained it (text-to-program "
                                  f"checkpoints do; any other loads with its family named)")
        family = meta["family"]
    if isinstance(family, str):
        family = get_family(family)
    config = family.read_config(saved, overrides, where=str(ckpt / "config.json"))
    if data is None:
        data = family.build_data(config)
    elif callable(data):
        data = data(config, model_state)
    model = family.build_model(config, data)
    model.load_state_dict(model_state)
    model.to(torch.device(device) if device is not None else resolve_device(config)).eval()
    return Trained(family, config, model, data)
