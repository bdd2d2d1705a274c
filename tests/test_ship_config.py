"""`mathtune ship`: a finished `mathtune train` run (or several seeds) becomes a shipped configuration whose
figure carries the selected checkpoint's validation, test and training figures, and whose configuration pins
no thread count or device (how the runs were executed is their provenance); a text-to-program run ships its
model as pretrained:NAME too. bench/arith_ensemble.py decodes such runs as one model."""

from __future__ import annotations

import importlib.util
import json
import re
import shutil
from pathlib import Path

import pytest
import torch

from mathtune.search.cli import _load_config_file, main
from mathtune.trainables import get_family
from mathtune.trainables.checkpoints import trial_checkpoints
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


def _error(capsys, *argv) -> str:
    """The one line `mathtune ARGV...` prints on stderr when it refuses the input (exit 2, no traceback)."""
    code = main([str(a) for a in argv])
    err = capsys.readouterr().err
    assert code == 2 and err.count("\n") == 1 and err.startswith("mathtune: error: ") and "Traceback" not in err
    return err


def test_shipped_figure_is_the_seed_mean_with_train_figures_of_the_selected_checkpoints(runs, tmp_path, capsys):
    assert main(["ship", "tiny-mul", *map(str, runs), "--produced-by", "mathtune train ... --set seed=N",
                 "--configs-dir", str(tmp_path)]) == 0
    assert "wrote " in capsys.readouterr().out
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
    # how the runs were executed is provenance, not configuration: `mathtune train --config` uses this machine
    assert {"threads", "device"}.isdisjoint(payload["config"])
    assert all(entry["threads"] == 1 and entry["device"] == "cpu" for run in payload["provenance"] for entry in run)
    path = str(tmp_path / "tiny-mul.json")
    assert get_family("arith-text2text").make_config(_load_config_file(path), where=path)["threads"] == 0  # auto

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
    assert main(["ship", "tiny-mul", *map(str, runs), "--train-only", "--configs-dir", str(tmp_path)]) == 0
    updated = json.loads((tmp_path / "tiny-mul.json").read_text())
    assert updated["note"] == "kept as it was" and updated["figure"]["train_char_acc"] == pytest.approx(
        figure["train_char_acc"])
    assert {k: v for k, v in updated.items() if k != "figure"} == {k: v for k, v in old.items() if k != "figure"}
    capsys.readouterr()


def test_train_only_refuses_runs_that_did_not_produce_the_file(runs, tmp_path, capsys):
    assert main(["ship", "tiny-one", str(runs[0]), "--produced-by", "x", "--configs-dir", str(tmp_path)]) == 0
    capsys.readouterr()
    payload = json.loads((tmp_path / "tiny-one.json").read_text())
    payload["config"]["hidden"] = 32  # as if the file had been shipped from another configuration
    (tmp_path / "tiny-one.json").write_text(json.dumps(payload))
    before = (tmp_path / "tiny-one.json").read_text()
    assert re.search("did not produce tiny-one.json.*hidden", _error(
        capsys, "ship", "tiny-one", runs[0], "--train-only", "--configs-dir", tmp_path))
    assert re.search(r"from 1 run\(s\); got 2", _error(
        capsys, "ship", "tiny-one", *runs, "--train-only", "--configs-dir", tmp_path))
    assert "--produced-by is required" in _error(capsys, "ship", "tiny-two", runs[0], "--configs-dir", tmp_path)
    assert (tmp_path / "tiny-one.json").read_text() == before and not (tmp_path / "tiny-two.json").exists()


def test_a_run_without_recorded_provenance_keeps_how_its_configuration_asked_it_to_run(runs, tmp_path, capsys):
    old = tmp_path / "old-run"
    shutil.copytree(runs[0], old)
    result = json.loads((old / "result.json").read_text())
    del result["provenance"]  # as runs wrote it before they recorded their machine
    (old / "result.json").write_text(json.dumps(result))
    assert main(["ship", "old", str(old), "--produced-by", "x", "--configs-dir", str(tmp_path)]) == 0
    capsys.readouterr()
    payload = json.loads((tmp_path / "old.json").read_text())
    [[entry]] = payload["provenance"]
    assert (entry["threads"], entry["device"]) == (1, result["config"]["device"]) and "recorded" in entry
    assert payload["machine"].startswith("not recorded") and payload["machine"].endswith("1 torch thread(s)")
    assert {"threads", "device"}.isdisjoint(payload["config"])


def test_a_run_older_than_a_parameter_ships_beside_a_newer_run_of_the_same_settings(runs, tmp_path, capsys):
    """A run trained before a parameter existed (here ``warmup``: its config lacks the key) has the parameter's
    default: with a newer run of the same settings it ships as one configuration, and --train-only finds it the
    file's run. A real difference in a setting is still refused."""
    old = tmp_path / "old-s0"
    shutil.copytree(runs[0], old)
    result = json.loads((old / "result.json").read_text())
    assert result["config"].pop("warmup") == 0.0
    (old / "result.json").write_text(json.dumps(result))
    assert main(["ship", "mixed", str(old), str(runs[1]), "--produced-by", "x", "--configs-dir", str(tmp_path)]) == 0
    assert main(["ship", "mixed", str(old), str(runs[1]), "--train-only", "--configs-dir", str(tmp_path)]) == 0
    capsys.readouterr()
    result["config"]["lr"] *= 2
    (old / "result.json").write_text(json.dumps(result))
    assert "differs from" in _error(capsys, "ship", "x", runs[1], old, "--produced-by", "x",
                                    "--configs-dir", tmp_path)


def test_bad_input_is_one_line_and_writes_nothing(runs, tmp_path, capsys):
    """A missing run folder, a run without its checkpoint, a name that is not shipped or not a name, options of
    the other kind of run: one line on stderr, exit 2, no file written."""
    out = tmp_path / "configs"
    ship = ["ship", "x", "--produced-by", "x", "--configs-dir", out]
    assert "no such run folder" in _error(capsys, *ship, tmp_path / "nope")
    no_ckpt = tmp_path / "no-ckpt"
    no_ckpt.mkdir()
    (no_ckpt / "result.json").write_text((runs[0] / "result.json").read_text())
    assert "no best/ checkpoint" in _error(capsys, *ship, runs[0], no_ckpt)
    assert "not a finished `mathtune train` run" in _error(capsys, *ship, tmp_path)
    assert "no shipped configuration" in _error(capsys, "ship", "not-shipped", runs[0], "--train-only",
                                                "--configs-dir", out)
    assert "not a path" in _error(capsys, "ship", "../x", runs[0], "--produced-by", "x", "--configs-dir", out)
    assert "only a run of a family that ships its model (text-to-program)" in _error(capsys, *ship, runs[0],
                                                                                     "--weights", "w")
    assert not out.exists()


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


COL775 = ROOT.parent / "shared" / "data" / "mathqa" / "col775"


def test_text_to_program_run_ships_its_configuration_and_model(tmp_path, monkeypatch, capsys):
    """A t2m run ships as NAME.json with dev figures per beam width, and with --weights as pretrained:NAME,
    whose recorded figures `mathtune evaluate pretrained:NAME` reproduces; no thread count in either config."""
    if not (COL775 / "train.json").is_file():
        pytest.skip(f"real COL775 files not found in {COL775} (see shared/data/PROVENANCE.md)")
    from mathtune.trainables.t2m import shipped

    monkeypatch.setattr(shipped, "WEIGHTS_DIR", tmp_path / "weights")
    small = tmp_path / "small.json"
    small.write_text(json.dumps(json.loads((COL775 / "train.json").read_text())[:32]))
    config = tmp_path / "tiny-attn.json"
    config.write_text(json.dumps({"train_file": str(small), "dev_file": str(small), "epochs": 2, "threads": 1,
                                  "device": "cpu", "emb": 16, "hidden": 32, "dec_emb": 16, "dec_hidden": 32,
                                  "beam_width": 1, "max_decode_len": 40, "batch_size": 8, "lr": 0.01}))
    run = tmp_path / "run"
    assert main(["train", "t2m-attn", "--config", str(config), "--out", str(run), "-q"]) == 0
    before = torch.get_num_threads()  # what training left (its own thread count): ship must leave it as it is
    assert main(["ship", "tiny-attn", str(run), "--weights", "tiny", "--widths", "1", "2", "--threads", "1",
                 "--train-command", "mathtune train t2m-attn --config tiny-attn.json", "--configs-dir",
                 str(tmp_path / "configs")]) == 0
    assert torch.get_num_threads() == before
    out = capsys.readouterr().out
    assert "configuration written" in out and "pretrained:tiny written" in out
    payload = json.loads((tmp_path / "configs" / "tiny-attn.json").read_text())
    assert payload["family"] == "t2m-attn" and payload["produced_by"].endswith("--config tiny-attn.json")
    assert set(payload["figure"]["dev_percent_by_beam_width"]) == {"1", "2"}
    assert {"threads", "device"}.isdisjoint(payload["config"]) and payload["config"]["hidden"] == 32
    assert payload["provenance"][0]["threads"] == 1 and "torch thread(s)" in payload["machine"]

    record = shipped.read_model_record(shipped.resolve_pretrained("pretrained:tiny"))
    assert record["figures"]["dev"]["1"]["problems"] == 32 and record["measured_on"]["md5"] == shipped.file_md5(small)
    assert not [p for p in (tmp_path / "weights").iterdir() if p.name.startswith(".")]  # no temporary folder left
    model_config = json.loads((tmp_path / "weights" / "tiny" / "config.json").read_text())
    assert {"threads", "device"}.isdisjoint(model_config) and record["provenance"][0]["threads"] == 1
    assert main(["evaluate", "pretrained:tiny", str(small), "--beam-width", "1", "--threads", "1"]) == 0
    line = re.search(r"exact match\s+([\d.]+)%\s+execution accuracy\s+([\d.]+)%", capsys.readouterr().out)
    assert float(line.group(1)) == pytest.approx(record["figures"]["dev"]["1"]["exact_match"], abs=0.01)
    assert float(line.group(2)) == pytest.approx(record["figures"]["dev"]["1"]["exec_acc"], abs=0.01)

    # several text-to-program runs ship only as one ensemble model of different runs, and no train figures to add
    assert "--weights WNAME names it" in _error(capsys, "ship", "x", run, run, "--produced-by", "x")
    assert "the same checkpoint as" in _error(capsys, "ship", "x", run, run, "--produced-by", "x", "--weights", "w")
    assert "no train figures" in _error(capsys, "ship", "tiny-attn", run, "--train-only")


def test_a_searchs_confirmed_winner_ships_from_its_trial_folders(ray_session, tmp_path, capsys):
    """The seed runs of a search's confirmation (Tune trial folders, no result.json of `mathtune train`) ship as
    the winner: the figure is their selected epochs' mean, the train figures come from their kept checkpoints,
    and the file names the search. A trial cut short, or a folder outside an experiment, is refused in one line."""
    from mathtune.analysis.store import load_trials
    from mathtune.search import SearchOptions, run_search

    outcome = run_search("arith-text2text-addsub", SearchOptions(
        num_samples=2, storage_path=str(tmp_path), name="found", verbose=0, scheduler="none", seed=3,
        overrides={"epochs": 2, "limit": 256, "batch_size": 64, "threads": 1, "decoder_hidden": 32},
        confirm_top=1, confirm_seeds=2))
    exp = outcome.experiment_dir
    seeds = sorted((exp / "confirm").glob("trial_*"))
    assert len(seeds) == 2
    assert main(["ship", "found-addsub", *map(str, seeds), "--search", str(exp), "--configs-dir", str(tmp_path),
                 "--produced-by", "mathtune search arith-text2text-addsub ... --name found"]) == 0
    payload = json.loads((tmp_path / "found-addsub.json").read_text())
    trials = {t.path.name: t for t in load_trials(exp / "confirm")}
    bests = [trials[s.name].best("val_exact_match") for s in seeds]
    assert payload["figure"]["seeds"]["val_exact_match"] == [b["val_exact_match"] for b in bests]
    assert payload["figure"]["seed_values"] == [trials[s.name].config["seed"] for s in seeds]
    assert 0.0 <= payload["figure"]["train_exact_match"] <= 1.0 and "train_char_acc" in payload["figure"]["seeds"]
    assert payload["search"]["experiment"] == "found" and payload["family"] == "arith-text2text"
    assert all(run[0]["cpu"] for run in payload["provenance"])  # what each trial's checkpoint recorded
    assert {"threads", "device", "trial_id", "done"}.isdisjoint(payload["config"])
    capsys.readouterr()

    # a trial whose epochs were not all run (as ASHA leaves them) is not a finished run
    short = tmp_path / "short"
    shutil.copytree(seeds[0], short / seeds[0].name)
    shutil.copy(exp / "mathtune.json", short / "mathtune.json")
    lines = (short / seeds[0].name / "result.json").read_text().splitlines()
    (short / seeds[0].name / "result.json").write_text(lines[0] + "\n")
    for epoch, ckpt in trial_checkpoints(short / seeds[0].name).items():
        if epoch > 1:
            shutil.rmtree(ckpt)  # stopped after its first epoch: no checkpoint of a later one
    assert "only a trial that ran all its epochs ships" in _error(
        capsys, "ship", "cut", short / seeds[0].name, "--produced-by", "x", "--configs-dir", tmp_path)
    (short / "mathtune.json").unlink()
    assert "outside a mathtune experiment" in _error(
        capsys, "ship", "cut", short / seeds[0].name, "--produced-by", "x", "--configs-dir", tmp_path)
    assert not (tmp_path / "cut.json").exists()
