"""A Ray that cannot start or be joined, and a setting a running cluster cannot take, are
each one line (`error: ...`, exit 2) naming what failed and the fix, before any actor starts.

No Ray starts here and nothing is sent anywhere but 127.0.0.1: ray.init is replaced by a
stand-in (Ray would rewrite 127.0.0.1 to this machine's network address and retry a dead
one for minutes); the address checks connect to 127.0.0.1 only.
"""
import socket
from pathlib import Path

import pytest
import ray
import yaml

from latentray.runtime.cli import main
from latentray.runtime.engine import ray_setup
from latentray.runtime.engine.errors import RunError
from latentray.topologies.spec import MIN_OBJECT_STORE_BYTES

EXAMPLE = Path(__file__).resolve().parents[1] / "topologies" / "examples" / "latent_chain.yaml"

# What Ray 2.x raises (a bare Exception, ray/_private/node.py) when its raylet does not
# register in time.
NODE_START_TIMEOUT = ("The current node timed out during startup. This could happen because some of the raylet "
                      "failed to startup or the GCS has become overloaded.")


def _dead_port() -> int:
    """A loopback port nothing listens on (bound, read, released)."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture
def no_ray(monkeypatch):
    """Ray as if not started in this process, with ray.init and ray.shutdown recorded
    instead of run; ray.init raises what `calls["init_raises"]` holds."""
    calls = {"init": [], "shutdown": 0, "init_raises": AssertionError("ray.init must not be called")}

    def fake_init(**kwargs):
        calls["init"].append(kwargs)
        raise calls["init_raises"]

    def fake_shutdown():
        calls["shutdown"] += 1

    monkeypatch.setattr(ray, "is_initialized", lambda: False)
    monkeypatch.setattr(ray, "init", fake_init)
    monkeypatch.setattr(ray, "shutdown", fake_shutdown)
    monkeypatch.delenv("RAY_ADDRESS", raising=False)
    monkeypatch.setattr(ray_setup, "STARTED_LOCALLY", False)
    return calls


def _tiny_spec(tmp_path, **limits) -> str:
    spec = yaml.safe_load(EXAMPLE.read_text())
    spec["models"]["base"]["ref"] = "tiny:qwen3-64"
    spec["limits"] = {**spec.get("limits", {}), **limits}
    path = tmp_path / "spec.yaml"
    path.write_text(yaml.safe_dump(spec))
    return str(path)


def _one_error_line(capsys) -> str:
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and "Traceback" not in err, err
    assert err.startswith("error: "), err
    return err


def test_run_at_an_address_where_nothing_listens_is_one_line(no_ray, tmp_path, capsys):
    address = f"127.0.0.1:{_dead_port()}"
    assert main(["run", _tiny_spec(tmp_path), "-q", "What is 1 + 1?", "--address", address]) == 2
    err = _one_error_line(capsys)
    assert f"cannot join the Ray cluster at {address}: nothing accepts connections there" in err
    assert "--address or RAY_ADDRESS" in err and ray_setup.ray_logs_dir() in err
    assert no_ray["init"] == []  # refused before ray.init: nothing retried, nothing left running


def test_serve_at_an_address_where_nothing_listens_is_one_line(no_ray, tmp_path, capsys):
    address = f"127.0.0.1:{_dead_port()}"
    argv = ["serve", _tiny_spec(tmp_path), "--port", "0", "--address", address]
    assert main(argv) == 2
    assert f"cannot join the Ray cluster at {address}" in _one_error_line(capsys)
    assert no_ray["init"] == []


def test_ray_address_from_the_environment_is_checked_too(no_ray, monkeypatch):
    address = f"127.0.0.1:{_dead_port()}"
    monkeypatch.setenv("RAY_ADDRESS", address)
    with pytest.raises(ray_setup.RayStartError, match=f"cannot join the Ray cluster at {address}"):
        ray_setup.ensure_ray()


def test_a_local_start_that_times_out_is_one_line(no_ray, tmp_path, capsys):
    no_ray["init_raises"] = Exception(NODE_START_TIMEOUT)
    assert main(["run", _tiny_spec(tmp_path), "-q", "What is 1 + 1?"]) == 2
    err = _one_error_line(capsys)
    assert err.startswith("error: cannot start a local Ray: The current node timed out during startup.")
    assert f"read its logs in {ray_setup.ray_logs_dir()}" in err and "`ray stop --force`" in err
    # a timed-out start is tried once more (load can miss Ray's deadline), then reported
    assert len(no_ray["init"]) == 2 and all(call["address"] == "local" for call in no_ray["init"])
    assert no_ray["shutdown"] == 2  # what each half-finished start left is stopped
    assert ray_setup.STARTED_LOCALLY is False


def test_a_local_start_that_times_out_once_starts_on_the_second_try(no_ray, monkeypatch):
    def init_once_late(**kwargs):
        no_ray["init"].append(kwargs)
        if len(no_ray["init"]) == 1:
            raise Exception("Timed out waiting for file /tmp/ray/session_x/logs/gcs_server.out")

    monkeypatch.setattr(ray, "init", init_once_late)
    ray_setup.ensure_ray()
    assert len(no_ray["init"]) == 2 and no_ray["init"][0] == no_ray["init"][1]
    assert no_ray["shutdown"] == 1 and ray_setup.STARTED_LOCALLY is True


def test_a_local_start_failing_otherwise_is_not_retried(no_ray):
    no_ray["init_raises"] = Exception("port 6379 is already in use")
    with pytest.raises(ray_setup.RayStartError, match="already in use"):
        ray_setup.ensure_ray()
    assert len(no_ray["init"]) == 1


def test_ray_exiting_the_process_during_start_is_caught(no_ray):
    no_ray["init_raises"] = SystemExit(15)  # what ray.init does when its core worker gives up
    with pytest.raises(ray_setup.RayStartError, match="cannot start a local Ray"):
        ray_setup.ensure_ray()


def test_start_errors_are_run_errors():
    assert issubclass(ray_setup.RayStartError, RunError)
    assert issubclass(ray_setup.ClusterStoreSizeError, RunError)


def test_object_store_size_with_a_cluster_address_is_refused_before_ray_starts(no_ray):
    with pytest.raises(ray_setup.ClusterStoreSizeError) as info:
        ray_setup.ensure_ray(address="127.0.0.1:6379", object_store_bytes=MIN_OBJECT_STORE_BYTES)
    text = str(info.value)
    assert "limits.object_store_bytes" in text and "127.0.0.1:6379" in text
    assert "remove limits.object_store_bytes" in text and "`ray start --object-store-memory" in text
    assert "\n" not in text and no_ray["init"] == []


def test_object_store_size_with_ray_address_in_the_environment_is_refused(no_ray, monkeypatch):
    monkeypatch.setenv("RAY_ADDRESS", "127.0.0.1:6379")
    with pytest.raises(ray_setup.ClusterStoreSizeError, match="limits.object_store_bytes"):
        ray_setup.ensure_ray(object_store_bytes=MIN_OBJECT_STORE_BYTES)
    assert no_ray["init"] == []


def test_object_store_size_on_a_run_joining_a_cluster_is_one_line(no_ray, tmp_path, capsys):
    spec = _tiny_spec(tmp_path, object_store_bytes=MIN_OBJECT_STORE_BYTES)
    assert main(["run", spec, "-q", "What is 1 + 1?", "--address", "127.0.0.1:6379"]) == 2
    err = _one_error_line(capsys)
    assert "limits.object_store_bytes" in err and "ray start --object-store-memory" in err
    assert no_ray["init"] == []
