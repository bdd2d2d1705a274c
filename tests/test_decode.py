"""Decode-time settings are scored after training, not searched: a shrunk t2m-lstm search trains greedily and
scores each trial's selected checkpoint at every listed beam width, and the trial's figure is the best."""

import json
import subprocess
from pathlib import Path

import pytest
import torch
import yaml

from mathtune.analysis import load_tables, load_trials
from mathtune.search import SearchOptions, run_search
from mathtune.spaces import SpaceError, load_space
from mathtune.trainables import get_family, load_checkpoint

from .conftest import MATHTUNE

COL775 = Path(__file__).resolve().parents[1].parent / "shared" / "data" / "mathqa" / "col775"
# 48 training problems, validated on the same 48 so that the figures move in a few epochs; dec_emb stays searched;
# no averaging of the last epochs (the space's 5 would exceed the 4 epochs)
SHRINK = {"epochs": 4, "threads": 1, "emb": 16, "hidden": 32, "dec_hidden": 32, "max_decode_len": 40,
          "batch_size": 8, "enc_layers": 1, "lr": 0.01, "teacher_forcing": 1.0, "dropout": 0.0, "average_last": 0}


@pytest.fixture(scope="module")
def search(ray_session, tmp_path_factory):
    if not (COL775 / "train.json").is_file():
        pytest.skip(f"real COL775 files not found in {COL775} (see shared/data/PROVENANCE.md)")
    tmp = tmp_path_factory.mktemp("decode")
    small = tmp / "small.json"
    small.write_text(json.dumps(json.loads((COL775 / "train.json").read_text())[:48]))
    spec = yaml.safe_load(load_space("t2m-lstm").path.read_text())
    spec["decode"] = {"beam_width": [1, 3]}
    path = tmp / "t2m-lstm.yaml"
    path.write_text(yaml.safe_dump(spec, sort_keys=False))
    outcome = run_search(str(path), SearchOptions(num_samples=2, storage_path=str(tmp), name="dec", verbose=0,
                                                  overrides={**SHRINK, "train_file": str(small),
                                                                                "dev_file": str(small)}, seed=0, max_concurrent=2, dashboard=False,
                                                  scheduler="none"))
    return outcome


def test_trials_train_greedily_and_their_checkpoints_are_scored_at_every_width(search):
    trials = load_trials(search.experiment_dir)
    assert len(trials) == 2
    fam = get_family("t2m-lstm")
    for trial in trials:
        assert trial.config["beam_width"] == 1  # trained (and every epoch, the last too, selected) greedily
        assert all(r["val_beam_width"] == 1.0 for r in trial.history)
        scored = trial.decoded()
        widths = [s["setting"]["beam_width"] for s in scored["scored"]]
        assert widths == [1, 3] and scored["metric"] == "val_exec_acc"
        trained = trial.best("val_exec_acc", decoded=False)
        assert scored["epoch"] == trained["epoch"]
        # width 1 of the one-pass decode is the greedy figure the trial reported at that epoch
        assert scored["scored"][0]["val_exec_acc"] == pytest.approx(trained["val_exec_acc"])
        # the one-pass width-3 figure is what a separate beam-3 evaluation of the same checkpoint gives
        ckpt, _ = trial.best_checkpoint("val_exec_acc")
        state, config, _ = load_checkpoint(ckpt)
        config = fam.make_config({**config, "beam_width": 3})
        data = fam.build_data(config)
        model = fam.build_model(config, data)
        model.load_state_dict(state["model"])
        again = fam.evaluate(model.eval(), data, config, torch.device("cpu"), final=True)
        assert scored["scored"][1]["val_exec_acc"] == pytest.approx(again["val_exec_acc"])
        assert scored["scored"][1]["val_exact_match"] == pytest.approx(again["val_exact_match"])
        # the trial's figure is the best width on validation; ties keep the training width
        values = [s["val_exec_acc"] for s in scored["scored"]]
        chosen = values.index(max(values))
        assert scored["chosen"] == {"beam_width": widths[chosen]}
        assert trial.best("val_exec_acc") == {**trained, **scored["best"], "decoded": scored["chosen"]}


def test_best_trial_and_tables_use_the_chosen_width(search):
    trials = load_trials(search.experiment_dir)
    (best,) = search.best.values()
    assert best["val_exec_acc"] == max(t.decoded()["best"]["val_exec_acc"] for t in trials)
    assert best["decoded"]["beam_width"] in (1, 3) and best["val_exec_acc"] > 0
    table = load_tables([search.experiment_dir]).trials
    assert set(table["decoded"]) <= {"beam_width=1", "beam_width=3"} and table["decoded"].notna().all()


def test_rescoring_skips_trials_already_scored(search):
    from mathtune.search.decode import score_decode_settings

    space = load_space(search.experiment_dir / "space.yaml")
    assert score_decode_settings(space, search.experiment_dir, progress=None) == 0


def test_decode_section_names_only_decode_time_settings(tmp_path):
    base = yaml.safe_load(load_space("t2m-lstm").path.read_text())
    cases = {
        "lr": "decode.lr: not a decode-time setting of family t2m-lstm (its decode-time settings: beam_width)",
        "beam_width": "decode.beam_width: expected a non-empty list of values",
    }
    for key, message in cases.items():
        spec = {**base, "decode": {key: [] if key == "beam_width" else [0.001]}}
        if key == "lr":
            spec["params"] = {k: v for k, v in base["params"].items() if k != "lr"}
            spec["points_to_evaluate"] = [{k: v for k, v in p.items() if k != "lr"} for p in base["points_to_evaluate"]]
        path = tmp_path / f"{key}.yaml"
        path.write_text(yaml.safe_dump(spec, sort_keys=False))
        with pytest.raises(SpaceError, match=message.replace("(", r"\(").replace(")", r"\)")):
            load_space(path)
        run = subprocess.run([MATHTUNE, "search", str(path), "--storage-path", str(tmp_path)], capture_output=True,
                             text=True)
        assert run.returncode == 2 and "Traceback" not in run.stderr and len(run.stderr.strip().splitlines()) == 1
    t2t = yaml.safe_load(load_space("arith-text2text-addsub").path.read_text())
    path = tmp_path / "t2t.yaml"
    path.write_text(yaml.safe_dump({**t2t, "decode": {"dropout": [0.0]},
                                    "params": {k: v for k, v in t2t["params"].items() if k != "dropout"},
                                    "points_to_evaluate": []}, sort_keys=False))
    with pytest.raises(SpaceError, match="its decode-time settings: none"):
        load_space(path)


def test_select_chooses_ensemble_members_among_the_searchs_trial_folders(search, tmp_path, monkeypatch, capsys):
    """`mathtune ship ... EXP/trial_* --weights W --select K`, as a search's user would type it: every member is
    one of the search's trials at its selected (best validation) checkpoint, and the model names the search and
    how its members were chosen."""
    from mathtune.search.cli import main
    from mathtune.trainables.t2m import shipped

    monkeypatch.setattr(shipped, "WEIGHTS_DIR", tmp_path / "weights")
    exp = Path(search.experiment_dir)
    folders = sorted(exp.glob("trial_*"))
    assert len(folders) == 2
    code = main([str(a) for a in ("ship", "sel", *folders, "--weights", "sel", "--select", 2, "--widths", 1,
                                  "--threads", 1, "--search", exp, "--produced-by", "mathtune search ...",
                                  "--configs-dir", tmp_path / "configs")])
    out = capsys.readouterr().out
    assert code == 0
    assert "select: at most 2 members among the 2 of 2 runs" in out
    folder = tmp_path / "weights" / "sel"
    record = shipped.read_model_record(folder)
    sources = ([m["source_checkpoint"] for m in record["members"]] if shipped.is_ensemble(folder)
               else [record["source_checkpoint"]])
    selected_ckpts = {str(t.best_checkpoint("val_exec_acc")[0]) for t in load_trials(exp)}
    assert 1 <= len(sources) <= 2 and set(sources) <= selected_ckpts
    assert record["selected"].startswith("greedy forward selection with replacement on dev (beam 1) among the 2 of "
                                         "2 runs")
    # an ensemble records the search in its model.json; one chosen trial ships with its configuration, which does
    searched = (record if shipped.is_ensemble(folder)
                else json.loads((tmp_path / "configs" / "sel.json").read_text()))["search"]
    assert searched["experiment"] == "dec" and searched["command"].startswith("mathtune search")


def test_status_of_several_experiments_prints_one_block_each(search, capsys):
    from mathtune.search.cli import main

    exp = Path(search.experiment_dir)
    assert main(["status", str(exp), str(exp)]) == 0
    blocks = capsys.readouterr().out.strip().split("\n\n")
    assert len(blocks) == 2 and blocks[0] == blocks[1]
    lines = blocks[0].splitlines()
    assert lines[0].startswith(f"{exp}: experiment dec, space ") and lines[1].startswith("state: finished")
    assert lines[2] == "trials: 2: 2 finished"
    best = max(t.best("val_exec_acc")["val_exec_acc"] for t in load_trials(exp))
    assert "best (split=" not in blocks[0] and f"best (all): val_exec_acc {best:.4f}, trial " in blocks[0]
    assert "decoded with beam_width=" in blocks[0]  # the trial's figure at its chosen decode-time width
