"""Every received working memory starts with the conversation's head: the tokens a
full-context render writes before the first turn's content (BOS, the system header, the
first turn's opening), at positions 0.., exactly once. Real models lean on the first
token as an attention sink; a memory made of parts that start mid-conversation (memory
previous, a mesh's later rounds) would otherwise have none, and a join of several
senders would otherwise hold one head per sender.

Plans come from the real topologies and run in plain Python (no Ray), step by step as the
engine runs them; the head's keys and values are computed independently, by the model's
own forward over the head's token ids."""
from __future__ import annotations

import pytest
import torch
from transformers import DynamicCache

from latentray.agents.agent import Agent, AgentConfig
from latentray.agents.fingerprint import model_fingerprint
from latentray.agents.kv_cache import cache_layers
from latentray.agents.models import build_tiny
from latentray.topologies import build_plan, parse_spec

from helpers import QUESTIONS

SYSTEM = "You are one of a careful team."
MARK = "@@FIRST-TURN@@"


def spec_for(topology: dict, agents: list, answer: str) -> dict:
    return {"version": 1, "models": {"m": {"ref": "tiny:qwen3-64"}},
            "agents": {a: {"model": "m", "role": f"{a} {{question}}", "latent_steps": 2,
                           **({"output": "text"} if a == answer else {})} for a in agents},
            "topology": topology, "channels": {"kind": "kv"}}


def team(preset: str, names: list, system: str | None = SYSTEM) -> dict:
    model, tok = build_tiny(preset, seed=2)
    fp = model_fingerprint(model, tok)
    return {n: Agent(AgentConfig(name=n, role=f"You are {n}. Problem: {{question}}", latent_steps=2,
                                 system_prompt=system), model, tok, fp) for n in names}


def run_plan(plan, agents: dict, questions: list) -> dict:
    """Each step's working state, as the engine's steps build them (latent steps send kv
    with the step's scope; the answering step only prefills)."""
    messages, states = {}, {}
    for step in plan.steps:
        agent = agents[step.agent]
        inbox = [messages[e.src] for e in step.inputs]
        if step.action == "text":
            states[step.id] = agent.prefill(questions, inbox, kv_merge=step.kv_merge)
            continue
        state = agent.think(agent.prefill(questions, inbox, reserve=agent.config.latent_steps,
                                          kv_merge=step.kv_merge, layout="slots"))
        states[step.id] = state
        messages[step.id] = agent.emit(state, "kv", step.kv_scope)
    return states


def head_ids(tok, system: str | None) -> list:
    """The template's text before the first turn's content, tokenized on its own."""
    turns = ([{"role": "system", "content": system}] if system is not None else []) + \
        [{"role": "user", "content": MARK}]
    text = tok.apply_chat_template(turns, add_generation_prompt=True, tokenize=False)
    return tok(text.split(MARK)[0], add_special_tokens=False)["input_ids"]


@torch.inference_mode()
def head_memory(model, ids: list) -> tuple:
    """Keys and values [L, H, h, D] of the head alone at positions 0..h-1 (a cache that keeps
    every slot, so a sliding window does not drop the head's start)."""
    cache = DynamicCache()
    model(input_ids=torch.tensor([ids]), cache=cache, use_cache=True)
    pairs = cache_layers(cache)
    return torch.stack([k[0] for k, _ in pairs]), torch.stack([v[0] for _, v in pairs])


def copies(values: torch.Tensor, head: torch.Tensor) -> int:
    """How many runs of consecutive slots of values [H, n, D] equal head [H, h, D]."""
    h = head.shape[1]
    return sum(torch.allclose(values[:, i:i + h], head, atol=1e-4, rtol=1e-4)
               for i in range(values.shape[1] - h + 1))


def assert_starts_with_head(state, ids: list, head: tuple, where: str, count_copies: bool = True) -> None:
    """The first real slots of every row are the head; no other slot is. count_copies: also
    look for the head's values elsewhere (a head that is only a turn's opening recurs at
    every turn, so it is counted by position alone)."""
    keys, values = state.cache.memory(0)
    ref_k, ref_v = head
    h = len(ids)
    for b in range(state.mask.shape[0]):
        real = state.mask[b].nonzero().flatten()
        first = real[:h]
        assert state.positions[b, first].tolist() == list(range(h)), f"{where}, row {b}: head positions"
        assert torch.allclose(keys[:, b][:, :, first], ref_k, atol=1e-4, rtol=1e-4), f"{where}, row {b}: head keys"
        assert torch.allclose(values[:, b][:, :, first], ref_v, atol=1e-4, rtol=1e-4), f"{where}, row {b}: values"
        assert int((state.positions[b, real] < h).sum()) == h, f"{where}, row {b}: a second slot at a head position"
        if count_copies:
            assert copies(values[0, b][:, real], ref_v[0]) == 1, f"{where}, row {b}: the head is there twice"


def check_receivers(plan, agents: dict, system: str | None = SYSTEM) -> None:
    any_agent = next(iter(agents.values()))
    ids = head_ids(any_agent.tokenizer, system)
    first = plan.steps[0]
    for q in QUESTIONS:  # the head is what the full-context render starts with
        assert agents[first.agent].render(q)[0][:len(ids)] == ids
    head = head_memory(any_agent.model, ids)
    states = run_plan(plan, agents, QUESTIONS)
    receivers = [s for s in plan.steps if s.inputs]
    assert receivers
    for step in receivers:
        assert_starts_with_head(states[step.id], ids, head, step.id, count_copies=system is not None)


@pytest.mark.parametrize("preset", ["qwen3-64", "llama-64", "gemma3-64", "gpt2-64"])
def test_chain_memory_previous_receivers_start_with_the_head(preset):
    names = ["planner", "critic", "refiner", "judger"]
    plan = build_plan(parse_spec(spec_for({"type": "chain", "memory": "previous"}, names, "judger")))
    assert [s.kv_scope for s in plan.steps[:-1]] == ["own"] * 3
    check_receivers(plan, team(preset, names))


def test_chain_without_a_system_prompt_starts_with_the_first_turns_opening():
    """No system header (the tiny template has no default): the head is the first turn's
    opening, still the sequence's first token."""
    names = ["planner", "critic", "judger"]
    plan = build_plan(parse_spec(spec_for({"type": "chain", "memory": "previous"}, names, "judger")))
    agents = team("qwen3-64", names, system=None)
    assert agents["planner"].tokenizer.decode(head_ids(agents["planner"].tokenizer, None)) == "<|im_start|>user\n"
    check_receivers(plan, agents, system=None)


@pytest.mark.parametrize("preset", ["qwen3-64", "gemma3-64", "smollm3-64"])
def test_two_round_mesh_receivers_hold_one_head(preset):
    """Round 2 joins two senders that each start with the head: one head is kept. The
    judge joins round-2 parts that start mid-conversation: the head is written once."""
    names = ["a", "b", "c", "judge"]
    plan = build_plan(parse_spec(spec_for({"type": "mesh", "rounds": 2, "judger": "judge"}, names, "judge")))
    assert plan.step("final/judge").inputs and all(s.kv_scope == "own" for s in plan.steps if s.action == "latent")
    check_receivers(plan, team(preset, names))


def test_graph_memory_previous_receivers_start_with_the_head():
    names = ["a", "b", "c", "d"]
    edges = [{"src": x, "dst": y} for x, y in zip(names, names[1:])]
    plan = build_plan(parse_spec(spec_for({"type": "graph", "edges": edges, "memory": "previous"}, names, "d")))
    check_receivers(plan, team("llama-64", names))


def test_smollm2_memory_previous_receiver_begins_with_bos(smollm2):
    model, tok = smollm2
    fp = model_fingerprint(model, tok)
    roles = ["Plan: {question}", "Check the plan: {question}", "Answer: {question}"]
    agents = [Agent(AgentConfig(name=f"a{i}", role=r, latent_steps=1), model, tok, fp) for i, r in enumerate(roles)]
    question = ["What is 17 + 25?"]
    msg = agents[0].step(question, scope="own")
    msg = agents[1].step(question, [msg], scope="own")  # only the critic's own slots
    state = agents[2].prefill(question, [msg])
    ids = head_ids(tok, None)
    assert ids[0] == tok.bos_token_id and agents[0].render(question[0])[0][:len(ids)] == ids
    bos_k, bos_v = head_memory(model, [tok.bos_token_id])
    keys, values = state.cache.memory(0)
    first = int(state.mask[0].nonzero()[0])
    assert int(state.positions[0, first]) == 0
    assert torch.allclose(keys[:, 0, :, first:first + 1], bos_k, atol=1e-3, rtol=1e-3)
    assert torch.allclose(values[:, 0, :, first:first + 1], bos_v, atol=1e-3, rtol=1e-3)
    assert int((state.positions[0][state.mask[0].bool()] == 0).sum()) == 1
