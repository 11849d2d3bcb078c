"""A KV message as working memory computes what one model reading everything in sequence does."""
import pytest
import torch

from helpers import QUESTIONS, make_agents, reference_chain_logits, run_chain


@pytest.mark.parametrize("preset", ["qwen3-64", "llama-64", "gpt2-64"])
def test_two_agents_match_single_sequence(preset):
    model, _, agents = make_agents(preset, roles=("planner", "critic"), latent_steps=4)
    state, _ = run_chain(agents, [QUESTIONS[1]])
    expected = reference_chain_logits(model, agents, QUESTIONS[1])
    assert (state.logits[0] - expected).abs().max().item() <= 1e-4


@pytest.mark.parametrize("preset", ["qwen3-64", "llama-128"])
def test_four_agent_chain_matches_single_sequence(preset):
    model, _, agents = make_agents(preset, latent_steps=3)
    state, messages = run_chain(agents, [QUESTIONS[0]])
    expected = reference_chain_logits(model, agents, QUESTIONS[0])
    assert (state.logits[0] - expected).abs().max().item() <= 1e-4
    # the working memory grows by each agent's prompt plus its latent steps
    lens = [m.header.seq_lens[0] for m in messages]
    assert lens[0] < lens[1] < lens[2]
    assert all(m.header.latent_steps == 3 for m in messages)


def test_batched_chain_rows_match_single_sequence():
    """Rows of different lengths, left padded, each equal to its own full-context reference."""
    model, _, agents = make_agents("qwen3-64", latent_steps=2)
    state, _ = run_chain(agents, QUESTIONS)
    for row, q in enumerate(QUESTIONS):
        expected = reference_chain_logits(model, agents, q)
        assert (state.logits[row] - expected).abs().max().item() <= 1e-4, q


def test_own_scope_message_holds_only_the_senders_slots():
    _, _, agents = make_agents("qwen3-64", roles=("planner", "critic", "judger"), latent_steps=2)
    first = agents[0].step([QUESTIONS[0]])
    own = agents[1].step([QUESTIONS[0]], [first], scope="own")
    full = agents[1].step([QUESTIONS[0]], [first], scope="all")
    assert own.header.seq_lens[0] == full.header.seq_lens[0] - first.header.seq_lens[0]
    # positions continue after the planner's part: RoPE positions are absolute in the cache
    assert int(own.tensors["positions"][0, 0]) == first.header.seq_lens[0]
    assert torch.equal(own.tensors["keys"], full.tensors["keys"][:, :, :, -own.tensors["keys"].shape[3]:])


def test_bfloat16_chain_sends_bf16_kv_close_to_float32():
    """A bf16 model sends bf16 caches (half the bytes) and lands near the float32 result."""
    from agents.agent import Agent
    from agents.fingerprint import model_fingerprint
    from agents.models import build_tiny

    model32, _, agents32 = make_agents("qwen3-64", roles=("planner", "judger"), latent_steps=3)
    model16, tok = build_tiny("qwen3-64", dtype=torch.bfloat16)
    fp = model_fingerprint(model16, tok)
    agents16 = [Agent(a.config, model16, tok, fp) for a in agents32]
    state16, (msg16,) = run_chain(agents16, QUESTIONS[:2])
    state32, (msg32,) = run_chain(agents32, QUESTIONS[:2])
    assert msg16.tensors["keys"].dtype == torch.bfloat16
    assert msg16.nbytes < 0.55 * msg32.nbytes
    cos = torch.nn.functional.cosine_similarity(state16.logits.double(), state32.logits.double(), dim=-1)
    assert bool((cos > 0.99).all()), cos
