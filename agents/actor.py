"""AgentActor: the Ray actor that hosts one model and the agents (roles) that use it.

The driver calls a step with the ObjectRefs of the messages it reads; Ray resolves them
here, so tensors move actor to actor and never through the driver. A step is a pure
function of its inputs, which makes Ray's retries after an actor restart safe. A step
reads as: receive (agents/receive.py) -> run the agent, or aggregate -> send
(channels/send.py: encode, compress, size limits).

Two ways out of a step:
  run_step            object_store: returns (*packed outputs, stats), num_returns = n + 1
  run_step_<backend>  rdt (from RdtMethods, wrapping `produce`): returns the one message;
                      its stats, or the step's error, wait here until the driver calls
                      pop_stats, which returns them or raises that error
"""
from __future__ import annotations

import os
import time

import ray

from latentray.channels.aggregate import aggregate_messages
from latentray.channels.kinds import get_kind
from latentray.channels.send import edge_stats, send
from latentray.channels.transports import get_transport
from latentray.channels.transports.rdt import RdtMethods
from latentray.channels.zero_copy_env import quiet_zero_copy_warnings

from .agent import Agent, StepLimits
from .codec_bank import CodecBank
from .fingerprint import model_fingerprint
from .models import load_model
from .receive import receive_messages
from .step_call import StepCall


class AgentActor(RdtMethods):
    def __init__(self, model_kwargs: dict, agents: dict, codec_parts: dict | None = None):
        quiet_zero_copy_warnings()
        self.model, self.tokenizer, self.load_info = load_model(**model_kwargs)
        self.fingerprint = model_fingerprint(self.model, self.tokenizer)
        self.agents = self._build(agents)
        self.object_store = get_transport("object_store")
        self.codecs = CodecBank(self.fingerprint, codec_parts, self.model.get_input_embeddings())
        self._stats: dict = {}
        self.node, self.name = _where()

    def ready(self) -> dict:
        return {"pid": os.getpid(), "node": self.node, "device": str(self.model.device),
                "dtype": str(self.model.dtype), "fingerprint": self.fingerprint, "agents": sorted(self.agents),
                "load": self.load_info}

    def reset(self, agents: dict | None = None) -> dict:
        """Forget what earlier runs left (an rdt step's stats nobody popped: batch numbers
        start again at 0 in each run), host `agents` ({name: AgentConfig}) if given, and say
        where this actor is, as ready() does: a warm actor is reused by the next run
        (runtime/engine/warm_actors.py), which may have other agents."""
        self._stats.clear()
        if agents is not None:
            self.agents = self._build(agents)
        return self.ready()

    def _build(self, configs: dict) -> dict:
        return {name: self._new_agent(cfg) for name, cfg in configs.items()}

    def _new_agent(self, config) -> Agent:
        return Agent(config, self.model, self.tokenizer, self.fingerprint)

    def _agent(self, call: StepCall) -> Agent:
        """The agent the call names, as the call configures it (see StepCall.config)."""
        agent = self.agents.get(call.agent)
        if call.config is not None and (agent is None or agent.config != call.config):
            agent = self.agents[call.agent] = self._new_agent(call.config)
        if agent is None:
            raise KeyError(f"this actor hosts no agent {call.agent!r} (it hosts {sorted(self.agents)})")
        return agent

    def run_step(self, call: StepCall, questions: list, *inbox):
        outputs, stats = self._execute(call, questions, inbox)
        if call.action == "text":
            return (*outputs, stats)
        return (*[self.object_store.pack(o) for o in outputs], stats)

    def produce(self, call: StepCall, questions: list, *inbox):
        key = (call.batch, call.step_id)
        try:
            outputs, stats = self._execute(call, questions, inbox)
        except Exception as exc:
            self._stats[key] = exc  # pop_stats raises it: the driver sees the step's own error
            raise
        self._stats[key] = stats
        return outputs[0]

    def pop_stats(self, batch: int, step_id: str) -> dict:
        """The stats of an rdt step that ran here; the step's error if it failed."""
        stats = self._stats.pop((batch, step_id))
        if isinstance(stats, BaseException):
            raise stats
        return stats

    def _execute(self, call: StepCall, questions: list, inbox: tuple) -> tuple:
        t0 = time.perf_counter()
        agent = self._agent(call)
        messages = receive_messages(call, inbox, receiver_fingerprint=self.fingerprint, model_dtype=self.model.dtype,
                                    codecs=self.codecs, realign=agent.realigner)
        stats = {"step": call.step_id, "agent": call.agent, "pid": os.getpid(), "actor": self.name,
                 "node": self.node, "batch": call.batch, "round": call.round,
                 "rows": len(questions), "inbox": [edge_stats(m, self.node) for m in messages],
                 "tokens": [0] * len(questions), "prompt_tokens": [0] * len(questions), "latent_steps": 0}
        limits = StepLimits.starting_now(call.timeout_s, call.max_prompt_tokens)
        if call.action == "text":
            result = agent.step(questions, messages, action="text", kv_merge=call.kv_merge, limits=limits)
            stats.update(compute_s=time.perf_counter() - t0, tokens=result.tokens,
                         prompt_tokens=list(result.prompt_tokens))
            return [{"texts": result.texts, "tokens": result.tokens}], stats
        if call.action == "aggregate":
            msg = aggregate_messages(messages, call.aggregate, call.agent, self.fingerprint)
        else:
            # hidden_states (latent | prompt | role) scopes hidden states (of hidden_layer);
            # kv_scope (all | own) the rest
            scope = call.hidden_scope if get_kind(call.emit).takes_codec else call.kv_scope
            msg = agent.step(questions, messages, action="latent", emit=call.emit, scope=scope,
                             kv_merge=call.kv_merge, limits=limits, layer=call.hidden_layer)
            stats.update(latent_steps=msg.header.latent_steps,
                         tokens=list(msg.header.extra.get("tokens", stats["tokens"])),
                         prompt_tokens=list(msg.header.extra.get("prompt_tokens", [])))
        outputs, sent = send(msg, compressions=call.outputs, encodes=call.encodes,
                             encoder_for=lambda use: self.codecs.encoder(use, call.codec_dir),
                             limit=call.max_message_bytes, agent=call.agent, step_id=call.step_id,
                             checksum=call.checksum, node=self.node)
        stats.update(compute_s=time.perf_counter() - t0, **sent)
        return outputs, stats


def _where() -> tuple:
    """(Ray node id, actor name) of this copy: a restart may put it on another node, and
    __init__ runs again. Empty outside Ray (an AgentActor built in a plain process)."""
    if not ray.is_initialized():
        return "", ""
    context = ray.get_runtime_context()
    return context.get_node_id() or "", context.get_actor_name() or ""


# enable_tensor_transport: every actor may receive over Ray Direct Transport.
RemoteAgentActor = ray.remote(enable_tensor_transport=True)(AgentActor)
