"""Synthetic learning-curve tables for replayed searches: a grid of text2text configurations (LSTM width x
learning rate) whose validation curves a test chooses, written as a table and a replay space file."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Callable

import pyarrow as pa
import pyarrow.parquet as pq
import yaml

from mathtune.trainables.replay import TABLE_META_KEY


def curve_table(tmp: Path, name: str, curve: Callable[[int, float], list[float]], *, hiddens: list[int],
                lrs: list[float], time_scale: float, scheduler: dict | None = None) -> Path:
    """Write ``tmp/NAME.parquet`` (every (hidden, lr) with ``curve(hidden, lr)`` as its per-epoch validation and
    test value) and return ``tmp/NAME.yaml``, the space that replays it (split 0.5, ASHA grace 1, reduction 2)."""
    rows = [{"hidden": h, "lr": lr, "trial": f"{h}-{lr}", "epoch": epoch, "epoch_s": 1.0, "val_exact_match": value,
             "test_exact_match": value}
            for h in hiddens for lr in lrs for epoch, value in enumerate(curve(h, lr), start=1)]
    epochs = max(r["epoch"] for r in rows)
    spec = {"family": "arith-text2text", "metric": "val_exact_match", "mode": "max", "factors": {"split": [0.5]},
            "params": {"hidden": {"type": "choice", "values": list(hiddens)},
                       "lr": {"type": "choice", "values": list(lrs)}},
            "constants": {"ops": "+-", "epochs": epochs}, "resources": {"cpus": 1},
            "scheduler": scheduler or {"grace_period": 1, "reduction_factor": 2}}
    meta = {"family": "arith-text2text", "params": ["hidden", "lr"], "space": yaml.safe_dump(spec),
            "metric": "val_exact_match", "mode": "max"}
    path = tmp / f"{name}.parquet"
    pq.write_table(pa.Table.from_pylist(rows).replace_schema_metadata({TABLE_META_KEY: json.dumps(meta).encode()}),
                   path)
    space = tmp / f"{name}.yaml"
    space.write_text(yaml.safe_dump({**spec, "family": "replay-arith-text2text",
                                     "constants": {**spec["constants"], "table": str(path), "time_scale": time_scale}},
                                    sort_keys=False))
    return space
