"""Replay families: a recorded learning-curve table played back through the real engine, without training.

A table (Parquet, one row per configuration and epoch) records what real trials of a family reported each
epoch: the configuration's searched parameters, ``epoch``, the metrics (``val_*``, ``test_*``) and
``epoch_s``, the seconds that epoch took on one core. ``replay-FAMILY`` accepts every parameter of FAMILY
plus ``table`` and ``time_scale``; a trial looks its configuration up in the table and, each epoch, sleeps
``epoch_s x time_scale`` and then reports the recorded metrics, with ``recorded_epoch_s`` and
``recorded_total_s`` (the benchmark's clock: compute the real trial spent). The shared loop, Tune, the
searcher, ASHA and the Optuna storage are the real ones, so a search over a table costs seconds to minutes
instead of CPU-hours, and concurrency and the order of ASHA's decisions stay as they were (the sleeps keep
the recorded epochs' proportions).

Example::

    mathtune search replay.yaml    # family: replay-FAMILY (any registered family), constants: {table: ...}

Tables are written from a finished grid search by :func:`write_table` (``bench/search_efficiency.py
--record EXP``).

The class of ``replay-NAME`` is made at run time (:func:`replay_family`) and named ``Replay{Class}`` after NAME's
class; it is importable by that name from this module (``mathtune.trainables.replay.ReplayArithText2Text``, made
on first use), so pickle finds it by its import path in a process that has not made it yet, as it finds any
family class (a Ray worker unpickling a config).
"""

from __future__ import annotations

import functools
import json
import math
import time
from pathlib import Path
from typing import Any, Iterable

import torch
from torch import nn

from .atomic import atomic_file
from .base import Family, FamilyConfig, Param
from .errors import MathtuneError
from .registry import families_of_class, get_family

__all__ = ["ReplayError", "ReplayTable", "ReplayFamily", "replay_family", "write_table", "TABLE_META_KEY"]

TABLE_META_KEY = b"mathtune_replay"
RECORDED = ("epoch_s",)

REPLAY_PARAMS = {
    "table": Param("", "Parquet learning-curve table to replay (written by bench/search_efficiency.py --record)",
                   str),
    "time_scale": Param(0.05, "seconds slept per recorded second of each epoch (0 = no sleep; the order of "
                              "concurrent trials' reports then no longer follows the recorded times)",
                        float, 0.0, 10.0),
}


class ReplayError(MathtuneError, ValueError):
    """A missing or unreadable table, or a configuration the table does not hold."""


def _norm(value: Any) -> Any:
    if isinstance(value, bool):
        return int(value)
    if isinstance(value, (int, float)):
        return round(float(value), 10)
    return str(value)


class ReplayTable:
    """A table read into memory: configuration key -> its epochs (sorted), plus the table's metadata."""

    def __init__(self, path: str | Path):
        import pyarrow.parquet as pq

        self.path = Path(path).expanduser()
        if not str(path):
            raise ReplayError("table: no table given (--set table=FILE.parquet, or `table:` in the space's "
                              "constants)")
        if not self.path.is_file():
            raise ReplayError(f"table {self.path}: file not found")
        try:
            table = pq.read_table(self.path)
        except Exception as exc:  # noqa: BLE001 - any pyarrow failure is a bad file, said in one line
            raise ReplayError(f"table {self.path}: not a readable Parquet file ({type(exc).__name__}: "
                              f"{str(exc).splitlines()[0][:120]})") from None
        raw = (table.schema.metadata or {}).get(TABLE_META_KEY)
        if raw is None:
            raise ReplayError(f"table {self.path}: not a mathtune learning-curve table (no {TABLE_META_KEY.decode()} "
                              f"metadata)")
        self.meta: dict[str, Any] = json.loads(raw)
        self.params: list[str] = list(self.meta["params"])
        columns = table.column_names
        missing = [c for c in (*self.params, "epoch", *RECORDED) if c not in columns]
        if missing:
            raise ReplayError(f"table {self.path}: missing column(s) {', '.join(missing)}")
        self.metrics = [c for c in columns if c.startswith(("val_", "test_")) or c == "train_loss"]
        rows = table.to_pylist()
        self.curves: dict[tuple, list[dict[str, Any]]] = {}
        for row in rows:
            self.curves.setdefault(self.key(row), []).append(row)
        for key, curve in self.curves.items():
            curve.sort(key=lambda r: r["epoch"])
            if [int(r["epoch"]) for r in curve] != list(range(1, len(curve) + 1)):
                raise ReplayError(f"table {self.path}: configuration {dict(zip(self.params, key))} has epochs "
                                  f"{[r['epoch'] for r in curve]}, not 1..{len(curve)}")

    def key(self, values: dict[str, Any]) -> tuple:
        """The configuration key of ``values`` (a table row, or a config's ``as_dict()``)."""
        return tuple(_norm(values[p]) for p in self.params)

    def curve(self, values: dict[str, Any]) -> list[dict[str, Any]]:
        """The recorded epochs of the configuration ``values`` (a plain dict holding the table's parameters)."""
        key = self.key(values)
        if key not in self.curves:
            raise ReplayError(f"table {self.path}: no recorded configuration "
                              f"{', '.join(f'{p}={values[p]}' for p in self.params)}")
        return self.curves[key]

    def grid(self) -> dict[str, list[Any]]:
        """Each parameter's recorded values, in first-seen order."""
        out: dict[str, list[Any]] = {p: [] for p in self.params}
        for curve in self.curves.values():
            for p in self.params:
                if curve[0][p] not in out[p]:
                    out[p].append(curve[0][p])
        return out


class _Cursor(nn.Module):
    """The 'model' of a replayed trial: the epoch it has reached (saved in checkpoints, so resume continues
    the curve) and one parameter for the loop's optimiser."""

    def __init__(self, curve: list[dict[str, Any]]):
        super().__init__()
        self.curve = curve
        self.register_buffer("epoch", torch.zeros((), dtype=torch.long))
        self.weight = nn.Parameter(torch.zeros(1))


class ReplayFamily(Family):
    """Base of ``replay-FAMILY``: subclasses set ``source`` (the family whose table they replay)."""

    source: type[Family]
    data_params = ("table",)

    def build_data(self, config: FamilyConfig) -> ReplayTable:
        table = ReplayTable(config.table)
        if table.meta.get("family") not in (None, self.source.name):
            raise ReplayError(f"table {table.path}: recorded for family {table.meta['family']}, not "
                              f"{self.source.name}")
        return table

    def build_model(self, config: FamilyConfig, data: ReplayTable) -> nn.Module:
        curve = data.curve(config.as_dict())
        if config.epochs > len(curve):
            raise ReplayError(f"table {data.path}: epochs {config.epochs} asked for, {len(curve)} recorded")
        return _Cursor(curve)

    def batches(self, data, config, generator, device) -> Iterable[Any]:
        yield (torch.zeros(1, device=device),)

    def loss(self, model: _Cursor, batch, config, generator=None) -> torch.Tensor:
        row = model.curve[int(model.epoch)]
        if config.time_scale > 0:
            time.sleep(float(row["epoch_s"]) * config.time_scale)
        model.epoch += 1
        return (model.weight * 0.0).sum()

    def evaluate(self, model: _Cursor, data: ReplayTable, config, device, *, final=False) -> dict[str, float]:
        done = int(model.epoch)
        row = model.curve[done - 1]
        out = {m: float(row[m]) for m in data.metrics if row.get(m) is not None and not
               (isinstance(row[m], float) and math.isnan(row[m]))}
        out["recorded_epoch_s"] = float(row["epoch_s"])
        out["recorded_total_s"] = float(sum(r["epoch_s"] for r in model.curve[:done]))
        return out

    def describe_data(self, data: ReplayTable) -> str:
        epochs = max(len(c) for c in data.curves.values())
        return f"replay of {data.path.name}: {len(data.curves)} configurations x up to {epochs} epochs"


@functools.lru_cache(maxsize=None)
def replay_family(source: type[Family]) -> type[ReplayFamily]:
    """``replay-NAME`` for any family class: its parameters plus ``table`` and ``time_scale``, its metric, mode
    and report metrics; a trial plays its configuration's recorded curve back (one class per source, made once)."""
    params = {**source.params, **REPLAY_PARAMS}
    return type(f"Replay{source.__name__}", (ReplayFamily,), {
        "source": source, "name": f"replay-{source.name}", "params": params,
        "metric": source.metric, "mode": source.mode, "report_metrics": source.report_metrics,
        "description": f"{source.name} replayed from a recorded learning-curve table (benchmarks searchers "
                       f"without training)",
        "__module__": __name__})


def __getattr__(attr: str) -> type[ReplayFamily]:
    """``Replay{Class}``: the replay family of the registered family whose class is called ``Class`` (one made by
    :func:`replay_family`, so the same class whoever asks first)."""
    if attr.startswith("Replay"):
        names = families_of_class(attr[len("Replay"):])
        if len(names) == 1:
            return replay_family(type(get_family(names[0])))
        if names:
            raise AttributeError(f"module {__name__!r}: {attr} is ambiguous: the classes of the families "
                                 f"{', '.join(names)} are all called {attr[len('Replay'):]}", name=attr, obj=None)
    raise AttributeError(f"module {__name__!r} has no attribute {attr!r}", name=attr, obj=None)


def write_table(trials: list, path: str | Path, *, family: str, params: list[str], info: dict[str, Any],
                merge: ReplayTable | None = None) -> int:
    """Write the finished trials of a search as a table (one row per trial and epoch); returns the number
    of configurations. ``trials`` are :class:`~mathtune.analysis.store.TrialRecord` s; ``merge`` adds the curves
    of a table recorded before (e.g. a grid recorded in two parts). A trial that did not run all its epochs, or
    a configuration seen twice, raises :class:`ReplayError`."""
    import pyarrow as pa
    import pyarrow.parquet as pq

    rows, seen = [], set()
    if merge is not None:
        if merge.params != list(params):
            raise ReplayError(f"table {merge.path}: parameters {merge.params}, not {list(params)}")
        for key, curve in merge.curves.items():
            seen.add(key)
            rows.extend(dict(r) for r in curve)
    for t in trials:
        if t.epochs_run < t.epochs_planned or not t.history:
            raise ReplayError(f"trial {t.trial_id} ran {t.epochs_run} of {t.epochs_planned} epochs: a table "
                              f"needs whole curves (record a search run with --scheduler none)")
        key = tuple(_norm(t.config[p]) for p in params)
        if key in seen:
            raise ReplayError(f"trial {t.trial_id}: configuration {dict(zip(params, key))} recorded twice")
        seen.add(key)
        for r in sorted(t.history, key=lambda r: r["epoch"]):
            row = {p: t.config[p] for p in params}
            row.update(trial=t.trial_id, epoch=int(r["epoch"]), epoch_s=float(r["epoch_time_s"]))
            row.update({k: float(v) for k, v in r.items() if isinstance(v, (int, float)) and not isinstance(v, bool)
                        and (k.startswith(("val_", "test_")) or k == "train_loss")})
            rows.append(row)
    if not rows:
        raise ReplayError("no trials to write")
    table = pa.Table.from_pylist(rows)
    meta = {"family": family, "params": params, **info}
    table = table.replace_schema_metadata({TABLE_META_KEY: json.dumps(meta).encode()})
    with atomic_file(path) as fh:
        pq.write_table(table, fh, compression="zstd")
    return len(seen)
