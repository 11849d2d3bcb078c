"""A KV message as working memory computes what one model reading everything in sequence does."""
import pytest
import torch

from helpers import QUESTIONS, make_agents, reference_chain_logits, reference_ridge, run_chain


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
    from latentray.agents.agent import Agent
    from latentray.agents.fingerprint import model_fingerprint
    from latentray.agents.models import build_tiny

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


def smollm2_on_cuda(dtype: str):
    from latentray.agents.errors import ModelRefError
    from latentray.agents.models import ModelRef, load_model

    try:
        ModelRef.parse("builtin:smollm2-135m").check_available()
    except ModelRefError as exc:
        pytest.skip(str(exc))
    model, tokenizer, _ = load_model("builtin:smollm2-135m", dtype=dtype, device="cuda")
    return model, tokenizer


@pytest.mark.gpu
def test_smollm2_bf16_chain_on_cuda_matches_single_sequence():
    """SmolLM2-135M in bfloat16 on a GPU: a 4-agent KV chain (3 latent steps each, two rows
    of different lengths) against the same conversation in one bf16 pass. The two paths
    round differently, so the bound scales with how far that one pass lands from float32."""
    from latentray.agents.agent import Agent, AgentConfig
    from latentray.agents.fingerprint import model_fingerprint

    model16, tok = smollm2_on_cuda("bfloat16")
    model32, _ = smollm2_on_cuda("float32")
    fp = model_fingerprint(model16, tok)
    roles = ("planner", "critic", "refiner", "judger")
    agents = [Agent(AgentConfig(name=r, role=f"You are the {r}. Problem: {{question}}",
                                latent_steps=3 if i < len(roles) - 1 else 0), model16, tok, fp)
              for i, r in enumerate(roles)]
    questions = QUESTIONS[:2]
    state, messages = run_chain(agents, questions)
    assert all(m.tensors["keys"].dtype == torch.bfloat16 and m.tensors["keys"].is_cuda for m in messages)
    kv_diff = bf16_diff = 0.0
    with torch.device("cuda"):  # the helpers' references build their tensors on the models' device
        ridge16, ridge32 = reference_ridge(model16), reference_ridge(model32)
        for row, q in enumerate(questions):
            ref16 = reference_chain_logits(model16, agents, q, ridge16)
            ref32 = reference_chain_logits(model32, agents, q, ridge32)
            kv_diff = max(kv_diff, (state.logits[row].float() - ref16).abs().max().item())
            bf16_diff = max(bf16_diff, (ref16 - ref32).abs().max().item())
    print(f"SmolLM2-135M bf16 4-agent chain on cuda vs one conversation: max |logits diff| = {kv_diff:.3e} "
          f"(bf16 vs float32 one conversation: {bf16_diff:.3e})")
    assert kv_diff <= 3 * bf16_diff + 0.05
