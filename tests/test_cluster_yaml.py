"""cluster.yaml: valid for Ray's cluster launcher, a CPU head without trials, GPU workers, token auth on."""

import copy
import re
import shlex
from pathlib import Path

import pytest
import yaml

ROOT = Path(__file__).resolve().parents[1]
CLUSTER_YAML = ROOT / "cluster.yaml"


@pytest.fixture(scope="module")
def config():
    return yaml.safe_load(CLUSTER_YAML.read_text())


def _ray_start_args(commands, head: bool):
    """The parsed options of the one `ray start` in a start-command list (parsed by Ray's own CLI)."""
    from ray.scripts.scripts import start

    found = []
    for command in commands:
        for part in command.split(";"):
            words = shlex.split(part.strip())
            if words[:2] == ["ray", "start"]:
                found.append(words[2:])
    assert len(found) == 1, f"expected one `ray start` in {commands}"
    ctx = start.make_context("ray start", list(found[0]))
    assert ctx.params["head"] is head
    return ctx.params, " ".join(commands)


def test_ray_accepts_the_config_with_its_own_schema(config):
    from ray.autoscaler._private.util import prepare_config, validate_config

    prepared = prepare_config(copy.deepcopy(config))
    validate_config(prepared)  # raises on any schema violation (Ray 2.60's ray-schema.json)
    assert prepared["provider"]["type"] == "aws"


def test_required_keys_and_types(config):
    for key, kind in [("cluster_name", str), ("max_workers", int), ("idle_timeout_minutes", (int, float)),
                      ("provider", dict), ("auth", dict), ("docker", dict), ("available_node_types", dict),
                      ("head_node_type", str), ("file_mounts", dict), ("setup_commands", list),
                      ("head_start_ray_commands", list), ("worker_start_ray_commands", list)]:
        assert key in config, key
        assert isinstance(config[key], kind), (key, type(config[key]))
    assert config["provider"]["type"] == "aws" and config["provider"]["region"]
    for name, node in config["available_node_types"].items():
        assert isinstance(node["node_config"], dict) and node["node_config"]["InstanceType"], name
        assert isinstance(node["resources"], dict), name


def test_head_is_a_cpu_node_that_runs_no_trials(config):
    head = config["available_node_types"][config["head_node_type"]]
    assert head["resources"].get("CPU") == 0 and not head["resources"].get("GPU")
    assert not head["node_config"]["InstanceType"].startswith(("g", "p"))  # no GPU instance for the head
    params, _ = _ray_start_args(config["head_start_ray_commands"], head=True)
    assert params["num_cpus"] == 0


def test_gpu_worker_group_autoscales_on_spot(config):
    workers = {k: v for k, v in config["available_node_types"].items() if k != config["head_node_type"]}
    assert workers
    gpu_groups = [v for v in workers.values() if v["resources"].get("GPU", 0) >= 1]
    assert gpu_groups, "no worker group with GPU resources"
    total_min = 0
    for group in gpu_groups:
        assert isinstance(group["min_workers"], int) and isinstance(group["max_workers"], int)
        assert 0 <= group["min_workers"] <= group["max_workers"] <= config["max_workers"]
        assert group["max_workers"] >= 1
        assert group["resources"]["CPU"] >= 1
        assert group["node_config"]["InstanceType"].startswith(("g", "p"))  # an AWS GPU instance family
        assert group["node_config"]["InstanceMarketOptions"]["MarketType"] == "spot"
        total_min += group["min_workers"]
    assert total_min <= config["max_workers"]


def test_pinned_ray_image_and_project_installed_on_every_node(config):
    import ray

    images = [config["docker"].get(k) for k in ("image", "head_image", "worker_image") if config["docker"].get(k)]
    assert images and all(re.fullmatch(r"rayproject/ray:(\d+\.\d+\.\d+)-py3\d+-(cpu|gpu)", i) for i in images)
    assert all(i.split(":")[1].startswith(ray.__version__ + "-") for i in images), (images, ray.__version__)
    assert config["docker"]["worker_image"].endswith("-gpu")
    assert "~/mathtune" in config["file_mounts"]  # the checkout the setup commands install
    for key in ("head_setup_commands", "worker_setup_commands"):
        commands = config["setup_commands"] + config[key]
        assert any(re.search(r"pip install .*-e ~/mathtune", c) for c in commands), key


def test_experiment_folder_on_shared_storage(config):
    """Every node mounts the same NFS (EFS) file system, the containers see it, and searches default to it."""
    setup = " ".join(config["setup_commands"])
    match = re.search(r"MATHTUNE_STORAGE_PATH=(\S+?)'", setup)
    assert match, setup
    storage = match.group(1)
    init = " ".join(config["initialization_commands"])  # runs on every node's host
    mounts = re.findall(r"mount -t nfs4 .*? (\S+:/) (/\S+)", init)
    assert mounts, init
    (source, mount_point), = mounts
    assert source.endswith(".efs.us-west-2.amazonaws.com:/") and config["provider"]["region"] == "us-west-2"
    assert storage.startswith(mount_point + "/")
    assert f"--volume={mount_point}:{mount_point}" in config["docker"]["run_options"]


def test_dashboard_on_localhost_and_token_auth_on(config):
    params, head_text = _ray_start_args(config["head_start_ray_commands"], head=True)
    assert params["dashboard_host"] == "127.0.0.1"
    _, worker_text = _ray_start_args(config["worker_start_ray_commands"], head=False)
    for text in (head_text, worker_text):
        assert "RAY_AUTH_MODE=token" in text
    assert "RAY_AUTH_MODE=disabled" not in CLUSTER_YAML.read_text()
    assert config["file_mounts"]["~/.ray/auth_token"] == "~/.ray/auth_token"  # the token comes from a file


SECRET_PATTERNS = [
    r"AKIA[0-9A-Z]{16}",                                   # AWS access key id
    r"(?i)aws_secret_access_key|aws_session_token",
    r"(?i)(password|passwd|secret|api[_-]?key)\s*[:=]\s*\S",
    r"(?i)RAY_AUTH_TOKEN\s*[:=]",                          # a token inline instead of the token file
    r"-----BEGIN [A-Z ]*PRIVATE KEY-----",
    r"[a-z+]+://[^/\s:@]+:[^/\s@]+@",                       # user:password@ in a URL
    r"(?i)ssh_private_key\s*:",                            # a key path belongs to the user's own config
]


def test_no_secrets_in_the_file():
    text = CLUSTER_YAML.read_text()
    for pattern in SECRET_PATTERNS:
        assert not re.search(pattern, text), pattern
    assert not re.search(r"\b[0-9a-f]{32,}\b", text), "a long hex string looks like a token"
