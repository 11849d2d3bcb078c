"""Transport decisions the driver makes: which way each step's output leaves, checked
before any actor starts, and the collective groups two-sided rdt backends need."""
from __future__ import annotations

from contextlib import contextmanager

from topologies.errors import SpecError


def step_transport(plan, step) -> str:
    """The transport of a step's outgoing edges (text answers go through the object store)."""
    outgoing = {e.transport for e in plan.outgoing(step.id)}
    return outgoing.pop() if len(outgoing) == 1 else "object_store"


def check_transports(spec, plan) -> None:
    """One transport per producing step, one compression variant for rdt, backend usable."""
    from channels.compression import check_compression_names
    from channels.transports.rdt import require_backend

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
    if uses_rdt and spec.channels.rdt_backend == "gloo":
        require_backend("gloo")  # CUDA backends are checked inside the actors, where the GPUs are


@contextmanager
def open_groups(spec, plan, handles: dict):
    """Create the rdt collective group over every actor for the run, and destroy it after."""
    from channels.transports import create_group, destroy_group

    rdt = any(step_transport(plan, s) == "rdt" for s in plan.steps)
    group = None
    if rdt:
        actors = list({h._actor_id: h for h in handles.values()}.values())
        group = create_group(actors, spec.channels.rdt_backend)
    try:
        yield group
    finally:
        if group is not None:
            destroy_group(group)
