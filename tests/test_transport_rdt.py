"""rdt transport: backend checks, group setup guards, and a real gloo hand-off on CPU."""
from __future__ import annotations

import sys

import pytest
import torch

from latentray.channels.errors import TransportError, TransportUnavailable
from latentray.channels.message import LatentMessage
from latentray.channels.transports import (RdtMethods, RdtTransport, create_group, destroy_group,
                                 get_transport, producer_method)
from latentray.channels.transports.rdt import BACKENDS, backend_problem


def kv_message(seed: int, device: str = "cpu") -> LatentMessage:
    g = torch.Generator().manual_seed(seed)
    return LatentMessage.build("kv", "sender", {"model": "tiny"}, {
        "keys": torch.randn(2, 1, 2, 16, 8, generator=g).to(torch.bfloat16).to(device),
        "values": torch.randn(2, 1, 2, 16, 8, generator=g).to(device),
        "mask": (torch.rand(1, 16, generator=g) > 0.3).to(device),
        "positions": torch.arange(16).unsqueeze(0).to(device),
    }, layers=(0, 1), seq_lens=(16,), trace_id=f"trace{seed}")


def bits(msg: LatentMessage) -> dict:
    return {k: t.cpu().contiguous().reshape(-1).view(torch.uint8) for k, t in msg.tensors.items()}


def assert_bit_exact(a: LatentMessage, b: LatentMessage):
    assert a.header == b.header
    ours, theirs = bits(a), bits(b)
    assert ours.keys() == theirs.keys()
    for name in ours:
        assert a.tensors[name].dtype == b.tensors[name].dtype, name
        assert torch.equal(ours[name], theirs[name]), name


def test_unknown_backend_is_a_typed_error():
    with pytest.raises(TransportUnavailable, match="unknown rdt backend 'smoke'"):
        get_transport("rdt", backend="smoke")
    with pytest.raises(TransportUnavailable, match="gloo"):
        producer_method(object(), "smoke")


@pytest.mark.skipif(torch.cuda.is_available(), reason="checks the message given without CUDA")
def test_cuda_backends_without_cuda_say_what_to_use():
    for backend in ("nccl", "cuda_ipc"):
        assert "no GPU" in backend_problem(backend) and "object_store" in backend_problem(backend)


def test_gloo_is_available_here_and_every_backend_has_a_producer_method():
    assert backend_problem("gloo") is None
    for backend in BACKENDS:
        assert callable(getattr(RdtMethods, f"run_step_{backend}"))


def test_pack_checks_device_and_unpack_checks_shape():
    with pytest.raises(TransportError, match="moves cuda tensors"):
        RdtTransport("nccl").pack(kv_message(0))
    packed = RdtTransport("gloo").pack(kv_message(0))
    assert_bit_exact(packed, RdtTransport("gloo").unpack(packed))
    with pytest.raises(TransportError, match="expected a LatentMessage"):
        RdtTransport("gloo").unpack({"keys": torch.zeros(1)})


@pytest.fixture(scope="module")
def remote_classes(ray_session):
    ray = ray_session
    ray.cloudpickle.register_pickle_by_value(sys.modules[__name__])  # workers cannot import tests/

    class Agent(RdtMethods):
        def __init__(self, device="cpu"):
            self.device = device

        def produce(self, seed):
            return kv_message(seed, self.device)

        def receive(self, msg, backend):
            got = get_transport("rdt", backend=backend).unpack(msg)
            return RdtTransport(backend).pack(got).replace(
                tensors={k: t.cpu().clone() for k, t in got.tensors.items()})

    class PlainReceiver:  # no producer methods, so Ray leaves tensor transport off
        def ready(self):
            return True

    return ray, ray.remote(enable_tensor_transport=True)(Agent), ray.remote(PlainReceiver)


@pytest.mark.ray
def test_create_group_refuses_actor_without_tensor_transport(remote_classes):
    ray, Agent, Plain = remote_classes
    a, b = Agent.remote(), Plain.remote()
    with pytest.raises(TransportError, match="enable_tensor_transport=True"):
        create_group([a, b], "gloo")
    for actor in (a, b):
        ray.kill(actor)


@pytest.mark.ray
def test_gloo_hand_off_between_actors_is_bit_exact(remote_classes):
    ray, Agent, _ = remote_classes
    producer, receiver = Agent.remote(), Agent.remote()
    group = create_group([producer, receiver], "gloo")
    try:
        ref = producer_method(producer, "gloo").remote(5)
        got = ray.get(receiver.receive.remote(ref, "gloo"))
        assert_bit_exact(kv_message(5), got)
        assert got.tensors["keys"].dtype == torch.bfloat16
        with pytest.raises(ValueError, match="not allowed on RDT objects"):
            ray.get(ref)  # two-sided: only the receiving actor can fetch it
    finally:
        destroy_group(group)
        for actor in (producer, receiver):
            ray.kill(actor)


@pytest.mark.ray
@pytest.mark.gpu
@pytest.mark.parametrize("backend", ["nccl", "cuda_ipc"])
def test_gpu_hand_off_is_bit_exact(remote_classes, backend):
    ray, Agent, _ = remote_classes
    if backend == "nccl" and torch.cuda.device_count() < 2:
        pytest.skip("nccl needs one GPU per actor")
    gpus = 1 if backend == "nccl" else 0.5  # cuda_ipc shares one device between the two actors
    producer, receiver = (Agent.options(num_gpus=gpus).remote("cuda") for _ in range(2))
    group = create_group([producer, receiver], backend)
    try:
        got = ray.get(receiver.receive.remote(producer_method(producer, backend).remote(9), backend))
        assert_bit_exact(kv_message(9), got)
    finally:
        destroy_group(group)
        for actor in (producer, receiver):
            ray.kill(actor)


def test_pop_stats_raises_the_error_of_a_failed_step():
    """An rdt step's stats wait in the actor for pop_stats; a step that failed leaves its
    error there instead, and pop_stats raises it (then forgets it) rather than a KeyError."""
    from latentray.agents.actor import AgentActor
    from latentray.agents.errors import ProblemInputError
    from latentray.agents.step_call import StepCall

    actor = AgentActor.__new__(AgentActor)  # no model: only the stats bookkeeping runs
    actor._stats = {}

    def too_long(call, questions, inbox):
        raise ProblemInputError("prompt too long", {0: "prompt too long"})

    actor._execute = too_long
    with pytest.raises(ProblemInputError):
        actor.produce(StepCall("planner", "planner", "latent", batch=3), ["q"])
    with pytest.raises(ProblemInputError, match="prompt too long") as e:
        actor.pop_stats(3, "planner")
    assert e.value.rows == {0: "prompt too long"} and actor._stats == {}
    actor._execute = lambda call, questions, inbox: (["message"], {"step": call.step_id})
    assert actor.produce(StepCall("critic", "critic", "latent", batch=3), ["q"]) == "message"
    assert actor.pop_stats(3, "critic") == {"step": "critic"}


def rdt_chain(**limits):
    """The example chain on a tiny model in two actors (each hop crosses), every edge over rdt
    (gloo on CPU), short steps."""
    from pathlib import Path

    from helpers import in_two_actors, with_model_ref
    from latentray.topologies import load_spec

    spec = with_model_ref(load_spec(Path(__file__).resolve().parents[1] / "topologies/examples/latent_chain.yaml"),
                          "tiny:qwen3-64")
    agents = {k: a.model_copy(update={"max_new_tokens": 4, "latent_steps": 1}) for k, a in spec.agents.items()}
    return in_two_actors(spec.model_copy(update={
        "agents": agents, "run": spec.run.model_copy(update={"batch_size": 3}),
        "channels": spec.channels.model_copy(update={"transport": "rdt", "rdt_backend": "gloo"}),
        "limits": spec.limits.model_copy(update=limits)}))


@pytest.mark.ray
def test_a_step_error_on_an_rdt_edge_reaches_the_driver_as_itself(ray_session):
    """A step that fails on an rdt edge keeps its stats slot for its error, so the driver's
    scheduler sees the ProblemInputError (not a KeyError for missing stats): the problem
    whose prompt is too long fails with that reason and its batch-mates are answered."""
    from latentray.runtime.engine.run import run_spec
    from latentray.topologies import build_plan

    spec = rdt_chain(max_prompt_tokens=400)
    plan = build_plan(spec)
    assert {e.transport for s in plan.steps for e in s.inputs} == {"rdt"}
    long = "Please consider this carefully. " * 20 + "What is 1 plus 1?"
    questions = ["What is 2 plus 3?", long, "What is 4 plus 5?"]
    result = run_spec(spec, plan, questions, run_name="rdt-step-error")
    assert set(result.failed) == {1}, result.failed
    assert "limits.max_prompt_tokens = 400" in result.failed[1] and "step planner" in result.failed[1]
    assert all(isinstance(result.answers[i], str) for i in (0, 2))
