"""A search submitted as a Ray Job to a running head (dashboard on 127.0.0.1, token auth on).

The head is a real `ray start --head --block` in its own session with its own temp dir, token file and
ports; it is stopped by the process ids it started, so no other Ray on the machine is touched.
"""

import json
import os
import secrets
import shutil
import signal
import socket
import subprocess
import tempfile
import time
import urllib.error
import urllib.request
from pathlib import Path

import pytest

from .cluster_scenarios import end_processes_with_env
from .conftest import MATHTUNE

RAY = str(Path(MATHTUNE).with_name("ray"))
SHRINK = {"epochs": 2, "limit": 256, "batch_size": 64, "threads": 1, "hidden": 32, "decoder_hidden": 32}


def _free_ports(n: int) -> list[int]:
    sockets = [socket.socket() for _ in range(n)]
    for s in sockets:
        s.bind(("127.0.0.1", 0))
    ports = [s.getsockname()[1] for s in sockets]
    for s in sockets:
        s.close()
    return ports


def _stop(head: subprocess.Popen, marker: str) -> int:
    """Stop the head and everything it started; returns how many processes needed a hard kill."""
    if head.poll() is None:
        head.send_signal(signal.SIGTERM)  # `ray start --block` shuts its node down on SIGTERM
        try:
            head.wait(timeout=30)
        except subprocess.TimeoutExpired:
            head.kill()
            head.wait()
    return end_processes_with_env(marker)


@pytest.fixture(scope="module")
def ray_head():
    """A Ray head with the dashboard and Jobs API on 127.0.0.1:PORT, token authentication on."""
    if not Path("/proc/self/environ").exists():
        pytest.skip("needs Linux /proc to stop exactly the processes this head started")
    temp_dir = Path(tempfile.mkdtemp(prefix="mtj", dir="/tmp"))  # short: Ray's socket paths have a length limit
    token = secrets.token_hex(32)
    token_file = temp_dir / "auth_token"
    token_file.write_text(token)
    token_file.chmod(0o600)
    gcs, dashboard, client, agent, agent_grpc, metrics, runtime_env = _free_ports(7)
    env = {k: v for k, v in os.environ.items() if not k.startswith("RAY_ADDRESS")}
    env.update(RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER="0", RAY_AUTH_MODE="token", RAY_AUTH_TOKEN_PATH=str(token_file))
    env.pop("RAY_AUTH_TOKEN", None)
    cmd = [RAY, "start", "--head", "--block", f"--port={gcs}", "--num-cpus=2", "--include-dashboard=true",
           "--dashboard-host=127.0.0.1", f"--dashboard-port={dashboard}", f"--ray-client-server-port={client}",
           f"--dashboard-agent-listen-port={agent}", f"--dashboard-agent-grpc-port={agent_grpc}",
           f"--metrics-export-port={metrics}", f"--runtime-env-agent-port={runtime_env}",
           f"--temp-dir={temp_dir / 'ray'}", "--disable-usage-stats"]
    log = open(temp_dir / "head.log", "w")
    head = subprocess.Popen(cmd, env=env, stdout=log, stderr=subprocess.STDOUT, start_new_session=True)
    url = f"http://127.0.0.1:{dashboard}"
    try:
        deadline = time.time() + 90
        while True:
            try:
                urllib.request.urlopen(url + "/api/version", timeout=2)
                break
            except urllib.error.HTTPError:
                break  # it answers (even if with 401): up
            except OSError:
                assert head.poll() is None, (temp_dir / "head.log").read_text()[-3000:]
                assert time.time() < deadline, "the dashboard did not come up in 90 s"
                time.sleep(1)
        yield {"url": url, "token": token, "env": env, "temp_dir": temp_dir}
    finally:
        hard_kills = _stop(head, str(token_file))
        log.close()
        print(f"\nhead stopped ({hard_kills} leftover process(es) killed)")
        shutil.rmtree(temp_dir, ignore_errors=True)


def test_jobs_api_refuses_requests_without_the_token(ray_head):
    with pytest.raises(urllib.error.HTTPError) as denied:
        urllib.request.urlopen(ray_head["url"] + "/api/jobs/", timeout=10)
    assert denied.value.code == 401
    request = urllib.request.Request(ray_head["url"] + "/api/jobs/",
                                     headers={"Authorization": "Bearer not-the-token"})
    with pytest.raises(urllib.error.HTTPError) as wrong:
        urllib.request.urlopen(request, timeout=10)
    assert wrong.value.code in (401, 403)


def test_search_submitted_as_a_job_succeeds_with_logs_and_results(ray_head, tmp_path):
    from ray.job_submission import JobStatus, JobSubmissionClient

    client = JobSubmissionClient(ray_head["url"], headers={"Authorization": f"Bearer {ray_head['token']}"})
    storage = tmp_path / "runs"
    sets = " ".join(f"--set {k}={v}" for k, v in SHRINK.items())
    entrypoint = (f"{MATHTUNE} search arith-text2text-addsub --address auto --num-samples 2 --scheduler none "
                  f"--storage-path {storage} --name jobexp --no-dashboard --verbose 0 {sets}")
    t0 = time.time()
    job_id = client.submit_job(entrypoint=entrypoint, submission_id=f"mathtune-{secrets.token_hex(4)}",
                               metadata={"purpose": "test"})
    assert job_id in [j.submission_id for j in client.list_jobs()]  # what the dashboard's job list shows
    status = client.get_job_status(job_id)
    while status not in {JobStatus.SUCCEEDED, JobStatus.FAILED, JobStatus.STOPPED}:
        assert time.time() - t0 < 240, f"job still {status} after 240 s:\n{client.get_job_logs(job_id)[-3000:]}"
        time.sleep(1)
        status = client.get_job_status(job_id)
    logs = client.get_job_logs(job_id)
    assert status == JobStatus.SUCCEEDED, logs[-4000:]
    exp = storage / "jobexp"
    assert f"[mathtune] experiment {exp}" in logs and f"[mathtune] results: {exp}" in logs
    assert "[mathtune] trials: 2 terminated" in logs and "[mathtune] report written" in logs
    assert "Traceback" not in logs
    info = client.get_job_info(job_id)
    assert info.entrypoint == entrypoint and info.end_time >= info.start_time

    trials = sorted(exp.glob("trial_*"))
    assert len(trials) == 2
    for trial in trials:
        rows = [json.loads(line) for line in (trial / "result.json").read_text().splitlines() if line.strip()]
        assert [r["epoch"] for r in rows] == [1, 2]
    assert (exp / "report.md").is_file() and (exp / "optuna.journal").is_file()
    meta = json.loads((exp / "mathtune.json").read_text())
    assert meta["options"]["address"] == "auto"
    # the token appears nowhere in what the job wrote or logged
    assert ray_head["token"] not in logs
    for path in exp.rglob("*"):
        if path.is_file():
            assert ray_head["token"].encode() not in path.read_bytes(), path
    print(f"\njob {job_id}: {status} in {time.time() - t0:.0f} s, {len(trials)} trials, "
          f"{len(logs.splitlines())} log lines")


def test_a_trial_worker_prints_no_traceback_for_an_exit_swallowed_in_a_callback():
    """A SIGTERM that lands in a weakref callback prints nothing; other swallowed errors still print."""
    import sys

    code = (
        "import os, signal, weakref\n"
        "from mathtune.trainables.tune_wrapper import quiet_swallowed_exits\n"
        "quiet_swallowed_exits()\n"
        "def on_term(signum, frame):\n"
        "    raise SystemExit(1)\n"
        "signal.signal(signal.SIGTERM, on_term)\n"
        "class Obj: pass\n"
        "def exiting(ref):\n"
        "    os.kill(os.getpid(), signal.SIGTERM)\n"
        "    for _ in range(1000): pass  # the handler runs here, inside the callback\n"
        "def failing(ref):\n"
        "    raise ValueError('still reported')\n"
        "a, b = Obj(), Obj()\n"
        "keep = [weakref.ref(a, exiting), weakref.ref(b, failing)]\n"
        "del a\n"
        "del b\n"
        "print('survived')\n"
    )
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60)
    assert proc.stdout.strip() == "survived", proc.stderr
    assert "SystemExit" not in proc.stderr
    assert "ValueError: still reported" in proc.stderr and proc.stderr.count("Traceback") == 1
