"""KV join: caches from several senders of one model, moved by rotating keys, not recomputed."""
from __future__ import annotations

import pytest
import torch

from latentray.agents.agent import Agent, AgentConfig
from latentray.agents.fingerprint import model_fingerprint
from latentray.agents.forward import next_positions
from latentray.agents.inbox import Inbox, merge_inbox
from latentray.agents.kv_join import join_kv, rope_inv_freq
from latentray.agents.models import build_tiny
from latentray.channels.errors import MessageError

import helpers

QUESTIONS = ["What is 2 + 3?", "A much longer question about trains leaving two stations at noon?"]


def make_agent(preset: str, name: str, role: str, steps: int) -> Agent:
    model, tok = build_tiny(preset, seed=1)
    return Agent(AgentConfig(name=name, role=role + " {question}", latent_steps=steps), model, tok,
                 model_fingerprint(model, tok))


@pytest.fixture(scope="module")
def agents():
    model, tok = build_tiny("qwen3-64", seed=1)
    fp = model_fingerprint(model, tok)
    make = lambda name, role, steps: Agent(  # noqa: E731
        AgentConfig(name=name, role=role + " {question}", latent_steps=steps), model, tok, fp)
    return (make("a", "You plan.", 3), make("b", "You are a critic who checks plans.", 2),
            make("c", "Answer:", 0), make("d", "Third.", 1))


def thoughts_at(agent: Agent, start: torch.Tensor):
    return helpers.thoughts_at(agent, QUESTIONS, start)


def concat(first, second):
    """Reference working memory: two caches side by side, computed where they end up."""
    t1, t2 = first.tensors, second.tensors
    tensors = {k: torch.cat([t1[k], t2[k]], dim=3 if k in ("keys", "values") else 1) for k in t1}
    return first.replace(tensors=tensors)


def receiver_logits(agent: Agent, kv) -> torch.Tensor:
    return agent.prefill(QUESTIONS, Inbox(kv=kv)).logits


def test_two_senders_match_one_model_reading_both_contexts(agents):
    a, b, c, _ = agents
    zero = torch.zeros(len(QUESTIONS), dtype=torch.long)
    msg_a, msg_b = thoughts_at(a, zero), thoughts_at(b, zero)
    assert msg_a.tensors["mask"].shape[1] > int(msg_a.tensors["mask"][0].sum())  # row 0 is left padded
    after_a = next_positions(msg_a.tensors["mask"], msg_a.tensors["positions"])
    reference = concat(msg_a, thoughts_at(b, after_a))
    joined = join_kv([msg_a, msg_b], c.model)
    assert torch.equal(joined.tensors["positions"] * joined.tensors["mask"],
                       reference.tensors["positions"] * reference.tensors["mask"])
    assert torch.equal(joined.tensors["mask"], reference.tensors["mask"])
    got, want = receiver_logits(c, joined), receiver_logits(c, reference)
    diff = (got - want).abs().max().item()
    print(f"kv join max |logits diff| = {diff:.2e}")
    assert diff < 1e-4
    # Not rotating would be wrong: the test can tell the difference.
    naive = concat(msg_a, msg_b.replace(tensors={**msg_b.tensors,
                                                 "positions": msg_b.tensors["positions"] + after_a[:, None]}))
    assert (receiver_logits(c, naive) - want).abs().max().item() > 1e-3


def test_three_senders_and_inbox_order(agents):
    a, b, c, d = agents
    zero = torch.zeros(len(QUESTIONS), dtype=torch.long)
    msgs = [thoughts_at(x, zero) for x in (a, b, d)]
    ends = next_positions(msgs[0].tensors["mask"], msgs[0].tensors["positions"])
    ref = concat(msgs[0], thoughts_at(b, ends))
    ref = concat(ref, thoughts_at(d, next_positions(ref.tensors["mask"], ref.tensors["positions"])))
    box = merge_inbox(msgs, receiver="c", rope_join=lambda ms: join_kv(ms, c.model, "c"))
    assert box.kv.sender == "a+b+d"
    assert (receiver_logits(c, box.kv) - receiver_logits(c, ref)).abs().max().item() < 1e-4


def test_rotated_keys_equal_keys_computed_at_the_new_positions(agents):
    a = agents[0]
    first = thoughts_at(a, torch.zeros(len(QUESTIONS), dtype=torch.long))
    after = next_positions(first.tensors["mask"], first.tensors["positions"])
    moved = join_kv([first, first], a.model)
    direct = concat(first, thoughts_at(a, after))
    real = direct.tensors["mask"][None, :, None, :, None].bool()
    assert torch.allclose(moved.tensors["keys"] * real, direct.tensors["keys"] * real, atol=1e-5)
    assert torch.allclose(moved.tensors["values"], direct.tensors["values"], atol=1e-5)


def test_single_message_passes_through(agents):
    a = agents[0]
    msg = thoughts_at(a, torch.zeros(2, dtype=torch.long))
    assert join_kv([msg], a.model) is msg


def test_gpt2_is_refused_with_a_clear_error():
    g = make_agent("gpt2-64", "g", "Hi.", 1)
    with pytest.raises(MessageError, match="no rotary position embedding .* send kind hidden"):
        rope_inv_freq(g.model, "g")


def test_length_dependent_rope_is_refused(agents):
    a = agents[0]
    rotary = a.model.model.rotary_emb
    rotary.rope_type = "dynamic"
    try:
        with pytest.raises(MessageError, match="rope type 'dynamic' has length-dependent frequencies"):
            rope_inv_freq(a.model)
    finally:
        rotary.rope_type = "default"


def test_partial_rotary_is_refused(agents):
    a = agents[0]
    rotary = a.model.model.rotary_emb
    full = rotary.inv_freq
    rotary.inv_freq = full[: full.numel() // 2]
    try:
        with pytest.raises(MessageError, match=r"partial rotary dims \(8 of head dim 16\)"):
            rope_inv_freq(a.model)
    finally:
        rotary.inv_freq = full


def test_different_models_are_refused(agents):
    a = agents[0]
    other = make_agent("qwen3-64", "o", "Other.", 1)
    other.model.model.embed_tokens.weight.data += 1.0
    other.fingerprint = model_fingerprint(other.model, other.tokenizer)
    zero = torch.zeros(2, dtype=torch.long)
    with pytest.raises(MessageError, match="come from different models"):
        join_kv([thoughts_at(a, zero), thoughts_at(other, zero)], a.model)
