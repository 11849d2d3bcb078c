"""Backpressure: 1,000 problems through a KV chain with run.max_in_flight batches ahead keep
the object store's peak under a bound set by the batch, not by the problem count."""
import math

import pytest

from latentray.runtime.engine.run import run_spec
from latentray.topologies import build_plan
from latentray.topologies.spec import GraphSpec

pytestmark = pytest.mark.ray

FREE_PERIOD_S = 1.0
ROLE = "You are one of a team of careful solvers; read the team's memory and think. Problem: {question}"


def chain(max_in_flight, actor=None):
    """actor: an actor group every agent shares (None: an actor per agent)."""
    agent = {"model": "m", "role": ROLE, "latent_steps": 1, "actor": actor}
    return GraphSpec.model_validate({
        "version": 1, "name": "backpressure", "models": {"m": {"ref": "tiny:qwen3-64"}},
        "agents": {"planner": agent, "critic": agent,
                   "judger": {**agent, "latent_steps": 0, "output": "text", "max_new_tokens": 1}},
        "topology": {"type": "chain", "order": ["planner", "critic", "judger"], "memory": "accumulate"},
        "run": {"batch_size": 40, "max_in_flight": max_in_flight}})


def test_peak_object_store_is_bounded_by_batches_in_flight_not_problem_count(ray_session):
    spec = chain(2, actor="team")  # one process to start; the store sees the same messages
    questions = [f"What is {i} + {i}?" for i in range(1000)]
    result = run_spec(spec, build_plan(spec), questions, run_name="backpressure")
    assert len(result.answers) == 1000 and all(isinstance(a, str) for a in result.answers)
    per_batch: dict = {}
    for row in result.trace:
        per_batch[row["batch"]] = per_batch.get(row["batch"], 0) + row["bytes"]
    batch_bytes, total = max(per_batch.values()), sum(per_batch.values())
    assert len(per_batch) == 25 and batch_bytes > (1 << 20)  # in the shared-memory store, not inlined
    # the batches in flight, plus those finished within one of Ray's free rounds (the raylet
    # deletes freed objects every free_objects_period_milliseconds, 1 s by default), plus
    # one: set by the batch and the throughput, not by the 1,000 problems
    finished_per_free_round = math.ceil(len(per_batch) / result.run_s * FREE_PERIOD_S)
    bound = (result.max_in_flight + finished_per_free_round + 1) * batch_bytes
    assert result.max_in_flight == 2 and result.peak_in_flight == 2  # never more submitted ahead
    assert result.peak_store_bytes is not None and result.peak_store_bytes <= bound, \
        (result.peak_store_bytes / 2**20, bound / 2**20)
    assert result.peak_store_bytes < total / 2
    assert result.spilled_bytes == 0


def test_auto_limit_gives_every_actor_a_batch_plus_one():
    from latentray.runtime.engine.session import in_flight_limit

    assert in_flight_limit(chain("auto"), build_plan(chain("auto"))) == 4
    assert in_flight_limit(chain("all"), build_plan(chain("all"))) is None
    assert in_flight_limit(chain(7), build_plan(chain(7))) == 7
