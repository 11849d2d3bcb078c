"""The equivalence tests on real pretrained weights: builtin:smollm2-135m (always installed
by the set-up) and builtin:gemma3-270m (when its opt-in package is installed; skipped
otherwise, naming the install). References are computed independently: one chat
rendering of the whole conversation, the model's own unpadded forward, a float64
closed form of the latent step, and transformers' own generate."""
from __future__ import annotations

import pytest
import torch

from latentray.agents.agent import Agent, AgentConfig
from latentray.agents.fingerprint import model_fingerprint

from helpers import reference_chain_logits, reference_ridge, run_chain

QUESTIONS = ["What is 17 + 25?", "Is 91 a prime number? Explain briefly.", "Name the capital of France."]
ROLES = {
    "planner": "You are a planner. Plan how to solve the problem step by step.\nProblem: {question}",
    "critic": "You are a critic. Check the plan in memory for mistakes.\nProblem: {question}",
    "refiner": "You are a refiner. Improve the plan using the critique.\nProblem: {question}",
    "judger": "You are the judger. Give the final answer.\nProblem: {question}",
}


def chain_agents(model, tok, steps=3, roles=tuple(ROLES), max_new_tokens=24):
    fp = model_fingerprint(model, tok)
    return [Agent(AgentConfig(name=r, role=ROLES[r], latent_steps=steps if i < len(roles) - 1 else 0,
                              max_new_tokens=max_new_tokens), model, tok, fp)
            for i, r in enumerate(roles)]


@pytest.fixture(scope="module")
def smollm2_ridge(smollm2):
    """SmolLM2's reference W_a and target norm (float64 over its 49K-token vocabulary), once."""
    return reference_ridge(smollm2[0])


def max_chain_diff(model, tok, questions, steps=3, ridge=None) -> float:
    agents = chain_agents(model, tok, steps)
    state, _ = run_chain(agents, questions)
    worst = 0.0
    for row, q in enumerate(questions):
        expected = reference_chain_logits(model, agents, q, ridge)
        worst = max(worst, (state.logits[row] - expected).abs().max().item())
    return worst


def test_smollm2_kv_chain_equals_one_conversation(smollm2, smollm2_ridge):
    model, tok = smollm2
    diff = max_chain_diff(model, tok, QUESTIONS[:2], ridge=smollm2_ridge)
    print(f"SmolLM2-135M 4-agent chain vs one conversation: max |logits diff| = {diff:.2e}")
    assert diff <= 2e-3


def test_smollm2_latent_step_matches_closed_form(smollm2, smollm2_ridge):
    model, tok = smollm2
    planner = chain_agents(model, tok, steps=1)[0]
    state = planner.prefill(QUESTIONS)
    after = planner.think(state, 1)
    w_a, target = smollm2_ridge
    expected = state.last_hidden.double() @ w_a
    expected = expected * (target / expected.norm(dim=-1, keepdim=True))
    err = (after.latents[0].double() - expected).norm(dim=-1) / expected.norm(dim=-1)
    print(f"SmolLM2 latent step vs float64 closed form: max relative L2 error {err.max().item():.2e}")
    # W_a is solved once in float32 (as LatentMAS does); against float64 that leaves ~1e-4
    assert err.max().item() <= 5e-4
    # tied embeddings: the map is near the identity, and the norm is the embeddings' mean norm
    assert (planner.realigner.matrix - torch.eye(w_a.shape[0])).abs().max().item() < 1e-2
    assert float(planner.realigner.target_norm) == pytest.approx(float(target), rel=1e-5)


def test_smollm2_batch_equals_one_by_one(smollm2):
    model, tok = smollm2
    agents = chain_agents(model, tok, steps=2, max_new_tokens=12)
    state, messages = run_chain(agents, QUESTIONS)
    batch = agents[-1].decode(state)
    for row, q in enumerate(QUESTIONS):
        alone, alone_msgs = run_chain(agents, [q])
        n = alone_msgs[-1].header.latent_slots
        bk, ak = messages[-1].tensors["keys"][:, row, :, -n:], alone_msgs[-1].tensors["keys"][:, 0, :, -n:]
        assert (bk - ak).abs().max().item() <= 1e-3
        assert (state.logits[row] - alone.logits[0]).abs().max().item() <= 1e-3
        assert agents[-1].decode(alone).token_ids[0] == batch.token_ids[row], q


def test_smollm2_greedy_decode_equals_generate_and_answers(smollm2):
    model, tok = smollm2
    solo = Agent(AgentConfig(name="solo", role="{question}", max_new_tokens=20), model, tok,
                 model_fingerprint(model, tok))
    out = solo.decode(solo.prefill(["What is the capital of France?"]))
    ids = tok.apply_chat_template([{"role": "user", "content": "What is the capital of France?"}],
                                  add_generation_prompt=True, tokenize=True, return_dict=True)["input_ids"]
    with torch.no_grad():
        ref = model.generate(torch.tensor([ids]), max_new_tokens=20, do_sample=False,
                             attention_mask=torch.ones(1, len(ids), dtype=torch.long))
    generated = ref[0, len(ids):].tolist()
    stop = [i for i, t in enumerate(generated) if t in solo.stop_ids]
    assert out.token_ids[0] == generated[:stop[0] if stop else None]
    assert "Paris" in out.texts[0]


def test_gemma3_chain_across_its_sliding_window_equals_one_conversation(gemma3):
    """Gemma 3 270M: scaled embeddings, local layers with a 512-slot window. The question
    is long enough that the working memory crosses the window."""
    model, tok = gemma3
    long_q = "Summarise the list and say which number repeats: " + ", ".join(str(i % 97) for i in range(420))
    assert len(tok(long_q)["input_ids"]) > model.config.sliding_window
    agents = chain_agents(model, tok, steps=2, roles=("planner", "judger"))
    state, _ = run_chain(agents, [long_q, QUESTIONS[0]])
    for row, q in enumerate([long_q, QUESTIONS[0]]):
        diff = (state.logits[row] - reference_chain_logits(model, agents, q)).abs().max().item()
        print(f"Gemma3-270M 2-agent chain vs one conversation ({len(q)} chars): max |logits diff| = {diff:.2e}")
        assert diff <= 5e-3


def test_gemma3_latent_norm_uses_scaled_embeddings(gemma3):
    model, tok = gemma3
    planner = chain_agents(model, tok, steps=1)[0]
    _, target = reference_ridge(model)
    raw = model.get_input_embeddings().weight.detach().float().norm(dim=-1).mean()
    assert float(planner.realigner.target_norm) == pytest.approx(float(target), rel=1e-4)
    assert float(target / raw) == pytest.approx(640 ** 0.5, rel=1e-3)


def test_gemma3_gguf_tokenizer_round_trips(gemma3):
    """transformers rebuilds Gemma's GGUF tokenizer; these strings survive a round trip."""
    _, tok = gemma3
    for text in ["The capital of France is Paris.", "naïve café 東京 123,456.7\n\n  indented",
                 "def f(x):\n    return x ** 2  # tab\tafter"]:
        ids = tok(text, add_special_tokens=False)["input_ids"]
        assert tok.decode(ids) == text
