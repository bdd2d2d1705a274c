"""One driver per experiment folder (search/driver.py): a second is refused in one line naming the first, the
lock dies with its process however it ends, and `mathtune status` reads who holds it. The same through the CLI, on
a real search, is in test_search.py::test_interrupted_search_resumes_with_every_trial_once."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time

import pytest

from mathtune.search.driver import DRIVER_FILE, ExperimentBusy, hold_experiment, running_driver

HOLD = """
import sys, time
from mathtune.search.driver import hold_experiment
with hold_experiment(sys.argv[1], "mathtune resume EXP"):
    print("held", flush=True)
    time.sleep(600)
"""


def test_a_second_driver_is_refused_and_the_first_is_named(tmp_path):
    assert running_driver(tmp_path) is None
    with hold_experiment(tmp_path, "mathtune search x --name exp"):
        held = running_driver(tmp_path)
        assert held["pid"] == os.getpid() and held["command"] == "mathtune search x --name exp" and held["host"]
        with pytest.raises(ExperimentBusy, match=rf"^{tmp_path}: another driver is running this experiment "
                                                  rf"\(pid {os.getpid()} on .*, since .* \(mathtune search x "
                                                  rf"--name exp\)\); wait for it to end; stop it with Ctrl-C in "
                                                  rf"its terminal or `kill -INT {os.getpid()}`, then resume$"):
            with hold_experiment(tmp_path):
                pass
    assert running_driver(tmp_path) is None
    assert (tmp_path / DRIVER_FILE).is_file()  # the record of the last driver stays
    with hold_experiment(tmp_path):  # free again
        assert running_driver(tmp_path)["pid"] == os.getpid()


@pytest.mark.parametrize("sig", [signal.SIGKILL, signal.SIGINT])
def test_the_lock_dies_with_its_driver(tmp_path, sig):
    proc = subprocess.Popen([sys.executable, "-c", HOLD, str(tmp_path)], stdout=subprocess.PIPE, text=True)
    try:
        assert proc.stdout.readline().strip() == "held"
        assert running_driver(tmp_path)["pid"] == proc.pid
        with pytest.raises(ExperimentBusy, match=f"pid {proc.pid} on "):
            with hold_experiment(tmp_path):
                pass
        proc.send_signal(sig)
        proc.wait(timeout=30)
    finally:
        if proc.poll() is None:
            proc.kill()
    deadline = time.time() + 10
    while running_driver(tmp_path) is not None and time.time() < deadline:
        time.sleep(0.05)
    assert running_driver(tmp_path) is None
    with hold_experiment(tmp_path):
        assert running_driver(tmp_path)["pid"] == os.getpid()
