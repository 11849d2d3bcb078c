"""Requests on their way through the engine, and the collector that batches them.

A Ticket is one admitted request: its questions, what came back for each, its times and
its event callback. The Collector gathers tickets into groups of at most batch_size
questions, waiting at most `window_s` after a group's first ticket for more, and hands
each group to run_group on a thread of its own. Concurrent single questions thus share a
batch (one forward pass per step for all of them) instead of queueing one by one; a batch
gives each problem the same answer as running it alone, so grouping is invisible but for time.
Only tickets with equal Overrides share a group: a batch runs one configuration of each agent.
"""
from __future__ import annotations

import queue
import threading
import time
from dataclasses import dataclass


DONE = {"event": "done"}  # the last event of every ticket: all its questions are accounted for


@dataclass(frozen=True)
class Overrides:
    """What one request changes in the spec's agents for its own questions (None: the spec's):
    the answering agents' max_new_tokens, temperature, top_p and stop strings (added to the
    spec's), and every agent's sampling seed."""
    max_new_tokens: int | None = None
    temperature: float | None = None
    top_p: float | None = None
    seed: int | None = None
    stop: tuple | None = None


NO_OVERRIDES = Overrides()


class Ticket:
    def __init__(self, questions: list, bad: dict, on_event=None, overrides: Overrides = NO_OVERRIDES):
        self.questions = list(questions)
        self.overrides = overrides
        self.failed = dict(bad)  # index -> reason
        self.valid = [i for i in range(len(questions)) if i not in bad]  # indices that run
        self.answers: dict = {}  # index -> (answer, tokens)
        self.details: dict = {}  # index -> what else its unit reported of it (GatewayService._detail)
        self.on_event = on_event
        self.admitted = time.monotonic()
        self.started = self.finished = None
        self.done = threading.Event()
        self._lock = threading.Lock()
        self._complete = not self.valid
        if self._complete:
            self._finish()

    def start(self, now: float) -> None:
        self.started = now
        self.emit({"event": "running", "questions": len(self.valid)})

    def emit(self, event: dict) -> None:
        if self.on_event is not None:
            self.on_event(event)

    def record(self, answers: dict, failed: dict, details: dict | None = None) -> None:
        """answers: {index: (answer, tokens)}; failed: {index: reason}; details: {index: dict};
        finishes the ticket once every question is accounted for (later records are ignored)."""
        with self._lock:
            if self._complete:
                return
            self.answers.update(answers)
            self.details.update(details or {})
            self.failed.update({i: why for i, why in failed.items() if i not in self.answers})
            self._complete = complete = len(self.answers) + len(self.failed) == len(self.questions)
        if complete:
            self._finish()

    def _finish(self) -> None:
        self.finished = time.monotonic()
        self.done.set()
        self.emit(DONE)

    def abandon(self, reason: str) -> None:
        """Fail every question not finished yet (the gateway is shutting down)."""
        self.record({}, {i: reason for i in self.valid if i not in self.answers and i not in self.failed})

    def times(self) -> dict:
        """Seconds queued (admitted to its batch's start), running (start to its last
        answer) and in total; a request whose questions all failed their checks never ran."""
        end = self.finished or time.monotonic()
        start = self.started or end
        return {"queue_s": start - self.admitted, "run_s": end - start, "total_s": end - self.admitted}


class Collector:
    def __init__(self, batch_size: int, window_s: float, run_group):
        self.batch_size, self.window_s, self.run_group = batch_size, window_s, run_group
        self._queue: queue.Queue = queue.Queue()
        self._carry = None  # a ticket that did not fit the last group: the next one's first
        self._thread = threading.Thread(target=self._loop, name="latentray-gateway-collector", daemon=True)
        self._thread.start()

    def put(self, ticket: Ticket) -> None:
        self._queue.put(ticket)

    def close(self) -> None:
        self._queue.put(None)
        self._thread.join(timeout=5)

    def _next(self, timeout=None):
        if self._carry is not None:
            ticket, self._carry = self._carry, None
            return ticket
        return self._queue.get(timeout=timeout) if timeout is not None else self._queue.get()

    def _loop(self) -> None:
        while True:
            first = self._next()
            if first is None:
                return
            group, size = [first], len(first.valid)
            deadline = time.monotonic() + self.window_s
            closing = False
            while size < self.batch_size:
                left = deadline - time.monotonic()
                if left <= 0:
                    break
                try:
                    ticket = self._next(timeout=left)
                except queue.Empty:
                    break
                if ticket is None:
                    closing = True
                    break
                if size + len(ticket.valid) > self.batch_size or ticket.overrides != first.overrides:
                    self._carry = ticket  # whole requests of one configuration only: it starts the next group
                    break
                group.append(ticket)
                size += len(ticket.valid)
            threading.Thread(target=self.run_group, args=(group,), name="latentray-gateway-group",
                             daemon=True).start()
            if closing:
                return
