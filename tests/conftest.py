"""Shared fixtures: one local Ray session (on loopback) for every test that needs Ray."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

os.environ.setdefault("RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER", "0")
os.environ.setdefault("RAY_DEDUP_LOGS", "0")
os.environ.setdefault("TUNE_DISABLE_AUTO_CALLBACK_LOGGERS", "0")

ROOT = Path(__file__).resolve().parents[1]
SHARED = ROOT.parent / "shared" / "data"
MATHTUNE = str(Path(sys.executable).with_name("mathtune"))


def interrupt_after(cmd: list[str], watch: Path, pattern: str, rows: int, *, timeout: float = 180.0,
                    env: dict[str, str] | None = None) -> tuple[int, str]:
    """Run ``cmd`` and press Ctrl-C (SIGINT) once the files matching ``pattern`` under ``watch`` hold ``rows``
    lines in all (e.g. epoch lines of the trials' result.json); returns its exit code and what it printed."""
    env = {**os.environ, "RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER": "0", **(env or {})}
    proc = subprocess.Popen(cmd, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
                            start_new_session=True)
    try:
        deadline = time.time() + timeout
        while time.time() < deadline:
            if sum(len(p.read_text().splitlines()) for p in watch.glob(pattern)) >= rows:
                break
            assert proc.poll() is None, proc.stdout.read()
            time.sleep(0.2)
        proc.send_signal(signal.SIGINT)
        proc.wait(timeout=60)
    finally:
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGKILL)
    return proc.returncode, proc.stdout.read()


@pytest.fixture(scope="session")
def ray_session():
    """A local Ray with 2 CPUs bound to 127.0.0.1, started once for the whole test session."""
    import ray

    if not ray.is_initialized():
        ray.init(num_cpus=2, include_dashboard=False, log_to_driver=False, logging_level="ERROR")
    yield ray
    ray.shutdown()
