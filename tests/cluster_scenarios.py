"""Multi-node scenarios on one machine (``ray.cluster_utils.Cluster``), each run in its own process.

    python tests/cluster_scenarios.py node-loss WORKDIR    # kill a worker node while a trial runs on it
    python tests/cluster_scenarios.py placement WORKDIR    # fractional GPUs on a joined cluster

Tests call :func:`run`: it sets the environment (loopback, a private temp dir, token auth with a private
token file), and this process builds the cluster, runs `mathtune search --address <cluster>` against it,
does its part, tears the cluster down and prints one JSON line with what happened. Running apart keeps
the test process's own Ray untouched; afterwards :func:`run` ends any process still carrying the private
token path in its environment (only processes this scenario started), by id.
"""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import ray  # noqa: F401  (the environment is set by the caller before this import)
from ray._private import ray_constants
from ray.cluster_utils import Cluster

MATHTUNE = str(Path(sys.executable).with_name("mathtune"))
SPACE = "arith-text2text-addsub"
# Fast node-death detection: the GCS declares a silent raylet dead after ~2 s instead of ~30 s.
SYSTEM_CONFIG = {"health_check_initial_delay_ms": 0, "health_check_period_ms": 500,
                 "health_check_timeout_ms": 500, "health_check_failure_threshold": 4}


def pids_with_env(marker: str) -> list[int]:
    """Processes whose environment holds ``marker`` (a private path: exactly the processes started with it)."""
    found, needle = [], marker.encode()
    for entry in os.listdir("/proc"):
        if entry.isdigit() and int(entry) != os.getpid():
            try:
                if needle in Path(f"/proc/{entry}/environ").read_bytes():
                    found.append(int(entry))
            except OSError:
                continue
    return found


def end_processes_with_env(marker: str, grace_s: float = 15) -> int:
    """Wait up to ``grace_s`` for them to exit, then SIGKILL the rest by id; returns how many were killed."""
    deadline = time.time() + grace_s
    while pids_with_env(marker) and time.time() < deadline:
        time.sleep(0.5)
    leftover = pids_with_env(marker)
    for pid in leftover:
        try:
            os.kill(pid, signal.SIGKILL)
        except ProcessLookupError:
            pass
    return len(leftover)


def run(scenario: str, workdir: Path, timeout: float = 420) -> dict:
    """Run ``scenario`` in a fresh process with a private Ray environment; returns its JSON result."""
    import secrets
    import shutil
    import tempfile

    temp_dir = Path(tempfile.mkdtemp(prefix="mtc", dir="/tmp"))  # short: Ray's socket paths have a length limit
    token_file = temp_dir / "auth_token"
    token_file.write_text(secrets.token_hex(32))
    token_file.chmod(0o600)
    env = {k: v for k, v in os.environ.items() if k not in ("RAY_ADDRESS", "RAY_AUTH_TOKEN")}
    env.update(RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER="0", RAY_TMPDIR=str(temp_dir), RAY_AUTH_MODE="token",
               RAY_AUTH_TOKEN_PATH=str(token_file))
    try:
        proc = subprocess.run([sys.executable, __file__, scenario, str(workdir)], env=env, capture_output=True,
                              text=True, timeout=timeout)
    finally:
        killed = end_processes_with_env(str(token_file))
        shutil.rmtree(temp_dir, ignore_errors=True)
    lines = [line for line in proc.stdout.splitlines() if line.startswith("RESULT ")]
    assert proc.returncode == 0 and lines, (proc.stdout[-3000:] + proc.stderr[-3000:])
    result = json.loads(lines[-1][len("RESULT "):])
    result["leftover_processes_killed"] = killed
    return result


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _sets(values: dict) -> list[str]:
    return sum((["--set", f"{k}={v}"] for k, v in values.items()), [])


def _rows(trial_dir: Path) -> list[dict]:
    path = trial_dir / "result.json"
    rows = []
    for line in (path.read_text().splitlines() if path.is_file() else []):
        try:
            rows.append(json.loads(line))
        except json.JSONDecodeError:
            pass  # a line being written
    return rows


def _parent(pid: int) -> int | None:
    try:
        return int(Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[1])
    except (OSError, ValueError, IndexError):
        return None


def _raylet_pid(node) -> int:
    return node.all_processes[ray_constants.PROCESS_TYPE_RAYLET][0].process.pid


def _cluster(workers: list[dict]) -> Cluster:
    cluster = Cluster(initialize_head=True, head_node_args={
        "num_cpus": 0, "include_dashboard": False, "gcs_server_port": _free_port(),
        "dashboard_agent_listen_port": _free_port(), "_system_config": SYSTEM_CONFIG})
    for spec in workers:
        cluster.add_node(dashboard_agent_listen_port=_free_port(), **spec)
    cluster.wait_for_nodes()
    return cluster


def _search(cluster: Cluster, workdir: Path, name: str, args: list[str], space: str = SPACE) -> subprocess.Popen:
    env = {k: v for k, v in os.environ.items() if k != "RAY_ADDRESS"}
    cmd = [MATHTUNE, "search", space, "--address", cluster.address, "--storage-path", str(workdir / "runs"),
           "--name", name, "--no-dashboard", "--verbose", "0", "--no-report", *args]
    return subprocess.Popen(cmd, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)


def node_loss(workdir: Path) -> dict:
    epochs = 6
    cluster = _cluster([{"num_cpus": 1}, {"num_cpus": 1}])
    nodes = {_raylet_pid(n): n for n in cluster.worker_nodes}
    exp = workdir / "runs" / "nodeloss"
    t0 = time.time()
    proc = _search(cluster, workdir, "nodeloss", [
        "--num-samples", "3", "--max-concurrent", "2", "--scheduler", "none", "--max-failures", "2",
        *_sets({"epochs": epochs, "limit": 3000, "batch_size": 64, "threads": 1, "hidden": 32,
                "decoder_hidden": 32})])
    killed = None
    try:
        while killed is None:
            if proc.poll() is not None:
                raise RuntimeError("search ended before a node could be killed:\n" + proc.stdout.read()[-3000:])
            if time.time() - t0 > 120:
                raise RuntimeError("no trial reached epoch 1 on a worker node in 120 s")
            for trial_dir in sorted(exp.glob("trial_*")):
                rows = _rows(trial_dir)
                if not rows or len(rows) > epochs - 3:  # killed with at least two epochs still to run
                    continue
                node = nodes.get(_parent(rows[-1]["pid"]))
                if node is not None:
                    killed = {"trial_id": rows[-1]["trial_id"], "epochs_before": len(rows),
                              "pid": rows[-1]["pid"], "after_s": round(time.time() - t0, 1)}
                    # The machine dies: the trial's process first (a real node loss takes everything at once),
                    # then the node's raylet, object store and other workers.
                    os.kill(rows[-1]["pid"], signal.SIGKILL)
                    cluster.remove_node(node, allow_graceful=False)
                    break
            time.sleep(0.2)
        output, _ = proc.communicate(timeout=240)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
        cluster.shutdown()
    return {"killed": killed, "rc": proc.returncode, "output": output[-6000:], "wall_s": round(time.time() - t0, 1),
            "experiment": str(exp), "epochs": epochs}


def placement(workdir: Path) -> dict:
    # Resources from both sources: the space file asks for 2 CPUs and half a GPU per trial, the command
    # line lowers the CPUs to 1 (so two trials fit the node's 2 CPUs and share its GPU).
    from mathtune.spaces.loader import space_path

    space = workdir / "placement.yaml"
    text = space_path(SPACE).read_text()
    assert "resources: {cpus: 1, gpus: 0}" in text
    space.write_text(text.replace("resources: {cpus: 1, gpus: 0}", "resources: {cpus: 2, gpus: 0.5}"))
    cluster = _cluster([{"num_cpus": 2, "num_gpus": 1}])
    storage = workdir / "elsewhere" / "studies.db"
    storage.parent.mkdir(parents=True, exist_ok=True)
    t0 = time.time()
    proc = _search(cluster, workdir, "placement", [
        "--num-samples", "2", "--scheduler", "none", "--cpus-per-trial", "1",
        "--optuna-storage", f"sqlite:///{storage}",
        *_sets({"epochs": 4, "limit": 3000, "batch_size": 64, "threads": 1, "hidden": 32, "decoder_hidden": 32})],
        space=str(space))
    try:
        output, _ = proc.communicate(timeout=240)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
        cluster.shutdown()
    return {"rc": proc.returncode, "output": output[-6000:], "wall_s": round(time.time() - t0, 1),
            "experiment": str(workdir / "runs" / "placement"), "optuna_storage": f"sqlite:///{storage}"}


if __name__ == "__main__":
    scenario, workdir = sys.argv[1], Path(sys.argv[2])
    result = {"node-loss": node_loss, "placement": placement}[scenario](workdir)
    print("RESULT " + json.dumps(result), flush=True)
