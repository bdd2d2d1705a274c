"""Real tiny searches on a local Ray: Optuna bookkeeping, shared data, report, resume after a kill."""

import json
import os
import signal
import subprocess
import time
from pathlib import Path

import optuna
import pytest
from optuna.trial import TrialState

from mathtune.analysis import load_trials, write_report
from mathtune.search import SearchError, SearchOptions, run_search
from mathtune.search.searcher import TUNE_ID_ATTR
from mathtune.search.status import experiment_status
from mathtune.analysis.store import _stamped, open_study_storage, tune_sessions
from mathtune.search import engine
from mathtune.search.engine import _datasets, resume_search
from mathtune.spaces.loader import load_space
from mathtune.trainables.checkpoints import checkpoint_history
from mathtune.trainables.registry import get_family
from ray.tune import Callback

from .conftest import MATHTUNE

SHRINK = {"epochs": 3, "limit": 256, "batch_size": 64, "threads": 1, "hidden": 32, "decoder_hidden": 32}


def _study_trials(exp_dir: Path, study: str):
    return optuna.load_study(study_name=study, storage=open_study_storage(exp_dir)).trials


@pytest.fixture(scope="module")
def tiny_search(ray_session, tmp_path_factory):
    """One real search shared by the tests below: 4 trials, ASHA, warm start from the space file."""
    storage = tmp_path_factory.mktemp("runs")
    overrides = {k: v for k, v in SHRINK.items() if k not in ("hidden",)}
    outcome = run_search("arith-text2text-addsub",
                         SearchOptions(num_samples=4, storage_path=str(storage), name="tiny", verbose=0,
                                       overrides=overrides, seed=1))
    return outcome


def test_search_runs_every_trial_and_reports_best_per_split(tiny_search):
    assert tiny_search.counts == {"TERMINATED": 4}
    assert set(tiny_search.best) == {"split=0.5"}
    best = tiny_search.best["split=0.5"]
    assert 0.0 <= best["val_exact_match"] <= 1.0 and "test_exact_match" in best
    trials = load_trials(tiny_search.experiment_dir)
    assert len(trials) == 4 and all(t.history for t in trials)


def test_optuna_study_holds_intermediate_values_and_warm_start_first(tiny_search):
    exp = tiny_search.experiment_dir
    trials = _study_trials(exp, "tiny[split=0.5]")
    assert len(trials) == 4
    # optuna-dashboard shows the metric's name, not "Objective 0"
    study = optuna.load_study(study_name="tiny[split=0.5]", storage=open_study_storage(exp))
    assert study.metric_names == ["val_exact_match"]
    assert all(t.state in (TrialState.COMPLETE, TrialState.PRUNED) for t in trials)
    tune_ids = {t.user_attrs[TUNE_ID_ATTR] for t in trials}
    assert tune_ids == {t.trial_id for t in load_trials(exp)}
    # the space's warm-start point (the seed recipe) is the first trial
    assert trials[0].params["extra_layers"] == 1 and trials[0].params["lr"] == pytest.approx(0.004)
    by_id = {t.trial_id: t for t in load_trials(exp)}
    for t in trials:
        history = by_id[t.user_attrs[TUNE_ID_ATTR]].history
        assert sorted(t.intermediate_values) == [r["epoch"] for r in history]
        if t.state == TrialState.COMPLETE:
            # the value told is the best validation metric, not the last epoch's
            assert t.value == pytest.approx(max(r["val_exact_match"] for r in history))
        else:
            assert len(history) < SHRINK["epochs"]


def test_report_has_best_per_split_table(tiny_search):
    path = write_report([tiny_search.experiment_dir])
    text = path.read_text()
    assert "| split | val exact match | test exact match |" in text
    assert "| 0.5 |" in text and "tiny" in text


def test_existing_experiment_name_is_refused(tiny_search):
    with pytest.raises(SearchError, match="already holds an experiment"):
        run_search("arith-text2text-addsub", SearchOptions(storage_path=str(tiny_search.experiment_dir.parent),
                                                           name="tiny"))


def test_trial_folders_hold_tunes_results_and_no_tensorboard_files_unless_asked(tiny_search, tmp_path):
    trials = sorted(tiny_search.experiment_dir.glob("trial_*"))
    assert len(trials) == 4
    for trial in trials:
        assert (trial / "result.json").is_file() and (trial / "progress.csv").is_file()
        assert not list(trial.glob("events.out.tfevents*"))
    outcome = run_search("arith-text2text-addsub",
                         SearchOptions(num_samples=1, storage_path=str(tmp_path), name="tb", verbose=0,
                                       overrides={**SHRINK, "epochs": 1}, tensorboard=True, dashboard=False))
    (trial,) = outcome.experiment_dir.glob("trial_*")
    assert list(trial.glob("events.out.tfevents*")) and (trial / "result.json").is_file()


def test_each_choice_of_a_searched_data_parameter_gets_its_dataset_built_once(ray_session):
    """The space searches ``reverse``, a data parameter: both datasets are built before the trials and put into
    the object store one by one, so a trial fetches the one its configuration names instead of building it."""
    import ray

    space = load_space("arith-text2text-addsub")
    family = get_family(space.family)
    refs = _datasets(space)
    wanted = {family.data_key(space.config(combo, {"reverse": r}))
              for combo in space.factor_combos() for r in space.params["reverse"].values}
    assert set(refs) == wanted and len(wanted) == 2
    for key, ref in refs.items():
        assert isinstance(ref, ray.ObjectRef)
        assert ray.get(ref).reverse == dict(key)["reverse"]


def _wait_for_results(exp_dir: Path, n_rows: int, proc, timeout: float = 120) -> None:
    deadline = time.time() + timeout
    while time.time() < deadline:
        rows = sum(len(p.read_text().splitlines()) for p in exp_dir.glob("trial_*/result.json"))
        if rows >= n_rows:
            return
        assert proc.poll() is None, proc.stdout.read() if proc.stdout else "search ended early"
        time.sleep(0.5)
    raise AssertionError(f"no {n_rows} results in {exp_dir} after {timeout} s")


@pytest.mark.parametrize("sig", [signal.SIGKILL, pytest.param(signal.SIGINT, marks=pytest.mark.slow)],
                         ids=["kill-driver", "ctrl-c"])
def test_interrupted_search_resumes_with_every_trial_once(tmp_path, sig):
    """The driver killed, or stopped with Ctrl-C (slow: Ctrl-C and resume through the command line are also
    in test_budget's resumed search, and in-process below), mid-search; `mathtune resume` runs every trial once."""
    exp = tmp_path / "runs" / "intr"
    # trials long enough (about a second per epoch) that the interrupt lands mid-search on an idle machine
    sets = sum((["--set", f"{k}={v}"] for k, v in {**SHRINK, "epochs": 4, "limit": 2048}.items()), [])
    env = {**os.environ, "RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER": "0"}
    cmd = [MATHTUNE, "search", "arith-text2text-addsub", "--num-samples", "4", "--max-concurrent", "1",
           "--scheduler", "none", "--storage-path", str(tmp_path / "runs"), "--name", "intr", "--no-dashboard",
           "--verbose", "0", "--no-report", *sets]
    proc = subprocess.Popen(cmd, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
                            start_new_session=True)
    try:
        _wait_for_results(exp, 6, proc)  # mid-search: the second trial is running
        # one driver per experiment: while this one runs (held still meanwhile), `mathtune status` names it and a
        # second driver, `mathtune resume`, is refused in one line before it restores or writes anything
        proc.send_signal(signal.SIGSTOP)
        try:
            status, second = (subprocess.Popen([MATHTUNE, *args], env=env, stdout=subprocess.PIPE,
                                               stderr=subprocess.PIPE, text=True)
                              for args in (["status", str(exp)], ["resume", str(exp), "--no-dashboard"]))
            (shown, _), (_, refused) = status.communicate(timeout=120), second.communicate(timeout=120)
        finally:
            proc.send_signal(signal.SIGCONT)
        assert status.returncode == 0 and f"state: running: pid {proc.pid} on " in shown, shown
        assert "trials: " in shown and "running" in shown.split("trials: ")[1].splitlines()[0], shown
        assert second.returncode == 2 and refused.count("\n") == 1 and "Traceback" not in refused, refused
        assert f"another driver is running this experiment (pid {proc.pid} on " in refused, refused
        proc.send_signal(sig)
        proc.wait(timeout=60)
    finally:
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGKILL)
    # a driver that died, even by kill -9, holds nothing: the folder is interrupted, not running
    assert experiment_status(exp)[1] == f"state: interrupted: continue with `mathtune resume {exp}`"
    printed = proc.stdout.read()
    # mathtune's own lines by default: no Tune boxes, no TensorBoard hint, and after Ctrl-C the command that works
    assert "started: extra_layers" in printed and "epoch 1: val_exact_match" in printed, printed[-3000:]
    assert "Configuration for experiment" not in printed and "tensorboard" not in printed.lower()
    assert "Tuner.restore(" not in printed and f"mathtune resume {exp}" in printed
    before = {p.parent.name for p in exp.glob("trial_*/result.json")}
    rows_before = sum(len(p.read_text().splitlines()) for p in exp.glob("trial_*/result.json"))
    assert len(before) >= 1 and rows_before < 16, "the interrupt must land before the search is done"
    resumed = subprocess.run([MATHTUNE, "resume", str(exp), "--no-dashboard"], env=env, capture_output=True,
                             text=True, timeout=300)
    assert resumed.returncode == 0, resumed.stdout[-3000:] + resumed.stderr[-3000:]
    assert "finished after 4 epochs: best val_exact_match" in resumed.stdout, resumed.stdout[-3000:]
    assert "search ended: 4/4 trials done" in resumed.stdout and "(run_trial pid=" not in resumed.stdout
    trials = load_trials(exp)
    assert len(trials) == 4, [t.trial_id for t in trials]
    assert all([r["epoch"] for r in t.history] == [1, 2, 3, 4] for t in trials), \
        {t.trial_id: ([r["epoch"] for r in t.history], t.status) for t in trials}
    study = _study_trials(exp, "intr[split=0.5]")
    assert len(study) == 4
    assert [t.state for t in study] == [TrialState.COMPLETE] * 4
    assert sorted(t.user_attrs[TUNE_ID_ATTR] for t in study) == sorted(t.trial_id for t in trials)
    assert (exp / "report.md").is_file()
    assert experiment_status(exp)[1] == f"state: finished; report: {exp / 'report.md'}"
    print(f"\n{sig.name}: {len(before)} trial(s) had started before the interrupt; after resume 4 trials, "
          f"4 COMPLETE in Optuna, 4 x 4 epochs in the results")


class InterruptOnce(Callback):
    """Ctrl-C to the driver at the n-th trial result, once per test (the marker file outlives Tune's pickle of
    the run configuration, which a resume restores)."""

    def __init__(self, marker: str, after: int):
        self.marker, self.after, self.seen = marker, after, 0

    def on_trial_result(self, iteration, trials, trial, result, **info):
        self.seen += 1
        if self.seen == self.after and not os.path.exists(self.marker):
            Path(self.marker).touch()
            os.kill(os.getpid(), signal.SIGINT)


def test_a_session_without_tunes_result_files_is_read_from_checkpoints_and_resumes_with_them(
        ray_session, tmp_path, monkeypatch):
    """An experiment started before searches named their loggers, resumed by a mathtune that does: the run
    configuration Tune restores holds no result loggers, so that session must not switch off Tune's default ones.
    The epochs a session left out of Tune's files are read from the trials' checkpoints."""
    marker = tmp_path / "interrupted"
    monkeypatch.setattr(engine, "_loggers", lambda record: [InterruptOnce(str(marker), 2)])
    first = run_search("arith-text2text-addsub",
                       SearchOptions(num_samples=3, max_concurrent=1, scheduler="none", storage_path=str(tmp_path),
                                     name="older", verbose=0, dashboard=False, overrides={**SHRINK, "epochs": 3}))
    exp = first.experiment_dir
    assert first.interrupted and marker.exists()
    assert not list(exp.glob("trial_*/result.json")) and not list(exp.glob("trial_*/params.json"))
    (started,) = load_trials(exp)  # from its checkpoints alone
    assert [r["epoch"] for r in started.history] == [1, 2]
    assert all(r["from_checkpoint"] and 0 <= r["val_exact_match"] <= 1 for r in started.history)
    assert started.config["epochs"] == 3 and started.status == "running"
    # checkpoints written before the loop stamped its epochs: their rows' times estimated from Tune's sessions
    # and the trial's start, within seconds of the times the loop stamped
    unstamped = [{k: v for k, v in r.items() if k != "timestamp"} for r in started.history]
    saved = checkpoint_history(started.path)
    estimated = _stamped(unstamped, tune_sessions(exp), started.trial_id, saved.starts)
    assert [abs(e["timestamp"] - r["timestamp"]) < 10 for e, r in zip(estimated, started.history)] == [True, True]
    record = json.loads((exp / "mathtune.json").read_text())
    del record["options"]["named_loggers"]  # as a search started before they were named
    (exp / "mathtune.json").write_text(json.dumps(record))
    monkeypatch.undo()
    resumed = resume_search(exp, dashboard=False)
    assert not resumed.interrupted
    trials = {t.trial_id: t for t in load_trials(exp)}
    assert len(trials) == 3
    assert all([r["epoch"] for r in t.history] == [1, 2, 3] and t.status == "finished" for t in trials.values())
    study = _study_trials(exp, "older[split=0.5]")  # Optuna saw each trial once, each to its end
    assert [t.state for t in study] == [TrialState.COMPLETE] * 3
    assert sorted(t.user_attrs[TUNE_ID_ATTR] for t in study) == sorted(trials)
    assert len(list(exp.glob("trial_*/result.json"))) == 3  # Tune's default loggers wrote this session
    again = trials[started.trial_id].history
    # epoch 1 only in the first session's checkpoints; the epochs the resumed trial trained are Tune's rows
    # (the epoch cut short by Ctrl-C trains again from the checkpoint Tune had registered)
    assert again[0]["from_checkpoint"] and not again[-1].get("from_checkpoint")
    assert again[0]["val_exact_match"] == started.history[0]["val_exact_match"]


def test_stock_optuna_search_runs_the_same_space_for_comparison(ray_session, tmp_path):
    """``--searcher stock`` (Ray's OptunaSearch) runs through the engine, state saving included."""
    overrides = {k: v for k, v in SHRINK.items() if k != "hidden"} | {"epochs": 2}
    outcome = run_search("arith-text2text-addsub",
                         SearchOptions(num_samples=2, storage_path=str(tmp_path), name="stock", verbose=0,
                                       overrides=overrides, searcher="stock"))
    assert outcome.counts == {"TERMINATED": 2}
    study = optuna.load_study(study_name="stock", storage=open_study_storage(tmp_path / 'stock'))
    assert len(study.trials) == 2 and list(tmp_path.glob("stock/searcher-state-*.pkl"))
