"""Every shipped configuration (trainables/configs/*.json) is a `mathtune train FAMILY --config FILE` input
that names its own command and carries its figure, the data it was measured on and its wall time."""

from __future__ import annotations

import json
import os

import pytest
import torch

from mathtune.search.cli import _load_config_file, main
from mathtune.trainables import get_family
from mathtune.trainables.provenance import EXECUTION_KEYS
from mathtune.trainables.records import CONFIGS_DIR, RunRecord, ShippedRecord

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


# ------------------------------------------------------------------ how the runs were executed: provenance only
WEIGHTS = CONFIGS_DIR.parent / "weights"
MODEL_CONFIGS = sorted([*WEIGHTS.glob("*/config.json"), *WEIGHTS.glob("*/members/*/config.json")])  # ensembles too


@pytest.mark.parametrize("path", CONFIGS, ids=[p.stem for p in CONFIGS])
def test_no_shipped_configuration_pins_how_its_runs_were_executed(path):
    """A shipped config holds no thread count or device (a file pinning `threads: 1` would train on one core of
    a 16-core machine); the threads and device its runs used are in its provenance, one list per run."""
    raw = json.loads(path.read_text())
    assert set(EXECUTION_KEYS).isdisjoint(raw["config"])
    runs = raw["provenance"] if raw["family"].startswith("arith") else [raw["provenance"]]  # t2m: one run
    seeds = raw["figure"].get("seed_values") or [raw["config"]["seed"]]
    assert len(runs) == len(seeds) and all(run and all(e["threads"] >= 1 for e in run) for run in runs)


@pytest.mark.parametrize("path", MODEL_CONFIGS, ids=[str(p.parent.relative_to(WEIGHTS)) for p in MODEL_CONFIGS])
def test_a_shipped_model_config_pins_no_thread_count_either(path):
    """`mathtune evaluate pretrained:NAME` uses every core unless --threads says otherwise; the model's
    model.json keeps how its run was executed."""
    assert set(EXECUTION_KEYS).isdisjoint(json.loads(path.read_text()))
    assert json.loads((path.parent / "model.json").read_text())["provenance"][0]["threads"] >= 1


def test_train_from_a_shipped_file_uses_this_machines_threads(tmp_path):
    """`mathtune train FAMILY --config FILE` (shrunk with --set) trains with the family's default threads (all
    cores), not the one thread the file's runs used; the run records both."""
    path = CONFIGS_DIR / "arith-text2text-addsub.json"
    assert {e["threads"] for run in ShippedRecord.read(path).provenance for e in run} == {1}
    family = get_family("arith-text2text")
    before = torch.get_num_threads()
    try:
        assert main(["train", family.name, "--config", str(path), "--set", "epochs=1", "--set", "limit=128",
                     "--set", "hidden=16", "--set", "decoder_hidden=16", "--set", "batch_size=64",
                     "--out", str(tmp_path / "run"), "-q"]) == 0
    finally:
        torch.set_num_threads(before)
    result = RunRecord.read(tmp_path / "run")
    assert result.config["threads"] == family.defaults()["threads"] == 0  # auto
    assert result.config["device"] == family.defaults()["device"]
    assert result.provenance[0]["threads"] == (os.cpu_count() or 1)
    assert result.config["hidden"] == 16 and result.config["lr"] == ShippedRecord.read(path).config["lr"]


def test_an_older_shipped_file_gives_no_threads_but_a_plain_config_and_set_do(tmp_path):
    """A shipped file from before the execution keys moved out of `config` still pins nothing; --set threads=N
    does, and so does a plain config file (its writer's own choice, as `mathtune best` or a user writes it)."""
    family = get_family("arith-text2text")
    raw = json.loads((CONFIGS_DIR / "arith-text2text-addsub.json").read_text())
    old = tmp_path / "old.json"
    old.write_text(json.dumps({**{k: v for k, v in raw.items() if k != "provenance"},
                               "config": {**raw["config"], "threads": 1, "device": "cpu"}}))
    loaded = _load_config_file(str(old))
    assert set(EXECUTION_KEYS).isdisjoint(loaded) and loaded == raw["config"]
    assert family.read_config(loaded, where="old")["threads"] == 0
    assert family.read_config(loaded, {"threads": 3}, where="old / --set")["threads"] == 3
    assert ShippedRecord.read(old).config["threads"] == 1  # the record keeps the file as written
    plain, best = tmp_path / "plain.json", tmp_path / "best.json"
    plain.write_text(json.dumps({"hidden": 8, "threads": 3}))
    best.write_text(json.dumps({"family": family.name, "config": {"hidden": 8, "threads": 3, "device": "cpu"}}))
    assert family.read_config(_load_config_file(str(plain)), where="plain")["threads"] == 3
    assert _load_config_file(str(best)) == {"hidden": 8, "threads": 3, "device": "cpu"}
