"""ASHA brackets as a hedge for late bloomers, on a replayed table: one bracket cuts a curve that starts low
before it climbs; with Hyperband-style brackets the same search lets it run and finds it."""

import json

import pytest

from mathtune.analysis import load_trials
from mathtune.search import SearchError, SearchOptions, run_search

from .curve_tables import curve_table

EPOCHS = 8
# the grid's order at this seed puts both late-bloomer configurations after early risers (ASHA never cuts the
# first trial of a rung), and the seeded bracket draw gives one of them a later bracket
SEED = 9
LATE = 64  # the late bloomer's hidden width


def _curve(hidden: int, lr: float) -> list[float]:
    if hidden == LATE:  # low for two epochs, then the best of the table
        return [0.10, 0.12, 0.70, 0.75, 0.80, 0.85, 0.90, 0.95]
    base = 0.50 + 0.01 * [8, 16, 32].index(hidden) + (0.02 if lr == 0.003 else 0.0)
    return [base + 0.1 * (1 - 0.5 ** e) for e in range(1, EPOCHS + 1)]


@pytest.fixture(scope="module")
def table(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("brackets")
    return curve_table(tmp, "late", _curve, hiddens=[8, 16, 32, LATE], lrs=[0.001, 0.003], time_scale=0.02), tmp


def _search(table, name: str, **asha):
    space, tmp = table
    outcome = run_search(str(space), SearchOptions(num_samples=8, sampler="grid", max_concurrent=1, seed=SEED,
                                                   storage_path=str(tmp), name=name, verbose=0, dashboard=False,
                                                   asha=asha))
    late = [t for t in load_trials(outcome.experiment_dir) if t.config["hidden"] == LATE]
    return outcome, late


def test_one_bracket_cuts_the_late_bloomer_and_three_brackets_keep_it(ray_session, table):
    outcome, late = _search(table, "one")
    assert len(late) == 2 and all(t.epochs_run <= 2 for t in late)  # cut at the first rungs, at 0.10-0.12
    assert outcome.best["split=0.5"]["val_exact_match"] < 0.7
    outcome, late = _search(table, "three", brackets=3)
    # a later bracket's first cut comes at epoch 4, where the late bloomer already leads: it runs to the end
    assert max(t.epochs_run for t in late) == EPOCHS
    assert outcome.best["split=0.5"]["val_exact_match"] == pytest.approx(0.95)
    record = json.loads((outcome.experiment_dir / "mathtune.json").read_text())
    assert record["options"]["asha"] == {"brackets": 3}


def test_asha_settings_are_checked(tmp_path):
    for asha, message in (({"brackets": 0}, "--brackets must be a whole number >= 1, got 0"),
                          ({"reduction_factor": 1.5}, "--reduction-factor must be a number >= 2, got 1.5"),
                          ({"grace_period": 2.5}, "--grace-period must be a whole number >= 1, got 2.5")):
        with pytest.raises(SearchError, match=message.replace("(", r"\(")):
            run_search("arith-text2text-addsub", SearchOptions(asha=asha, storage_path=str(tmp_path)))
