"""Shared test helpers: build agents on tiny models, and independent reference computations."""
from __future__ import annotations

import gc
import time

import torch

from latentray.agents.agent import Agent, AgentConfig
from latentray.agents.fingerprint import model_fingerprint
from latentray.agents.models import build_tiny

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


@torch.inference_mode()
def embedding_outputs(model) -> torch.Tensor:
    """[V, D] float64: what the embedding module outputs for every token id."""
    embed = model.get_input_embeddings()
    ids = torch.arange(embed.weight.shape[0], device=embed.weight.device)
    return torch.cat([embed(ids[i:i + 8192]).double() for i in range(0, len(ids), 8192)])


@torch.inference_mode()
def reference_ridge(model, lam=1e-5) -> tuple:
    """W_a and the target norm, computed independently in float64 with an explicit inverse,
    against the embedding module's real outputs (not its raw weight)."""
    e = embedding_outputs(model)
    w_out = model.get_output_embeddings().weight.double()
    gram = w_out.T @ w_out + lam * torch.eye(w_out.shape[1], dtype=torch.float64)
    return torch.linalg.inv(gram) @ (w_out.T @ e), e.norm(dim=-1).mean()


@torch.inference_mode()
def last_hidden_full(model, embeds: torch.Tensor) -> torch.Tensor:
    """Final-norm hidden state at the last position of one unpadded sequence [1, S, D]."""
    return model.base_model(inputs_embeds=embeds).last_hidden_state[:, -1]


def role_text(agent, question: str) -> str:
    return agent.config.role.replace("{question}", question)


def conversation_pieces(tokenizer, contents: list) -> list:
    """The whole chain as ONE conversation rendered by the tokenizer's own chat template:
    a user turn per agent, each answered by an assistant turn that holds that agent's
    latent slots; the last agent's turn ends in the generation prompt. Returns the token
    ids of the text between the latent slots (len(contents) pieces). Without a chat
    template: BOS, then the contents separated by blank lines."""
    marks = [f"@@LATENT{i}@@" for i in range(len(contents) - 1)]
    if getattr(tokenizer, "chat_template", None):
        messages = []
        for content, mark in zip(contents, marks + [None]):
            messages.append({"role": "user", "content": content})
            if mark:
                messages.append({"role": "assistant", "content": mark})
        text = tokenizer.apply_chat_template(messages, add_generation_prompt=True, tokenize=False)
        bos = False
    else:
        text = "".join(c + (m or "") for c, m in zip(contents, [f"{x}\n\n" for x in marks] + [None]))
        bos = True
    pieces = []
    for i, mark in enumerate(marks + [None]):
        head, text = text.split(mark, 1) if mark else (text, "")
        pieces.append(tokenizer(head, add_special_tokens=bos and i == 0)["input_ids"])
    return pieces


@torch.inference_mode()
def reference_chain_logits(model, agents, question: str, ridge: tuple | None = None) -> torch.Tensor:
    """The whole chain as ONE sequence with no cache: the conversation's text (one chat
    rendering), with each agent's latent vectors (closed form, float64) in its assistant
    turn; returns the last agent's next-token logits [V] from the model's own forward.
    ridge: reference_ridge(model), when the caller already has it."""
    w_a, target = ridge or reference_ridge(model)
    embed = model.get_input_embeddings()
    pieces = conversation_pieces(agents[0].tokenizer, [role_text(a, question) for a in agents])
    seq = torch.zeros((1, 0, model.config.hidden_size), dtype=embed.weight.dtype)
    for agent, piece in zip(agents, pieces):
        seq = torch.cat([seq, embed(torch.tensor([piece]))], dim=1)
        for _ in range(agent.config.latent_steps):
            h = last_hidden_full(model, seq).double()
            v = h @ w_a
            v = v * (target / v.norm(dim=-1, keepdim=True))
            seq = torch.cat([seq, v.to(seq.dtype)[:, None, :]], dim=1)
    return model(inputs_embeds=seq).logits[0, -1].float()


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


def with_model_ref(spec, ref: str = "tiny:qwen3-64"):
    """The spec with every model swapped for `ref` (routing and plumbing tests need no real weights)."""
    models = {k: m.model_copy(update={"ref": ref}) for k, m in spec.models.items()}
    return spec.model_copy(update={"models": models})


def one_actor(spec, alone: str | None = None):
    """The spec with its agents hosted by one shared actor (one process to start, not one per
    agent), but the agent `alone`, which keeps an actor of its own (for a fault to hit)."""
    agents = {k: a.model_copy(update={"actor": None if k == alone else "team"}) for k, a in spec.agents.items()}
    return spec.model_copy(update={"agents": agents})


def in_two_actors(spec):
    """The spec with its agents split over two shared actors, alternating in the spec's
    order: in a chain listed in that order every hop crosses from one actor to the other."""
    agents = {k: a.model_copy(update={"actor": f"half-{i % 2}"}) for i, (k, a) in enumerate(spec.agents.items())}
    return spec.model_copy(update={"agents": agents})


def answers_in_one_process(spec, questions: list, built_for=None) -> tuple:
    """(answers, tokens) of the questions through the spec's plan, in its batches, with every
    step called in order on one AgentActor object in this process and each message handed
    to its receivers as its sender returned it: no Ray, no store. One torch thread, as Ray
    gives each actor one CPU, so the sums run in the same order. Its agents share one model.
    built_for: a spec whose agents the AgentActor is built with instead (the calls still
    carry `spec`'s), as a warm or restarted actor is."""
    from latentray.agents.actor import AgentActor
    from latentray.runtime.engine.agent_configs import agent_configs_for
    from latentray.runtime.engine.steps import spec_steps
    from latentray.topologies import build_plan

    plan = build_plan(spec)
    (model,) = {spec.agents[a].model for a in plan.agents}
    m = spec.models[model]
    answers, tokens = [], []
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        built = built_for or spec
        actor = AgentActor(dict(ref=m.ref, dtype=m.dtype, device=m.device, seed=m.seed or 0),
                           agent_configs_for(list(build_plan(built).agents), built))
        steps = spec_steps(spec, plan)
        for start in range(0, len(questions), spec.run.batch_size):
            batch, out = questions[start:start + spec.run.batch_size], {}
            for sub in steps:
                inbox = [out[src][variant] for src, variant in sub.inbox]
                out[sub.call.step_id] = actor.run_step(sub.call, batch, *inbox)
            (answer_step,) = plan.answer_steps
            answers += out[answer_step][0]["texts"]
            tokens += [sum(r[-1]["tokens"][row] for r in out.values()) for row in range(len(batch))]
    finally:
        torch.set_num_threads(threads)
    return answers, tokens


def thoughts_at(agent, questions: list, start: torch.Tensor):
    """The agent's prompt + latent steps computed alone (a kv message), its first position
    per row at `start`: where it would land after a KV join."""
    from latentray.agents.agent import WorkingState
    from latentray.agents.forward import forward_slots, new_positions

    embeds, mask = agent._embed_rows([agent.render(q) for q in questions])
    positions = new_positions(start, mask)
    out = forward_slots(agent.model, cache=None, past_mask=mask[:, :0], past_positions=mask[:, :0],
                        inputs_embeds=embeds, new_mask=mask, positions=positions)
    state = WorkingState(list(questions), out.cache, mask, positions, 0, out.last_hidden, out.logits, [])
    return agent.emit(agent.think(state), "kv", "all")
