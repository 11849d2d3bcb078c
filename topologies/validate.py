"""Checks run once, before any actor starts: references, codecs, edges, kinds, reachability.

Two agents share a model when their model entries name the same ref, dtype and seed
(topologies/edges.same_model), so no weights are loaded to validate a spec; whether a
codec's fitted parts exist is checked by the runtime (runtime/codec_plan.py) and their
fingerprints by the actors that load them.
"""
from __future__ import annotations

import re

from latentray.channels.kinds import get_kind, kinds_with

from .errors import SpecError
from .plan import Plan
from .edges import same_model
from .spec import AGGREGATES, CODECS, GraphSpec

_TINY = re.compile(r"^tiny:([a-z0-9]+)-(\d+)(-[a-z0-9-]+)?$")
SAME_SPACE_CODECS = ("identity", "realign")  # map nothing between models
PAIRWISE_CODECS = ("ridge",)  # need the receiver's model to decode: no shared space to aggregate in
WHOLE_MESSAGE_CODECS = {"resampler"}  # decode a message as a whole: latent_decode does not apply
NEAREST_CODECS = {"resampler"}  # soft tokens over the receiver's vocabulary: codec_read nearest applies


def has_no_rope(ref: str) -> bool:
    """Built-in models with absolute position embeddings (keys carry no rotation)."""
    m = _TINY.match(ref)
    return bool(m) and m.group(1) == "gpt2"


def check_codec(codec: str, file: str, field: str) -> None:
    module, _, cls = codec.partition(":")
    if codec in CODECS or (module and cls):
        return
    raise SpecError(f"unknown codec {codec!r}", file=file, field=field,
                    fix=f"use one of: {', '.join(CODECS)}, or module:Class")


def validate_spec(spec: GraphSpec, file: str) -> None:
    for name, agent in spec.agents.items():
        if agent.model not in spec.models:
            raise SpecError(f"unknown model {agent.model!r}", file=file, field=f"agents.{name}.model",
                            fix=f"use one of: {', '.join(spec.models)}")
    check_codec(spec.channels.codec, file, "channels.codec")
    pairs: set = set()
    for i, edge in enumerate(spec.channels.edges):
        for end in ("src", "dst"):
            if getattr(edge, end) not in spec.agents:
                raise SpecError(f"unknown agent {getattr(edge, end)!r}", file=file,
                                field=f"channels.edges.{i}.{end}", fix=f"use one of: {', '.join(spec.agents)}")
        if (edge.src, edge.dst) in pairs:
            raise SpecError(f"duplicate edge {edge.src} -> {edge.dst}", file=file, field=f"channels.edges.{i}",
                            fix="merge the two overrides into one")
        pairs.add((edge.src, edge.dst))
        if edge.codec is not None:
            check_codec(edge.codec, file, f"channels.edges.{i}.codec")
    uses = {spec.channels.codec, *(e.codec for e in spec.channels.edges)}
    if spec.channels.latent_decode == "think" and WHOLE_MESSAGE_CODECS & uses:
        raise SpecError("latent_decode: think maps latent-step states one by one, but the resampler codec reads a "
                        "whole message at once into its soft tokens", file=file, field="channels.latent_decode",
                        fix="leave latent_decode at read, or use a fitted codec (ridge, relative, hub)")
    if spec.channels.codec_read != "mixture" and not NEAREST_CODECS & uses:
        raise SpecError(f"codec_read: {spec.channels.codec_read} reads the soft tokens of the resampler codec, and no "
                        "edge uses it", file=file, field="channels.codec_read",
                        fix="set channels.codec: resampler (parts from latentray train-codec --output vocabulary), "
                            "or leave codec_read at mixture")
    groups: dict = {}
    for name, agent in spec.agents.items():
        if agent.actor is not None:
            first = groups.setdefault(agent.actor, (name, agent.model))
            if first[1] != agent.model:
                raise SpecError(f"actor group {agent.actor!r} mixes models {first[1]!r} and {agent.model!r}",
                                file=file, field=f"agents.{name}.actor",
                                fix="only agents of one model can share an actor")
            replicas = (replicas_of(spec, first[0]), replicas_of(spec, name))
            if replicas[0] != replicas[1]:
                raise SpecError(f"actor group {agent.actor!r} has agents with {replicas[0]} and {replicas[1]} replicas",
                                file=file, field=f"agents.{name}.replicas",
                                fix="agents sharing an actor share its replicas: give them the same number")


def replicas_of(spec: GraphSpec, agent_id: str):
    """An agent's replica count as the spec asks it: a number, or "auto"."""
    own = spec.agents[agent_id].replicas
    return spec.run.replicas if own is None else own


def validate_plan(spec: GraphSpec, plan: Plan, file: str) -> None:
    _check_order(spec, plan, file)
    for step in plan.steps:
        for edge in step.inputs:
            _check_edge(spec, plan, edge, step, file)
        _check_inbox(spec, plan, step, file)
    _check_emits(spec, plan, file)
    _check_outputs(spec, plan, file)
    _check_overrides_used(spec, plan, file)
    _check_hidden_settings(spec, plan, file)


def _check_order(spec: GraphSpec, plan: Plan, file: str) -> None:
    seen: set = set()
    for step in plan.steps:
        if step.agent not in spec.agents:
            raise SpecError(f"unknown agent {step.agent!r}", file=file, field="topology",
                            fix=f"use one of: {', '.join(spec.agents)}")
        if step.id in seen:
            raise SpecError(f"duplicate step id {step.id!r}", file=file, field="topology",
                            fix="step ids must be unique; prefix rounds like r1/<agent>")
        for edge in step.inputs:
            if edge.src not in seen:
                raise SpecError(f"step {step.id!r} reads {edge.src!r}, which does not run before it",
                                file=file, field="topology", fix="check the order of agents")
        seen.add(step.id)
    if not plan.answer_steps:
        raise SpecError("the topology produces no answer", file=file, field="topology",
                        fix="give one agent output: text and make it the answering agent")


def _check_edge(spec: GraphSpec, plan: Plan, edge, step, file: str) -> None:
    src_agent = plan.step(edge.src).agent
    src_model, dst_model = spec.agents[src_agent].model, spec.agents[step.agent].model
    where = f"{src_agent} -> {step.agent}"
    check_codec(edge.codec, file, "channels.codec")
    one_model = same_model(spec, src_agent, step.agent)
    kind = get_kind(edge.kind)
    if kind.same_model_only and not one_model:
        raise SpecError(f"{kind.name} edge {where} joins different models {src_model!r} and {dst_model!r}"
                        f"{kind.same_model_why}", file=file, field="channels.kind", fix=kind.same_model_fix)
    if not kind.takes_codec and edge.codec != "identity":
        coded = " or ".join(kinds_with("takes_codec"))
        raise SpecError(f"{kind.name} edge {where} has codec {edge.codec}, but codecs map {coded} messages only",
                        file=file, field="channels.codec",
                        fix=f"use kind {coded} for {where}, or codec identity (auto)")
    if kind.takes_codec and edge.codec in SAME_SPACE_CODECS and not one_model:
        raise SpecError(f"{kind.name} edge {where} joins different models {src_model!r} and {dst_model!r} with codec "
                        f"{edge.codec}, which maps nothing between them", file=file, field="channels.codec",
                        fix=f"set a codec that maps between models (ridge, relative, hub, or auto) for {where} "
                            "and fit it with latentray fit-codec")


def _check_inbox(spec: GraphSpec, plan: Plan, step, file: str) -> None:
    kinds = [e.kind for e in step.inputs]
    model = spec.models[spec.agents[step.agent].model]
    rotated = [k for k in kinds if get_kind(k).rope_joined]
    if len(rotated) > 1 and has_no_rope(model.ref):
        raise SpecError(f"step {step.id!r} joins {rotated[0]} from {len(rotated)} senders on {model.ref}, "
                        "which has absolute positions (no RoPE) so caches cannot be re-positioned",
                        file=file, field="channels.kind", fix="use kind hidden for this model")
    if step.action == "aggregate":
        if step.aggregate not in AGGREGATES:
            raise SpecError(f"unknown aggregate {step.aggregate!r}", file=file, field="topology.aggregate",
                            fix=f"use one of: {', '.join(AGGREGATES)}")
        if not kinds or not all(get_kind(k).aggregatable for k in kinds) or len(set(kinds)) > 1:
            first, *others = kinds_with("aggregatable")
            raise SpecError(f"step {step.id!r} aggregates {', '.join(sorted(set(kinds))) or 'nothing'}; "
                            f"aggregation needs {' or '.join([first, *others])} messages of one kind", file=file,
                            field="channels.kind",
                            fix=f"set channels.kind to {first}" + (f" (or {' or '.join(others)})" if others else ""))
        codecs = sorted({e.codec for e in step.inputs})
        if len(codecs) > 1:
            raise SpecError(f"step {step.id!r} aggregates messages of codecs {', '.join(codecs)}; they must share "
                            "one space", file=file, field="channels.codec", fix="give every spoke edge one codec")
        agents = {plan.step(e.src).agent for e in step.inputs} | {step.agent}
        mixed = any(not same_model(spec, a, step.agent) for a in agents)
        if mixed and (codecs[0] in SAME_SPACE_CODECS + PAIRWISE_CODECS):
            raise SpecError(f"step {step.id!r} aggregates spokes of different models with codec {codecs[0]}, "
                            "which has no space they share", file=file, field="channels.codec",
                            fix="use codec hub (or relative), or auto, for the spokes' edges")
        if step.emit != kinds[0]:
            raise SpecError(f"step {step.id!r} aggregates {kinds[0]} but sends {step.emit}", file=file,
                            field="channels.edges", fix=f"send {kinds[0]} from the hub")


def _check_emits(spec: GraphSpec, plan: Plan, file: str) -> None:
    for step in plan.steps:
        out = plan.outgoing(step.id)
        if step.action == "aggregate" and step.inputs:
            space = step.inputs[0].codec
            for e in out:
                if get_kind(e.kind).takes_codec and e.codec != space:
                    raise SpecError(f"edge {step.agent} -> {plan.step(e.dst).agent} decodes the aggregate of step "
                                    f"{step.id!r} with codec {e.codec}, but it was combined in {space}'s space",
                                    file=file, field="channels.codec", fix=f"use codec {space} on that edge")
        kinds = sorted({e.kind for e in out})
        if len(kinds) > 1:
            raise SpecError(f"agent {step.agent!r} sends {' and '.join(kinds)} from step {step.id!r}; "
                            "a step emits one message kind", file=file, field="channels.edges",
                            fix=f"give every edge out of {step.agent} the same kind")
        cfg = spec.agents[step.agent]
        if step.action == "latent" and out and get_kind(step.emit).needs_latent_steps and cfg.latent_steps == 0:
            raise SpecError(f"agent {step.agent!r} sends {step.emit} messages but has latent_steps 0",
                            file=file, field=f"agents.{step.agent}.latent_steps",
                            fix="set latent_steps > 0, or send kind kv")


def _check_outputs(spec: GraphSpec, plan: Plan, file: str) -> None:
    for sid in plan.answer_steps:
        step = plan.step(sid)
        if step.action != "text":
            raise SpecError(f"answer step {sid!r} does not decode text", file=file,
                            field=f"agents.{step.agent}.output", fix="set output: text")
    for step in plan.steps:
        if step.action == "text" and spec.agents[step.agent].output != "text":
            raise SpecError(f"agent {step.agent!r} decodes the answer but has output latent", file=file,
                            field=f"agents.{step.agent}.output", fix="set output: text")
        if step.action != "text" and not plan.outgoing(step.id):
            raise SpecError(f"the message of step {step.id!r} is read by nobody", file=file, field="topology",
                            fix=f"send {step.agent}'s message to another agent or remove it")
    decoding = {s.agent for s in plan.steps if s.action == "text"}
    for name, cfg in spec.agents.items():
        if name not in plan.agents:
            raise SpecError(f"agent {name!r} reaches no output in the {plan.topology} topology", file=file,
                            field=f"agents.{name}", fix="connect it to the answering agent or remove it")
        if cfg.output == "text" and name not in decoding:
            raise SpecError(f"agent {name!r} has output text but never answers in the {plan.topology} topology",
                            file=file, field=f"agents.{name}.output",
                            fix=f"set output: latent, or make {name} the answering agent")


def _check_hidden_settings(spec: GraphSpec, plan: Plan, file: str) -> None:
    """Prompt or role rows, and another layer than the last, go only where a hidden message
    does; another layer only where a codec trained on it reads it. The text
    and single baselines of a latent spec send no hidden message: the layer is not theirs."""
    layer = spec.channels.hidden_layer
    if spec.run.method != "latent":
        return
    coded = [e for e in plan.edges if get_kind(e.kind).takes_codec]
    rows = spec.channels.hidden_states
    if rows != "latent" and not coded:
        raise SpecError(f"hidden_states: {rows} sets the rows of hidden messages, but no edge carries one",
                        file=file, field="channels.hidden_states", fix="set channels.kind: hidden, or remove "
                                                                       "hidden_states")
    if layer == "last":
        return
    if not coded:
        raise SpecError(f"hidden_layer: {layer} sets the layer of hidden messages, but no edge carries one",
                        file=file, field="channels.hidden_layer",
                        fix="remove hidden_layer, or set channels.kind: hidden with codec: resampler")
    for e in coded:
        if e.codec not in WHOLE_MESSAGE_CODECS:
            where = f"{plan.step(e.src).agent} -> {plan.step(e.dst).agent}"
            raise SpecError(f"hidden_layer: {layer}: edge {where} has codec {e.codec}, which maps last-layer "
                            "states only", file=file, field="channels.hidden_layer",
                            fix="set codec: resampler (trained on that layer with latentray train-codec), "
                                "or remove hidden_layer")


def _check_overrides_used(spec: GraphSpec, plan: Plan, file: str) -> None:
    """A per-edge override that matches no edge of the plan is a dangling edge."""
    used = {(e.settings_from or plan.step(e.src).agent, plan.step(e.dst).agent) for e in plan.edges}
    for i, edge in enumerate(spec.channels.edges):
        if (edge.src, edge.dst) not in used:
            raise SpecError(f"dangling edge {edge.src} -> {edge.dst}: the {plan.topology} topology sends nothing "
                            "along it", file=file, field=f"channels.edges.{i}",
                            fix="override only edges the topology has (latentray validate lists them)")
