"""Analysis on a real tiny experiment made by the engine: tidy tables, comparison tables, plots, report, best."""

from __future__ import annotations

import io
import json
import shutil
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from mathtune.analysis import (Tables, best_per_factor, family_summary, family_views, importance_plot,
                               learning_curves, load_studies, load_tables, metric_vs_params, optimisation_history,
                               param_importances, per_param_value, top_k, versus_reference, write_report)
from mathtune.search import SearchOptions, run_search
from mathtune.search.cli import main
from mathtune.analysis.store import journal_url, open_study_storage
from mathtune.trainables.arith.errors import arith_errors
from mathtune.trainables.checkpoints import trial_checkpoints

from .browser import CHROMIUM, load_page

SHRINK = {"epochs": 2, "limit": 256, "batch_size": 64, "threads": 1, "hidden": 32, "decoder_hidden": 32}
PNG = b"\x89PNG\r\n\x1a\n"
needs_chromium = pytest.mark.skipif(not CHROMIUM.exists(), reason=f"{CHROMIUM} not installed (Debian's chromium: "
                                                                  "apt-get install -y chromium; .ci/run installs it)")


@pytest.fixture(scope="module")
def experiment(ray_session, tmp_path_factory) -> Path:
    """A real 3-trial search (2 epochs, 256 training queries) on the shared local Ray."""
    storage = tmp_path_factory.mktemp("analysis-runs")
    outcome = run_search("arith-text2text-addsub", SearchOptions(num_samples=3, storage_path=str(storage),
                                                                 name="tiny-analysis", overrides=SHRINK, verbose=0))
    assert outcome.counts == {"TERMINATED": 3}
    return outcome.experiment_dir


@pytest.fixture(scope="module")
def tables(experiment) -> Tables:
    return load_tables(experiment)


@pytest.fixture(scope="module")
def report_dir(experiment, tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("report")
    write_report([experiment], out)
    return out


def _is_png(path: Path) -> bool:
    return path.is_file() and path.read_bytes()[:8] == PNG and path.stat().st_size > 5_000


def test_trials_table_has_one_row_per_trial_with_best_and_final_metrics(tables, experiment):
    trials, epochs = tables.trials, tables.epochs
    assert len(trials) == 3 and set(trials["status"]) == {"finished"} and set(trials["epochs_run"]) == {2}
    assert len(epochs) == 6 and {"val_exact_match", "test_char_acc", "time_total_s", "epoch"} <= set(epochs.columns)
    for _, row in trials.iterrows():
        hist = epochs[epochs["trial_id"] == row["trial_id"]].sort_values("epoch")
        at_best = hist[hist["epoch"] == row["best_epoch"]].iloc[0]
        # best_* = the epoch chosen on validation (first of ties), final_* = the last epoch
        assert row["best_val_exact_match"] == hist["val_exact_match"].max()
        assert at_best["val_exact_match"] == hist["val_exact_match"].max()
        assert row["best_test_char_acc"] == at_best["test_char_acc"]
        assert row["final_val_loss"] == hist["val_loss"].iloc[-1]
        assert row["config/hidden"] == 32 and row["resource_cpu"] == 1.0 and row["wall_time_s"] > 0
        assert row["optuna_state"] == "COMPLETE" and row["optuna_study"] == "tiny-analysis[split=0.5]"
        assert Path(row["best_checkpoint"], "state.pt").is_file() and row["checkpoint_epoch"] == row["best_epoch"]
    # the space's params minus those fixed with --set (hidden, decoder_hidden, batch_size)
    assert tables.searched("tiny-analysis") == ["extra_layers", "dropout", "lr", "reverse", "init"]


def test_tables_round_trip_through_parquet(tables, tmp_path):
    paths = tables.write_parquet(tmp_path / "t")
    again = Tables.read_parquet(tmp_path / "t")
    assert {p.name for p in paths.values()} == {"trials.parquet", "epochs.parquet", "experiments.json"}
    pd.testing.assert_frame_equal(again.trials, tables.trials, check_dtype=False)
    pd.testing.assert_frame_equal(again.epochs, tables.epochs, check_dtype=False)
    assert again.metas == tables.metas and again.metas["tiny-analysis"].metric == "val_exact_match"
    assert again.metas["tiny-analysis"].dir == tables.metas["tiny-analysis"].dir and again.metas["tiny-analysis"].searched


def test_several_experiments_load_together_and_keep_apart(experiment, tmp_path):
    copy = tmp_path / "tiny-analysis"
    shutil.copytree(experiment, copy)
    both = load_tables([experiment, copy])
    assert len(both.trials) == 6 and len(both.experiments()) == 2
    assert both.trials.groupby("experiment").size().tolist() == [3, 3]
    # the copy reads its own optuna.journal, not the path recorded at search time
    assert both.trials["optuna_number"].notna().all()
    assert len(family_summary(both).frame) == 2
    assert [m.dir for m in both.metas.values()] == [str(experiment.resolve()), str(copy.resolve())]
    # an older experiment file's own "dir" key (version 1 wrote one) gives way to the folder it was read from
    meta_file = copy / "mathtune.json"
    meta_file.write_text(json.dumps({**json.loads(meta_file.read_text()), "dir": "/elsewhere"}))
    again = load_tables(copy, optuna=False).metas["tiny-analysis"]
    assert again.dir == str(copy.resolve()) and "dir" not in again.extra and again.to_dict()["dir"] == again.dir


def test_comparison_tables_in_markdown_html_and_latex(tables):
    exp = "tiny-analysis"
    best = best_per_factor(tables, exp)
    md = best.to_markdown()
    assert md.startswith("| split | val exact match | test exact match | val char acc | test char acc |")
    assert "| 0.5 |" in md and best.frame["trial"].iloc[0] in set(tables.trials["trial_id"])
    per = per_param_value(tables, exp, "extra_layers")
    assert len(per.frame) == tables.trials["config/extra_layers"].nunique()
    assert per.frame["trials"].sum() == 3
    top = top_k(tables, exp, 2)
    assert top.frame["rank"].tolist() == [1, 2] and "lr" in top.frame.columns
    html, tex = top.to_html(), best.to_latex()
    assert html.startswith('<table class="t"') and "<th>val exact match</th>" in html
    assert "\\begin{tabular}" in tex and "\\toprule" in tex and "data\\_seed=0" in tex
    with pytest.raises(KeyError, match="no parameter 'nope'"):
        per_param_value(tables, exp, "nope")


def test_versus_reference_sets_our_per_char_and_exact_match_beside_the_seed(tables):
    table, missing = versus_reference(tables)
    frame = table.frame
    row = frame[frame["reference setting"] == "LSTM(256) enc/dec, 50/50"].iloc[0]
    assert row["metric"] == "test char acc" and row["reference"] == pytest.approx(0.9724)
    best = tables.trials.sort_values(["best_val_exact_match", "best_val_loss"], ascending=[False, True]).iloc[0]
    assert row["ours"] == pytest.approx(best["best_test_char_acc"])
    assert row["ours, test exact match"] == pytest.approx(best["best_test_exact_match"])
    assert row["difference"] == pytest.approx(row["ours"] - 0.9724)
    assert "-" in table.to_markdown() and " pp |" in table.to_markdown()
    assert any("25/75" in m for m in missing)  # no trial at split 0.25: listed, not compared


def test_every_plot_is_written(tables, experiment, tmp_path):
    exp = "tiny-analysis"
    assert _is_png(learning_curves(tables, exp, tmp_path / "curves.png"))
    assert _is_png(metric_vs_params(tables, exp, tmp_path / "params.png"))
    studies = load_studies(experiment)
    assert [s.label for s in studies] == ["split=0.5"]
    assert _is_png(optimisation_history(studies, exp, "val_exact_match", tmp_path / "history.png"))
    lowest = tables.epochs.groupby("trial_id")["val_loss"].min().to_dict()
    imp = param_importances(studies[0], values=lowest, target="lowest val_loss", maximize=False)
    assert imp.importances and set(imp.importances) == {"extra_layers", "dropout", "lr", "reverse", "init"}
    assert sum(imp.importances.values()) == pytest.approx(1.0)
    assert _is_png(importance_plot([imp], exp, tmp_path / "importance.png"))


def test_importance_of_a_thin_study_is_a_reason_not_an_error(experiment):
    study = load_studies(experiment)[0]
    thin = param_importances(study, min_trials=10)
    assert thin.importances is None and "at least 10" in thin.reason
    flat = param_importances(study, values={t.user_attrs["tune_trial_id"]: 0.5 for t in study.study.trials})
    assert flat.importances is None and "nothing to attribute" in flat.reason


def test_arith_error_analysis_counts_known_mistakes():
    queries = ["22+13", "17+25", "50-7", "9-3", "12+3", "3*4"]
    answers = ["35", "42", "43", "6", "15", "12"]
    preds = ["35", "43", "53", "6", "1-", ""]
    e = arith_errors(queries, answers, preds)
    assert e.n == 6 and e.exact_match == pytest.approx(2 / 6) and e.unreadable == 2
    assert sorted(e.abs_errors.tolist()) == [1.0, 10.0]
    assert e.carry[["op", "carry", "n", "wrong"]].values.tolist() == [
        ["*", "carry", 1, 1], ["+", "no carry", 2, 1], ["+", "carry", 1, 1], ["-", "no borrow", 1, 0],
        ["-", "borrow", 1, 1]]
    assert e.positions == pytest.approx([2 / 6, 3 / 6])
    assert e.confusions == {("4", "5"): 1, ("2", "3"): 1, ("5", "-"): 1, ("1", " "): 1, ("2", " "): 1}


def test_family_view_loads_the_best_checkpoint_and_analyses_test_errors(tables, tmp_path):
    views = family_views(tables, "tiny-analysis", tmp_path)
    assert len(views) == 1 and not views[0].notes, [v.notes for v in views]
    (png, caption), = views[0].figures
    assert _is_png(png) and "test set" in caption
    confusions = views[0].tables[0].frame
    assert list(confusions.columns) == ["true", "predicted", "count", "share of wrong characters"]


def test_report_writes_markdown_html_latex_and_parquet(report_dir):
    md = (report_dir / "report.md").read_text()
    for heading in ("## Versus the reference", "## Family-by-family summary", "### Best trial per study factor",
                    "### Top 10 trials", "### Optimisation history and parameter importance",
                    "### Family views of the best checkpoints", "| split | val exact match | test exact match |"):
        assert heading in md
    images = sorted((report_dir / "report_files").glob("*.png"))
    assert len(images) >= 5 and all(_is_png(p) for p in images)
    for p in images:
        assert f"](report_files/{p.name})" in md
    html = (report_dir / "report.html").read_text()
    assert html.count('<img src="data:image/png;base64,') == len(images)
    assert "http://" not in html and "https://" not in html and "<script" not in html
    assert (report_dir / "tables.tex").read_text().count("\\begin{table}") >= 6
    assert len(pd.read_parquet(report_dir / "tables" / "trials.parquet")) == 3


@needs_chromium
def test_browser_check_catches_a_broken_page(tmp_path):
    page = tmp_path / "broken.html"
    page.write_text('<!doctype html><html><head><meta charset="utf-8"><title>x</title></head><body>'
                    '<img src="missing.png" alt="gone"><img src="http://127.0.0.1:9/remote.png" alt="remote">'
                    '<script>console.error("deliberate"); undefinedFunction();</script></body></html>')
    result = load_page(page)
    text = "\n".join(result.errors)
    assert "console.error: deliberate" in text and "undefinedFunction" in text and "ERR_FILE_NOT_FOUND" in text
    assert result.remote_requests == ["http://127.0.0.1:9/remote.png"]
    assert sorted(result.dom["broken"]) == ["gone", "remote"]


@needs_chromium
def test_report_renders_in_chromium_without_errors(report_dir, experiment, tmp_path):
    from matplotlib.image import imread

    result = load_page(report_dir / "report.html", screenshot=tmp_path / "report.png")
    assert result.errors == [] and result.remote_requests == []
    dom = result.dom
    assert dom["images"] == len(list((report_dir / "report_files").glob("*.png"))) and dom["broken"] == []
    assert dom["tables"] >= 8 and dom["rows"] >= 15
    # the report opens with what the search found; the detail follows, the reference comparison after it
    heads = dom["headings"]
    assert heads[:2] == ["Experiments", f"What the search found: {experiment.name}"], heads
    assert heads.index(f"Experiment {experiment.name}") < heads.index("Versus the reference") < \
        heads.index("Family-by-family summary")
    pixels = imread(io.BytesIO(result.screenshot.read_bytes()), format="png")
    assert pixels.shape[:2] == (2000, 1280)
    rgb = pixels[..., :3].reshape(-1, 3)
    non_white = (rgb < 0.9).any(axis=1).mean()
    assert 0.02 < non_white < 0.9 and len(np.unique(rgb.round(2), axis=0)) > 50  # text, tables: not blank


def test_report_on_a_running_experiment(experiment, tmp_path):
    """A copy mid-search: no Tune state saved yet, one result line half written, one trial training its second
    epoch, one trial not reporting yet."""
    run = tmp_path / "running"
    shutil.copytree(experiment, run)
    for state in run.glob("experiment_state-*.json"):
        state.unlink()
    trial_dirs = sorted(run.glob("trial_*"))
    result = trial_dirs[0] / "result.json"
    lines = result.read_text().splitlines()
    # its last epoch being written to result.json: its checkpoint, saved before the report, has it
    result.write_text(lines[0] + "\n" + lines[1][: len(lines[1]) // 2])
    training = trial_dirs[2] / "result.json"
    first = training.read_text().splitlines()[0]
    training.write_text(first + "\n")
    for epoch, ckpt in trial_checkpoints(trial_dirs[2]).items():
        if epoch > 1:
            shutil.rmtree(ckpt)  # training its second epoch
    fresh = run / "trial_fresh000"
    fresh.mkdir()
    shutil.copyfile(trial_dirs[1] / "params.json", fresh / "params.json")
    live = load_tables(run)
    status = dict(zip(live.trials["trial_id"], live.trials["status"]))
    assert status[json.loads(first)["trial_id"]] == "running" and status["fresh000"] == "pending"
    assert status[json.loads(lines[0])["trial_id"]] == "finished"  # its last epoch read from the checkpoint
    epochs = live.epochs[live.epochs["trial_id"] == json.loads(lines[0])["trial_id"]]
    assert list(epochs["epoch"]) == [1, 2] and list(epochs["from_checkpoint"].fillna(False)) == [False, True]
    assert list(status.values()).count("finished") == 2
    out = tmp_path / "out"
    assert main(["report", str(run), "--out", str(out), "--format", "md,html", "--no-predictions"]) == 0
    md = (out / "report.md").read_text()
    assert "still running" in md and "| running |" in md and "| pending |" in md
    assert (out / "report.html").is_file() and not (out / "tables.tex").exists()


def test_best_config_round_trips_through_mathtune_train(experiment, tables, tmp_path, capsys):
    best_file = tmp_path / "best.json"
    assert main(["best", str(experiment), "--out", str(best_file)]) == 0
    payload = json.loads(best_file.read_text())
    row = tables.trials[tables.trials["trial_id"] == payload["trial_id"]].iloc[0]
    assert payload["config"] == json.loads((experiment / f"trial_{payload['trial_id']}" / "params.json").read_text())
    assert Path(payload["checkpoint"]).is_dir() and payload["epoch"] == row["best_epoch"]
    assert payload["val_exact_match"] == row["best_val_exact_match"]
    assert main(["train", "arith-text2text", "--config", str(best_file), "--out", str(tmp_path / "train"), "-q"]) == 0
    again = json.loads((tmp_path / "train" / "result.json").read_text())["best"]
    # same config, seeds and data outside Tune: the same numbers at the same epoch
    assert again["epoch"] == payload["epoch"]
    for key in ("train_loss", "val_loss", "val_char_acc", "test_char_acc"):
        assert again[key] == pytest.approx(payload["metrics"][key], rel=1e-5), key
    capsys.readouterr()
    assert main(["best", str(experiment)]) == 0
    assert json.loads(capsys.readouterr().out)["trial_id"] == payload["trial_id"]


def test_best_and_report_refuse_bad_input_in_one_line(experiment, tmp_path, capsys):
    assert main(["best", str(experiment), "--where", "split=0.25"]) == 2
    assert main(["report", str(experiment), "--out", str(tmp_path), "--format", "pdf"]) == 2
    assert main(["report", str(tmp_path)]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 3 and all(line.startswith("mathtune: error: ") for line in err)
    assert "no trial with split=0.25" in err[0] and "--format" in err[1] and "not a mathtune experiment" in err[2]


def _copy_experiment(experiment: Path, dest: Path) -> Path:
    """A private copy whose mathtune.json points at its own optuna.journal (so a test may add trials to it)."""
    copy = Path(shutil.copytree(experiment, dest))
    meta = json.loads((copy / "mathtune.json").read_text())
    meta["optuna_storage"] = journal_url(copy / "optuna.journal")
    (copy / "mathtune.json").write_text(json.dumps(meta))
    return copy


@needs_chromium
def test_dashboard_serves_a_real_search_s_studies_live_in_chromium(experiment, tmp_path):
    import threading
    import urllib.request

    import optuna

    from mathtune.search.dashboard import open_dashboard

    exp = _copy_experiment(experiment, tmp_path / "exp")
    server = open_dashboard(exp, port=0)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        assert server.url.startswith("http://127.0.0.1:") and server.httpd.server_address[0] == "127.0.0.1"
        assert server.study_names == ["tiny-analysis[split=0.5]"] and server.trial_count() == 3
        page = load_page(server.url, settle_s=3.0)
        assert not page.errors, page.errors
        assert not page.offsite_requests, page.offsite_requests
        assert "tiny-analysis[split=0.5]" in page.dom["text"], page.dom["text"][:2000]
        # the search keeps writing while the dashboard runs: a new trial shows without a restart
        study = optuna.load_study(study_name="tiny-analysis[split=0.5]", storage=open_study_storage(exp))
        study.add_trial(optuna.trial.create_trial(params={}, distributions={}, value=0.5))
        assert server.trial_count() == 4
        study_id = study._study_id
        with urllib.request.urlopen(f"{server.url}api/studies/{study_id}?after=0", timeout=30) as reply:
            detail = json.loads(reply.read())
        assert len(detail["trials"]) == 4
        page = load_page(f"{server.url}dashboard/studies/{study_id}/trials", settle_s=3.0)
        assert not page.errors and not page.offsite_requests, (page.errors, page.offsite_requests)
        assert "Trial 3" in page.dom["text"], page.dom["text"][:2000]
    finally:
        server.shutdown()
        thread.join(timeout=10)


def test_dashboard_refuses_a_taken_port_and_a_folder_without_a_study_in_one_line(experiment, tmp_path, capsys):
    import socket

    busy = socket.socket()
    busy.bind(("127.0.0.1", 0))
    busy.listen()
    try:
        port = busy.getsockname()[1]
        assert main(["dashboard", str(experiment), "--port", str(port)]) == 2
        err = capsys.readouterr().err
        assert err == f"mathtune: error: port {port} on 127.0.0.1 is taken; pick another with --port\n"
    finally:
        busy.close()
    empty = tmp_path / "empty"
    empty.mkdir()
    assert main(["dashboard", str(empty)]) == 2
    assert capsys.readouterr().err == f"mathtune: error: {empty}: not a mathtune experiment (no mathtune.json)\n"
    started = _copy_experiment(experiment, tmp_path / "started")
    (started / "optuna.journal").unlink()  # the search has written its record but no study yet
    assert main(["dashboard", str(started)]) == 2
    err = capsys.readouterr().err
    assert err.startswith(f"mathtune: error: {started}: no Optuna study yet") and err.count("\n") == 1
    assert not (started / "optuna.journal").exists()  # looking did not create an empty storage
    assert main(["dashboard", str(experiment), "--port", "70000"]) == 2
    assert "not a port number" in capsys.readouterr().err


def test_importance_at_the_first_rung_counts_the_trials_asha_stopped():
    """Optuna's evaluators see COMPLETE trials only; at a common epoch every trial that reached it counts."""
    import optuna
    from optuna.distributions import FloatDistribution
    from optuna.trial import TrialState, create_trial

    from mathtune.analysis.importance import StudyInfo

    rng = np.random.default_rng(0)
    dists = {"lr": FloatDistribution(0.0, 1.0), "dropout": FloatDistribution(0.0, 1.0)}
    study = optuna.create_study(direction="maximize")
    at_epoch_3 = {}
    for i in range(16):
        params = {"lr": float(rng.uniform()), "dropout": float(rng.uniform())}
        state = TrialState.COMPLETE if i < 4 else TrialState.PRUNED
        # the survivors happen to share one lr, so among them only dropout varies the value
        if state == TrialState.COMPLETE:
            params["lr"] = 0.9
        at_epoch_3[f"t{i}"] = params["lr"] + 0.01 * params["dropout"]
        study.add_trial(create_trial(params=params, distributions=dists, state=state,
                                     value=at_epoch_3[f"t{i}"] if state == TrialState.COMPLETE else None,
                                     intermediate_values={3: at_epoch_3[f"t{i}"]},
                                     user_attrs={"tune_trial_id": f"t{i}"}))
    info = StudyInfo("exp[split=0.5]", "split=0.5", study, "maximize")
    complete = param_importances(info)
    assert complete.n_trials == 4 and complete.basis == "4 complete trials"
    assert complete.importances["dropout"] > complete.importances["lr"]  # lr never varied among them
    every = param_importances(info, values=at_epoch_3, maximize=True, states=("COMPLETE", "PRUNED"),
                              at="at epoch 3", target="val_exact_match at epoch 3")
    assert every.n_trials == 16 and every.basis == "16 trials at epoch 3 (4 complete, 12 stopped early)"
    assert every.importances["lr"] > 0.9  # with the stopped trials, lr is what mattered
    thin = param_importances(info, values={"t4": 0.1}, states=("COMPLETE", "PRUNED"), at="at epoch 3")
    assert thin.importances is None and thin.reason == "1 trial(s) at epoch 3; importance needs at least 3"


def test_report_importance_table_says_which_trials_each_figure_rests_on(report_dir):
    md = (report_dir / "report.md").read_text()
    assert "| study | target | parameter | importance | rests on | evaluator |" in md
    assert "| lowest val loss | reverse |" in md and "| 3 complete trials | fANOVA |" in md
    # the tiny search is shorter than its grace period, so its common epoch is its last; every trial scores 0
    assert ("importance of val exact match at epoch 2 in tiny-analysis[split=0.5]: all 3 complete trials at "
            "epoch 2 score 0: nothing to attribute") in md


def test_hand_tuned_figure_is_the_shipped_file_that_agrees_with_what_the_search_fixed():
    """A search of the `*` space at split 0.6 compares with the shipped 60/40 file, at 0.5 with the 50/50 one;
    a setting no shipped file trained (here a narrower fixed width) has no hand-tuned figure."""
    import json

    from mathtune.analysis.found import hand_tuned
    from mathtune.analysis.shipped import CONFIGS_DIR

    fixed = {"ops": "*", "grad_clip": 1.0, "lr_schedule": "cosine"}
    for split in (0.5, 0.6):
        found = hand_tuned("arith-text2text", fixed, {"split": split})
        assert found is not None and found.config["split"] == split and found.config["ops"] == "*"
        rivals = [json.loads(p.read_text()) for p in CONFIGS_DIR.glob("arith-text2text*.json")]
        rivals = [r for r in rivals if r["config"]["ops"] == "*" and r["config"]["split"] == split]
        assert found.selection[1] == max(r["figure"]["val_exact_match"] for r in rivals)
    assert hand_tuned("arith-text2text", {**fixed, "hidden": 24}, {"split": 0.6}) is None
    # a t2m-attn search can build t2m-lstm's model (attention_style none): the best GloVe file of either answers
    glove = [json.loads(p.read_text()) for p in CONFIGS_DIR.glob("t2m-*.json")]
    glove = [g for g in glove if g["family"] in ("t2m-lstm", "t2m-attn")]
    found = hand_tuned("t2m-attn", {"amp": True, "lr_schedule": "cosine"}, {})
    assert found is not None and found.selection[1] == max(g["figure"]["val_exec_acc"] for g in glove)
    assert hand_tuned("t2m-lstm", {}, {}).family == "t2m-lstm"


def test_an_unfinished_run_is_told_by_its_config_keys_even_from_before_a_parameter_was_added():
    """A run without result.json is the family whose parameters its config.json holds; a config written before
    a parameter was added (no warmup key) is the family that needs the fewest keys added."""
    from mathtune.analysis.run_report import _infer_family
    from mathtune.trainables import get_family

    for name in ("t2m-lstm", "t2m-attn", "t2m-bert-ft", "arith-text2text"):
        config = get_family(name).make_config().as_dict()
        assert _infer_family(config) == name
        assert _infer_family({k: v for k, v in config.items() if k != "warmup"}) == name
    assert _infer_family({"no_such_key": 1}) is None
