"""Every shipped configuration (trainables/configs/*.json) is a `mathtune train FAMILY --config FILE` input
that names its own command and carries its figure, the data it was measured on and its wall time."""

from __future__ import annotations

import pytest

from mathtune.search.cli import _load_config_file
from mathtune.trainables import get_family
from mathtune.trainables.records import CONFIGS_DIR, ShippedRecord

CONFIGS = sorted(CONFIGS_DIR.glob("*.json"))


def test_there_are_shipped_configurations():
    assert len(CONFIGS) >= 3


@pytest.mark.parametrize("path", CONFIGS, ids=[p.stem for p in CONFIGS])
def test_shipped_config_is_a_train_config_with_provenance(path):
    shipped = ShippedRecord.read(path)
    family = get_family(shipped.family)
    config = family.make_config(_load_config_file(str(path)), where=str(path))  # as `mathtune train --config`
    assert shipped.train_command == f"mathtune train {family.name} --config trainables/configs/{path.name}"
    # how the runs were executed is kept: pinned in older files' configuration, in the provenance of files
    # `mathtune ship` writes (a config without threads trains on the machine's cores)
    records = [e for r in shipped.provenance or [] for e in (r if isinstance(r, list) else [r])]
    assert "threads" in shipped.config or any(isinstance(e, dict) and e.get("threads") for e in records), \
        "neither a pinned thread count nor the runs' provenance says how the figure was measured"
    assert config["threads"] >= 0
    figure = shipped.figure
    assert 1 <= figure["epoch"] <= config["epochs"]
    assert any(k.startswith("val_") and isinstance(v, float) and 0.0 <= v <= 1.0 for k, v in figure.items())
    assert shipped.measured_on and shipped.wall_time_s > 0 and shipped.date
