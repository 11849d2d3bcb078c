"""cluster.yaml is a valid Ray cluster launcher config: Ray's own default filling and schema
validation accept it (what `ray up` runs before it contacts the cloud), and it says what
latentray needs: GPU workers, an idle timeout, the project installed on every node, token
authentication, a dashboard bound to localhost, zero-copy tensors and a metrics port."""
import copy
import logging
from pathlib import Path

import pytest
import yaml

ROOT = Path(__file__).resolve().parents[1]


@pytest.fixture(scope="module")
def raw():
    with open(ROOT / "cluster.yaml") as f:
        return yaml.safe_load(f)


@pytest.fixture(scope="module")
def prepared(raw):
    pytest.importorskip("jsonschema")  # a dependency of ray itself; validate_config needs it
    from ray.autoscaler._private.util import prepare_config, validate_config

    logging.getLogger("ray.autoscaler").setLevel(logging.ERROR)
    config = prepare_config(copy.deepcopy(raw))  # fills Ray's provider defaults, merges setup commands
    validate_config(config)  # ray-schema.json, head_node_type, min/max workers
    return config


def test_ray_accepts_it(prepared):
    assert prepared["head_node_type"] in prepared["available_node_types"]


def test_validator_rejects_a_broken_copy(raw):
    from jsonschema import ValidationError
    from ray.autoscaler._private.util import prepare_config, validate_config

    broken = copy.deepcopy(raw)
    broken["available_node_types"]["gpu_worker"]["resources"] = {"GPU": "one"}
    with pytest.raises(ValidationError):
        validate_config(prepare_config(broken))


def test_gpu_workers_and_idle_timeout(prepared):
    types = prepared["available_node_types"]
    gpu = [t for name, t in types.items() if name != prepared["head_node_type"] and t["resources"].get("GPU", 0) >= 1]
    assert gpu, "no worker node type offers a GPU"
    assert all(t["max_workers"] >= 1 for t in gpu)
    assert prepared["idle_timeout_minutes"] > 0


def test_every_node_installs_the_project(prepared, raw):
    mounts = raw["file_mounts"]
    for local in ("./pyproject.toml", "./agents", "./channels", "./runtime", "./topologies"):
        assert local in mounts.values() and (ROOT / local).exists()
    project = next(remote for remote, local in mounts.items() if local == "./pyproject.toml").rsplit("/", 1)[0]
    for commands in (prepared["head_setup_commands"], prepared["worker_setup_commands"]):
        installs = [c for c in commands if "pip install" in c and " -e " in c]
        assert installs and project.replace("/home/ubuntu", "~") in installs[0]


def test_token_auth_dashboard_zero_copy_metrics(prepared):
    head = " ".join(prepared["head_start_ray_commands"])
    worker = " ".join(prepared["worker_start_ray_commands"])
    for start in (head, worker):
        assert "RAY_AUTH_MODE=token" in start and "RAY_ENABLE_ZERO_COPY_TORCH_TENSORS=1" in start
        assert "--metrics-export-port=" in start
    assert "--dashboard-host=127.0.0.1" in head
    assert "~/.ray/auth_token" in prepared["file_mounts"].values()
