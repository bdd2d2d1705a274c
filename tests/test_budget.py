"""``--budget``: a wall-clock budget ends a real search, no trial starts that cannot finish, and a resumed
search keeps counting. Trials replay the recorded table ``bench/results/replay-table.parquet`` (the real engine,
searcher, ASHA and Tune; each epoch sleeps a fixed share of its recorded time)."""

import json
import os
import re
import signal
import subprocess
import time
from pathlib import Path

import pytest
import yaml
from ray.tune.search import Searcher

from mathtune.analysis import load_tables, load_trials
from mathtune.analysis.found import best_so_far
from mathtune.analysis.store import tune_sessions
from mathtune.search import SearchError, SearchOptions, run_search
from mathtune.search.budget import BudgetError, BudgetGate, format_budget, parse_duration

from .conftest import MATHTUNE, ROOT, interrupt_after

TABLE = ROOT / "bench" / "results" / "replay-table.parquet"


def _replay_space(tmp_path: Path, *, time_scale: float) -> str:
    """The table's own space, replayed: 15-epoch trials whose epochs sleep ``time_scale`` x their recorded s."""
    import pyarrow.parquet as pq

    meta = json.loads(pq.read_schema(TABLE).metadata[b"mathtune_replay"])
    spec = yaml.safe_load(meta["space"])
    spec["family"] = "replay-arith-text2text"
    spec["constants"] = {**spec["constants"], "table": str(TABLE), "time_scale": time_scale}
    spec.pop("points_to_evaluate", None)
    path = tmp_path / "replay.yaml"
    path.write_text(yaml.safe_dump(spec, sort_keys=False))
    return str(path)


def _ended_by_budget(printed: str, exp: Path, budget: float) -> None:
    """The budget ended the search: it ran out (the running trials stopped), or the gate closed because less
    was left than a full trial needs and the running trials finished; it never overran by more than the
    seconds it takes to stop them."""
    stored = json.loads((exp / "budget.json").read_text())
    assert stored["budget_s"] == budget and stored["spent_s"] <= budget + 10.0, stored
    closed = re.search(r"no new trials: (\d+) s of the budget left, a full trial needs about (\d+) s", printed)
    if stored["exhausted"]:
        assert "budget spent" in printed, printed[-3000:]
    else:
        assert closed and int(closed[1]) <= int(closed[2]), printed[-3000:]  # left < need, each rounded
        assert stored["spent_s"] >= budget - int(closed[2]) - 1


def test_durations_read_as_seconds_and_bad_ones_are_refused():
    assert parse_duration("8h") == 8 * 3600
    assert parse_duration("1h30m") == 5400 and parse_duration("90min") == 5400 and parse_duration("2.5h") == 9000
    assert parse_duration("3600") == 3600 and parse_duration("45s") == 45
    for bad in ("8x", "", "h", "-1h", "0"):
        with pytest.raises(BudgetError, match="--budget"):
            parse_duration(bad)
    assert format_budget(8 * 3600) == "8 h 00 min" and format_budget(5400) == "1 h 30 min" and format_budget(42) == "42 s"


def test_budget_ends_a_search_without_a_trial_cap(ray_session, tmp_path, capsys):
    """No --num-samples: the budget alone ends the search. Either the gate closed (less left than a full trial
    needs) and the running trials finished, or the budget ran out and they stopped at an epoch."""
    space = _replay_space(tmp_path, time_scale=0.1)  # about 0.13 s per epoch, 2 s per 15-epoch trial
    budget = 25.0
    t0 = time.monotonic()
    outcome = run_search(space, SearchOptions(num_samples=-1, budget=budget, storage_path=str(tmp_path),
                                              name="budgeted", verbose=0, max_concurrent=2, scheduler="none"))
    wall = time.monotonic() - t0
    printed = capsys.readouterr().out
    stored = json.loads((outcome.experiment_dir / "budget.json").read_text())
    assert stored["sessions"] == 1
    assert wall < budget + 30
    _ended_by_budget(printed, outcome.experiment_dir, budget)
    assert not outcome.interrupted and set(outcome.counts) == {"TERMINATED"}
    trials = load_trials(outcome.experiment_dir)
    assert 3 <= len(trials) < 30, len(trials)
    # every trial ran all 15 epochs but at most the two that were running when the budget ran out
    assert sum(t.epochs_run < 15 for t in trials) <= (2 if stored["exhausted"] else 0)
    record = json.loads((outcome.experiment_dir / "mathtune.json").read_text())
    assert record["options"]["budget"] == budget and record["options"]["num_samples"] == -1


def test_a_trial_cap_without_budget_must_be_positive(tmp_path):
    with pytest.raises(SearchError, match=r"--num-samples -1 \(no trial cap\) needs --budget"):
        run_search("arith-text2text-addsub", SearchOptions(num_samples=-1, storage_path=str(tmp_path)))
    run = subprocess.run([MATHTUNE, "search", "arith-text2text-addsub", "--budget", "8x", "--storage-path",
                          str(tmp_path)], capture_output=True, text=True)
    assert run.returncode == 2 and "Traceback" not in run.stderr
    assert "--budget '8x': expected a duration" in run.stderr and len(run.stderr.strip().splitlines()) == 1


def test_resumed_search_keeps_counting_its_budget(tmp_path):
    """Ctrl-C mid-search, then `mathtune resume`: the time spent before counts, the time between does not,
    and the search ends when the total reaches the budget."""
    space = _replay_space(tmp_path, time_scale=0.15)
    exp = tmp_path / "runs" / "budget-resume"
    env = {**os.environ, "RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER": "0"}
    cmd = [MATHTUNE, "search", space, "--budget", "30s", "--max-concurrent", "2", "--scheduler", "none",
           "--storage-path", str(tmp_path / "runs"), "--name", "budget-resume", "--no-dashboard", "--no-report"]
    _, first = interrupt_after(cmd, exp, "trial_*/result.json", 20, timeout=120)
    assert "budget 30 s wall-clock" in first, first[-2000:]
    # mathtune's own lines after Ctrl-C: no Tune boxes, no TensorBoard hint, and the command that resumes
    assert "started:" in first and "Configuration for experiment" not in first and "tensorboard" not in first.lower()
    assert "Tuner.restore(" not in first and f"mathtune resume {exp}" in first
    before = json.loads((exp / "budget.json").read_text())
    assert 3 <= before["spent_s"] < 30, before
    time.sleep(5)  # time between sessions does not count
    t0 = time.monotonic()
    resumed = subprocess.run([MATHTUNE, "resume", str(exp), "--no-dashboard"], env=env, capture_output=True,
                             text=True, timeout=300)
    wall = time.monotonic() - t0
    assert resumed.returncode == 0, resumed.stdout[-3000:] + resumed.stderr[-3000:]
    assert f"{before['spent_s']:.0f} s of 30 s spent before this resume" in resumed.stdout, resumed.stdout[-3000:]
    _ended_by_budget(resumed.stdout, exp, 30.0)
    after = json.loads((exp / "budget.json").read_text())
    assert after["sessions"] == 2 and after["spent_s"] > before["spent_s"] + 1
    # this session ran what was left, not a fresh 30 s (Ray's start-up before the restore is not counted)
    assert wall < 30 - before["spent_s"] + 40, (wall, before)
    report = (exp / "report.md").read_text()
    assert "budget 30 s wall-clock" in report
    # the report opens with what the search found, the budget spent beside it; the reference tables follow
    assert report.index("What the search found") < report.index("Versus the reference")
    assert f"Budget: {after['spent_s']:.0f} s of 30 s wall-clock spent" in report
    assert "none ships for this setting" in report and "budget-resume-found.png" in report
    # best so far against the time the search ran: its sessions' time, not the seconds between them
    curve = best_so_far(load_tables(exp).epochs, "val_exact_match", "max", [s for s, _ in tune_sessions(exp)])
    assert 0.5 * after["spent_s"] < curve["hours"].max() * 3600 <= after["spent_s"], (curve, after)
    # the driver recorded its commit, CPU and versions at the start and at the resume
    sessions = json.loads((exp / "provenance.json").read_text())["sessions"]
    assert len(sessions) == 2 and all(s["cpu"] and s["torch"] and s["ray"] for s in sessions)


def test_a_resumed_searchs_budget_file_never_goes_back_and_a_killed_driver_keeps_its_time(tmp_path):
    """After a restore Tune uploads its staging copies of the folder's top-level files at every snapshot: the
    budget file must not go back to the count the session began with (``mathtune status`` reads it, and it is
    all a driver killed with SIGKILL leaves of the session's time)."""
    space = _replay_space(tmp_path, time_scale=0.15)
    exp = tmp_path / "runs" / "budget-kill"
    env = {**os.environ, "RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER": "0"}
    cmd = [MATHTUNE, "search", space, "--budget", "5m", "--max-concurrent", "2", "--scheduler", "none",
           "--storage-path", str(tmp_path / "runs"), "--name", "budget-kill", "--no-dashboard", "--no-report"]
    interrupt_after(cmd, exp, "trial_*/result.json", 10, timeout=120)
    path = exp / "budget.json"
    before = json.loads(path.read_text())["spent_s"]
    proc = subprocess.Popen([MATHTUNE, "resume", str(exp), "--no-dashboard", "--no-report"], env=env,
                            stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, start_new_session=True)
    seen: list[float] = []
    try:
        deadline = time.monotonic() + 120
        while time.monotonic() < deadline and not (seen and seen[-1] > before + 15):  # 15 s of this session
            assert proc.poll() is None, proc.stdout.read()[-3000:]
            seen.append(json.loads(path.read_text())["spent_s"])  # written whole (atomic replace)
            time.sleep(0.1)
    finally:
        os.killpg(proc.pid, signal.SIGKILL)
        proc.wait(timeout=60)
    assert seen and seen[-1] > before + 15, (before, seen[-5:])
    back = [(a, b) for a, b in zip(seen, seen[1:]) if b < a]
    assert not back, f"{len(back)} of {len(seen)} reads went back, e.g. {back[:3]} (the session began at {before})"
    assert json.loads(path.read_text())["spent_s"] >= seen[-1]  # the session's time outlives the killed driver


def _counts_on(proc, path: Path, exp: Path, seconds: float, deadline: float, started=None) -> list[float]:
    """Reads of ``budget.json`` while the confirmation's runs train, until it has counted ``seconds`` more;
    ``started()`` is called as soon as a confirmation run has reported."""
    while time.monotonic() < deadline and not list(exp.glob("confirm/trial_*/result.json")):
        assert proc.poll() is None, proc.stdout.read()[-3000:]
        time.sleep(0.2)
    if started is not None:
        started()
    start, seen = json.loads(path.read_text())["spent_s"], []
    while time.monotonic() < deadline and not (seen and seen[-1] > start + seconds):
        assert proc.poll() is None, proc.stdout.read()[-3000:]
        seen.append(json.loads(path.read_text())["spent_s"])
        time.sleep(0.2)
    # (a clock saved only at the end moves once the confirmation is over: then confirm.json is there already)
    assert not (exp / "confirm.json").exists(), f"the budget file stood still while the runs trained: {seen[-5:]}"
    assert seen and seen[-1] > start + seconds, (start, seen[-5:])
    return seen


def test_the_confirmation_keeps_the_budget_file_counting_and_a_killed_driver_keeps_its_time(tmp_path):
    """The confirmation runs on the search's clock: ``budget.json`` counts on while its runs train (it is all a
    driver killed with SIGKILL leaves of the session's time), a resumed confirmation too, and ``mathtune status``
    counts its runs from the plan, not from the runs Tune has started. A resumed driver stopped with Ctrl-C prints
    the command that resumes a mathtune experiment, not Tune's own hint."""
    from mathtune.search.status import experiment_status

    space = _replay_space(tmp_path, time_scale=0.6)  # about 15 s a run
    exp = tmp_path / "runs" / "confirm-kill"
    path = exp / "budget.json"
    env = {**os.environ, "RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER": "0"}
    cmd = [MATHTUNE, "search", space, "--num-samples", "1", "--budget", "10m", "--max-concurrent", "1",
           "--scheduler", "none", "--confirm-top", "1", "--confirm-seeds", "2", "--storage-path",
           str(tmp_path / "runs"), "--name", "confirm-kill", "--no-dashboard", "--no-report"]
    statuses: list[str] = []
    for session in (1, 2):
        proc = subprocess.Popen(cmd if session == 1 else [MATHTUNE, "resume", str(exp), "--no-dashboard",
                                                          "--no-report"],
                                env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
                                start_new_session=True)
        try:
            seen = _counts_on(proc, path, exp, 6, time.monotonic() + 240,
                              started=lambda: statuses.append(experiment_status(exp)[-1]))
            if session == 2:  # Ctrl-C this time: the resumed driver prints mathtune's lines, not Tune's hints
                proc.send_signal(signal.SIGINT)
                printed = proc.communicate(timeout=90)[0]
                assert proc.returncode == 130 and "Tuner.restore(" not in printed, printed[-3000:]
                assert f"confirmation interrupted; continue it with: mathtune resume {exp}" in printed
                assert re.search(r"search interrupted: [01]/2 trials done, 1 interrupted \(saved at their last "
                                 r"epoch\), 0 running, [01] pending", printed), printed[-3000:]
        finally:
            if proc.poll() is None:
                os.killpg(proc.pid, signal.SIGKILL)
            proc.wait(timeout=60)
        assert json.loads(path.read_text())["spent_s"] >= seen[-1]  # the session's time outlives the driver
    assert json.loads(path.read_text())["sessions"] == 2
    # as the first run began, one run at a time: the first has begun, the second waits
    assert re.fullmatch(r"confirmation: under way, 0 of 2 new-seed runs finished and 1 more started \(the best 1 "
                        r"trial, 2 new seeds each\)", statuses[0]), statuses


def test_budget_keeps_back_what_the_confirmation_needs(ray_session, tmp_path, capsys):
    """With --confirm-top, the search's trials stop early enough that the confirmation fits in the same budget,
    and the clock counts both."""
    space = _replay_space(tmp_path, time_scale=0.1)
    budget = 25.0
    outcome = run_search(space, SearchOptions(num_samples=-1, budget=budget, storage_path=str(tmp_path),
                                              name="reserve", verbose=0, max_concurrent=2, scheduler="none",
                                              confirm_top=1, confirm_seeds=2))
    printed = capsys.readouterr().out
    assert "kept for the confirmation" in printed, printed[-3000:]
    assert outcome.confirmed is not None and (outcome.experiment_dir / "confirm.json").is_file()
    stored = json.loads((outcome.experiment_dir / "budget.json").read_text())
    assert stored["spent_s"] <= budget + 10.0, stored
    confirm = load_trials(outcome.experiment_dir / "confirm")
    assert len(confirm) == 2 and all(t.epochs_run == 15 for t in confirm)


class _Proposals(Searcher):
    """A searcher that proposes nothing of its own: the gate's bookkeeping is what is under test."""

    def suggest(self, trial_id):
        return {}

    def on_trial_complete(self, trial_id, result=None, error=False):
        pass


def _epoch(gate, trial_id, *, epoch, seconds, value, epochs, split=0.5):
    # what Tune hands a searcher: the flattened result, the trial's config under config/
    gate.on_trial_result(trial_id, {"epoch": epoch, "epoch_time_s": seconds, "time_total_s": seconds * epoch + 1.0,
                                    "val_exact_match": value, "config/epochs": epochs, "config/split": split})


def test_confirmation_reserve_follows_the_leaders(tmp_path):
    """Before every factor value has its top K nothing is kept back; then the reserve is the leaders' own
    new-seed runs (their epochs x their seconds per epoch), packed on the slots, and it moves when the leaders
    change."""
    gate = BudgetGate(_Proposals(metric="val_exact_match", mode="max"), tmp_path, epochs=240,
                      confirm=(2, 2), concurrent=2, group_keys=["split"], groups=1)
    _epoch(gate, "a", epoch=1, seconds=10.0, value=0.1, epochs=120)
    assert gate.reserve_s() == 0.0 and gate.confirmation_s() is None  # one trial of the two leaders
    _epoch(gate, "b", epoch=1, seconds=20.0, value=0.3, epochs=240)
    _epoch(gate, "c", epoch=1, seconds=2.0, value=0.2, epochs=120)
    # leaders b (240 x 20 s) and c (120 x 2 s), two seeds each, on two slots: b's runs one per slot, c's after
    assert gate.reserve_s() == pytest.approx(1.0 + 4800.0 + 1.0 + 240.0)
    # a overtakes c: its 120 x 10 s runs replace c's
    _epoch(gate, "a", epoch=2, seconds=10.0, value=0.5, epochs=120)
    assert gate.reserve_s() == pytest.approx(1.0 + 4800.0 + 1.0 + 1200.0)
    # c now leads at 30 s an epoch: leaders c and a, b drops out (120 x 30 s and 120 x 10 s runs)
    _epoch(gate, "c", epoch=2, seconds=30.0, value=0.9, epochs=120)
    assert gate.reserve_s() == pytest.approx(1.0 + 3600.0 + 1.0 + 1200.0)


def test_confirmation_reserve_waits_for_every_factor_value(tmp_path):
    gate = BudgetGate(_Proposals(metric="val_exact_match", mode="max"), tmp_path, epochs=100,
                      confirm=(1, 2), concurrent=2, group_keys=["split"], groups=2)
    _epoch(gate, "a", epoch=1, seconds=5.0, value=0.4, epochs=50, split=0.5)
    assert gate.reserve_s() == 0.0  # split 0.6 has no leader yet
    _epoch(gate, "b", epoch=1, seconds=1.0, value=0.2, epochs=50, split=0.6)
    # a's two runs (250 s) on the slots, then b's two (50 s each): one slot carries 251 + 51
    assert gate.reserve_s() == pytest.approx(251.0 + 51.0)


def test_a_gate_saved_before_it_kept_leaders_reads_them_from_the_folder(ray_session, tmp_path):
    """Resuming an experiment whose saved gate predates the leaders' bookkeeping: the plan comes from
    mathtune.json and the leaders from the trial folders, so the reserve is theirs, not rounds of full trials."""
    outcome = run_search(_replay_space(tmp_path, time_scale=0.01),
                         SearchOptions(num_samples=3, storage_path=str(tmp_path), name="old", verbose=0,
                                       max_concurrent=2, scheduler="none"))
    exp = outcome.experiment_dir
    record = json.loads((exp / "mathtune.json").read_text())
    record["options"].update(confirm_top=1, confirm_seeds=2)
    (exp / "mathtune.json").write_text(json.dumps(record))
    trials = load_trials(exp)
    gate = BudgetGate(_Proposals(metric="val_exact_match", mode="max"), exp, epochs=15)
    for name in ("confirm", "concurrent", "group_keys", "expected_groups", "trials"):
        delattr(gate, name)  # what an older saved gate holds
    gate.set_state({"epoch_s": {}, "startup_s": {}, "setup_s": 0.0, "closed_reason": None})
    assert gate.confirm == (1, 2) and gate.concurrent == 2 and gate.group_keys == ("split",)
    leader = max(trials, key=lambda t: max(r["val_exact_match"] for r in t.history))
    seconds = leader.epochs_planned * gate.epoch_s[leader.trial_id]
    assert gate.reserve_s() == pytest.approx(seconds)  # its two seeds side by side on the two slots
    assert gate.epoch_s[leader.trial_id] == leader.history[-1]["epoch_time_s"]  # its latest epoch's seconds



def test_confirmation_reserve_is_at_most_half_the_budget(tmp_path, capsys):
    """Slow first leaders must not end the search before it searched: the reserve stops at half the budget,
    and the search says the confirmation may run past it."""
    from mathtune.search.budget import BudgetClock

    clock = BudgetClock.start(tmp_path, 3600.0)
    try:
        gate = BudgetGate(_Proposals(metric="val_exact_match", mode="max"), tmp_path, epochs=240,
                          confirm=(1, 2), concurrent=2, group_keys=["split"], groups=1)
        _epoch(gate, "slow", epoch=1, seconds=60.0, value=0.1, epochs=240)  # two 4 h runs
        assert gate.confirmation_s() == pytest.approx(1.0 + 240 * 60.0)
        assert gate.reserve_s() == pytest.approx(1800.0) and clock.reserve_s == pytest.approx(1800.0)
        printed = capsys.readouterr().out
        assert "follows the leaders" in printed and "may run past the budget" in printed, printed
    finally:
        clock.close()
