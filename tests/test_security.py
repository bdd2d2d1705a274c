"""Security: a local Ray listens on 127.0.0.1 only with token auth on; checkpoints never unpickle code."""

import json
import os
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
from pathlib import Path

import pytest
import torch

from mathtune.trainables.loop import CHECKPOINT_FILE, CheckpointError, load_checkpoint

# A driver that imports Ray *before* mathtune starts it (the hard case: Ray reads its loopback switch at
# import), then starts the local Ray the way `mathtune search` does and waits.
DRIVER = """
import json, sys
import ray
from mathtune.search.engine import ensure_ray
ensure_ray(dashboard=True)
ctx = ray.get_runtime_context()
print(json.dumps({"gcs": ctx.gcs_address, "dashboard": ray._private.worker.get_dashboard_url()}), flush=True)
sys.stdin.readline()
"""


def _listening_sockets() -> dict[str, tuple[str, int]]:
    """inode -> (address, port) of every listening TCP socket (IPv4 and IPv6) on this machine."""
    out = {}
    for path, family in (("/proc/net/tcp", socket.AF_INET), ("/proc/net/tcp6", socket.AF_INET6)):
        try:
            lines = Path(path).read_text().splitlines()[1:]
        except OSError:
            continue
        for line in lines:
            fields = line.split()
            if fields[3] != "0A":  # LISTEN
                continue
            hex_ip, hex_port = fields[1].split(":")
            raw = bytes.fromhex(hex_ip)
            raw = b"".join(raw[i:i + 4][::-1] for i in range(0, len(raw), 4))  # kernel stores 32-bit words LE
            out[fields[9]] = (socket.inet_ntop(family, raw), int(hex_port, 16))
    return out


def _process_tree(root: int) -> set[int]:
    children: dict[int, list[int]] = {}
    for entry in os.listdir("/proc"):
        if entry.isdigit():
            try:
                stat = Path(f"/proc/{entry}/stat").read_text()
            except OSError:
                continue
            children.setdefault(int(stat.rsplit(")", 1)[1].split()[1]), []).append(int(entry))
    tree, todo = set(), [root]
    while todo:
        pid = todo.pop()
        tree.add(pid)
        todo += children.get(pid, [])
    return tree


def _listeners_of(pids: set[int]) -> list[tuple[int, str, str, int]]:
    """(pid, process name, address, port) of every listening socket held by ``pids``."""
    sockets = _listening_sockets()
    found = []
    for pid in sorted(pids):
        try:
            fds = os.listdir(f"/proc/{pid}/fd")
            name = Path(f"/proc/{pid}/cmdline").read_bytes().split(b"\0")[0].decode(errors="replace")
        except OSError:
            continue
        for fd in fds:
            try:
                link = os.readlink(f"/proc/{pid}/fd/{fd}")
            except OSError:
                continue
            if link.startswith("socket:[") and link[8:-1] in sockets:
                found.append((pid, Path(name).name, *sockets[link[8:-1]]))
    return found


def _is_loopback(address: str) -> bool:
    return address == "127.0.0.1" or address == "::1" or address == "::ffff:127.0.0.1"


@pytest.fixture(scope="module")
def local_ray():
    """A local Ray started by ``ensure_ray`` in a separate driver without any Ray variables set."""
    if not Path("/proc/net/tcp").exists():
        pytest.skip("needs Linux /proc to list listening sockets")
    env = {k: v for k, v in os.environ.items()
           if k not in ("RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER", "RAY_ADDRESS", "RAY_AUTH_MODE")}
    proc = subprocess.Popen([sys.executable, "-c", DRIVER], env=env, stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True, start_new_session=True)
    try:
        line = proc.stdout.readline()
        assert line, proc.stderr.read()[-3000:]
        info = json.loads(line)
        time.sleep(3)  # agents and idle workers start a moment after ray.init returns
        yield proc, info
    finally:
        if proc.poll() is None:
            proc.stdin.write("\n")
            proc.stdin.flush()
            try:
                proc.wait(timeout=60)
            except subprocess.TimeoutExpired:
                os.killpg(proc.pid, 9)
                proc.wait()


def test_local_ray_and_dashboard_listen_on_loopback_only(local_ray):
    proc, info = local_ray
    assert info["gcs"].startswith("127.0.0.1:"), info
    listeners = _listeners_of(_process_tree(proc.pid))
    names = {name for _, name, _, _ in listeners}
    assert {"gcs_server", "raylet"} <= names, listeners
    exposed = [entry for entry in listeners if not _is_loopback(entry[2])]
    assert not exposed, f"Ray processes listening beyond loopback: {exposed}"
    dashboard_port = int(info["dashboard"].rsplit(":", 1)[1])
    assert info["dashboard"].split(":")[0] in ("127.0.0.1", "http://127.0.0.1")
    assert any(port == dashboard_port for _, _, _, port in listeners)
    print(f"\n{len(listeners)} listening sockets in {len(names)} Ray processes, all on loopback")


def test_dashboard_requires_the_token(local_ray):
    _, info = local_ray
    url = info["dashboard"] if info["dashboard"].startswith("http") else "http://" + info["dashboard"]
    with pytest.raises(urllib.error.HTTPError) as denied:
        urllib.request.urlopen(url + "/api/jobs/", timeout=10)
    assert denied.value.code == 401
    token_path = Path(os.environ.get("RAY_AUTH_TOKEN_PATH") or Path.home() / ".ray" / "auth_token")
    request = urllib.request.Request(url + "/api/jobs/",
                                     headers={"Authorization": "Bearer " + token_path.read_text().strip()})
    with urllib.request.urlopen(request, timeout=10) as response:
        assert response.status == 200
    assert token_path.stat().st_mode & 0o077 == 0, "the token file is readable by other users"


class _Payload:
    def __init__(self, marker: Path):
        self.marker = marker

    def __reduce__(self):
        return (Path.touch, (self.marker,))


def test_checkpoint_loading_never_runs_pickled_code(tmp_path):
    marker = tmp_path / "code-ran"
    ckpt = tmp_path / "ckpt"
    ckpt.mkdir()
    torch.save({"model": {}, "evil": _Payload(marker)}, ckpt / CHECKPOINT_FILE)
    (ckpt / "config.json").write_text("{}")
    (ckpt / "metrics.json").write_text("{}")
    with pytest.raises(CheckpointError, match="not a tensor checkpoint"):
        load_checkpoint(ckpt)
    assert not marker.exists()


def _experiment(folder: Path) -> Path:
    folder.mkdir(parents=True)
    (folder / "mathtune.json").write_text(json.dumps({"name": folder.name}))
    (folder / "tuner.pkl").write_bytes(b"not really a pickle")
    return folder


@pytest.mark.parametrize("setup, needle", [
    (lambda d: os.chmod(d / "tuner.pkl", 0o666), "tuner.pkl: writable by every user (mode 666)"),
    (lambda d: os.chmod(d, 0o777), ": writable by every user (mode 777)"),
    (lambda d: os.chown(d / "tuner.pkl", os.getuid() + 4242, -1), "tuner.pkl: owned by uid"),
], ids=["state-file-world-writable", "folder-world-writable", "state-file-of-another-user"])
def test_resume_refuses_a_folder_others_could_have_written(tmp_path, capsys, setup, needle):
    """`mathtune resume` unpickles the folder's saved searcher, scheduler and tuner state, so it refuses a
    folder or state file that is writable by others or not the user's own: one line, exit 2, before Ray."""
    from mathtune.search.cli import main

    if "owned" in needle and os.getuid() != 0:
        pytest.skip("giving a file to another user needs root")
    exp = _experiment(tmp_path / "exp")
    setup(exp)
    code = main(["resume", str(exp), "--no-dashboard"])
    err = capsys.readouterr().err
    assert code == 2 and needle in err and "resume unpickles" in err and "Traceback" not in err
    assert len(err.strip().splitlines()) == 1
    from mathtune.search.engine import check_trusted_folder

    os.chmod(exp, 0o755), os.chmod(exp / "tuner.pkl", 0o644), os.chown(exp / "tuner.pkl", os.getuid(), -1)
    check_trusted_folder(exp)  # the same folder, put right, is accepted
