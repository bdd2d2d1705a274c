"""Grid search and replayed searches: a real grid search is tabulated, then searched again from its table
through the real engine (searcher, ASHA, Optuna storage, Tune)."""

import json
import subprocess

import optuna
import pytest
import yaml

from mathtune.analysis import load_trials
from mathtune.search import SearchError, SearchOptions, run_search
from mathtune.search.cli import main
from mathtune.search.searcher import study_name_for
from mathtune.spaces import SpaceError
from mathtune.trainables.replay import ReplayError, ReplayTable, write_table
from mathtune.analysis.store import open_study_storage

from .conftest import MATHTUNE

GRID = {"hidden": [8, 16], "lr": [0.003, 0.03]}
CONSTANTS = {"ops": "+-", "epochs": 3, "limit": 256, "batch_size": 64, "decoder_hidden": 16, "threads": 1}


def _space(tmp_path, name: str, **changes) -> str:
    spec = {"family": "arith-text2text", "metric": "val_exact_match", "mode": "max", "factors": {"split": [0.5]},
            "params": {k: {"type": "choice", "values": v} for k, v in GRID.items()}, "constants": dict(CONSTANTS),
            "resources": {"cpus": 1}}
    for key, value in changes.items():
        spec[key] = {**spec[key], **value} if isinstance(value, dict) and key in spec else value
    path = tmp_path / f"{name}.yaml"
    path.write_text(yaml.safe_dump(spec, sort_keys=False))
    return str(path)


@pytest.fixture(scope="module")
def table(ray_session, tmp_path_factory):
    tmp = tmp_path_factory.mktemp("replay")
    space = _space(tmp, "grid")
    outcome = run_search(space, SearchOptions(num_samples=4, storage_path=str(tmp), name="grid", verbose=0,
                                              scheduler="none", sampler="grid", max_concurrent=2))
    trials = load_trials(outcome.experiment_dir)
    path = tmp / "table.parquet"
    n = write_table(trials, path, family="arith-text2text", params=list(GRID),
                    info={"space": open(space).read(), "metric": "val_exact_match"})
    assert n == 4
    return path, trials, tmp


def test_grid_search_runs_every_grid_point_once(table):
    _, trials, _ = table
    assert sorted((t.config["hidden"], t.config["lr"]) for t in trials) == \
        sorted((h, lr) for h in GRID["hidden"] for lr in GRID["lr"])
    assert all(t.epochs_run == 3 for t in trials)


def test_grid_search_needs_a_finite_space_and_at_most_the_grid(tmp_path):
    continuous = _space(tmp_path, "cont", params={"dropout": {"type": "float", "low": 0.0, "high": 0.5}})
    with pytest.raises(SpaceError, match=r"cont\.yaml: dropout: a float \[0, 0\.5\] has no grid"):
        run_search(continuous, SearchOptions(num_samples=2, sampler="grid", storage_path=str(tmp_path)))
    with pytest.raises(SearchError, match=r"--num-samples 5 is more than the grid's 4 points \(2 x 2"):
        run_search(_space(tmp_path, "grid"), SearchOptions(num_samples=5, sampler="grid", storage_path=str(tmp_path)))
    with pytest.raises(SearchError, match="--startup-trials must be at least 1, got 0"):
        run_search(_space(tmp_path, "grid"), SearchOptions(num_samples=2, startup_trials=0, storage_path=str(tmp_path)))
    run = subprocess.run([MATHTUNE, "search", continuous, "--sampler", "grid", "--num-samples", "2",
                          "--storage-path", str(tmp_path)], capture_output=True, text=True)
    assert run.returncode == 2 and "Traceback" not in run.stderr
    assert "has no grid" in run.stderr and len(run.stderr.strip().splitlines()) == 1


def test_replayed_search_reports_the_recorded_curves_and_tells_optuna(table, ray_session):
    path, originals, tmp = table
    recorded = {(t.config["hidden"], t.config["lr"]): t.history for t in originals}
    space = _space(tmp, "replay", family="replay-arith-text2text",
                   constants={"table": str(path), "time_scale": 0.01}, scheduler={"grace_period": 1,
                                                                                 "reduction_factor": 2})
    outcome = run_search(space, SearchOptions(num_samples=4, storage_path=str(tmp), name="replayed", verbose=0,
                                              max_concurrent=2, seed=0))
    trials = load_trials(outcome.experiment_dir)
    assert len(trials) == 4
    for t in trials:
        original = recorded[(t.config["hidden"], t.config["lr"])]
        total = 0.0
        for row in t.history:
            source = original[row["epoch"] - 1]
            total += source["epoch_time_s"]
            assert row["val_exact_match"] == pytest.approx(source["val_exact_match"])
            assert row["test_exact_match"] == pytest.approx(source["test_exact_match"])
            assert row["recorded_epoch_s"] == pytest.approx(source["epoch_time_s"])
            assert row["recorded_total_s"] == pytest.approx(total)
    study = optuna.load_study(study_name=study_name_for("replayed", {"split": 0.5}),
                              storage=open_study_storage(outcome.experiment_dir))
    by_tune = {t.user_attrs["tune_trial_id"]: t for t in study.trials if "tune_trial_id" in t.user_attrs}
    assert len({(t.config["hidden"], t.config["lr"]) for t in trials}) == 4  # the 4 points, none run twice
    for t in trials:
        told = by_tune[t.trial_id]
        if t.epochs_run < 3:  # stopped by ASHA
            assert told.state == optuna.trial.TrialState.PRUNED
        else:
            assert told.state == optuna.trial.TrialState.COMPLETE
            assert told.value == pytest.approx(max(r["val_exact_match"] for r in t.history))
        assert sorted(told.intermediate_values) == list(range(1, t.epochs_run + 1))


def test_replay_bad_tables_and_configurations_are_one_line_errors(table, tmp_path, capsys):
    """Through the command's own entry point (the executable's one-line errors are tested in test_bad_input)."""
    path, _, _ = table
    assert {k: sorted(v) for k, v in ReplayTable(path).grid().items()} == GRID
    garbage = tmp_path / "garbage.parquet"
    garbage.write_bytes(b"not parquet at all")
    base = ["train", "replay-arith-text2text", "--out", str(tmp_path / "run"), "--set", "split=0.5",
            "--set", "time_scale=0", "--set", "lr=0.003"]
    cases = {
        ("table=" + str(tmp_path / "missing.parquet"), "hidden=8"): "missing.parquet: file not found",
        ("table=" + str(garbage), "hidden=8"): "not a readable Parquet file",
        ("table=" + str(path), "hidden=32"): "no recorded configuration hidden=32, lr=0.003",
        ("table=" + str(path), "hidden=8", "epochs=5"): "epochs 5 asked for, 3 recorded",
    }
    for sets, message in cases.items():
        code = main(base + [a for s in sets for a in ("--set", s)])
        err = capsys.readouterr().err
        assert code == 2, err
        assert message in err and "Traceback" not in err and len(err.strip().splitlines()) == 1
        assert not (tmp_path / "run" / "result.json").exists()
    run = subprocess.run([MATHTUNE, *base, "--set", f"table={path}", "--set", "hidden=8", "--set", "epochs=3"],
                         capture_output=True, text=True)
    assert run.returncode == 0, run.stderr
    summary = json.loads((tmp_path / "run" / "result.json").read_text())
    assert summary["best"]["val_exact_match"] == pytest.approx(
        max(r["val_exact_match"] for r in ReplayTable(path).curve({"hidden": 8, "lr": 0.003})))


def test_any_family_replays_its_table(ray_session, tmp_path):
    """replay-NAME exists for every registered family: here a t2m-lstm table (execution accuracy, no data
    files needed) is searched through the engine and the trials report the recorded curves."""
    import pyarrow as pa
    import pyarrow.parquet as pq

    from mathtune.trainables import get_family
    from mathtune.trainables.registry import family_names
    from mathtune.trainables.replay import TABLE_META_KEY

    names = family_names()
    assert all(f"replay-{n}" in names for n in names if not n.startswith("replay-"))
    fam = get_family("replay-t2m-lstm")
    assert fam.metric == "val_exec_acc" and "dec_hidden" in fam.all_params() and "table" in fam.all_params()
    curves = {(256, 0.001): [0.2, 0.4, 0.5], (512, 0.001): [0.3, 0.35, 0.38], (256, 0.002): [0.1, 0.5, 0.6]}
    rows = [{"hidden": h, "lr": lr, "trial": f"{h}-{lr}", "epoch": e, "epoch_s": 2.0, "val_exec_acc": v,
             "val_exact_match": v - 0.05} for (h, lr), vals in curves.items() for e, v in enumerate(vals, start=1)]
    spec = {"family": "t2m-lstm", "metric": "val_exec_acc", "mode": "max",
            "params": {"hidden": {"type": "choice", "values": [256, 512]},
                       "lr": {"type": "choice", "values": [0.001, 0.002]}},
            "constants": {"epochs": 3}, "resources": {"cpus": 1}}
    meta = {"family": "t2m-lstm", "params": ["hidden", "lr"], "space": yaml.safe_dump(spec), "metric": "val_exec_acc"}
    table = tmp_path / "t2m.parquet"
    pq.write_table(pa.Table.from_pylist(rows).replace_schema_metadata({TABLE_META_KEY: json.dumps(meta).encode()}),
                   table)
    space = tmp_path / "replay-t2m.yaml"
    space.write_text(yaml.safe_dump({**spec, "family": "replay-t2m-lstm",
                                     "params": {**spec["params"], "hidden": {"type": "choice", "values": [256]}},
                                     "constants": {"epochs": 3, "table": str(table), "time_scale": 0.0}}))
    outcome = run_search(str(space), SearchOptions(num_samples=2, storage_path=str(tmp_path), name="t2m", verbose=0,
                                                   scheduler="none", sampler="grid", max_concurrent=1))
    trials = load_trials(outcome.experiment_dir)
    assert sorted(t.config["lr"] for t in trials) == [0.001, 0.002]
    for t in trials:
        assert [r["val_exec_acc"] for r in t.history] == pytest.approx(curves[(256, t.config["lr"])])
    assert outcome.best["all"]["val_exec_acc"] == pytest.approx(0.6)


def test_a_table_recorded_in_two_parts_merges_into_the_whole(table, tmp_path):
    """An interrupted recording keeps its finished curves; the rest, recorded later, merges into one table
    equal to the table recorded in one go; a configuration in both parts is refused."""
    path, trials, _ = table
    info = {"space": "", "metric": "val_exact_match"}
    first = tmp_path / "first.parquet"
    write_table(trials[:2], first, family="arith-text2text", params=list(GRID), info=info)
    whole = tmp_path / "whole.parquet"
    n = write_table(trials[2:], whole, family="arith-text2text", params=list(GRID), info=info,
                    merge=ReplayTable(first))
    assert n == 4
    merged, full = ReplayTable(whole), ReplayTable(path)
    assert merged.curves.keys() == full.curves.keys()
    for key, curve in full.curves.items():
        assert [r["val_exact_match"] for r in merged.curves[key]] == [r["val_exact_match"] for r in curve]
    with pytest.raises(ReplayError, match="recorded twice"):
        write_table(trials[1:], tmp_path / "twice.parquet", family="arith-text2text", params=list(GRID), info=info,
                    merge=ReplayTable(first))


def test_a_table_recorded_from_a_search_with_set_replays_under_the_space_as_searched(ray_session, tmp_path):
    """`bench/search_efficiency.py --record` of a grid search run with --set epochs=2 stores the space as it
    was searched (epochs 2), so a replay of the table asks for the 2 epochs each curve has."""
    import importlib.util

    from .conftest import ROOT

    spec = importlib.util.spec_from_file_location("search_efficiency", ROOT / "bench" / "search_efficiency.py")
    bench = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(bench)
    grid = run_search(_space(tmp_path, "grid"), SearchOptions(
        num_samples=4, storage_path=str(tmp_path), name="grid2", verbose=0, scheduler="none", sampler="grid",
        max_concurrent=2, overrides={"epochs": 2}))
    path = tmp_path / "table.parquet"
    bench.record_table(str(grid.experiment_dir), str(path))
    table = ReplayTable(path)
    assert yaml.safe_load(table.meta["space"])["constants"]["epochs"] == 2
    assert table.meta["command"].endswith("--set epochs=2")
    space = bench._space_file(table, tmp_path, "replay", replay=True, time_scale=0.0, grace=1, reduction=2)
    outcome = run_search(str(space), SearchOptions(num_samples=2, storage_path=str(tmp_path), name="again",
                                                   verbose=0, scheduler="none", max_concurrent=1))
    assert set(outcome.counts) == {"TERMINATED"}, outcome.counts
    assert [t.epochs_run for t in load_trials(outcome.experiment_dir)] == [2, 2]
