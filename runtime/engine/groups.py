"""The collective group that two-sided rdt backends need, over every actor of a run."""
from __future__ import annotations

from contextlib import contextmanager

from latentray.runtime.engine.steps import step_transport


@contextmanager
def open_groups(spec, plan, handles):
    """Create the rdt collective group over every actor for the run (every replica), and
    destroy it after. handles: the ReplicaPool, or {agent id: handle}."""
    from latentray.channels.transports import create_group, destroy_group

    from latentray.runtime.engine.replicas import ReplicaPool

    rdt = any(step_transport(plan, s) == "rdt" for s in plan.steps)
    group = None
    if rdt:
        actors = ReplicaPool.of(handles).handles()
        group = create_group(actors, spec.channels.rdt_backend)
    try:
        yield group
    finally:
        if group is not None:
            destroy_group(group)
