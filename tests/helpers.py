"""Shared test helpers: build agents on tiny models, and independent reference computations."""
from __future__ import annotations

import gc
import time

import torch

from agents.agent import Agent, AgentConfig
from agents.fingerprint import model_fingerprint
from agents.tiny_models import build_tiny

QUESTIONS = [
    "What is 2 + 2?",
    "A train leaves at 3 pm at 60 km/h; another leaves an hour later at 90 km/h. When does it catch up?",
    "x",
    "Name a prime number larger than ten.",
]


def make_agents(preset="qwen3-64", roles=("planner", "critic", "refiner", "judger"), latent_steps=3,
                seed=0, **cfg):
    model, tok = build_tiny(preset, seed=seed)
    fp = model_fingerprint(model, tok)
    agents = [Agent(AgentConfig(name=r, role=f"You are the {r}. Problem: {{question}}",
                                latent_steps=latent_steps if i < len(roles) - 1 else 0, **cfg),
                    model, tok, fp) for i, r in enumerate(roles)]
    return model, tok, agents


def reference_ridge(model, lam=1e-5) -> tuple:
    """W_a and the target norm, computed independently in float64 with an explicit inverse."""
    w_in = model.get_input_embeddings().weight.double()
    w_out = model.get_output_embeddings().weight.double()
    gram = w_out.T @ w_out + lam * torch.eye(w_out.shape[1], dtype=torch.float64)
    return torch.linalg.inv(gram) @ (w_out.T @ w_in), w_in.norm(dim=-1).mean()


@torch.inference_mode()
def last_hidden_full(model, embeds: torch.Tensor) -> torch.Tensor:
    """Final-norm hidden state at the last position of one unpadded sequence [1, S, D]."""
    return model.base_model(inputs_embeds=embeds).last_hidden_state[:, -1]


@torch.inference_mode()
def reference_chain_logits(model, agents, question: str) -> torch.Tensor:
    """The whole chain as ONE sequence with no cache: each agent's prompt tokens, then its
    latent vectors (closed form, float64), then the next agent's prompt; returns the last
    agent's next-token logits [V]."""
    w_a, target = reference_ridge(model)
    embed = model.get_input_embeddings()
    seq = torch.zeros((1, 0, model.config.hidden_size))
    for agent in agents:
        ids = torch.tensor([agent.render(question)])
        seq = torch.cat([seq, embed(ids)], dim=1)
        for _ in range(agent.config.latent_steps):
            h = last_hidden_full(model, seq).double()
            v = h @ w_a
            v = v * (target / v.norm(dim=-1, keepdim=True))
            seq = torch.cat([seq, v.float()[:, None, :]], dim=1)
    h = last_hidden_full(model, seq)
    return model.get_output_embeddings()(h)[0].float()


def run_chain(agents, questions):
    """Plain-Python chain: each agent reads the previous agent's kv message."""
    msg, messages = None, []
    for agent in agents[:-1]:
        msg = agent.step(questions, [msg] if msg else [])
        messages.append(msg)
    state = agents[-1].prefill(questions, [msg] if msg else [])
    return state, messages


def store_bytes_used(ray) -> int:
    from ray._private.internal_api import get_memory_info_reply, get_state_from_address

    state = get_state_from_address(ray.get_runtime_context().gcs_address)
    return get_memory_info_reply(state).store_stats.object_store_bytes_used


def settled_store_bytes(ray, timeout_s: float = 20.0) -> int:
    """Store usage once objects of earlier tests, freed asynchronously, are gone: the
    reading must hold still for a second."""
    gc.collect()
    last, still_since, deadline = store_bytes_used(ray), time.monotonic(), time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        time.sleep(0.1)
        now = store_bytes_used(ray)
        if now != last:
            last, still_since = now, time.monotonic()
        elif time.monotonic() - still_since >= 1.0:
            break
    return last
