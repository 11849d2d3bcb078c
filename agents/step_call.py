"""StepCall: everything an actor needs to run one plan step, as plain picklable data."""
from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class CodecUse:
    """A codec half an actor applies: the codec's name and its fitted part ("" if none)."""
    codec: str
    part: str = ""
    latent_decode: str = "read"  # latent-step states: "read" (token embeddings) or "think" (hidden + W_a)
    read: str = "mixture"  # the resampler's vocabulary soft tokens: "mixture" or "nearest" (channels.codec_read)


@dataclass(frozen=True)
class InputEdge:
    src: str  # producing step id
    kind: str
    codec: str = "identity"
    compression: tuple = ()
    transport: str = "object_store"
    backend: str = ""  # rdt backend (nccl, gloo, cuda_ipc, nixl)
    decode: CodecUse | None = None  # None: the message stays in its wire space (aggregation)


@dataclass(frozen=True)
class StepCall:
    step_id: str
    agent: str
    action: str  # "latent" | "text" | "aggregate"
    emit: str = "kv"
    kv_scope: str = "all"
    inputs: tuple = ()  # InputEdge per inbox message, same order as the message arguments
    outputs: tuple = ((),)  # one compression list per output variant the step returns
    round: int = 0
    batch: int = 0
    aggregate: str = ""
    checksum: bool = False  # report a CRC32 of every output (tests that nothing mutates a message)
    encodes: tuple = (None,)  # per output variant, the CodecUse the sender encodes with (or None)
    hidden_scope: str = "latent"  # hidden messages: "latent" states, or "prompt" / "role" states then latent ones
    hidden_layer: int | None = None  # hidden messages: this decoder layer's states (None: the last layer's)
    codec_dir: str = ""  # where fitted codec parts are read from
    kv_merge: str = "join"  # several kv inputs: "join" (side by side) or "concat" (parts of one memory)
    timeout_s: float | None = None  # limits.step_timeout_s: checked between forward passes
    max_prompt_tokens: int | None = None  # limits.max_prompt_tokens, per problem
    max_message_bytes: int | None = None  # limits.max_message_bytes, per message sent
    # the agent's AgentConfig (agents/agent.py): the actor runs the agent the call names as
    # configured here, so an actor started for other agents (a warm one, or one Ray restarted
    # with its first constructor arguments) runs this one as a fresh actor would. None: as built.
    config: object = None
