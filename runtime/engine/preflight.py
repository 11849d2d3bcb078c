"""Pre-flight: every check a run needs that no actor has to answer, in one place.

`validate`, `run`, `eval`, `serve` and `submit` call the same stage, so a spec that `run`
would refuse fails `validate` too, with the same message. Each check raises a typed error
naming the field and the fix; `problems` collects what every check says, for `validate`.
The one check that needs Ray (that the actors fit the cluster) runs once Ray is up.
"""
from __future__ import annotations

import os
import sys

from latentray.topologies.errors import SpecError

from latentray.runtime.engine.errors import RunError


def check_model_refs(spec) -> None:
    """Resolve every model ref, and check that a built-in model's package is installed;
    raises ModelRefError naming the field and the install."""
    from latentray.agents.models import ModelRef

    for model_id, m in spec.models.items():
        try:
            ModelRef.parse(m.ref).check_available()
        except ValueError as exc:
            raise type(exc)(f"models.{model_id}.ref: {exc}") from None


def check_transports(spec, plan) -> None:
    """One transport per producing step, one compression variant for rdt, backend usable."""
    from latentray.channels.compression import check_compression_names
    from latentray.topologies.validate import replicas_of

    uses_rdt = False
    for step in plan.steps:
        out = plan.outgoing(step.id)
        kinds = {e.transport for e in out}
        if len(kinds) > 1:
            raise SpecError(f"step {step.id!r} sends over both {' and '.join(sorted(kinds))}",
                            field="channels.edges", fix="give all edges leaving one agent the same transport")
        if kinds == {"rdt"}:
            uses_rdt = True
            if len({tuple(e.compression) for e in out}) > 1:
                raise SpecError(f"step {step.id!r} sends rdt messages with different compressions",
                                field="channels.edges", fix="use one compression list for its rdt edges")
        for edge in step.inputs:
            try:
                check_compression_names(list(edge.compression))
            except ValueError as exc:
                raise SpecError(str(exc), field=f"channels.compression (edge {edge.src} -> {edge.dst})",
                                fix="order: latent_only, layers:..., bf16|fp16, int8") from None
    if uses_rdt:
        check_rdt_backend(spec, plan)
        auto = [a for a in plan.agents if replicas_of(spec, a) == "auto"]
        if auto:
            raise SpecError(f"agent {auto[0]!r} has replicas: auto, which adds actors while the run goes, but rdt "
                            "needs every actor in its collective group from the start",
                            field=f"agents.{auto[0]}.replicas", fix="give a number of replicas, or use "
                            "transport: object_store")


# rdt backends that move tensors between GPUs: each actor on such an edge needs a GPU.
GPU_BACKENDS = ("nccl", "cuda_ipc", "nixl")


def check_rdt_backend(spec, plan) -> None:
    """gloo must import here; a GPU backend needs every agent on an rdt edge to ask for a GPU
    (whether the GPU can run the backend is checked inside each actor, where it is)."""
    backend = spec.channels.rdt_backend
    if backend not in GPU_BACKENDS:
        from latentray.channels.transports.rdt import require_backend

        require_backend(backend)
        return
    on_rdt = {agent for s in plan.steps for e in s.inputs if e.transport == "rdt"
              for agent in (plan.step(e.src).agent, s.agent)}
    cpu_only = sorted(a for a in on_rdt if spec.agents[a].resources.num_gpus <= 0)
    if cpu_only:
        raise SpecError(f"rdt backend {backend!r} moves tensors between GPUs, but agent(s) {', '.join(cpu_only)} "
                        "ask for no GPU", field="channels.rdt_backend",
                        fix="give them agents.<id>.resources.num_gpus, or use rdt_backend: gloo on CPUs")


def rejected_questions(spec, questions: list, known: dict | None = None) -> dict:
    """{index: reason} of the questions that cannot run: `known` ones (unreadable lines) and
    each one the question checks refuse (empty, binary, not Unicode, over the limit)."""
    from latentray.runtime.engine.question_checks import rejected_questions as check

    return check(questions, spec.limits.max_question_chars, known)


def check_codecs(spec, plan) -> None:
    from latentray.runtime.codecs.plan import check_codec_parts

    check_codec_parts(spec, plan)


def check_limits(spec, address: str | None) -> None:
    """Limits that only a Ray this run starts can honour."""
    from latentray.runtime.engine.ray_setup import refuse_store_size_when_joining

    refuse_store_size_when_joining(address, spec.limits.object_store_bytes)


def needed_resources(spec, plan) -> dict:
    """Ray resources the run's actors ask for together, every replica counted (an `auto`
    agent as the one replica it starts with): CPU, GPU and each custom resource label."""
    from latentray.runtime.engine.actors import group_agents

    total = {"CPU": 0.0, "GPU": 0.0}
    for g in group_agents(spec, plan.agents):
        for name, amount in {"CPU": g.num_cpus, "GPU": g.num_gpus, **dict(g.custom)}.items():
            total[name] = total.get(name, 0.0) + amount * g.initial_replicas
    return total


def check_local_gpus(spec, plan, address: str | None) -> None:
    """A Ray this run starts has this machine's GPUs and no more: refuse actors that ask for more."""
    if address or os.environ.get("RAY_ADDRESS"):
        return  # a cluster's GPUs are known once it is joined (check_fits)
    gpus = needed_resources(spec, plan)["GPU"]
    if gpus > 0:
        import torch

        have = torch.cuda.device_count()
        if gpus > have + 1e-9:
            raise RunError(f"the run's actors need {gpus:g} GPUs but this machine has {have}; lower "
                           "agents.*.resources.num_gpus, share actors with `actor:`, or give --address of a "
                           "cluster with GPUs")


CHECKS = (
    ("models", lambda spec, plan, address: check_model_refs(spec)),
    ("transports", lambda spec, plan, address: check_transports(spec, plan)),
    ("codecs", lambda spec, plan, address: check_codecs(spec, plan)),
    ("limits", lambda spec, plan, address: check_limits(spec, address)),
    ("resources", lambda spec, plan, address: check_local_gpus(spec, plan, address)),
)


def preflight(spec, plan, address: str | None = None) -> None:
    """Every check, in order; the first failure is raised as it is."""
    for _, check in CHECKS:
        check(spec, plan, address)


def problems(spec, plan, address: str | None = None) -> list:
    """(check name, message) of every check that fails: what `run` would refuse."""
    from latentray.runtime.engine.errors import USER_ERRORS

    found = []
    for name, check in CHECKS:
        try:
            check(spec, plan, address)
        except USER_ERRORS as exc:
            found.append((name, str(exc)))
    return found


def check_fits(spec, plan, started_locally: bool) -> None:
    """Actors that can never be placed would wait forever: refuse them on a local Ray this
    process started; on a cluster, warn (an autoscaler may still add nodes)."""
    import ray

    nodes = [n.get("Resources", {}) for n in ray.nodes() if n.get("Alive")]
    for field, text, fix in placement_problems(spec, plan, ray.cluster_resources(), nodes):
        if started_locally:
            raise SpecError(text, field=field, fix=fix)
        print(f"[latentray] warning: {field}: {text}; actors wait until the cluster can hold them", file=sys.stderr)


def placement_problems(spec, plan, have: dict, nodes: list) -> list:
    """(field, what is wrong, fix) for each way the run's actors can never be placed on a
    cluster with resources `have` in all and `nodes` (each node's resources)."""
    from latentray.runtime.engine.actors import group_agents

    found = []
    groups = group_agents(spec, plan.agents)
    for g in groups:
        for label, _ in g.custom:
            if label not in have:
                found.append((f"agents.{g.agents[0]}.resources.custom.{label}",
                              f"unknown resource label {label!r}: no node of the Ray cluster offers it",
                              "start the nodes meant for this agent with `ray start --resources "
                              f"'{{\"{label}\": N}}'`, or remove the label"))
    if found:
        return found
    for kind, amount in needed_resources(spec, plan).items():
        if amount > have.get(kind, 0) + 1e-9:
            name = {"CPU": "num_cpus", "GPU": "num_gpus"}.get(kind, f"custom.{kind}")
            found.append(("agents.*.replicas, agents.*.resources", f"the run's actors (every replica counted) need {amount:g} {kind} but the "
                          f"Ray cluster has {have.get(kind, 0):g}",
                          f"lower agents.*.replicas or agents.*.resources.{name}, share actors with `actor:`, "
                          "or give Ray more resources"))
    for g in groups:
        if not any(_fits(g.resources(), node) for node in nodes):
            found.append((f"agents.{g.agents[0]}.resources", f"one replica of {g.name!r} needs {g.resources()}, "
                          "more than any one node of the Ray cluster has",
                          "lower its resources, or add a node that large"))
    if spec.placement.strategy == "pack":  # lane 0 holds the first replica of every agent
        need: dict = {}
        for g in groups:
            for k, v in g.resources().items():
                need[k] = need.get(k, 0.0) + v
        if not any(_fits(need, node) for node in nodes):
            found.append(("placement.strategy", f"pack keeps one replica of every agent on one node, which needs "
                          f"{ {k: round(v, 3) for k, v in need.items()} }, more than any node of the Ray cluster has",
                          "use placement.strategy: spread (or default), or nodes large enough for the pipeline"))
    return found


def _fits(need: dict, node: dict) -> bool:
    return all(amount <= node.get(kind, 0.0) + 1e-9 for kind, amount in need.items())
