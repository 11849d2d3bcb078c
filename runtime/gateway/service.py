"""The warm-actor service behind the gateway: one run session (runtime/engine/session.py)
starts the actors and compiles the steps once, and every request's questions run through
that session on those same actors.

Concurrent requests are batched by the Collector (batching.py); several groups run at once
on the same actor handles (Ray queues their calls on each actor). Each question is checked
by the pre-flight's question checks first: a bad one fails alone, with its reason, unrun.

A request may carry Overrides (batching.py): its groups then run steps compiled with the
answering agents configured as it asks, on the same actors (each call carries its config).
"""
from __future__ import annotations

import sys
import threading
import time
import uuid
from dataclasses import replace

from latentray.agents.errors import first_line

from latentray.runtime.engine.actors import actor_names
from latentray.runtime.engine.preflight import rejected_questions
from latentray.runtime.engine.session import RunSession
from latentray.runtime.gateway.batching import NO_OVERRIDES, Collector, Overrides, Ticket


class GatewayService:
    def __init__(self, spec, plan, run_name: str | None = None, address: str | None = None,
                 batch_window_s: float = 0.01, verbose: bool = False):
        self.spec, self.plan, self.address, self.verbose = spec, plan, address, verbose
        self.run_name = run_name or f"{spec.name}-gw-{uuid.uuid4().hex[:6]}"
        self.batch_window_s = batch_window_s
        self.session = None
        self.started_at = None
        self.served = 0  # requests answered (all their questions accounted for)
        self.groups_run = self.questions_run = 0  # their ratio: how full batching made the groups
        self._lock = threading.Lock()
        self._collector = None
        self._open: set = set()  # tickets queued or running: close() fails what they still hold
        self._followers: dict = {}  # (group, unit's indices) -> the thread sending its step events
        self._steps: dict = {}  # Overrides -> steps compiled with them (the session's own for none)

    def start(self) -> "GatewayService":
        """Pre-flight, start the actors (models loaded) and compile the steps."""
        self.session = RunSession(self.spec, self.plan, self.run_name, self.address, self.verbose).start()
        self.metrics = self.session.metrics
        self._collector = Collector(self.spec.run.batch_size, self.batch_window_s, self._run_group)
        self.started_at = time.monotonic()
        return self

    def set_batch_window(self, seconds: float) -> None:
        """How long a request waits for others to share its batch from now on (0: never)."""
        self.batch_window_s = seconds
        if self._collector is not None:
            self._collector.window_s = seconds

    @property
    def actor_names(self) -> list:
        return actor_names(self.spec, self.plan, self.run_name)

    @property
    def answer_agents(self) -> list:
        """The agents whose text is the answer (the ones Overrides' limits and sampling apply to)."""
        by_id = {s.id: s.agent for s in self.plan.steps}
        return sorted({by_id[step] for step in self.plan.answer_steps})

    def max_new_tokens(self, overrides: Overrides = NO_OVERRIDES) -> int:
        """The fewest tokens an answering agent may decode, as the spec or the overrides set it."""
        if overrides.max_new_tokens is not None:
            return overrides.max_new_tokens
        return min(self.spec.agents[a].max_new_tokens for a in self.answer_agents)

    def configs(self, overrides: Overrides) -> dict:
        """{agent: AgentConfig} of the spec with `overrides` applied."""
        from latentray.runtime.engine.agent_configs import spec_agent_configs

        configs = spec_agent_configs(self.plan.agents, self.spec)
        for name, config in configs.items():
            sampling = config.sampling
            if overrides.seed is not None:
                sampling = replace(sampling, seed=overrides.seed)
            changes = {}
            if name in self.answer_agents:
                sampling = replace(sampling, **{k: v for k, v in (("temperature", overrides.temperature),
                                                                  ("top_p", overrides.top_p)) if v is not None})
                if overrides.max_new_tokens is not None:
                    changes["max_new_tokens"] = overrides.max_new_tokens
                if overrides.stop:
                    changes["stop"] = config.stop + tuple(s for s in overrides.stop if s not in config.stop)
            configs[name] = replace(config, sampling=sampling, **changes)
        return configs

    def _steps_for(self, overrides: Overrides):
        """The compiled steps a group of these overrides runs (None: the session's own)."""
        if overrides == NO_OVERRIDES:
            return None
        from latentray.runtime.engine.steps import spec_steps

        with self._lock:
            steps = self._steps.get(overrides)
        if steps is None:
            steps = spec_steps(self.spec, self.plan, configs=self.configs(overrides))
            with self._lock:
                self._steps[overrides] = steps
        return steps

    def submit(self, questions: list, on_event=None, overrides: Overrides = NO_OVERRIDES) -> Ticket:
        """Queue a request's questions (strings or {"question", "context"} maps); returns its
        Ticket, done once each question is answered or failed. on_event(dict): progress.
        overrides: how this request's answering agents decode (the spec's by default)."""
        bad = rejected_questions(self.spec, questions)
        if bad:
            self.metrics.problems_failed(len(bad))
        ticket = Ticket(questions, bad, on_event, overrides)
        if ticket.valid:
            with self._lock:
                if self._collector is None:
                    ticket.abandon("the gateway is shutting down; send the question to another one")
                    return ticket
                self._open.add(ticket)
            ticket.emit({"event": "queued", "questions": len(ticket.valid)})
            self._collector.put(ticket)
        return ticket

    def reply(self, ticket: Ticket, request_id=None) -> dict:
        """The answer to a finished request (counted as served): answers and failures by
        question index, and its times."""
        with self._lock:
            self.served += 1
        return {"id": request_id,
                "answers": [{"index": i, "answer": a, "tokens": t} for i, (a, t) in sorted(ticket.answers.items())],
                "failed": [{"index": i, "reason": why} for i, why in sorted(ticket.failed.items())],
                "time": ticket.times()}

    def health(self) -> dict:
        return {"spec": self.spec.name, "topology": self.plan.topology, "agents": list(self.plan.agents),
                "actors": self.actor_names, "batch_size": self.spec.run.batch_size,
                "uptime_s": time.monotonic() - self.started_at if self.started_at else 0.0,
                "requests_served": self.served, "groups_run": self.groups_run, "questions_run": self.questions_run}

    def _run_group(self, tickets: list) -> None:
        """Run a group's questions as one run_plan call; route each answer to its ticket."""
        owners = [(t, i) for t in tickets for i in t.valid]
        with self._lock:
            self.groups_run += 1
            self.questions_run += len(owners)
        now = time.monotonic()
        for t in tickets:
            t.start(now)
        try:
            follow = lambda indices, refs: self._follow_steps(indices, refs, owners)  # noqa: E731
            steps = self._steps_for(tickets[0].overrides)  # a group shares its overrides (the Collector's rule)
            for done in self.session.run([t.questions[i] for t, i in owners], on_submit=follow, steps=steps):
                self._route(done, owners)
        except Exception as exc:  # noqa: BLE001 - the engine broke: fail what is left, keep serving
            reason = f"the engine stopped: {type(exc).__name__}: {first_line(exc)}"
            print(f"[latentray] gateway: {reason}", file=sys.stderr)
            for t in tickets:
                t.record({}, {i: reason for i in t.valid if i not in t.answers and i not in t.failed})
        finally:
            with self._lock:
                self._open.difference_update(tickets)
                for key in [k for k in self._followers if k[0] == id(owners)]:
                    del self._followers[key]  # units that were split: their pieces reported instead

    def _follow_steps(self, indices: list, refs: dict, owners: list) -> None:
        """Emit a "step" event to each ticket of a submitted unit as each of its steps finishes
        (a thread per unit, waiting on the steps' stats in order; a failed step ends it: the
        unit's outcome reaches the tickets through run_plan)."""
        import ray

        rows: dict = {}  # ticket -> rows of this unit that are its problems
        for row, g in enumerate(indices):
            rows.setdefault(owners[g][0], []).append(row)

        def follow():
            for step_id, ref in refs.items():
                try:
                    s = ray.get(ref)
                except Exception:  # noqa: BLE001 - reported with the unit's outcome
                    return
                for ticket, mine in rows.items():
                    ticket.emit({"event": "step", "step": step_id, "agent": s["agent"], "seconds": s.get("compute_s"),
                                 "rows": s.get("rows", len(indices)), "tokens": sum(s["tokens"][r] for r in mine)})

        thread = threading.Thread(target=follow, name="latentray-gateway-steps", daemon=True)
        with self._lock:
            self._followers[(id(owners), tuple(sorted(indices)))] = thread
        thread.start()

    def _steps_followed(self, owners: list, indices) -> None:
        """Wait for a finished unit's step events to be out, so they come before its answer."""
        with self._lock:
            thread = self._followers.pop((id(owners), tuple(sorted(indices))), None)
        if thread is not None:
            thread.join(timeout=5.0)  # its steps are done: it only has events left to send

    @staticmethod
    def _detail(stats: list, row: int) -> dict:
        """What a unit's step stats tell of its problem in `row`: each step's tokens (decoded,
        and read as prompt), and the unit's messages (their bytes are the whole unit's)."""
        def at(values, default=0):
            return values[row] if values and row < len(values) else default

        return {"steps": [{"step": s["step"], "agent": s["agent"], "tokens": at(s.get("tokens")),
                           "prompt_tokens": at(s.get("prompt_tokens")), "compute_s": s.get("compute_s")}
                          for s in stats],
                "messages": [{"src": e["src"], "dst": s["step"], "kind": e["kind"], "bytes": e["bytes"],
                              "latency_s": e["latency_s"]} for s in stats for e in s.get("inbox", ())],
                "unit_problems": max((s.get("rows", 0) for s in stats), default=0)}

    def _route(self, done, owners: list) -> None:
        answers: dict = {}
        failed: dict = {}
        details: dict = {}
        for row, (g, answer, tokens) in enumerate(zip(done.indices, done.answers, done.tokens)):
            ticket, i = owners[g]
            answers.setdefault(ticket, {})[i] = (answer, tokens)
            details.setdefault(ticket, {})[i] = self._detail(done.step_stats, row)
        for g, why in done.failed.items():
            ticket, i = owners[g]
            failed.setdefault(ticket, {})[i] = why
        self._steps_followed(owners, [*done.indices, *done.failed])
        for ticket in set(answers) | set(failed):
            ticket.record(answers.get(ticket, {}), failed.get(ticket, {}), details.get(ticket))

    def close(self) -> None:
        """Stop batching, fail the questions still open (their callers get a reply) and
        kill the actors."""
        with self._lock:
            collector, self._collector = self._collector, None
            still_open, self._open = list(self._open), set()
        if collector is not None:
            collector.close()
        for ticket in still_open:
            ticket.abandon("the gateway shut down before this question finished")
        if self.session is not None:
            self.session.close()
