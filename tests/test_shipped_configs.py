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
    assert config["threads"] >= 1, "a pinned thread count keeps the figure reproducible across machines"
    figure = payload["figure"]
    assert 1 <= figure["epoch"] <= config["epochs"]
    assert any(k.startswith("val_") and isinstance(v, float) and 0.0 <= v <= 1.0 for k, v in figure.items())
    assert payload["measured_on"] and payload["wall_time_s"] > 0 and payload["date"]
