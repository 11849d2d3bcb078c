"""Delta working memory: each agent of an accumulating chain sends only the slots it added,
and the receiver assembles the memory from every earlier part. It must compute what the
whole memory re-sent at every hop computes, and what one model reading everything in one
sequence computes, with O(N) bytes written instead of O(N^2)."""
import pytest
import torch

from helpers import QUESTIONS, make_agents, reference_chain_logits, run_chain


def delta_chain(agents, questions):
    """Each agent reads every earlier agent's own part (kv_merge concat) and sends its own."""
    parts = []
    for agent in agents[:-1]:
        parts.append(agent.step(questions, list(parts), scope="own", kv_merge="concat"))
    state = agents[-1].prefill(questions, list(parts), kv_merge="concat")
    return state, parts


@pytest.mark.parametrize("preset", ["qwen3-64", "gemma3-64", "gpt2-64"])
def test_delta_equals_full_resend_and_one_sequence(preset):
    model, _, agents = make_agents(preset, latent_steps=3)
    full_state, full_msgs = run_chain(agents, QUESTIONS)
    delta_state, parts = delta_chain(agents, QUESTIONS)
    assert (delta_state.logits - full_state.logits).abs().max().item() <= 1e-5
    assert torch.equal(delta_state.mask, full_state.mask) and torch.equal(delta_state.positions, full_state.positions)
    # the last full message is exactly the parts laid end to end
    last = full_msgs[-1].tensors
    assert torch.allclose(torch.cat([p.tensors["keys"] for p in parts], dim=3), last["keys"], atol=1e-6)
    for row, q in enumerate(QUESTIONS[:2]):
        expected = reference_chain_logits(model, agents, q)
        assert (delta_state.logits[row] - expected).abs().max().item() <= 1e-4
    # bytes written: N parts, each once, against N growing memories
    written_delta = sum(p.nbytes for p in parts)
    written_full = sum(m.nbytes for m in full_msgs)
    assert written_delta == pytest.approx(full_msgs[-1].nbytes, rel=0.01)
    assert written_full > 1.9 * written_delta


def test_decoded_answers_equal():
    _, _, agents = make_agents("qwen3-64", latent_steps=2)
    full_state, _ = run_chain(agents, QUESTIONS)
    delta_state, _ = delta_chain(agents, QUESTIONS)
    assert agents[-1].decode(full_state, 6).token_ids == agents[-1].decode(delta_state, 6).token_ids


def test_parts_that_do_not_fit_together_are_refused():
    from latentray.channels.errors import MessageError

    _, _, agents = make_agents("qwen3-64", roles=("a", "b", "c"), latent_steps=1)
    a = agents[0].step(QUESTIONS[:2], scope="own")
    b = agents[1].step(QUESTIONS[:1], scope="own")  # a part of another batch (one row)
    with pytest.raises(MessageError, match="parts must match but for their slots"):
        agents[2].prefill(QUESTIONS[:2], [a, b], kv_merge="concat")
