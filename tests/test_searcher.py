"""The Optuna searcher against a real SQLite storage: what Optuna is told, and reconciliation on restore."""

import pickle

import optuna
from optuna.trial import TrialState

from mathtune.search.searcher import TUNE_ID_ATTR, FactorOptunaSearch
from mathtune.spaces import load_space

SPACE = load_space("arith-text2text-mul")  # two factor values (split 0.5 and 0.6) and a warm-start point


def _searcher(tmp_path):
    return FactorOptunaSearch(SPACE, storage=f"sqlite:///{tmp_path / 'o.db'}", study_name="s", seed=0)


def _result(epoch, value, config):
    return {"epoch": epoch, "val_exact_match": value, "config": config}


def test_factors_round_robin_and_states_told_faithfully(tmp_path):
    s = _searcher(tmp_path)
    configs = {f"t{i}": s.suggest(f"t{i}") for i in range(4)}
    assert configs["t0"]["split"] == 0.6 and configs["t0"]["hidden"] == 512  # the warm-start point first
    assert sorted(c["split"] for c in configs.values()) == [0.5, 0.5, 0.6, 0.6]
    epochs = SPACE.epochs
    # t0 finishes all epochs with a peak before the end; t1 is stopped early; t2 errors; t3 never reports
    for e, v in [(1, 0.2), (2, 0.7), (epochs, 0.5)]:
        s.on_trial_result("t0", _result(e, v, configs["t0"]))
    s.on_trial_complete("t0", _result(epochs, 0.5, configs["t0"]))
    s.on_trial_result("t1", _result(1, 0.1, configs["t1"]))
    s.on_trial_complete("t1", _result(2, 0.3, configs["t1"]))
    s.on_trial_complete("t2", None, error=True)
    s.on_trial_complete("t0", _result(epochs, 0.5, configs["t0"]))  # a late duplicate is ignored
    by_tune_id = {}
    for split in (0.5, 0.6):
        study = optuna.load_study(study_name=f"s[split={split}]", storage=f"sqlite:///{tmp_path / 'o.db'}")
        by_tune_id.update({t.user_attrs[TUNE_ID_ATTR]: t for t in study.trials})
    assert by_tune_id["t0"].state == TrialState.COMPLETE and by_tune_id["t0"].value == 0.7  # best, not last
    assert by_tune_id["t0"].intermediate_values == {1: 0.2, 2: 0.7, epochs: 0.5}
    assert by_tune_id["t1"].state == TrialState.PRUNED and by_tune_id["t1"].intermediate_values == {1: 0.1, 2: 0.3}
    assert by_tune_id["t2"].state == TrialState.FAIL
    assert by_tune_id["t3"].state == TrialState.RUNNING


def test_restore_adopts_trials_asked_after_the_last_snapshot(tmp_path):
    s = _searcher(tmp_path)
    first = s.suggest("t0")
    snapshot = tmp_path / "state.pkl"
    s.save(str(snapshot))                      # Tune's last snapshot knows t0 only
    lost = s.suggest("t1")                     # asked, then the driver dies before the next snapshot
    s.on_trial_complete("t0", _result(SPACE.epochs, 0.4, first))

    restored = pickle.loads(pickle.dumps(s))   # what Tuner.restore unpickles ...
    restored.restore(str(snapshot))            # ... and the state it restores
    replacement = restored.suggest("t9")       # Tune asks again for the trial it never saw
    assert {k: replacement[k] for k in SPACE.params} == {k: lost[k] for k in SPACE.params}
    assert replacement["split"] == lost["split"]
    restored.on_trial_complete("t0", _result(SPACE.epochs, 0.4, first))  # replayed: no UpdateFinishedTrialError
    restored.on_trial_complete("t9", _result(SPACE.epochs, 0.6, replacement))
    studies = [optuna.load_study(study_name=f"s[split={x}]", storage=f"sqlite:///{tmp_path / 'o.db'}")
               for x in (0.5, 0.6)]
    trials = [t for st in studies for t in st.trials]
    assert len(trials) == 2, "one Optuna trial per Tune trial"
    assert sorted(t.user_attrs[TUNE_ID_ATTR] for t in trials) == ["t0", "t9"]
    assert all(t.state == TrialState.COMPLETE for t in trials)


def test_a_configuration_is_never_run_twice_and_repeats_learn_the_first_outcome(tmp_path):
    """In a 3-point space every suggestion is new until the space is used up; a repeat of a finished trial
    is told its outcome (values, state) and marked, a repeat of a running one is told FAIL."""
    from mathtune.search.searcher import DUPLICATE_ATTR
    from mathtune.spaces.loader import Space

    path = tmp_path / "three.yaml"
    path.write_text("family: arith-text2text\nparams:\n  hidden: {type: choice, values: [8, 16, 32]}\n"
                    "constants: {epochs: 3}\n")
    space = load_space(path)
    assert isinstance(space, Space)
    storage = f"sqlite:///{tmp_path / 'd.db'}"
    s = FactorOptunaSearch(space, storage=storage, study_name="d", seed=0, sampler="random", n_startup_trials=1)
    first = s.suggest("t0")
    s.on_trial_result("t0", _result(1, 0.2, first))
    s.on_trial_result("t0", _result(2, 0.3, first))
    s.on_trial_complete("t0", _result(2, 0.3, first))  # stopped at epoch 2 of 3: PRUNED
    second = s.suggest("t1")                           # t1 stays running
    third = s.suggest("t2")
    assert len({first["hidden"], second["hidden"], third["hidden"]}) == 3
    study = optuna.load_study(study_name="d", storage=storage)
    repeats = [t for t in study.trials if DUPLICATE_ATTR in t.user_attrs]
    assert repeats, "a 3-point space drawn at random repeats within three asks (seed 0)"
    by_number = {t.number: t for t in study.trials}
    for t in repeats:
        original = by_number[t.user_attrs[DUPLICATE_ATTR]]
        assert t.params == original.params and TUNE_ID_ATTR not in t.user_attrs
        if original.user_attrs[TUNE_ID_ATTR] == "t0":
            assert t.state == TrialState.PRUNED and t.intermediate_values == {1: 0.2, 2: 0.3}
        else:
            assert t.state == TrialState.FAIL  # a repeat of a trial still running
    assert {t.user_attrs[TUNE_ID_ATTR] for t in study.trials if TUNE_ID_ATTR in t.user_attrs} == {"t0", "t1", "t2"}
    # the space used up: a fourth trial runs a repeat rather than never starting
    assert s.suggest("t3")["hidden"] in (8, 16, 32)
