"""mathtune's search progress lines, driven through the Tune callback hooks in the order Tune calls them."""

from __future__ import annotations

import io
import logging
from types import SimpleNamespace

from mathtune.search.progress import SearchProgress, format_duration, quiet_tune_messages


class _Clock:
    def __init__(self):
        self.now = 0.0

    def __call__(self) -> float:
        return self.now


def _trial(tid: str, status: str = "RUNNING", **config):
    return SimpleNamespace(trial_id=tid, status=status, config={"split": 0.5, "epochs": 6, **config},
                           path=f"/runs/exp/trial_{tid}")


def test_progress_lines_name_searched_parameters_asha_stops_and_the_time_left():
    out, clock = io.StringIO(), _Clock()
    progress = SearchProgress(params=["lr", "hidden"], factors=["split"], metric="val_exact_match", mode="max",
                              max_epochs=6, num_samples=4, out=out, clock=clock, epoch_interval_s=10,
                              status_interval_s=30)
    a, b = _trial("a", lr=0.004, hidden=256), _trial("b", lr=0.01, hidden=64)
    progress.on_trial_start(0, [a, b], a)
    progress.on_trial_start(0, [a, b], b)
    for epoch in (1, 2, 3):
        clock.now += 4
        progress.on_trial_result(0, [a, b], a, {"epoch": epoch, "val_exact_match": 0.1 * epoch})
        progress.on_trial_result(0, [a, b], b, {"epoch": epoch, "val_exact_match": 0.05})
    b.status = "TERMINATED"
    progress.on_trial_complete(0, [a, b], b)  # ended before the cap: the scheduler stopped it
    for epoch in (4, 5, 6):
        clock.now += 4
        progress.on_trial_result(0, [a, b], a, {"epoch": epoch, "val_exact_match": 0.9 if epoch == 5 else 0.5})
    a.status = "TERMINATED"
    progress.on_trial_complete(0, [a, b], a)
    clock.now = 60
    progress.on_step_end(0, [a, b])
    lines = out.getvalue().splitlines()
    assert lines[0] == "[mathtune] a started: lr 0.004, hidden 256  (split=0.5)"  # searched parameters only
    assert lines[2] == "[mathtune] a epoch 1: val_exact_match 0.1000 (best 0.1000)"
    assert lines[3] == "[mathtune] b epoch 1: val_exact_match 0.0500 (best 0.0500)"  # a trial's first epoch
    epoch_lines = [line for line in lines if " epoch " in line and "val_exact_match 0." in line and ":" in line
                   and "stopped" not in line and "finished" not in line]
    assert len(epoch_lines) < 9  # 9 results, rate-limited to one line per 10 s after each trial's first
    assert "[mathtune] b stopped by ASHA at epoch 3: best val_exact_match 0.0500 (epoch 1)" in lines
    assert "[mathtune] a finished after 6 epochs: best val_exact_match 0.9000 (epoch 5)" in lines
    assert lines[-1] == ("[mathtune] status: 2/4 trials done (1 stopped early), 0 running, 2 pending | "
                         "best val_exact_match 0.9000 (a) | 1 min elapsed, about 1 min left")


def test_durations_read_as_a_person_says_them():
    assert [format_duration(s) for s in (42, 720, 3900)] == ["42 s", "12 min", "1 h 05 min"]


def test_a_resumed_search_shows_the_best_of_the_trials_before_it():
    """After `mathtune resume` the callback has seen none of the earlier sessions' results; the status line
    takes their best from the trials Tune restored (their last result), not only from this session's reports."""
    out, clock = io.StringIO(), _Clock()
    progress = SearchProgress(params=["lr"], factors=["split"], metric="val_exact_match", mode="max",
                              max_epochs=6, num_samples=-1, out=out, clock=clock)
    old = _trial("old", status="TERMINATED", lr=0.003)
    old.last_result = {"epoch": 6, "val_exact_match": 0.7, "best_val_exact_match": 0.8, "best_epoch": 4}
    new = _trial("new", lr=0.01)
    progress.on_trial_start(0, [old, new], new)
    progress.on_trial_result(0, [old, new], new, {"epoch": 1, "val_exact_match": 0.03})
    assert "best val_exact_match 0.8000 (old)" in progress.status_line([old, new])
    progress.on_trial_result(0, [old, new], new, {"epoch": 2, "val_exact_match": 0.9})
    assert "best val_exact_match 0.9000 (new)" in progress.status_line([old, new])


def test_a_trial_resumed_from_its_checkpoint_keeps_its_best_from_before():
    """A running trial restored by `mathtune resume` goes on from its checkpoint below its best epoch: its lines and
    the status line show the best the trial reports (best_val_exact_match, epochs before this session), not the best
    of what this session saw."""
    out, clock = io.StringIO(), _Clock()
    progress = SearchProgress(params=["lr"], factors=["split"], metric="val_exact_match", mode="max",
                              max_epochs=240, num_samples=-1, out=out, clock=clock)
    t = _trial("t", lr=0.003)
    progress.on_trial_result(0, [t], t, {"epoch": 193, "val_exact_match": 0.465, "best_val_exact_match": 0.4967,
                                         "best_epoch": 160})
    assert "(best 0.4967)" in out.getvalue().splitlines()[-1]
    assert "best val_exact_match 0.4967 (t)" in progress.status_line([t])
    progress.on_trial_result(0, [t], t, {"epoch": 194, "val_exact_match": 0.51, "best_val_exact_match": 0.51,
                                         "best_epoch": 194})
    assert "best val_exact_match 0.5100 (t)" in progress.status_line([t])
    t.status = "TERMINATED"
    progress.on_trial_complete(0, [t], t)
    assert "best val_exact_match 0.5100 (epoch 194)" in out.getvalue().splitlines()[-1]



def test_a_trial_that_ran_its_own_shorter_schedule_finished_and_earlier_sessions_stops_are_counted():
    """A space that searches the schedule's length: a trial of 120 epochs that ran them all finished, though the
    cap is 240; after `mathtune resume` the status line counts the trials ASHA stopped in earlier sessions
    (Tune restores them ended, with their last result) as stopped early too."""
    out, clock = io.StringIO(), _Clock()
    progress = SearchProgress(params=["lr"], factors=["split"], metric="val_exact_match", mode="max",
                              max_epochs=240, num_samples=-1, out=out, clock=clock)
    short = _trial("short", epochs=120)
    progress.on_trial_result(0, [short], short, {"epoch": 120, "val_exact_match": 0.4})
    short.status = "TERMINATED"
    progress.on_trial_complete(0, [short], short)
    assert out.getvalue().splitlines()[-1].endswith("short finished after 120 epochs: best val_exact_match 0.4000 "
                                                    "(epoch 120)")
    cut = _trial("cut", epochs=240)
    progress.on_trial_result(0, [short, cut], cut, {"epoch": 60, "val_exact_match": 0.1})
    cut.status = "TERMINATED"
    progress.on_trial_complete(0, [short, cut], cut)
    assert "cut stopped by ASHA at epoch 60" in out.getvalue().splitlines()[-1]
    earlier = _trial("earlier", status="TERMINATED", epochs=240)
    earlier.last_result = {"epoch": 99, "val_exact_match": 0.3, "best_val_exact_match": 0.35, "best_epoch": 98}
    whole = _trial("whole", status="TERMINATED", epochs=120)
    whole.last_result = {"epoch": 120, "val_exact_match": 0.4, "best_val_exact_match": 0.43, "best_epoch": 74}
    assert "4 trials done (2 stopped early)" in progress.status_line([short, cut, earlier, whole])


def test_the_last_line_after_ctrl_c_counts_the_cut_trials_apart_and_a_spent_budget_is_not_an_interruption(
        tmp_path):
    """On Ctrl-C Tune ends the running trials as TERMINATED without ``on_trial_complete``: the last line says
    the search was interrupted and counts them apart, not as done or stopped early. A spent budget ends its
    running trials the same way, and those are stopped for good: that search ended."""
    from mathtune.search.budget import BudgetClock

    for budget_s in (None, 1e-6):
        out = io.StringIO()
        clock = BudgetClock.start(tmp_path, budget_s) if budget_s else None
        progress = SearchProgress(params=["lr"], factors=["split"], metric="val_exact_match", mode="max",
                                  max_epochs=6, num_samples=5, out=out, clock=_Clock(),
                                  budget_dir=str(tmp_path) if clock else None)
        done, cut, waiting = _trial("done"), _trial("cut"), _trial("waiting", status="PENDING")
        earlier = _trial("earlier", status="TERMINATED")  # stopped by ASHA in an earlier session
        earlier.last_result = {"epoch": 2, "val_exact_match": 0.1}
        trials = [done, cut, waiting, earlier]
        for t in (done, cut):
            progress.on_trial_start(0, trials, t)
            t.last_result = {"epoch": 6 if t is done else 3, "val_exact_match": 0.5}  # as Tune keeps it
            progress.on_trial_result(0, trials, t, dict(t.last_result))
        done.status = "TERMINATED"
        progress.on_trial_complete(0, trials, done)
        cut.status = "TERMINATED"  # Ctrl-C, or the budget: no on_trial_complete
        progress.on_experiment_end(trials)
        last = out.getvalue().splitlines()[-1]
        if clock is None:
            assert last.startswith("[mathtune] search interrupted: 2/5 trials done (1 stopped early), 1 interrupted "
                                   "(saved at their last epoch), 0 running, 2 pending | "), last
        else:
            clock.close()
            assert last.startswith("[mathtune] search ended: 3/5 trials done (2 stopped early), 0 running, "
                                   "2 pending | "), last


def test_an_already_deleted_checkpoint_is_one_mathtune_line_and_other_tune_errors_stay(capsys):
    """After a killed driver's resume, Tune's checkpoint manager may delete an old checkpoint folder that is
    already gone and log an ERROR with a traceback (the trial goes on): mathtune says so in one line; any
    other error of Tune's is logged as before."""
    quiet_tune_messages()
    quiet_tune_messages()  # once is enough: no second filter, no second line
    log = logging.getLogger("ray.tune.execution.tune_controller")
    seen: list[logging.LogRecord] = []
    handler = logging.Handler()
    handler.emit = seen.append
    log.addHandler(handler)
    trial = SimpleNamespace(trial_id="c437590f")
    try:
        for exc in (FileNotFoundError("Path not found: (fs, /x/trial_c437590f/checkpoint_000002)"),
                    ValueError("something else")):
            try:
                raise exc
            except Exception:
                log.exception("Trial %s: Error handling checkpoint %s", trial, "TrainingResult(...)")
    finally:
        log.removeHandler(handler)
    assert [type(r.exc_info[1]) for r in seen] == [ValueError]
    out = capsys.readouterr().out
    assert out.count("[mathtune] c437590f: an old checkpoint Tune meant to delete was already gone") == 1, out
