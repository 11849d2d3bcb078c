"""AgentActor: the Ray actor that hosts one model and the agents (roles) that use it.

The driver calls a step with the ObjectRefs of the messages it reads; Ray resolves them
here, so tensors move actor to actor and never through the driver. A step is a pure
function of its inputs, which makes Ray's retries after an actor restart safe.

Two ways out of a step:
  run_step            object_store: returns (*packed outputs, stats), num_returns = n + 1
  run_step_<backend>  rdt (from RdtMethods, wrapping `produce`): returns the one message;
                      its stats wait here until the driver calls pop_stats
"""
from __future__ import annotations

import os
import time

import ray

from channels.message import message_checksum
from channels.transports import get_transport
from channels.transports.rdt import RdtMethods
from channels.zero_copy_env import quiet_zero_copy_warnings

from channels.codecs.apply import encode_message

from .agent import Agent, StepLimits
from .errors import MessageTooLargeError
from .codec_bank import CodecBank
from .fingerprint import model_fingerprint
from .models import load_model
from .receive import receive_messages
from .step_call import StepCall


class AgentActor(RdtMethods):
    def __init__(self, model_kwargs: dict, agents: dict):
        quiet_zero_copy_warnings()
        self.model, self.tokenizer, self.load_info = load_model(**model_kwargs)
        self.fingerprint = model_fingerprint(self.model, self.tokenizer)
        self.agents = {name: Agent(cfg, self.model, self.tokenizer, self.fingerprint)
                       for name, cfg in agents.items()}
        self.object_store = get_transport("object_store")
        self.codecs = CodecBank(self.fingerprint)
        self._stats: dict = {}

    def ready(self) -> dict:
        return {"pid": os.getpid(), "device": str(self.model.device), "dtype": str(self.model.dtype),
                "fingerprint": self.fingerprint, "agents": sorted(self.agents), "load": self.load_info}

    def run_step(self, call: StepCall, questions: list, *inbox):
        outputs, stats = self._execute(call, questions, inbox)
        if call.action == "text":
            return (*outputs, stats)
        return (*[self.object_store.pack(o) for o in outputs], stats)

    def produce(self, call: StepCall, questions: list, *inbox):
        outputs, stats = self._execute(call, questions, inbox)
        self._stats[(call.batch, call.step_id)] = stats
        return outputs[0]

    def pop_stats(self, batch: int, step_id: str) -> dict:
        return self._stats.pop((batch, step_id))

    def _execute(self, call: StepCall, questions: list, inbox: tuple) -> tuple:
        t0 = time.perf_counter()
        limits = StepLimits.starting_now(call.timeout_s, call.max_prompt_tokens)
        agent = self.agents[call.agent]
        messages = receive_messages(call, inbox, receiver_fingerprint=self.fingerprint, model_dtype=self.model.dtype,
                                    codecs=self.codecs, realign=agent.realigner)
        stats = {"step": call.step_id, "agent": call.agent, "pid": os.getpid(),
                 "batch": call.batch, "round": call.round,
                 "rows": len(questions), "inbox": [_edge_stats(m) for m in messages],
                 "tokens": [0] * len(questions), "prompt_tokens": [0] * len(questions), "latent_steps": 0}
        if call.action == "text":
            result = agent.step(questions, messages, action="text", kv_merge=call.kv_merge, limits=limits)
            stats.update(compute_s=time.perf_counter() - t0, tokens=result.tokens,
                         prompt_tokens=list(result.prompt_tokens))
            return [{"texts": result.texts, "tokens": result.tokens}], stats
        if call.action == "aggregate":
            from .aggregate import aggregate_messages

            msg = aggregate_messages(messages, call.aggregate, call.agent, self.fingerprint)
        else:
            scope = call.hidden_scope if call.emit == "hidden" else call.kv_scope
            msg = agent.step(questions, messages, action="latent", emit=call.emit, scope=scope,
                             kv_merge=call.kv_merge, limits=limits)
            stats.update(latent_steps=msg.header.latent_steps,
                         tokens=list(msg.header.extra.get("tokens", stats["tokens"])),
                         prompt_tokens=list(msg.header.extra.get("prompt_tokens", [])))
        msg = msg.replace(extra={**msg.header.extra, "sent_at": time.time()})
        outputs = self._variants(msg, call)
        _check_sizes(outputs, call)
        stats.update(compute_s=time.perf_counter() - t0, out_bytes=[o.nbytes for o in outputs])
        if call.checksum:
            stats["out_checksums"] = [message_checksum(o) for o in outputs]
        return outputs, stats

    def _variants(self, msg, call: StepCall) -> list:
        """One message per output variant: encoded with its codec, then compressed."""
        from channels.compression import compress_message

        out = []
        for names, use in zip(call.outputs, call.encodes or (None,) * len(call.outputs)):
            m = msg
            if use is not None and msg.kind == "hidden" and "space" not in msg.header.extra:
                m = encode_message(msg, self.codecs.encoder(use, call.codec_dir), use.codec)
            out.append(compress_message(m, list(names)) if names else m)
        return out


def _check_sizes(outputs: list, call: StepCall) -> None:
    limit = call.max_message_bytes
    for out in outputs:
        if limit is not None and out.nbytes > limit:
            raise MessageTooLargeError(
                f"agent {call.agent!r} (step {call.step_id}) made a {out.kind} message of {out.nbytes} bytes for "
                f"{len(out.header.seq_lens) or '?'} problem(s), more than limits.max_message_bytes = {limit}; lower "
                "run.batch_size, compress the channel (channels.compression), or raise the limit")


def _edge_stats(msg) -> dict:
    sent = msg.header.extra.get("sent_at")
    return {"src": msg.sender, "kind": msg.header.extra.get("wire_kind", msg.kind),
            "bytes": msg.header.extra.get("wire_bytes", msg.nbytes),
            "decoded_bytes": msg.nbytes,
            "latency_s": (time.time() - sent) if sent else None}


# enable_tensor_transport: every actor may receive over Ray Direct Transport.
RemoteAgentActor = ray.remote(enable_tensor_transport=True)(AgentActor)
