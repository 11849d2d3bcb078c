"""Where a run's actors go on a cluster: the spec's `placement.strategy`, with Ray's own means.

  default   Ray chooses (it fills the driver's node first).
  spread    every actor asks Ray's SPREAD strategy: over as many nodes as possible.
  pack      replica k of every agent forms lane k, one STRICT_PACK placement group (one
            bundle per actor), so a problem whose steps stay in one lane keeps its
            messages in one node's object store. Replicas that `auto` adds later are
            placed by Ray's default, and dispatch still prefers the node holding a step's
            inputs (runtime/engine/replicas.py).

Resource labels (agents.<id>.resources.custom) pin actors to the nodes that offer them,
whatever the strategy: they are part of each actor's (and bundle's) resources.
"""
from __future__ import annotations


class Placement:
    def __init__(self, spec, plan, run_name: str, strategy: str | None = None):
        from latentray.runtime.engine.actors import group_agents

        self.strategy = strategy or spec.placement.strategy
        self.groups = group_agents(spec, plan.agents)
        self.run_name = run_name
        self._lanes: dict = {}  # lane index -> (placement group, {group name: bundle index})

    def options(self, group, index: int) -> dict:
        """Extra .options() for replica `index` of `group`."""
        if self.strategy == "spread":
            return {"scheduling_strategy": "SPREAD"}
        if self.strategy == "pack" and index < group.initial_replicas:
            from ray.util.scheduling_strategies import PlacementGroupSchedulingStrategy

            pg, bundle_of = self._lane(index)
            return {"scheduling_strategy": PlacementGroupSchedulingStrategy(
                pg, placement_group_bundle_index=bundle_of[group.name])}
        return {}

    def _lane(self, k: int) -> tuple:
        if k not in self._lanes:
            from ray.util.placement_group import placement_group

            members = [g for g in self.groups if g.initial_replicas > k]  # in plan order, one bundle each
            # a bundle may not be empty: an actor that asks for nothing still holds a sliver of CPU
            bundles = [g.resources() or {"CPU": 0.001} for g in members]
            pg = placement_group(bundles, strategy="STRICT_PACK", name=f"{self.run_name}/lane{k}")
            self._lanes[k] = (pg, {g.name: i for i, g in enumerate(members)})
        return self._lanes[k]

    def close(self) -> None:
        """Remove the placement groups (after the actors in them are gone)."""
        if not self._lanes:
            return
        from ray.util.placement_group import remove_placement_group

        for pg, _ in self._lanes.values():
            try:
                remove_placement_group(pg)
            except Exception:  # already gone with its cluster: nothing left to free
                pass
        self._lanes = {}
