"""The two search methods beside TPE + ASHA: rung-level TPE (BOHB-like, ``--sampler rung-tpe``) and Optuna's own
pruner route (``--scheduler optuna``), through the real searcher, real Optuna storages (SQLite and journal) and real replayed searches."""


import optuna
import pytest
import yaml
from optuna.trial import TrialState

from mathtune.analysis import load_trials
from mathtune.search import SearchError, SearchOptions, run_search
from mathtune.search.engine import asha_rungs
from mathtune.search.searcher import FactorOptunaSearch, close_storages, study_name_for
from mathtune.spaces.loader import load_space

from .curve_tables import curve_table
from mathtune.analysis.store import open_study_storage

EPOCHS = 8


def test_asha_rungs_cover_every_bracket():
    assert asha_rungs(60, 2, 3) == [2, 6, 18, 54, 60]
    assert asha_rungs(60, 2, 3, brackets=3) == [2, 6, 18, 54, 60]  # later brackets start on the same ladder
    assert asha_rungs(20, 1, 2, brackets=2) == [1, 2, 4, 8, 16, 20]
    assert asha_rungs(8, 10, 3) == [8]


def _history_space(tmp_path):
    """hidden 8 ran to the end twice and finished low; hidden 64 was stopped at epoch 2 but led there."""
    points = [{"hidden": h, "lr": lr} for h, lr in ((8, 0.001), (8, 0.003), (64, 0.001), (64, 0.003), (16, 0.001),
                                                   (32, 0.001), (16, 0.003))]
    spec = {"family": "arith-text2text", "metric": "val_exact_match", "mode": "max", "factors": {"split": [0.5]},
            "params": {"hidden": {"type": "choice", "values": [8, 16, 32, 64]},
                       "lr": {"type": "logfloat", "low": 1e-4, "high": 1e-2}},
            "constants": {"ops": "+-", "epochs": EPOCHS}, "points_to_evaluate": points}
    path = tmp_path / "history.yaml"
    path.write_text(yaml.safe_dump(spec, sort_keys=False))
    return load_space(path)


def _searcher_with_history(tmp_path, sampler: str, name: str) -> FactorOptunaSearch:
    space = _history_space(tmp_path)
    searcher = FactorOptunaSearch(space, storage=f"sqlite:///{tmp_path / (name + '.db')}", study_name=name, seed=0,
                                  n_startup_trials=2, sampler=sampler, rungs=asha_rungs(EPOCHS, 2, 3))
    for i in range(len(space.points_to_evaluate)):  # what Tune would report for each warm-start point
        config = searcher.suggest(f"t{i}")
        first = 0.5 if config["hidden"] == 64 else 0.2
        last = EPOCHS if config["hidden"] == 8 else 2
        for epoch in range(1, last + 1):
            value = 0.3 if epoch > 2 else first * epoch / 2
            searcher.on_trial_result(f"t{i}", {"val_exact_match": value, "epoch": epoch})
        searcher.on_trial_complete(f"t{i}", {"val_exact_match": value, "epoch": last, "config": config})
    return searcher


def _proposed_hidden(searcher: FactorOptunaSearch, n: int = 12) -> list[int]:
    hidden = []
    for i in range(n):
        config = searcher.suggest(f"new{i}")
        hidden.append(config["hidden"])
        searcher.on_trial_complete(f"new{i}", error=True)  # not run: the history stays the same
    return hidden


def test_rung_tpe_learns_from_stopped_trials(tmp_path):
    """Plain TPE ranks every stopped trial below every finished one, so it follows the two finished hidden-8
    trials; rung-level TPE compares all trials at epoch 2 (the highest rung with enough of them), where the
    stopped hidden-64 trials led, and proposes hidden 64."""
    try:
        rung = _searcher_with_history(tmp_path, "rung-tpe", "rung")
        study = rung.studies()[0]
        at, obs = rung.rung_observations(study)
        assert at == 2  # epoch 8: two finished trials, fewer than the 3 the model needs (2 parameters + 1)
        assert sorted((t.params["hidden"], round(v, 3)) for t, v in obs) == \
            [(8, 0.2), (8, 0.2), (16, 0.2), (16, 0.2), (32, 0.2), (64, 0.5), (64, 0.5)]
        rung_hidden = _proposed_hidden(rung)
        plain_hidden = _proposed_hidden(_searcher_with_history(tmp_path, "tpe", "plain"))
        assert rung_hidden.count(64) >= 8, rung_hidden
        assert rung_hidden.count(64) > plain_hidden.count(64), (rung_hidden, plain_hidden)
        assert plain_hidden.count(8) > rung_hidden.count(8)
        # the proposals are recorded in the real study as ordinary trials, not in the model's scratch study
        asked = [t for t in study.get_trials(deepcopy=False) if t.number >= 7]
        assert [t.params["hidden"] for t in asked if "duplicate_of" not in t.user_attrs] == rung_hidden
    finally:
        close_storages()


def _separating(hidden: int, lr: float) -> list[float]:
    top = {8: 0.3, 16: 0.5, 32: 0.7, 64: 0.9}[hidden] + (0.05 if lr == 0.003 else 0.0)
    return [top * (1 - 0.5 ** epoch) for epoch in range(1, EPOCHS + 1)]


@pytest.fixture(scope="module")
def table(tmp_path_factory):
    """Eight configurations whose curves separate from epoch 1 (no late bloomer): a pruner has work to do."""
    tmp = tmp_path_factory.mktemp("methods")
    return curve_table(tmp, "curves", _separating, hiddens=[8, 16, 32, 64], lrs=[0.001, 0.003], time_scale=0.01), tmp


def test_optuna_pruner_stops_trials_and_the_study_says_so(ray_session, table, capsys):
    space, tmp = table
    outcome = run_search(str(space), SearchOptions(num_samples=8, sampler="grid", scheduler="optuna", max_concurrent=1,
                                                   seed=3, storage_path=str(tmp), name="optuna", verbose=0,
                                                   dashboard=False))
    trials = load_trials(outcome.experiment_dir)
    stopped = [t for t in trials if t.epochs_run < EPOCHS]
    assert len(trials) == 8 and stopped, [t.epochs_run for t in trials]
    assert "stopped by Optuna's pruner" in capsys.readouterr().out
    # the best configuration is never pruned (Hyperband keeps the top of every rung)
    assert outcome.best["split=0.5"]["val_exact_match"] == pytest.approx(0.95 * (1 - 0.5 ** EPOCHS))
    study = optuna.load_study(study_name=study_name_for("optuna", {"split": 0.5}),
                              storage=open_study_storage(outcome.experiment_dir))
    states = {t.user_attrs["tune_trial_id"]: t for t in study.trials}
    for trial in trials:  # each stopped trial is PRUNED with every epoch it ran, a finished one COMPLETE
        frozen = states[trial.trial_id]
        assert frozen.state == (TrialState.PRUNED if trial.epochs_run < EPOCHS else TrialState.COMPLETE)
        assert max(frozen.intermediate_values) == trial.epochs_run
    # the pruner's own bookkeeping (Successive Halving's rungs) is in the study, where Optuna's tools read it
    assert any(k.startswith("completed_rung_") for t in study.trials for k in t.system_attrs)


def test_method_options_are_checked(tmp_path):
    for options, message in ((dict(scheduler="optuna", asha={"reduction_factor": 2.5}), "whole reduction factor"),
                             (dict(scheduler="optuna", searcher="stock"), "need mathtune's searcher"),
                             (dict(scheduler="hyperband"), "must be asha, optuna or none"),
                             (dict(sampler="bohb"), "must be tpe, rung-tpe, random or grid")):
        with pytest.raises(SearchError, match=message):
            run_search("arith-text2text-addsub", SearchOptions(storage_path=str(tmp_path), **options))
    with pytest.raises(SearchError, match="rung-tpe models one objective"):
        run_search("arith-text2text-small", SearchOptions(sampler="rung-tpe", storage_path=str(tmp_path)))
