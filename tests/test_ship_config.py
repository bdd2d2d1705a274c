"""bench/ship_config.py: a finished `mathtune train` run (or several seeds) becomes a shipped configuration whose
figure carries the selected checkpoint's validation, test and training figures; bench/arith_ensemble.py decodes
such runs as one model."""

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


def _bench(name: str):
    spec = importlib.util.spec_from_file_location(name, ROOT / "bench" / f"{name}.py")
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
    ship = _bench("ship_config")
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
    # where the runs trained, as they recorded it when they started, not the shipping machine
    assert payload["provenance"] == [r["provenance"] for r in results]
    assert payload["machine"].startswith(results[0]["provenance"][0]["cpu"]) and "torch thread(s)" in payload["machine"]

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
    ship = _bench("ship_config")
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


def test_ensemble_averages_the_members_probabilities_and_refuses_other_data(runs, tmp_path, capsys):
    ens = _bench("arith_ensemble")
    assert ens.main([*map(str, runs), "--out", str(tmp_path / "e.json")]) == 0
    out = json.loads((tmp_path / "e.json").read_text())
    for run in runs:  # each member as the run measured it at its selected epoch
        best = json.loads((run / "result.json").read_text())["best"]
        member = out["members"][str(run)]
        assert member["epoch"] == best["epoch"]
        assert member["test"]["char_acc"] == pytest.approx(best["test_char_acc"])
        assert member["val"]["exact_match"] == pytest.approx(best["val_exact_match"])
    # the ensemble's answers are the argmax of the summed probabilities
    fam = get_family("arith-text2text")
    probs = []
    for run in runs:
        state, config, _ = load_checkpoint(run / "best")
        config = fam.make_config(config)
        data = fam.build_data(config)
        model = fam.build_model(config, data)
        model.load_state_dict(state["model"])
        probs.append(ens.probabilities(fam, model.eval(), data, "test"))
    target = torch.from_numpy(data.y[data.part("test")])
    pred = (probs[0] + probs[1]).argmax(-1)
    assert out["ensemble"]["test"]["char_acc"] == pytest.approx(float((pred == target).float().mean()))

    other = tmp_path / "other"
    assert main(["train", "arith-text2text", "--set", "ops=*", "--set", "split=0.6", "--set", "limit=200",
                 "--set", "hidden=8", "--set", "decoder_hidden=8", "--set", "epochs=1", "--set", "threads=1",
                 "--out", str(other), "-q"]) == 0
    assert ens.main([str(runs[0]), str(other)]) == 2
    assert "not arith-text2text on" in capsys.readouterr().err
    assert ens.main([str(tmp_path)]) == 2
    assert "not a finished" in capsys.readouterr().err
