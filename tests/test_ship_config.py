"""bench/ship_config.py: a finished `mathtune train` run (or several seeds) becomes a shipped configuration whose
figure carries the selected checkpoint's validation, test and training figures."""

from __future__ import annotations

import importlib.util
import json
from pathlib import Path

import pytest
import torch

from mathtune.search.cli import main
from mathtune.trainables import get_family
from mathtune.trainables.loop import load_checkpoint

ROOT = Path(__file__).resolve().parents[1]
TINY = {"ops": "*", "split": 0.5, "limit": 200, "hidden": 24, "decoder_hidden": 24, "batch_size": 32,
        "lr": 5e-3, "epochs": 2, "threads": 1}


def _ship_config():
    spec = importlib.util.spec_from_file_location("ship_config", ROOT / "bench" / "ship_config.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


@pytest.fixture(scope="module")
def runs(tmp_path_factory):
    """Two seeds of a shrunk real text2text `*` configuration, trained through `mathtune train`."""
    base = tmp_path_factory.mktemp("ship")
    config = base / "tiny.json"
    config.write_text(json.dumps(TINY))
    folders = []
    for seed in (0, 1):
        out = base / f"run-s{seed}"
        assert main(["train", "arith-text2text", "--config", str(config), "--set", f"seed={seed}",
                     "--out", str(out), "-q"]) == 0
        folders.append(out)
    return folders


def _train_score(folder: Path) -> dict[str, float]:
    fam = get_family("arith-text2text")
    state, config, _ = load_checkpoint(folder / "best")
    config = fam.make_config(config)
    data = fam.build_data(config)
    model = fam.build_model(config, data)
    model.load_state_dict(state["model"])
    return fam.part_metrics(model.eval(), data, config, "train", torch.device("cpu"))


def test_shipped_figure_is_the_seed_mean_with_train_figures_of_the_selected_checkpoints(runs, tmp_path, capsys):
    ship = _ship_config()
    assert ship.main(["tiny-mul", *map(str, runs), "--produced-by", "mathtune train ... --set seed=N",
                      "--configs-dir", str(tmp_path)]) == 0
    payload = json.loads((tmp_path / "tiny-mul.json").read_text())
    figure = payload["figure"]
    results = [json.loads((r / "result.json").read_text()) for r in runs]
    assert figure["seeds"]["test_char_acc"] == [r["best"]["test_char_acc"] for r in results]
    assert figure["test_char_acc"] == pytest.approx(sum(figure["seeds"]["test_char_acc"]) / 2)
    train = [_train_score(r) for r in runs]
    assert figure["seeds"]["train_char_acc"] == pytest.approx([t["train_char_acc"] for t in train])
    assert figure["train_exact_match"] == pytest.approx(sum(t["train_exact_match"] for t in train) / 2)
    assert 0.0 < figure["train_char_acc"] <= 1.0
    assert payload["config"]["seed"] == 0 and payload["train_command"].endswith("configs/tiny-mul.json")

    # the selected checkpoint scored on validation gives back the figure's validation numbers
    fam = get_family("arith-text2text")
    state, config, metrics = load_checkpoint(runs[0] / "best")
    config = fam.make_config(config)
    data = fam.build_data(config)
    model = fam.build_model(config, data)
    model.load_state_dict(state["model"])
    again = fam.part_metrics(model.eval(), data, config, "val", torch.device("cpu"))
    assert again["val_char_acc"] == pytest.approx(figure["seeds"]["val_char_acc"][0])

    # --train-only adds the train figures to a file shipped without them and leaves the rest alone
    old = {**payload, "figure": {k: v for k, v in figure.items() if not k.startswith("train_")},
           "note": "kept as it was"}
    old["figure"]["seeds"] = {k: v for k, v in figure["seeds"].items() if not k.startswith("train_")}
    (tmp_path / "tiny-mul.json").write_text(json.dumps(old))
    assert ship.main(["tiny-mul", *map(str, runs), "--train-only", "--configs-dir", str(tmp_path)]) == 0
    updated = json.loads((tmp_path / "tiny-mul.json").read_text())
    assert updated["note"] == "kept as it was" and updated["figure"]["train_char_acc"] == pytest.approx(
        figure["train_char_acc"])
    assert {k: v for k, v in updated.items() if k != "figure"} == {k: v for k, v in old.items() if k != "figure"}
    capsys.readouterr()


def test_train_only_refuses_runs_that_did_not_produce_the_file(runs, tmp_path, capsys):
    ship = _ship_config()
    assert ship.main(["tiny-one", str(runs[0]), "--produced-by", "x", "--configs-dir", str(tmp_path)]) == 0
    payload = json.loads((tmp_path / "tiny-one.json").read_text())
    payload["config"]["hidden"] = 32  # as if the file had been shipped from another configuration
    (tmp_path / "tiny-one.json").write_text(json.dumps(payload))
    with pytest.raises(SystemExit, match="did not produce tiny-one.json.*hidden"):
        ship.main(["tiny-one", str(runs[0]), "--train-only", "--configs-dir", str(tmp_path)])
    with pytest.raises(SystemExit, match=r"from 1 run\(s\); got 2"):
        ship.main(["tiny-one", *map(str, runs), "--train-only", "--configs-dir", str(tmp_path)])
    with pytest.raises(SystemExit, match="--produced-by is required"):
        ship.main(["tiny-two", str(runs[0]), "--configs-dir", str(tmp_path)])
    capsys.readouterr()
