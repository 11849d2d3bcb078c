"""What real architectures do differently, each on a tiny preset of that architecture:
scaled embeddings (Gemma), sliding windows (Gemma 3, Mistral, Qwen2), the model's own
head (Granite's logit scaling, Cohere's logit scale, Gemma's soft-capping), RoPE-free
layers (SmolLM3) and per-layer RoPE bases (Gemma 3) in a KV join, stop ids."""
from __future__ import annotations

import pytest
import torch

from latentray.agents.agent import Agent, AgentConfig
from latentray.agents.fingerprint import model_fingerprint
from latentray.agents.forward import next_positions
from latentray.agents.inbox import Inbox
from latentray.agents.kv_join import join_kv
from latentray.agents.models import build_tiny
from latentray.agents.models.byte_tokenizer import IM_END
from latentray.agents.models.tiny import TINY_WINDOW

from helpers import QUESTIONS, embedding_outputs, make_agents, reference_chain_logits, run_chain, thoughts_at

SLIDING = ["gemma3-64", "mistral-64", "qwen2-64-sliding"]


def test_gemma_latent_norm_is_what_the_embedding_module_outputs():
    model, _, agents = make_agents("gemma3-64", roles=("planner", "judger"), latent_steps=2)
    scale = float(model.get_input_embeddings().embed_scale)
    assert scale == pytest.approx(8.0)  # sqrt(64): the module multiplies its weight
    real = embedding_outputs(model).norm(dim=-1).mean()
    raw = model.get_input_embeddings().weight.detach().double().norm(dim=-1).mean()
    assert float(real / raw) == pytest.approx(scale, rel=1e-5)
    state = agents[0].think(agents[0].prefill(QUESTIONS[:2]))
    norms = torch.stack(state.latents).norm(dim=-1)
    assert torch.allclose(norms.double(), real.expand_as(norms), rtol=1e-4), (norms, real)


@pytest.mark.parametrize("preset", SLIDING)
def test_sliding_window_memory_equals_full_context(preset):
    """A 4-agent chain whose memory is many windows long, rows left padded, equals one
    model reading the whole conversation in one unpadded pass (the model's own masks)."""
    model, _, agents = make_agents(preset, latent_steps=3)
    state, messages = run_chain(agents, QUESTIONS)
    # nothing was dropped: the memory holds every slot, far more than the window
    for m in messages:
        assert min(m.header.seq_lens) > 4 * TINY_WINDOW
        assert m.tensors["keys"].shape[3] == m.tensors["mask"].shape[1]
    for row, q in enumerate(QUESTIONS):
        expected = reference_chain_logits(model, agents, q)
        diff = (state.logits[row] - expected).abs().max().item()
        assert diff <= 1e-4, (preset, q, diff)


@pytest.mark.parametrize("preset", SLIDING)
def test_sliding_window_batch_equals_one_by_one(preset):
    _, _, agents = make_agents(preset, latent_steps=2, max_new_tokens=6)
    state, _ = run_chain(agents, QUESTIONS)
    batch = agents[-1].decode(state)
    for row, q in enumerate(QUESTIONS):
        alone, _ = run_chain(agents, [q])
        assert (state.logits[row] - alone.logits[0]).abs().max().item() <= 1e-4
        assert agents[-1].decode(alone).token_ids[0] == batch.token_ids[row]


@pytest.mark.parametrize("preset", ["granite-64", "cohere-64", "gemma3-64", "qwen3-64"])
def test_logits_come_from_the_models_own_head(preset):
    model, tok = build_tiny(preset, seed=2)
    agent = Agent(AgentConfig(name="a", role="Say: {question}"), model, tok, model_fingerprint(model, tok))
    state = agent.prefill([QUESTIONS[1]])
    before, _ = agent.render(QUESTIONS[1])
    with torch.no_grad():
        expected = model(torch.tensor([before])).logits[0, -1]
    assert (state.logits[0] - expected).abs().max().item() <= 1e-4
    # the scaling really is there: the bare lm_head would be off
    with torch.no_grad():
        bare = model.get_output_embeddings()(state.last_hidden)[0]
    if preset != "qwen3-64":
        assert (bare - expected).abs().max().item() > 1e-2


def _alone_at(agent: Agent, start: torch.Tensor):
    return thoughts_at(agent, QUESTIONS, start)


@pytest.mark.parametrize("preset", ["smollm3-64", "gemma3-64", "qwen2-64-sliding"])
def test_kv_join_respects_per_layer_rope(preset):
    """Join two senders' caches: equal to the second sender computed where it lands.
    SmolLM3 has layers without RoPE (their keys must not move); Gemma 3's local and
    global layers rotate with different bases."""
    model, tok = build_tiny(preset, seed=1)
    fp = model_fingerprint(model, tok)
    make = lambda name, role, steps: Agent(  # noqa: E731
        AgentConfig(name=name, role=role + " {question}", latent_steps=steps), model, tok, fp)
    a, b, c = make("a", "You plan.", 3), make("b", "You are a critic who checks plans.", 2), make("c", "Answer:", 0)
    zero = torch.zeros(len(QUESTIONS), dtype=torch.long)
    msg_a, msg_b = _alone_at(a, zero), _alone_at(b, zero)
    after_a = next_positions(msg_a.tensors["mask"], msg_a.tensors["positions"])
    moved_b = _alone_at(b, after_a)
    joined = join_kv([msg_a, msg_b], model, "c")
    width = msg_a.tensors["keys"].shape[3]
    real = moved_b.tensors["mask"][None, :, None, :, None].bool()
    got = joined.tensors["keys"][:, :, :, width:] * real
    assert torch.allclose(got, moved_b.tensors["keys"] * real, atol=1e-5)
    ref_tensors = {k: torch.cat([msg_a.tensors[k], moved_b.tensors[k]], dim=3 if k in ("keys", "values") else 1)
                   for k in msg_a.tensors}
    reference = msg_a.replace(tensors=ref_tensors)
    got_logits = c.prefill(QUESTIONS, Inbox(kv=joined)).logits
    want = c.prefill(QUESTIONS, Inbox(kv=reference)).logits
    assert (got_logits - want).abs().max().item() < 1e-4


def test_stop_ids_come_from_the_tokenizer_and_generation_config():
    model, tok, agents = make_agents("qwen3-64", roles=("solo",), max_new_tokens=5)
    im_end = tok.convert_tokens_to_ids(IM_END)
    assert agents[0].stop_ids == {tok.eos_token_id, im_end}
    # a model whose generation config does not end turns with <|im_end|> keeps decoding past it
    model.generation_config.eos_token_id = tok.eos_token_id
    plain = make_agents("qwen3-64", roles=("solo",), max_new_tokens=5)[2][0]
    plain.model.generation_config.eos_token_id = tok.eos_token_id
    plain = Agent(plain.config, plain.model, tok, plain.fingerprint)
    assert plain.stop_ids == {tok.eos_token_id}
    state = plain.prefill(QUESTIONS[:1])
    forced = torch.full_like(state.logits, -1e9)
    forced[0, im_end] = 0.0
    state.logits = forced
    out = plain.decode(state)
    assert out.token_ids[0][0] == im_end and out.tokens[0] >= 1
    # and one listing another id stops there
    plain.model.generation_config.eos_token_id = [tok.eos_token_id, 65]
    stopper = Agent(plain.config, plain.model, tok, plain.fingerprint)
    state = stopper.prefill(QUESTIONS[:1])
    forced = torch.full_like(state.logits, -1e9)
    forced[0, 65] = 0.0
    state.logits = forced
    assert stopper.decode(state).token_ids[0] == []


def test_agents_of_one_model_share_its_realignment_matrix():
    model, tok, agents = make_agents("qwen3-64", latent_steps=2)
    assert all(a.realigner is agents[0].realigner for a in agents)
    other = Agent(AgentConfig(name="x", role="{question}", ridge_lambda=1e-3), model, tok, agents[0].fingerprint)
    assert other.realigner is not agents[0].realigner  # another setting, another matrix
    fresh, ftok = build_tiny("qwen3-64")
    assert Agent(agents[0].config, fresh, ftok, agents[0].fingerprint).realigner is not agents[0].realigner
