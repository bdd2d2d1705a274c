"""Space files: shipped spaces load; every bad input gets one line naming file and key."""

import subprocess

import optuna
import pytest

from mathtune.spaces import SpaceError, load_space, space_names

from .conftest import MATHTUNE

GOOD = """family: arith-text2text
metric: val_exact_match
mode: max
factors: {split: [0.5, 0.25]}
params:
  hidden: {type: choice, values: [32, 64]}
  extra_layers: {type: int, low: 0, high: 2}
  dropout: {type: float, low: 0.0, high: 0.3}
  lr: {type: logfloat, low: 1.0e-4, high: 1.0e-2}
constants: {ops: "+-", epochs: 2}
"""


def test_shipped_spaces_load_and_cover_the_issue_parameters():
    assert {"arith-text2text-addsub", "arith-text2text-mul"} <= set(space_names())
    for name in ("arith-text2text-addsub", "arith-text2text-mul"):
        space = load_space(name)
        assert space.metric.startswith("val_")
        assert {"hidden", "extra_layers", "dropout", "lr", "batch_size"} <= set(space.params)
        assert "split" in space.factors
        assert space.params["extra_layers"].low == 0 and space.params["extra_layers"].high == 2


def test_define_by_run_samples_inside_the_declared_ranges(tmp_path):
    path = tmp_path / "s.yaml"
    path.write_text(GOOD)
    space = load_space(path)
    assert space.factor_combos() == [{"split": 0.5}, {"split": 0.25}]
    study = optuna.create_study(sampler=optuna.samplers.RandomSampler(seed=0))
    for _ in range(20):
        trial = study.ask()
        params = space.suggest(trial)
        assert params["hidden"] in (32, 64) and 0 <= params["extra_layers"] <= 2
        assert 1e-4 <= params["lr"] <= 1e-2 and 0.0 <= params["dropout"] <= 0.3
        config = space.config({"split": 0.25}, params)
        assert config["split"] == 0.25 and config["epochs"] == 2
        study.tell(trial, 0.0)


BAD = [
    ("family: [unclosed", "not valid YAML at line 1"),
    ("- a\n- b", "expected a mapping"),
    ("metric: val_exact_match", "missing key 'family'"),
    ("family: nope", "family: unknown family 'nope'"),
    (GOOD.replace("metric: val_exact_match", "metric: test_exact_match"), "metric: 'test_exact_match' is not a validation metric"),
    (GOOD.replace("mode: max", "mode: up"), "mode: 'up' must be"),
    (GOOD.replace("hidden: {type: choice", "hiden: {type: choice"), "params.hiden: unknown parameter"),
    (GOOD.replace("type: int,", "type: integer,"), "params.extra_layers.type: 'integer' is not one of"),
    (GOOD.replace("low: 0.0, high: 0.3", "low: 0.5, high: 0.3"), "params.dropout: low 0.5 is above high 0.3"),
    (GOOD.replace("low: 1.0e-4", "low: 0"), "params.lr.low"),
    (GOOD.replace("high: 0.3", "high: 3.0"), "params.dropout.high: dropout: 3.0 is above the maximum"),
    (GOOD.replace("values: [32, 64]", "values: []"), "params.hidden.values: expected a non-empty list"),
    (GOOD.replace("values: [32, 64]", "values: [32, big]"), "params.hidden.values: hidden: expected int"),
    (GOOD.replace("epochs: 2", "epochs: -1"), "constants.epochs: epochs: -1 is below the minimum"),
    (GOOD.replace('ops: "+-"', 'ops: "/"'), "constants.ops: ops: '/' is not one of"),
    (GOOD.replace("split: [0.5, 0.25]", "split: [0.5, 1.5]"), "factors.split: split: 1.5 is above the maximum"),
    (GOOD.replace("split: [0.5, 0.25]", "split: 0.5"), "factors.split: expected a non-empty list"),
    (GOOD + "params2: {}\n", "unknown key 'params2'"),
    (GOOD + "resources: {cpus: -1}\n", "resources.cpus: expected a number >= 0"),
    (GOOD + "resources: {tpus: 1}\n", "resources.tpus: unknown"),
    (GOOD + "scheduler: {grace_period: 0}\n", "scheduler.grace_period: expected a number >= 1"),
    (GOOD + "points_to_evaluate: [{hidden: 128}]\n", "points_to_evaluate[0].hidden: 128 lies outside the space"),
    (GOOD + "points_to_evaluate: [{epochs: 3}]\n", "points_to_evaluate[0].epochs: not a searched parameter"),
    (GOOD.replace("constants: {", "constants: {hidden: 64, "), "constants.hidden: already given in params"),
    (GOOD.replace("  lr:", "  average_last: {type: choice, values: [0, 3]}\n  lr:"), "average_last: 3 is above epochs (2)"),
]


@pytest.mark.parametrize("text, message", BAD, ids=[m[:40] for _, m in BAD])
def test_bad_space_files_name_file_and_key(tmp_path, text, message):
    path = tmp_path / "bad.yaml"
    path.write_text(text)
    with pytest.raises(SpaceError) as info:
        load_space(path)
    assert str(path) in str(info.value)
    assert message in str(info.value)
    assert "\n" not in str(info.value)


def test_missing_space_file_and_unknown_name():
    with pytest.raises(SpaceError, match="space file not found"):
        load_space("/nonexistent/space.yaml")
    with pytest.raises(SpaceError, match="unknown space 'no-such-space'"):
        load_space("no-such-space")


def test_cli_reports_a_bad_space_in_one_line_without_traceback(tmp_path):
    path = tmp_path / "bad.yaml"
    path.write_text(GOOD.replace("mode: max", "mode: up"))
    proc = subprocess.run([MATHTUNE, "search", str(path), "--storage-path", str(tmp_path / "runs")],
                          capture_output=True, text=True, timeout=120)
    assert proc.returncode == 2
    assert proc.stderr.strip().count("\n") == 0 and "Traceback" not in proc.stderr
    assert proc.stderr.startswith("mathtune: error:") and "mode" in proc.stderr
    assert not (tmp_path / "runs").exists()


def test_a_space_that_could_average_more_epochs_than_a_trial_trains_is_refused_before_it_searches():
    """The t2m spaces search average_last up to 5: fixing epochs below that needs average_last fixed too, said in
    one line when the search is set up rather than a trial the family refuses mid-search."""
    from mathtune.search.engine import apply_overrides

    space = load_space("t2m-lstm")
    assert space.params["average_last"].values == (0, 3, 5) and min(space.params["epochs"].values) >= 5
    with pytest.raises(SpaceError, match=r"^--set: average_last: 5 is above epochs \(4\)"):
        apply_overrides(space, {"epochs": 4})
    assert apply_overrides(space, {"epochs": 4, "average_last": 3}).constants["average_last"] == 3
