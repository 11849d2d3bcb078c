"""The YAML graph spec (version 1) as frozen pydantic models; unknown keys are errors.

Each topology validates its own parameters (see topologies/registry.py); this module
only knows the shape every spec shares.
"""
from __future__ import annotations

import re
from typing import Annotated, Literal, Optional, Union

from pydantic import AfterValidator, BaseModel, ConfigDict, Field, ValidationInfo, field_validator, model_validator

TRANSPORTS = ("object_store", "rdt")
COMPRESSIONS = ("bf16", "fp16", "latent_only", "int8")  # plus "layers:<i,j,...>"
CODECS = ("auto", "identity", "realign", "ridge", "relative", "hub", "resampler")  # plus a user's "module:Class"
AGGREGATES = ("concat", "mean", "weighted")


def _sendable_kind(name: str) -> str:
    """A message kind of the registry (channels/kinds/) that an agent can send: a kind
    registered with register_kind is named in a spec like the built-in ones."""
    from latentray.channels.kinds import KINDS, find_kind

    kind = find_kind(name)
    sendable = [k for k in KINDS if find_kind(k).role is not None]
    if kind is None or kind.role is None:
        raise ValueError(f"{name!r} is not a message kind an agent can send; use one of {', '.join(sendable)}")
    return name


KindName = Annotated[str, AfterValidator(_sendable_kind)]


class Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class ModelSpec(Strict):
    ref: str = Field(description="builtin:<name>, gguf:<file>, hf:<hub id>, a local directory, or tiny:<preset>")
    dtype: Literal["float32", "bfloat16", "float16", "auto"] = "float32"
    device: str = Field("auto", description="auto (cuda if the actor has a GPU), cpu, cuda, cuda:N")
    seed: Optional[int] = Field(None, description="weight seed of a tiny: model (default 0); only tiny: refs")
    trust_remote_code: bool = False
    system_prompt: Optional[str] = Field(None, description="system message; None keeps the chat template's default")
    chat_template_kwargs: dict[str, Union[str, int, float, bool]] = Field(
        default_factory=dict, description="extra variables for the chat template, e.g. enable_thinking: false")
    sha256: Optional[str] = Field(None, description="expected sha256 of a gguf: file (64 hex digits), checked "
                                                    "before it is converted; only gguf: refs")

    @model_validator(mode="after")
    def _seed_only_for_tiny(self) -> "ModelSpec":
        if self.seed is not None and not self.ref.startswith("tiny:"):
            raise ValueError("seed only sets the random weights of tiny: models; remove it for real weights")
        return self

    @field_validator("sha256")
    @classmethod
    def _sha256_of_a_gguf_file(cls, v: Optional[str], info: ValidationInfo) -> Optional[str]:
        if v is None:
            return v
        ref = info.data.get("ref", "")
        if not ref.startswith("gguf:"):
            extra = " (built-in models check their own)" if ref.startswith("builtin:") else ""
            raise ValueError(f"sha256 checks a gguf: file only, and ref {ref!r} is none; remove it{extra}")
        if not re.fullmatch(r"[0-9a-fA-F]{64}", v):
            raise ValueError(f"sha256 {v!r} is not 64 hex digits; give the output of `sha256sum {ref[5:]}`")
        return v.lower()


class Sampling(Strict):
    temperature: float = Field(0.0, ge=0.0, description="0 = greedy")
    top_p: float = Field(1.0, gt=0.0, le=1.0)
    top_k: int = Field(0, ge=0, description="0 = no top-k cut")


# Ray's own resource names: a custom resource may not reuse them.
RAY_RESOURCES = ("CPU", "GPU", "memory", "object_store_memory")


class Resources(Strict):
    num_cpus: float = Field(1.0, ge=0.0)
    num_gpus: float = Field(0.0, ge=0.0, description="fractional GPUs allowed")
    custom: dict[str, float] = Field(
        default_factory=dict, description="resource labels: Ray custom resources the actor needs, e.g. "
        "{zone_a: 1} to pin it to nodes started with `ray start --resources '{\"zone_a\": 4}'`")

    @field_validator("custom")
    @classmethod
    def _custom_resources(cls, v: dict) -> dict:
        for name, amount in v.items():
            if name in RAY_RESOURCES or name.startswith("node:"):
                raise ValueError(f"custom resource {name!r} is one of Ray's own; use num_cpus / num_gpus, or "
                                 "a label of your own")
            if not amount > 0:
                raise ValueError(f"custom resource {name!r} needs an amount > 0, got {amount}")
        return v


def _replica_count(v):
    if v == "auto":
        return v
    if isinstance(v, bool) or not isinstance(v, int) or not 1 <= v <= 1024:
        raise ValueError(f"replicas must be a whole number from 1 to 1024, or auto; got {v!r}")
    return v


Replicas = Annotated[Union[int, str], AfterValidator(_replica_count)]


class AgentSpec(Strict):
    model: str
    role: str = Field(description="role prompt template; {question} is replaced per problem, {context} by "
                                  "the problem's private context (if any)")
    latent_steps: int = Field(0, ge=0, le=4096)
    output: Literal["latent", "text"] = "latent"
    max_new_tokens: int = Field(64, ge=1, le=32768)
    stop: tuple[str, ...] = Field((), max_length=16, description="strings that end this agent's decoded text "
                                  "where one first appears after its leading whitespace (it is left out), e.g. "
                                  "[\"\\n\"] for a base model that runs on after its answer")
    sampling: Sampling = Sampling()
    realign: bool = Field(True, description="LatentMAS ridge map W_a; false = identity + norm match")
    ridge_lambda: float = Field(1e-5, gt=0.0)
    resources: Resources = Resources()
    actor: Optional[str] = Field(None, description="agents naming the same actor group share one actor")
    replicas: Optional[Replicas] = Field(
        None, description="copies of this agent's actor, each with its own model copy (default run.replicas); "
                          "auto: the cluster's free GPUs (CPUs) shared in proportion to measured step time")

    @field_validator("stop", mode="before")
    @classmethod
    def _one_stop_string(cls, v):
        return (v,) if isinstance(v, str) else v  # stop: "\n" is one stop string, as in OpenAI's API

    @field_validator("stop")
    @classmethod
    def _stops_not_empty(cls, v: tuple) -> tuple:
        if any(s == "" for s in v):
            raise ValueError("stop strings must not be empty (an empty one would end every answer before it "
                             "starts); remove it")
        return v

    @field_validator("role")
    @classmethod
    def _role_has_question(cls, v: str) -> str:
        if "{question}" not in v and "{context}" not in v:
            raise ValueError("role must contain {question} (or {context}); add it where the problem goes")
        return v


class EdgeChannel(Strict):
    src: str
    dst: str
    kind: Optional[KindName] = None
    transport: Optional[Literal["object_store", "rdt"]] = None
    compression: Optional[tuple[str, ...]] = None
    codec: Optional[str] = None


class ChannelSpec(Strict):
    kind: KindName = "kv"
    transport: Literal["object_store", "rdt"] = "object_store"
    rdt_backend: Literal["nccl", "gloo", "cuda_ipc", "nixl"] = "nccl"
    compression: tuple[str, ...] = ()
    codec: str = Field("auto", description="auto: realign within one model, hub between different models; "
                                            "or identity, realign, ridge, relative, hub, resampler (trained: "
                                            "latentray train-codec), module:Class")
    codecs: Optional[str] = Field(None, description="directory of codec parts (latentray fit-codec or train-codec "
                                                    "--out)")
    latent_decode: Literal["read", "think"] = Field(
        "read", description="how a fitted codec (ridge, relative, hub) decodes latent-step states: read = as the "
                            "receiver's token embeddings, like prompt states; think = into the receiver's last-layer "
                            "space, then its realignment W_a, as its own latent steps")
    codec_read: Literal["mixture", "nearest"] = Field(
        "mixture", description="how a receiver reads the trained resampler's vocabulary soft tokens (parts "
                               "trained with --output vocabulary): mixture = each as its distribution's mean "
                               "embedding, as trained; nearest = each as its most likely token's embedding")
    hidden_states: Literal["latent", "prompt", "role"] = Field(
        "latent", description="what a hidden message carries: the latent steps' states (latent), or the prompt's "
                              "states followed by them (prompt: every token but special ones; role: the turn's "
                              "own text only, without the chat template's system prompt, role names and "
                              "generation prompt)")
    hidden_layer: Union[Literal["last"], Annotated[int, Field(ge=1)]] = Field(
        "last", description="whose states a hidden message carries: last = the last layer's (after the final norm), "
                            "or the residual stream after decoder layer N (1 = the first); only the trained "
                            "resampler codec reads another layer's states, trained on the same layer")
    edges: tuple[EdgeChannel, ...] = ()

    @field_validator("compression")
    @classmethod
    def _known_compression(cls, v: tuple[str, ...]) -> tuple[str, ...]:
        for c in v:
            if c not in COMPRESSIONS and not c.startswith("layers:"):
                raise ValueError(f"unknown compression {c!r}; use {', '.join(COMPRESSIONS)} or layers:<i,j,...>")
        return v


class TopologySpec(BaseModel):
    """`type` plus that topology's own parameters (validated by the topology)."""
    model_config = ConfigDict(extra="allow", frozen=True)
    type: str


class RunSpec(Strict):
    replicas: Replicas = Field(1, description="copies of each agent's actor unless the agent says otherwise; "
                                              "auto: see agents.<id>.replicas")
    inputs: Optional[str] = Field(None, description="JSONL file with a 'question' per line")
    batch_size: int = Field(4, ge=1, le=4096)
    seed: int = 0
    output: Optional[str] = None
    method: Literal["latent", "text", "single"] = "latent"
    max_in_flight: Union[int, Literal["auto", "all"]] = Field(
        "auto", description="batches submitted and unfinished at once (backpressure): an int >= 1; "
        "auto = one per actor plus one, so every agent can work on a different batch; all = no limit")

    @field_validator("max_in_flight")
    @classmethod
    def _positive_in_flight(cls, v):
        if isinstance(v, int) and v < 1:
            raise ValueError("max_in_flight must be >= 1, 'auto' or 'all'")
        return v


MiB = 2**20
# Ray refuses a smaller object store than this (ray_constants.OBJECT_STORE_MINIMUM_MEMORY_BYTES)
MIN_OBJECT_STORE_BYTES = 75 * MiB


class LimitsSpec(Strict):
    """Bounds on time, size and retries; each has a safe default and a clear error when hit."""
    step_timeout_s: float = Field(900.0, gt=0, description="one step (one agent on one batch) that runs longer "
                                  "is stopped; its problems fail with the reason")
    run_timeout_s: float = Field(86400.0, gt=0, description="problems not finished this long after the run "
                                 "started fail with the reason; the run ends with what finished")
    max_prompt_tokens: int = Field(8192, ge=1, description="tokens one problem's prompt may have at one agent "
                                   "(role, question, context and text received)")
    max_question_chars: int = Field(65536, ge=1, description="characters one question (with its context) may have")
    max_message_bytes: int = Field(2**31, ge=1024, description="bytes one latent message may have on the wire")
    retries: int = Field(2, ge=0, le=10, description="times a batch is resubmitted after an actor died under it "
                         "(actors restart as often)")
    object_store_bytes: Optional[int] = Field(None, ge=MIN_OBJECT_STORE_BYTES, description="size of the object "
                                              "store of a Ray latentray starts (None: Ray's default); objects "
                                              "beyond it spill to disk")
    max_questions_per_request: int = Field(64, ge=1, description="questions one gateway request may carry")
    max_request_bytes: int = Field(MiB, ge=1024, description="bytes one gateway request may have")
    max_concurrent_requests: int = Field(32, ge=1, description="gateway requests served at once; more are "
                                         "refused with RESOURCE_EXHAUSTED")


class PlacementSpec(Strict):
    """Where actors go on a cluster of several nodes (Ray's placement groups and strategies)."""
    strategy: Literal["default", "pack", "spread"] = Field(
        "default", description="default: Ray's own choice; pack: each replica set of the pipeline (one actor "
        "per agent) on one node, so a problem's messages stay in one object store; spread: actors over as "
        "many nodes as possible")


class GraphSpec(Strict):
    version: Literal[1]
    name: str = "run"
    models: dict[str, ModelSpec]
    agents: dict[str, AgentSpec]
    topology: TopologySpec
    channels: ChannelSpec = ChannelSpec()
    run: RunSpec = RunSpec()
    limits: LimitsSpec = LimitsSpec()
    placement: PlacementSpec = PlacementSpec()

    @field_validator("name")
    @classmethod
    def _name_is_simple(cls, v: str) -> str:
        if not v or "/" in v or v.strip() != v:
            raise ValueError("name must be non-empty, without '/' or surrounding spaces")
        return v

    @model_validator(mode="after")
    def _references_exist(self) -> "GraphSpec":
        if not self.models:
            raise ValueError("models: at least one model is required")
        if not self.agents:
            raise ValueError("agents: at least one agent is required")
        return self
