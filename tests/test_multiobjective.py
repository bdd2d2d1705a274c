"""Several objectives: the space file, a real tiny search of the shipped two-objective space, the front."""

import json
import subprocess

import optuna
import pytest

from mathtune.analysis import load_trials, write_report
from mathtune.search import SearchError, SearchOptions, run_search
from mathtune.spaces import SpaceError, load_space
from mathtune.analysis.store import open_study_storage

from .conftest import MATHTUNE

SHRINK = {"epochs": 2, "limit": 256, "threads": 1}


def _space(tmp_path, objectives: str, extra: str = "") -> str:
    path = tmp_path / "mo.yaml"
    path.write_text(f"family: arith-text2text\n{extra}objectives:\n{objectives}params:\n"
                    f"  hidden: {{type: choice, values: [16, 32]}}\n")
    return str(path)


def test_objectives_are_parsed_and_bad_ones_are_one_line_errors(tmp_path):
    space = load_space("arith-text2text-small")
    assert space.objectives == [("val_exact_match", "max"), ("num_params", "min")] and space.multi_objective
    assert (space.metric, space.mode) == ("val_exact_match", "max")
    assert not load_space("arith-text2text-addsub").multi_objective
    cases = {
        "  - {metric: val_exact_match, mode: max}\n  - {metric: test_exact_match, mode: max}\n":
            r"objectives\[1\]\.metric: 'test_exact_match' must be a validation metric \(val_\.\.\.\) or a cost",
        "  - {metric: num_params, mode: min}\n  - {metric: val_exact_match, mode: max}\n":
            r"objectives\[0\]\.metric: 'num_params' must be a validation metric",
        "  - {metric: val_exact_match, mode: max}\n": "at least two",
        "  - {metric: val_exact_match, mode: max}\n  - {metric: num_params, mode: smallest}\n":
            r"objectives\[1\]\.mode: 'smallest' must be 'max' or 'min'",
        "  - {metric: val_exact_match, mode: max}\n  - {metric: val_exact_match, mode: min}\n": "already an objective",
    }
    for objectives, message in cases.items():
        with pytest.raises(SpaceError, match=message):
            load_space(_space(tmp_path, objectives))
    with pytest.raises(SpaceError, match="first objective .* is the selection metric"):
        load_space(_space(tmp_path, "  - {metric: val_exact_match, mode: max}\n  - {metric: num_params, mode: min}\n",
                          extra="metric: val_char_acc\n"))


@pytest.fixture(scope="module")
def mo_search(ray_session, tmp_path_factory):
    storage = tmp_path_factory.mktemp("runs")
    return run_search("arith-text2text-small", SearchOptions(num_samples=5, storage_path=str(storage), name="mo",
                                                             verbose=0, scheduler="none", overrides=SHRINK))


def _front(points: dict[str, tuple[float, float]]) -> set[str]:
    """Non-dominated trial ids for (maximise, minimise) pairs, computed here independently."""
    def dominates(a, b):
        return a[0] >= b[0] and a[1] <= b[1] and (a[0] > b[0] or a[1] < b[1])
    return {k for k, v in points.items() if not any(dominates(w, v) for j, w in points.items() if j != k)}


def test_a_search_tells_optuna_both_objectives_of_each_trials_selected_epoch(mo_search):
    exp = mo_search.experiment_dir
    assert mo_search.counts == {"TERMINATED": 5}
    trials = {t.trial_id: t for t in load_trials(exp)}
    study = optuna.load_study(study_name="mo[split=0.5]", storage=open_study_storage(exp))
    assert [d.name for d in study.directions] == ["MAXIMIZE", "MINIMIZE"]
    assert study.metric_names == ["val_exact_match", "num_params"]
    assert len(study.trials) == 5 and all(t.state.name == "COMPLETE" for t in study.trials)
    for t in study.trials:
        history = trials[t.user_attrs["tune_trial_id"]].history
        best = max(history, key=lambda r: r["val_exact_match"])
        assert t.values == [pytest.approx(best["val_exact_match"]), best["num_params"]]
        assert t.user_attrs["selected_epoch"] == best["epoch"]
        assert sorted(k for k in t.user_attrs if k.startswith("epoch_values:")) == ["epoch_values:1", "epoch_values:2"]
    # the warm-start points came first: the shipped configuration and its quarter-width copy
    widths = sorted(trials[t.user_attrs["tune_trial_id"]].config["hidden"] for t in study.trials[:2])
    assert widths == [64, 256]
    sizes = {tid: t.history[0]["num_params"] for tid, t in trials.items()}
    assert max(sizes.values()) > 1_000_000 and min(sizes.values()) < 100_000


def test_best_pareto_and_the_report_list_exactly_the_non_dominated_trials(mo_search, tmp_path):
    exp = mo_search.experiment_dir
    points = {}
    for t in load_trials(exp):
        best = max(t.history, key=lambda r: r["val_exact_match"])
        points[t.trial_id] = (best["val_exact_match"], best["num_params"])
    front = _front(points)
    study = optuna.load_study(study_name="mo[split=0.5]", storage=open_study_storage(exp))
    assert {t.user_attrs["tune_trial_id"] for t in study.best_trials} == front  # Optuna agrees
    done = subprocess.run([MATHTUNE, "best", str(exp), "--pareto", "--out", str(tmp_path / "front.json")],
                          capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr
    listed = {line.split(" trial ")[1].split()[0] for line in done.stdout.splitlines() if "pareto (" in line}
    assert listed == front
    assert {r["trial_id"] for r in json.loads((tmp_path / "front.json").read_text())["front"]} == front
    text = write_report([exp]).read_text()
    assert "### Pareto front" in text and "mo-pareto.png" in text
    assert f"the Pareto front ({len(front)} trials)" in text


def test_pareto_on_a_single_objective_experiment_and_stock_searcher_are_refused(tmp_path, mo_search):
    meta = json.loads((mo_search.experiment_dir / "mathtune.json").read_text())
    single = tmp_path / "single"
    single.mkdir()
    (single / "mathtune.json").write_text(json.dumps({**meta, "objectives": [], "dir": str(single)}))
    done = subprocess.run([MATHTUNE, "best", str(single), "--pareto"], capture_output=True, text=True, timeout=120)
    assert done.returncode != 0 and "--pareto needs a space with several objectives" in done.stderr
    assert "Traceback" not in done.stderr
    with pytest.raises(SearchError, match="--searcher stock: .* several objectives"):
        run_search("arith-text2text-small", SearchOptions(storage_path=str(tmp_path), searcher="stock"))
