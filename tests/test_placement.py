"""Placement on a joined cluster: per-trial CPUs and fractional GPUs reach Tune, two trials share one GPU,
and the Optuna studies live in any SQLAlchemy storage (here a second SQLite file outside the experiment)."""

import json
from pathlib import Path

import optuna
import pytest
from optuna.trial import TrialState

from mathtune.search.searcher import TUNE_ID_ATTR

from . import cluster_scenarios


@pytest.fixture(scope="module")
def placed(tmp_path_factory):
    """`mathtune search SPACE --address <cluster> --cpus-per-trial 1` where SPACE asks for 2 CPUs and 0.5 GPU
    per trial, on a cluster whose only worker node has 2 CPUs and 1 GPU (the head has no CPU); a local Ray
    would have no GPU to give."""
    return cluster_scenarios.run("placement", tmp_path_factory.mktemp("placement"))


def test_trial_resources_from_space_file_and_command_line_reach_tune(placed):
    from ray.tune import ExperimentAnalysis

    assert placed["rc"] == 0, placed["output"]
    exp = Path(placed["experiment"])
    analysis = ExperimentAnalysis(str(exp))
    assert len(analysis.trials) == 2
    for trial in analysis.trials:
        assert trial.status == "TERMINATED"
        # GPU from the space file, CPU from --cpus-per-trial (which overrides the file's 2)
        assert trial.placement_group_factory.required_resources == {"CPU": 1.0, "GPU": 0.5}
    meta = json.loads((exp / "mathtune.json").read_text())
    assert meta["resources"] == {"cpu": 1.0, "gpu": 0.5}
    assert "2 trials, 2 at a time, 1 CPU / 0.5 GPU each" in placed["output"]


def test_two_half_gpu_trials_share_the_one_gpu(placed):
    exp = Path(placed["experiment"])
    spans, pids = [], set()
    for trial_dir in sorted(exp.glob("trial_*")):
        rows = [json.loads(line) for line in (trial_dir / "result.json").read_text().splitlines() if line.strip()]
        spans.append((rows[0]["timestamp"] - rows[0]["time_total_s"], rows[-1]["timestamp"]))
        pids.add(rows[0]["pid"])
    (start_a, end_a), (start_b, end_b) = spans
    assert len(pids) == 2
    assert start_a <= end_b and start_b <= end_a, f"the two trials did not overlap in time: {spans}"
    print(f"\ntwo 0.5-GPU trials ran side by side on one GPU node: spans {[(round(a), b) for a, b in spans]}")


def test_address_joins_the_cluster_and_optuna_storage_is_the_given_url(placed):
    exp = Path(placed["experiment"])
    meta = json.loads((exp / "mathtune.json").read_text())
    assert meta["options"]["address"].startswith("127.0.0.1:")
    assert meta["optuna_storage"] == placed["optuna_storage"]
    assert not any((exp / f).exists() for f in ("optuna.db", "optuna.journal"))  # nothing in the experiment folder
    study = optuna.load_study(study_name="placement[split=0.5]", storage=placed["optuna_storage"])
    assert [t.state for t in study.trials] == [TrialState.COMPLETE] * 2
    tune_ids = {json.loads(line)["trial_id"] for p in exp.glob("trial_*/result.json")
                for line in p.read_text().splitlines() if line.strip()}
    assert {t.user_attrs[TUNE_ID_ATTR] for t in study.trials} == tune_ids
    print(f"\nstudies in {placed['optuna_storage']}; search {placed['wall_s']} s; "
          f"{placed['leftover_processes_killed']} leftover process(es)")
