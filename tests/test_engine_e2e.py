"""The example chain through real Ray actors: names, answers, batch equivalence, no mutation
(on a tiny model). The example as shipped, on its real model, answers in
tests/test_documented_examples.py."""
import pytest
import torch

from latentray.agents.agent import Agent
from latentray.agents.fingerprint import model_fingerprint
from latentray.runtime.engine.agent_configs import agent_configs_for
from latentray.agents.models import build_tiny
from latentray.channels.message import message_checksum
from latentray.channels.transports import get_transport
from latentray.runtime.engine.actors import kill_actors, start_actors
from latentray.runtime.engine.run import run_spec
from latentray.runtime.engine.steps import compile_steps, submit_unit
from latentray.topologies import build_plan, load_spec
from latentray.topologies.errors import SpecError

from helpers import QUESTIONS, in_two_actors, one_actor, settled_store_bytes, with_model_ref

pytestmark = pytest.mark.ray
EXAMPLE = "topologies/examples/latent_chain.yaml"


@pytest.fixture(scope="module")
def example():
    from pathlib import Path
    spec = load_spec(Path(__file__).resolve().parents[1] / EXAMPLE)
    spec = spec.model_copy(update={"run": spec.run.model_copy(update={"batch_size": 2})})
    spec = with_model_ref(spec, "tiny:qwen3-64")
    return spec, build_plan(spec)


def transfer_full(spec):
    """The spec re-sending the whole memory at every hop instead of each agent's part once."""
    return spec.model_copy(update={"topology": spec.topology.model_copy(update={"transfer": "full"})})


@pytest.fixture(scope="module")
def example_run(ray_session, example):
    """The example on QUESTIONS (2 batches), read by several tests: its result, the actor
    ids seen while it ran, and the store's bytes in use before and after it. Its actors are
    started for it (the warm pool emptied first), so they carry its names."""
    from latentray.runtime.engine import warm_actors

    spec, plan = example
    seen = []
    warm_actors.clear()

    def on_batch(done):
        for agent in plan.agents:  # named actors are alive while the run goes on
            seen.append(ray_session.get_actor(f"e2e/{agent}")._actor_id.hex())

    before = settled_store_bytes(ray_session)
    result = run_spec(spec, plan, QUESTIONS, run_name="e2e", on_batch=on_batch)
    return result, seen, before, settled_store_bytes(ray_session)


@pytest.fixture(scope="module")
def full_run(ray_session, example):
    """The same run with the whole memory re-sent at every hop, in one shared actor."""
    full = one_actor(transfer_full(example[0]))
    return run_spec(full, build_plan(full), QUESTIONS, run_name="full")


def test_example_runs_and_names_actors(ray_session, example, example_run):
    spec, plan = example
    result, seen, before, after = example_run
    # every message of the run was freed once its batch finished and the actors stopped
    assert after <= before + (64 << 10)
    assert len(result.answers) == len(QUESTIONS) and all(isinstance(a, str) for a in result.answers)
    assert result.actor_names == sorted(f"e2e/{a}" for a in ("planner", "critic", "refiner", "judger"))
    assert len(set(seen)) == 4 and len(seen) == 4 * 2  # 2 batches, the same 4 actors
    # delta working memory: each agent's own part, read by every later agent (6 reads per
    # batch of 3 parts written once each)
    assert [(r["src"], r["dst"]) for r in result.trace[:6]] == [
        ("planner", "critic"), ("planner", "refiner"), ("critic", "refiner"),
        ("planner", "judger"), ("critic", "judger"), ("refiner", "judger")]
    assert all(len(s["out_bytes"]) == 1 for s in result.steps if s["agent"] != "judger")  # one object per part
    assert all(r["kind"] == "kv" and r["bytes"] > 0 for r in result.trace)
    assert all(0 <= t <= spec.agents["judger"].max_new_tokens for t in result.tokens)
    assert sum(result.tokens) > 0
    summary = result.summary(spec, plan)
    assert summary["questions"] == 4 and summary["latent_steps"]["planner"] == 8


def test_batch_equals_alone_across_actors(ray_session, example):
    spec, plan = example
    pool = start_actors(spec, plan, "eq")
    try:
        steps = compile_steps(plan, checksum=True)
        batch = submit_unit(steps, pool, QUESTIONS, 0)
        alone = [submit_unit(steps, pool, [q], i + 1) for i, q in enumerate(QUESTIONS)]
        batch_text = ray_session.get(batch["judger"][0])["texts"]
        store = get_transport("object_store")
        parts = ("planner", "critic", "refiner")  # delta memory: each agent's own part

        def received(refs):
            return [store.unpack(ray_session.get(refs[p][0])) for p in parts]

        batch_parts = received(batch)
        model, tok = build_tiny("qwen3-64", seed=0)
        judger = Agent(agent_configs_for(["judger"], spec)["judger"], model, tok,
                       model_fingerprint(model, tok))
        batch_logits = judger.prefill(QUESTIONS, batch_parts, kv_merge="concat").logits
        for row, refs in enumerate(alone):
            one_parts = received(refs)
            for part_b, part_1 in zip(batch_parts, one_parts):
                # real slots by mask: each agent's padding sits at the start of its part
                real_b = part_b.tensors["mask"][row].bool()
                real_1 = part_1.tensors["mask"][0].bool()
                assert torch.equal(part_b.tensors["positions"][row][real_b], part_1.tensors["positions"][0][real_1])
                for name in ("keys", "values"):
                    diff = part_b.tensors[name][:, row][:, :, real_b] - part_1.tensors[name][:, 0][:, :, real_1]
                    assert diff.abs().max().item() <= 1e-4
            logits = judger.prefill([QUESTIONS[row]], one_parts, kv_merge="concat").logits[0]
            assert (batch_logits[row] - logits).abs().max().item() <= 1e-4
            assert ray_session.get(refs["judger"][0])["texts"][0] == batch_text[row]
        # every message still holds the bytes its sender wrote, after all receivers ran
        for step in ("planner", "critic", "refiner"):
            stats = ray_session.get(batch[step][-1])
            received = get_transport("object_store").unpack(ray_session.get(batch[step][0]))
            assert message_checksum(received) == stats["out_checksums"][0]
    finally:
        kill_actors(pool.handles())


def test_chain_over_rdt_gloo_answers_like_object_store(ray_session, example, full_run):
    """The rdt code path (gloo on CPU) through the engine: same messages, same answers. Two
    actors, so most edges cross between them and some stay inside one."""
    spec, plan = example
    channels = spec.channels.model_copy(update={"transport": "rdt", "rdt_backend": "gloo"})
    rdt_spec = in_two_actors(spec.model_copy(update={"channels": channels}))
    rdt_plan = build_plan(rdt_spec)
    assert {e.transport for s in rdt_plan.steps for e in s.inputs} == {"rdt"}
    over_rdt = run_spec(rdt_spec, rdt_plan, QUESTIONS[:2], run_name="rdt")  # rdt re-sends the whole memory
    # the object store's whole-memory run had the same first batch (batch size 2)
    assert over_rdt.answers == full_run.answers[:2]
    assert [r["bytes"] for r in over_rdt.trace] == [r["bytes"] for r in full_run.trace if r["batch"] == 0]


def test_per_edge_compression_through_actors(ray_session, example, full_run):
    """Each edge compresses on the sender and decompresses on the receiver; the trace
    records the bytes that travelled."""
    spec, plan = example
    edges = ({"src": "planner", "dst": "critic", "compression": ["bf16"]},
             {"src": "critic", "dst": "refiner", "compression": ["int8"]},
             {"src": "refiner", "dst": "judger", "compression": ["latent_only"]})
    from latentray.topologies.spec import EdgeChannel
    channels = spec.channels.model_copy(update={"edges": tuple(EdgeChannel(**e) for e in edges)})
    small = one_actor(spec.model_copy(update={"channels": channels}))
    questions = QUESTIONS[:2]
    # compressed hops re-send the whole memory (delta parts only travel uncompressed): compare
    # with the uncompressed whole memories of the same first batch
    full = {r["dst"]: r["bytes"] for r in full_run.trace if r["batch"] == 0}
    result = run_spec(small, build_plan(small), questions, run_name="small")
    sent = {r["dst"]: r["bytes"] for r in result.trace}
    assert len(result.answers) == 2 and all(isinstance(a, str) for a in result.answers)
    assert 0.5 < sent["critic"] / full["critic"] < 0.55  # float payload halves; mask/positions stay int64
    assert 0.25 < sent["refiner"] / full["refiner"] < 0.3  # int8 plus per-channel scales
    # latent_only keeps the refiner's 8 latent slots of each row, out of its whole memory
    layers, heads, head_dim = 2, 2, 16
    per_slot = 2 * layers * heads * head_dim * 4 + 2 * 8  # keys+values fp32, mask+positions int64
    assert sent["judger"] == len(questions) * 8 * per_slot


@pytest.mark.parametrize("method", ["text", "single"])
def test_baselines_run_through_the_same_engine(ray_session, example, method):
    spec, _ = example
    base = one_actor(spec.model_copy(update={"run": spec.run.model_copy(update={"method": method})}))
    plan = build_plan(base)
    result = run_spec(base, plan, QUESTIONS[:2], run_name=f"base-{method}")
    assert len(result.answers) == 2
    assert all(s["latent_steps"] == 0 for s in result.steps)  # no latent thought in a baseline
    if method == "single":
        assert plan.agents == ("judger",) and result.trace == []
        return
    # memory accumulate: each agent reads every earlier agent's text, as the latent judger's
    # memory holds every earlier agent's thoughts
    assert [(r["src"], r["dst"], r["kind"]) for r in result.trace] == [
        ("planner", "critic", "text"), ("planner", "refiner", "text"), ("critic", "refiner", "text"),
        ("planner", "judger", "text"), ("critic", "judger", "text"), ("refiner", "judger", "text")]
    sizes = {}
    for r in result.trace:  # one message per sender, read whole by each of its readers
        sizes.setdefault(r["src"], set()).add(r["bytes"])
    assert all(len(v) == 1 and min(v) > 0 for v in sizes.values())
    # every agent writes text: each row counts tokens from all four agents
    writers = [s for s in result.steps if sum(s["tokens"]) > 0]
    assert {s["agent"] for s in writers} >= {"planner", "critic", "refiner"}
    assert result.summary(base, plan)["latent_steps"] == dict.fromkeys(plan.agents, 0)


def test_actors_that_cannot_be_placed_are_refused_not_awaited(ray_session, example):
    spec, _ = example
    greedy = spec.agents["planner"].model_copy(
        update={"resources": spec.agents["planner"].resources.model_copy(update={"num_cpus": 1000})})
    big = spec.model_copy(update={"agents": {**spec.agents, "planner": greedy}})
    with pytest.raises(SpecError, match=r"agents.\*.replicas, agents.\*.resources: the run's actors \(every "
                                        r"replica counted\) need 1003 CPU but the Ray cluster has 8 \(fix: lower"):
        run_spec(big, build_plan(big), QUESTIONS[:1], run_name="too-big")


def test_run_survives_an_actor_dying(ray_session, example, example_run):
    """Kill the critic's actor after the first batch: it restarts, its steps are retried,
    and every problem is answered exactly once, as in an undisturbed run."""
    spec, plan = example
    clean = example_run[0]
    killed = []

    def kill_critic(done):
        if not killed:  # by the name it has, which is another run's if it was a warm actor
            critic = ray_session.get_actor(next(s["actor"] for s in done.step_stats if s["agent"] == "critic"))
            ray_session.kill(critic, no_restart=False)
            killed.append(done.indices[0])

    # the undisturbed run's two batches twice over: the critic still has work at the kill
    questions = QUESTIONS * 2
    crashed = run_spec(one_actor(spec, alone="critic"), plan, questions, run_name="crash", on_batch=kill_critic)
    assert killed
    # the critic really ran before and after its restart, in two processes
    assert len({s["pid"] for s in crashed.steps if s["agent"] == "critic"}) == 2
    assert crashed.answers == clean.answers * 2
    assert crashed.tokens == clean.tokens * 2
    assert crashed.retries >= 1 and clean.retries == 0 and not crashed.failed
    # one judger step per batch: nothing lost, nothing counted twice
    batches = len(questions) // spec.run.batch_size
    assert sorted(s["batch"] for s in crashed.steps if s["agent"] == "judger") == list(range(batches))


def test_delta_memory_writes_each_part_once_and_answers_like_full_resend(example_run, full_run):
    """transfer delta (the default) against re-sending the whole memory at every hop: the
    same answers and tokens through the actors, each agent's part written to the store once."""
    delta, full = example_run[0], full_run
    assert delta.answers == full.answers and delta.tokens == full.tokens

    def written(result):
        return sum(sum(s.get("out_bytes", [])) for s in result.steps)

    assert written(full) > 1.5 * written(delta)
    # the judger's memory is the same size either way: all three parts
    judger_in = {r["src"]: r["bytes"] for r in delta.trace if r["dst"] == "judger" and r["batch"] == 0}
    assert set(judger_in) == {"planner", "critic", "refiner"}
    full_in = [r["bytes"] for r in full.trace if r["dst"] == "judger" and r["batch"] == 0]
    assert sum(judger_in.values()) == pytest.approx(full_in[0], rel=0.02)
