"""Steps: what each actor call of a plan is, compiled once per run, and how one unit's calls
are submitted.

A step's call depends on the plan alone but for the unit number, so compile_steps builds
every StepCall once; submit_unit stamps the unit number on them and submits them in plan
order, each with the ObjectRefs of the messages it reads. Nothing waits: the returned refs
are futures. This module sits below the scheduler and the session and calls nothing above.
"""
from __future__ import annotations

from dataclasses import dataclass, replace

from latentray.agents.step_call import InputEdge, StepCall


@dataclass(frozen=True)
class StepSubmission:
    """How one step is submitted; the same for every unit but for the unit number."""
    call: StepCall
    transport: str  # of its outgoing edges
    inbox: tuple  # (source step id, index of the output variant it reads) per input


def step_transport(plan, step) -> str:
    """The transport of a step's outgoing edges (text answers go through the object store)."""
    outgoing = {e.transport for e in plan.outgoing(step.id)}
    return outgoing.pop() if len(outgoing) == 1 else "object_store"


def _variant_key(edge, codecs: dict) -> tuple:
    """What a receiver needs the sender to have returned: its compression and encoding."""
    return tuple(edge.compression), codecs[edge].encode if edge in codecs else None


def output_variants(plan, step, codecs: dict | None = None) -> tuple:
    """Distinct (compression list, encoding) pairs over a step's outgoing edges: the
    objects the step returns, one each. codecs: {edge: EdgeCodec}."""
    variants = []
    for edge in plan.outgoing(step.id):
        key = _variant_key(edge, codecs or {})
        if key not in variants:
            variants.append(key)
    return tuple(variants) or (((), None),)


def compile_steps(plan, backend: str = "nccl", checksum: bool = False, codec_for=None,
                  hidden_scope: str = "latent", codec_dir: str = "", limits=None, configs: dict | None = None,
                  hidden_layer: int | None = None) -> list:
    """Everything about each step's actor call that depends on the plan alone, once per run.
    codec_for(edge) -> EdgeCodec (runtime/codecs/plan.py); None: no codec is applied.
    limits: the spec's LimitsSpec, whose per-step bounds every call carries (None: unbounded).
    configs: {agent: AgentConfig} each call carries (None: the actors run the agents they were built with)."""
    bounds = {} if limits is None else dict(timeout_s=limits.step_timeout_s, max_prompt_tokens=limits.max_prompt_tokens,
                                             max_message_bytes=limits.max_message_bytes)
    codecs = {e: codec_for(e) for e in plan.edges} if codec_for else {}
    variants = {s.id: output_variants(plan, s, codecs) for s in plan.steps}
    out = []
    for step in plan.steps:
        inputs = tuple(InputEdge(e.src, e.kind, e.codec, tuple(e.compression), e.transport,
                                 backend if e.transport == "rdt" else "",
                                 codecs[e].decode if e in codecs else None) for e in step.inputs)
        mine = variants[step.id]
        call = StepCall(step.id, step.agent, step.action, step.emit, step.kv_scope, inputs,
                        tuple(c for c, _ in mine), step.round, 0, step.aggregate, checksum,
                        encodes=tuple(enc for _, enc in mine), hidden_scope=hidden_scope, codec_dir=codec_dir,
                        hidden_layer=hidden_layer,
                        kv_merge=step.kv_merge, config=(configs or {}).get(step.agent), **bounds)
        inbox = tuple((e.src, variants[e.src].index(_variant_key(e, codecs))) for e in step.inputs)
        out.append(StepSubmission(call, step_transport(plan, step), inbox))
    return out


def spec_steps(spec, plan, configs: dict | None = None) -> list:
    """compile_steps with what the spec says: its backend, codecs, hidden scope, limits and
    agents' configs (or `configs`, {agent: AgentConfig}, where a caller changed them)."""
    from latentray.runtime.codecs.plan import codec_dir, edge_codec
    from latentray.runtime.engine.agent_configs import spec_agent_configs

    return compile_steps(plan, spec.channels.rdt_backend, codec_for=lambda e: edge_codec(spec, plan, e),
                         hidden_scope=spec.channels.hidden_states, codec_dir=codec_dir(spec), limits=spec.limits,
                         hidden_layer=hidden_layer(spec),
                         configs=configs if configs is not None else spec_agent_configs(plan.agents, spec))


def hidden_layer(spec) -> int | None:
    """The decoder layer a spec's hidden messages carry (None: the last layer's states)."""
    layer = spec.channels.hidden_layer
    return None if layer == "last" else int(layer)


def submit_unit(steps: list, handles, questions: list, unit: int, backend: str = "nccl",
                placed: dict | None = None) -> dict:
    """Submit every step of one unit (steps from compile_steps); returns
    {step id: [output refs..., stats ref]}. handles: a ReplicaPool, or {agent id: handle}.
    Each step goes to the replica the pool picks, near the replicas that ran its inputs;
    `placed`, if given, receives {step id: Replica}, each counted in that replica's load."""
    from latentray.channels.transports import producer_method

    from latentray.runtime.engine.replicas import ReplicaPool

    pool = ReplicaPool.of(handles)
    chosen = {} if placed is None else placed
    refs: dict = {}
    for sub in steps:
        call = replace(sub.call, batch=unit)
        inbox = [refs[src][variant] for src, variant in sub.inbox]
        replica = pool.pick(call.agent, {chosen[src].node for src, _ in sub.inbox})
        replica.load += 1
        chosen[call.step_id] = replica
        handle = replica.handle
        if sub.transport == "rdt":
            # the message stays in the producer until a receiver pulls it; stats come apart
            message = producer_method(handle, backend).remote(call, questions, *inbox)
            refs[call.step_id] = [message, handle.pop_stats.remote(unit, call.step_id)]
        else:
            n_out = len(call.outputs) + 1 if call.action != "text" else 2
            refs[call.step_id] = handle.run_step.options(num_returns=n_out).remote(call, questions, *inbox)
    return refs
