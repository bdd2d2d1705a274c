"""Decode-time settings scored after training, not searched as trial dimensions.

A beam width (t2m) or an output temperature (``sharpen``, text2img) changes only how a trained model decodes,
so a search that made it a trial parameter would train the same model once per value. A space lists such
settings under ``decode:``::

    decode:
      beam_width: [1, 5, 10]

Trials train with the first value. Once a search's trials have ended (finished or stopped by ASHA), each
trial's selected checkpoint (its best validation epoch) is scored at every setting in one pass
(:meth:`Family.score_decoded <mathtune.trainables.base.Family.score_decoded>`: t2m decodes every width from
one nested beam search) and ``TRIAL/decode.json`` records every setting's validation and test figures, the
setting chosen on validation and its figures. The trial's figure is then the chosen setting's
(:meth:`TrialRecord.best <mathtune.analysis.store.TrialRecord.best>` reads the file), so the best trial, the
report and ``mathtune best`` compare trials at their best decoding. Test figures are reported only.

A trial already scored at the same epoch and settings is not scored again, so a resumed search scores only
what is new.

Example::

    scored = score_decode_settings(load_space("t2m-lstm"), Path("runs/t2m-lstm-20261207-101500"))
"""

from __future__ import annotations

import itertools
import time
from pathlib import Path
from typing import Any, Callable

import torch

from mathtune.analysis.store import DECODE_FILE, load_trials
from mathtune.spaces.loader import Space
from mathtune.trainables.atomic import write_json
from mathtune.trainables.base import FamilyConfig
from mathtune.trainables.checkpoints import load_trained
from mathtune.trainables.device import resolve_device
from mathtune.trainables.metrics import best_of, test_metric_for
from mathtune.trainables.registry import get_family

__all__ = ["score_decode_settings", "decode_settings"]


def decode_settings(space: Space) -> list[dict[str, Any]]:
    """Every combination of the space's decode-time values, the training value (each list's first) first."""
    keys = list(space.decode)
    return [dict(zip(keys, values)) for values in itertools.product(*(space.decode[k] for k in keys))]


def score_decode_settings(space: Space, exp_dir: str | Path, *,
                          progress: Callable[[str], None] | None = print) -> int:
    """Score every ended trial of ``exp_dir`` at each decode-time setting of ``space``; returns how many
    trials were scored now. Trials without a checkpoint (errored before their first epoch) are skipped."""
    if not space.decode:
        return 0
    family = get_family(space.family)
    settings = decode_settings(space)
    metric, mode = space.metric, space.mode
    data_cache: dict[tuple, Any] = {}
    done = 0
    todo = []
    for trial in load_trials(exp_dir):
        row = trial.best(metric, mode, decoded=False)
        ckpt, epoch = trial.best_checkpoint(metric, mode)
        if row is None or ckpt is None or trial.status in ("running", "pending"):
            continue
        stored = trial.decoded()
        if stored and stored.get("epoch") == epoch and stored.get("settings_asked") == settings:
            continue
        todo.append((trial, ckpt, epoch))
    if todo and progress:
        names = ", ".join(f"{k} {v}" for k, v in space.decode.items())
        progress(f"[mathtune] decode-time settings: scoring {len(todo)} trial(s)' selected checkpoints at {names}")
    for trial, ckpt, epoch in todo:
        t0 = time.perf_counter()
        _, config, model, data = load_trained(ckpt, family=family,
                                              data=lambda cfg, _: _dataset(family, cfg, data_cache))
        device = resolve_device(config)
        with torch.no_grad():
            scored = family.score_decoded(model, data, config, device, settings)
        # the first best on ties: the training value (the first setting) wins a tie
        chosen = best_of(range(len(scored)), mode, key=lambda i: scored[i].get(metric))
        chosen = 0 if chosen is None else chosen
        numbers = [{k: float(v) for k, v in m.items() if isinstance(v, (int, float)) and not isinstance(v, bool)}
                   for m in scored]
        write_json(trial.path / DECODE_FILE, {
            "epoch": epoch, "checkpoint": ckpt.name, "metric": metric, "mode": mode,
            "settings_asked": settings,
            "scored": [{"setting": s, **m} for s, m in zip(settings, numbers)],
            "chosen": settings[chosen], "best": numbers[chosen],
            "selected": "the setting with the best validation figure (test reported only)",
            "seconds": round(time.perf_counter() - t0, 2)})
        done += 1
        if progress:
            test = test_metric_for(metric)
            figures = ", ".join(f"{_label(s)}: {m.get(metric, float('nan')):.4f}" for s, m in zip(settings, numbers))
            progress(f"[mathtune] {trial.trial_id} epoch {epoch}: {metric} {figures}; chosen {_label(settings[chosen])}"
                     f" (test, reported only: {test} {numbers[chosen].get(test, float('nan')):.4f}) "
                     f"in {time.perf_counter() - t0:.0f} s")
    return done


def _dataset(family, config: FamilyConfig, cache: dict[tuple, Any]) -> Any:
    """The dataset of ``config``, built once per data key for all the trials scored."""
    key = family.data_key(config)
    if key not in cache:
        cache[key] = family.build_data(config)
    return cache[key]


def _label(setting: dict[str, Any]) -> str:
    return ", ".join(f"{k}={v}" for k, v in setting.items())
