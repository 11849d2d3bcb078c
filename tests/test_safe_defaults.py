"""Safe defaults: the Ray latentray starts refuses calls without its token; remote model
code never runs unless a spec asks for it."""
import os
from pathlib import Path

import pytest

from latentray.topologies import load_spec
from latentray.topologies.spec import ModelSpec

pytestmark = pytest.mark.ray

ROOT = Path(__file__).resolve().parents[1]


def session_token() -> str:
    return os.environ.get("RAY_AUTH_TOKEN") or (Path.home() / ".ray" / "auth_token").read_text().strip()


def test_local_ray_refuses_calls_without_its_token(ray_session):
    import grpc
    from ray.core.generated import gcs_service_pb2, gcs_service_pb2_grpc

    channel = grpc.insecure_channel(ray_session.get_runtime_context().gcs_address)
    nodes = gcs_service_pb2_grpc.NodeInfoGcsServiceStub(channel)
    request = gcs_service_pb2.GetAllNodeInfoRequest()
    for metadata in ([], [("authorization", "Bearer not-the-token")]):
        with pytest.raises(grpc.RpcError) as refused:
            nodes.GetAllNodeInfo(request, timeout=10, metadata=metadata)
        assert refused.value.code() == grpc.StatusCode.UNAUTHENTICATED
    reply = nodes.GetAllNodeInfo(request, timeout=10, metadata=[("authorization", f"Bearer {session_token()}")])
    assert len(reply.node_info_list) == 1
    channel.close()


def test_remote_model_code_is_off_unless_a_spec_turns_it_on():
    assert ModelSpec(ref="tiny:qwen3-64").trust_remote_code is False
    for path in sorted((ROOT / "topologies" / "examples").glob("*.yaml")):
        spec = load_spec(path)
        assert not any(m.trust_remote_code for m in spec.models.values()), path.name
