"""Every shipped configuration (trainables/configs/*.json) is a `mathtune train FAMILY --config FILE` input
that names its own command and carries its figure, the data it was measured on and its wall time."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from mathtune.search.cli import _load_config_file
from mathtune.trainables import get_family

CONFIGS = sorted((Path(__file__).resolve().parents[1] / "trainables" / "configs").glob("*.json"))


def test_there_are_shipped_configurations():
    assert len(CONFIGS) >= 3


@pytest.mark.parametrize("path", CONFIGS, ids=[p.stem for p in CONFIGS])
def test_shipped_config_is_a_train_config_with_provenance(path):
    payload = json.loads(path.read_text())
    family = get_family(payload["family"])
    config = family.make_config(_load_config_file(str(path)), where=str(path))  # as `mathtune train --config`
    assert payload["train_command"] == f"mathtune train {family.name} --config trainables/configs/{path.name}"
    # how the runs were executed is kept: pinned in older files' configuration, in the provenance of files
    # `mathtune ship` writes (a config without threads trains on the machine's cores)
    records = [e for r in payload.get("provenance") or [] for e in (r if isinstance(r, list) else [r])]
    assert "threads" in payload["config"] or any(isinstance(e, dict) and e.get("threads") for e in records), \
        "neither a pinned thread count nor the runs' provenance says how the figure was measured"
    assert config["threads"] >= 0
    figure = payload["figure"]
    assert 1 <= figure["epoch"] <= config["epochs"]
    assert any(k.startswith("val_") and isinstance(v, float) and 0.0 <= v <= 1.0 for k, v in figure.items())
    assert payload["measured_on"] and payload["wall_time_s"] > 0 and payload["date"]
