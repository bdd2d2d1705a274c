"""Real faults: a worker node dies mid-search; a trial raises; the search finishes with every trial counted.

(A driver killed mid-search and finished with `mathtune resume` is tested in test_search.py.)
"""

import json
from pathlib import Path

import optuna
import pytest
from optuna.trial import TrialState

from mathtune.analysis import load_trials, write_report
from mathtune.search import SearchOptions, run_search
from mathtune.search.searcher import TUNE_ID_ATTR
from mathtune.analysis.store import open_study_storage

from . import cluster_scenarios


def _raw_rows(trial_dir: Path) -> list[dict]:
    return [json.loads(line) for line in (trial_dir / "result.json").read_text().splitlines() if line.strip()]


def test_search_survives_losing_a_worker_node(tmp_path):
    """3 trials on 2 one-CPU worker nodes (head: no CPU); the node running a trial dies after its epoch 1-2."""
    from ray.tune import ExperimentAnalysis

    result = cluster_scenarios.run("node-loss", tmp_path)
    assert result["rc"] == 0, result["output"]
    exp, epochs, killed = Path(result["experiment"]), result["epochs"], result["killed"]
    assert killed and 1 <= killed["epochs_before"] <= epochs - 3

    analysis = ExperimentAnalysis(str(exp))
    status = {t.trial_id: t.status for t in analysis.trials}
    failures = {t.trial_id: t.num_failures for t in analysis.trials}
    assert status == {t: "TERMINATED" for t in status} and len(status) == 3

    finished = restored = from_scratch = restart_epoch = 0
    for trial_dir in sorted(exp.glob("trial_*")):
        rows = _raw_rows(trial_dir)
        trial_id = rows[0]["trial_id"]
        seen = [r["epoch"] for r in rows]
        assert sorted(set(seen)) == list(range(1, epochs + 1)), (trial_id, seen)  # every epoch, none missing
        finished += 1
        restarts = [r for r in rows if r["iterations_since_restore"] == 1 and r["epoch"] > 1]
        restored += bool(restarts)
        from_scratch += seen.count(1) > 1
        if trial_id == killed["trial_id"]:
            assert failures[trial_id] >= 1
            # From its last checkpoint: the epoch after the last one the killed process got to the driver. That
            # can be later than the scenario saw: an epoch may land between its look and the kill.
            reached = max(r["epoch"] for r in rows if r["pid"] == killed["pid"])
            assert reached >= killed["epochs_before"]
            assert restarts and restarts[0]["epoch"] <= reached + 1
            assert restarts[0]["pid"] != killed["pid"]
            restart_epoch = restarts[0]["epoch"]
        else:
            assert failures[trial_id] == 0 and not restarts
    assert (finished, restored, from_scratch) == (3, 1, 0)

    study = optuna.load_study(study_name="nodeloss[split=0.5]", storage=open_study_storage(exp))
    assert [t.state for t in study.trials] == [TrialState.COMPLETE] * 3  # each trial told exactly once
    assert sorted(t.user_attrs[TUNE_ID_ATTR] for t in study.trials) == sorted(status)
    assert "[mathtune] trials: 3 terminated" in result["output"]
    print(f"\nnode loss after {killed['after_s']} s (trial {killed['trial_id']} at epoch {killed['epochs_before']}): "
          f"{len(status)} trials, {finished} finished all {epochs} epochs, {restored} retried from its checkpoint "
          f"(resumed at epoch {restart_epoch}), {from_scratch} restarted from scratch, "
          f"{sum(failures.values())} failure(s) absorbed; search {result['wall_s']} s; "
          f"{result['leftover_processes_killed']} leftover process(es)")


ERROR_SPACE = """family: arith-text2text
description: one trial asks for a GPU this machine does not have (its trial raises), one runs on the CPU
metric: val_exact_match
mode: max
params:
  device: {type: choice, values: [cuda, cpu]}
constants: {ops: "+-", epochs: 2, limit: 256, batch_size: 64, threads: 1, hidden: 32, decoder_hidden: 32}
points_to_evaluate:
  - {device: cuda}
  - {device: cpu}
"""


def test_a_trial_that_raises_ends_errored_and_the_search_goes_on(ray_session, tmp_path):
    """The trial fails inside the trainable (device: cuda on a CPU-only torch raises); it is retried, then
    marked ERROR and FAIL in Optuna, while the other trial finishes and the report is written."""
    import torch

    if torch.cuda.is_available():
        pytest.skip("this machine has a GPU: device=cuda does not fail here")
    space = tmp_path / "errors.yaml"
    space.write_text(ERROR_SPACE)
    outcome = run_search(space, SearchOptions(num_samples=2, max_failures=1, scheduler="none", seed=0, verbose=0,
                                              storage_path=str(tmp_path / "runs"), name="errors", dashboard=False))
    assert outcome.counts == {"ERROR": 1, "TERMINATED": 1}
    exp = outcome.experiment_dir
    errored = [d for d in exp.glob("trial_*") if (d / "error.txt").is_file()]
    assert len(errored) == 1
    error_text = (errored[0] / "error.txt").read_text()
    assert "device: cuda was asked for but torch sees no GPU" in error_text
    assert error_text.count("Failure #") == 2  # the first attempt and its one retry
    trials = {t.trial_id: t for t in load_trials(exp)}
    assert sum(t.finished for t in trials.values()) == 1
    study = optuna.load_study(study_name="errors", storage=open_study_storage(exp))
    states = {t.params["device"]: t.state for t in study.trials}
    assert states == {"cuda": TrialState.FAIL, "cpu": TrialState.COMPLETE}
    report = write_report([exp])
    assert report.is_file()
    print(f"\nerrored trial: {outcome.counts}, Optuna {sorted(s.name for s in states.values())}")
