"""--confirm-top / --confirm-seeds: a real tiny search whose best trials are retrained with new seeds."""

import json
import re
import statistics
import subprocess

import pytest

from mathtune.analysis import load_trials, write_report
from mathtune.analysis.best import best_config
from mathtune.search import SearchError, SearchOptions, resume_search, run_search
from mathtune.search.status import experiment_status

from .conftest import MATHTUNE, interrupt_after

SHRINK = {"epochs": 2, "limit": 256, "batch_size": 64, "threads": 1, "decoder_hidden": 32}


@pytest.fixture(scope="module")
def confirmed(ray_session, tmp_path_factory):
    storage = tmp_path_factory.mktemp("runs")
    outcome = run_search("arith-text2text-addsub",
                         SearchOptions(num_samples=3, storage_path=str(storage), name="conf", verbose=0,
                                       scheduler="none", overrides=SHRINK, seed=2, confirm_top=2, confirm_seeds=2))
    return outcome


def _best(trial, metric="val_exact_match"):
    return max(r[metric] for r in trial.history)


def test_the_best_trials_are_retrained_with_new_seeds_and_the_best_mean_wins(confirmed):
    exp = confirmed.experiment_dir
    assert not confirmed.interrupted and confirmed.counts == {"TERMINATED": 3}
    searched = load_trials(exp)
    assert len(searched) == 3  # the confirmation runs are not trials of the search itself
    top2 = sorted(searched, key=_best, reverse=True)[:2]
    reruns = load_trials(exp / "confirm")
    assert len(reruns) == 4 and all([r["epoch"] for r in t.history] == [1, 2] for t in reruns)
    summary = json.loads((exp / "confirm.json").read_text())
    assert summary == confirmed.confirmed
    combo = summary["combos"]["split=0.5"]
    cands = combo["candidates"]
    assert [c["trial_id"] for c in cands] == [t.trial_id for t in top2]
    for cand, trial in zip(cands, top2):
        seed = trial.config.get("seed", 0)
        mine = [t for t in reruns if {k: v for k, v in t.config.items() if k != "seed"} ==
                {k: v for k, v in cand["config"].items() if k != "seed"}]
        assert sorted(t.config["seed"] for t in mine) == [seed + 1, seed + 2]
        values = [_best(t) for t in mine]
        assert cand["mean"] == pytest.approx(statistics.fmean(values))
        assert cand["sd"] == pytest.approx(statistics.stdev(values))
        assert cand["single"]["value"] == pytest.approx(_best(trial)) and cand["complete"]
    assert combo["winner"] == max(cands, key=lambda c: c["mean"])["trial_id"]


def test_best_names_the_confirmed_winner_and_the_report_shows_mean_and_sd(confirmed, tmp_path):
    exp = confirmed.experiment_dir
    combo = confirmed.confirmed["combos"]["split=0.5"]
    winner = next(c for c in combo["candidates"] if c["trial_id"] == combo["winner"])
    payload = best_config(exp)
    assert payload["trial_id"] == winner["trial_id"]
    assert payload["confirmed"]["mean"] == pytest.approx(winner["mean"]) and len(payload["confirmed"]["seeds"]) == 2
    done = subprocess.run([MATHTUNE, "best", str(exp), "--out", str(tmp_path / "best.json")], capture_output=True,
                          text=True, timeout=120)
    assert done.returncode == 0, done.stderr
    assert f"best trial {winner['trial_id']}" in done.stdout
    assert f"confirmed winner: val_exact_match {winner['mean']:.4f} +- {winner['sd']:.4f} over 2 new seed(s)" \
        in done.stdout
    text = write_report([exp]).read_text()
    assert "Winners confirmed over new seeds" in text
    assert f"{100 * winner['mean']:.2f} ± {100 * winner['sd']:.2f}" in text and "| winner |" in text


def test_resume_finishes_the_confirmation_from_its_saved_plan_without_new_trials(confirmed):
    exp = confirmed.experiment_dir
    before = json.loads((exp / "confirm.json").read_text())
    (exp / "confirm.json").unlink()  # as if the driver died after the reruns, before writing the outcome
    outcome = resume_search(exp, dashboard=False)
    assert not outcome.interrupted and json.loads((exp / "confirm.json").read_text()) == before
    assert len(load_trials(exp / "confirm")) == 4 and len(load_trials(exp)) == 3


def test_confirmation_state_written_by_others_is_refused(confirmed):
    plan = confirmed.experiment_dir / "confirm" / "plan.json"
    mode = plan.stat().st_mode
    plan.chmod(mode | 0o002)
    try:
        with pytest.raises(SearchError, match="plan.json: writable by every user"):
            resume_search(confirmed.experiment_dir, dashboard=False)
    finally:
        plan.chmod(mode)


def test_bad_confirmation_options_are_one_line_errors(tmp_path):
    with pytest.raises(SearchError, match="--confirm-top must be 0"):
        run_search("arith-text2text-addsub", SearchOptions(storage_path=str(tmp_path), confirm_top=-1))
    with pytest.raises(SearchError, match="--confirm-seeds must be at least 1"):
        run_search("arith-text2text-addsub", SearchOptions(storage_path=str(tmp_path), confirm_top=2,
                                                           confirm_seeds=0))


def test_ctrl_c_during_the_confirmation_is_resumed_not_reported(tmp_path):
    """Ctrl-C while the seed runs train: no winner is announced and no confirm.json written from runs cut short;
    `mathtune resume` trains them to their last epoch and then summarises."""
    import os

    from .test_budget import _replay_space

    space = _replay_space(tmp_path, time_scale=0.15)
    exp = tmp_path / "runs" / "conf-int"
    env = {**os.environ, "RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER": "0"}
    cmd = [MATHTUNE, "search", space, "--num-samples", "2", "--max-concurrent", "2", "--scheduler", "none",
           "--confirm-top", "1", "--confirm-seeds", "2", "--storage-path", str(tmp_path / "runs"),
           "--name", "conf-int", "--no-dashboard", "--no-report"]
    code, first = interrupt_after(cmd, exp, "confirm/trial_*/result.json", 3)
    assert "confirmation interrupted" in first and "confirmed winner" not in first, first[-3000:]
    assert not (exp / "confirm.json").exists()
    status = experiment_status(exp)
    assert status[1] == f"state: interrupted: continue with `mathtune resume {exp}`"
    assert re.fullmatch(r"confirmation: under way, [0-2] of 2 new-seed runs finished and [0-2] more started \(the "
                        r"best 1 trial, 2 new seeds each\)", status[-1]), status
    resumed = subprocess.run([MATHTUNE, "resume", str(exp), "--no-dashboard", "--no-report"], env=env,
                             capture_output=True, text=True, timeout=300)
    assert resumed.returncode == 0, resumed.stdout[-3000:] + resumed.stderr[-3000:]
    assert "confirmed winner" in resumed.stdout, resumed.stdout[-3000:]
    assert "report written" not in resumed.stdout and not (exp / "report.md").exists()
    runs = load_trials(exp / "confirm")
    assert len(runs) == 2 and all(r.epochs_run == 15 for r in runs)
    summary = json.loads((exp / "confirm.json").read_text())
    assert all(c["complete"] for combo in summary["combos"].values() for c in combo["candidates"])
    status = experiment_status(exp)
    assert status[1] == "state: finished" and status[2] == "trials: 2: 2 finished", status
    assert re.fullmatch(r"last epoch reported: \d{4}-\d\d-\d\d \d\d:\d\d:\d\d \(\d+ (s|min) ago\)", status[3]), status
    (winner,) = [c["winner"] for c in summary["combos"].values()]
    assert status[-1].startswith("confirmation: done; the winner: ") and winner in status[-1], status


def test_ctrl_c_during_the_search_does_not_start_the_confirmation(tmp_path):
    """Tune ends a run on Ctrl-C as if its trials had finished; the search must still count as interrupted, so
    the confirmation does not start from a search cut short (it would plan from whatever had run)."""
    from .test_budget import _replay_space

    space = _replay_space(tmp_path, time_scale=0.3)
    exp = tmp_path / "runs" / "search-int"
    cmd = [MATHTUNE, "search", space, "--budget", "10m", "--max-concurrent", "2", "--scheduler", "none",
           "--confirm-top", "1", "--confirm-seeds", "1", "--storage-path", str(tmp_path / "runs"),
           "--name", "search-int", "--no-dashboard", "--no-report"]
    code, printed = interrupt_after(cmd, exp, "trial_*/result.json", 6)
    assert code == 130, printed[-3000:]
    assert "confirming" not in printed and not (exp / "confirm").exists(), printed[-3000:]
    status = experiment_status(exp)
    assert status[1] == f"state: interrupted: continue with `mathtune resume {exp}`", status
    assert status[-2].startswith("budget: ") and " of 10 min spent over 1 session(s)" in status[-2], status
    (running,) = [line for line in status if line.startswith("running trials: ")]  # when the driver stopped
    assert re.fullmatch(r"running trials: \w+ epoch \d+/15( \(best [\d.]+\))?(; \w+ epoch \d+/15( \(best [\d.]+\))?)*",
                        running), running
    assert status[-1] == "confirmation: after the search (the best 1 trial, 1 new seed each)", status
    assert f"interrupted: the running trials were saved at their last epoch; continue with: mathtune resume " \
           f"{exp}" in printed, printed[-3000:]
