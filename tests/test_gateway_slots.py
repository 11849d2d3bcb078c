"""An admitted gateway call gives its admission slot back however it ends: past its client's
deadline, past limits.run_timeout_s, or cancelled by a client that went away. Before, a
call waited for its batch with no deadline and kept its slot until the batch ended."""
from __future__ import annotations

import time
from concurrent.futures import ThreadPoolExecutor

import grpc
import pytest

from latentray.runtime.gateway.batching import Ticket
from latentray.runtime.gateway.client import GatewayClient
from latentray.runtime.gateway.errors import GatewayError
from latentray.runtime.gateway.server import GatewayServer
from latentray.topologies.spec import LimitsSpec


class _HeldService:
    """A stand-in service whose requests stay in flight until the test records their answers."""

    def __init__(self, limits):
        self.spec = type("Spec", (), {"limits": limits})()
        self.tickets = []

    def submit(self, questions, on_event=None):
        ticket = Ticket(questions, {}, on_event)
        self.tickets.append(ticket)
        ticket.emit({"event": "queued", "questions": len(ticket.valid)})  # as the real service does
        return ticket

    def reply(self, ticket, request_id=None):
        return {"id": request_id, "answers": [{"index": i, "answer": a, "tokens": t}
                                              for i, (a, t) in sorted(ticket.answers.items())],
                "failed": [{"index": i, "reason": why} for i, why in sorted(ticket.failed.items())],
                "time": ticket.times()}

    def health(self):
        return {"spec": "held"}


def _in_flight_drops_to_zero(address: str) -> bool:
    """Health's in_flight reaches 0 (polled; the release happens as grpc ends the call)."""
    with GatewayClient(address, timeout=30) as c:
        for _ in range(200):
            if c.health()["in_flight"] == 0:
                return True
            time.sleep(0.05)
    return False


@pytest.fixture
def held():
    def start(limits):
        service = _HeldService(limits)
        server = GatewayServer(service, "127.0.0.1", 0).start()
        servers.append(server)
        return service, server

    servers = []
    yield start
    for server in servers:
        server.stop(0)


def test_a_call_past_its_clients_deadline_frees_its_slot_while_the_batch_runs(held):
    service, server = held(LimitsSpec(max_concurrent_requests=1))
    with GatewayClient(server.address, timeout=0.5) as c:
        with pytest.raises(GatewayError) as err:
            c.solve("never answered in time")
    assert err.value.code == grpc.StatusCode.DEADLINE_EXCEEDED
    assert not service.tickets[0].done.is_set()  # its question is still running
    assert _in_flight_drops_to_zero(server.address)
    with ThreadPoolExecutor(1) as pool, GatewayClient(server.address, timeout=60) as c:
        second = pool.submit(c.solve, "the next caller is admitted")
        while len(service.tickets) < 2:
            time.sleep(0.01)
        service.tickets[1].record({0: ("admitted", 1)}, {})
        assert second.result(60)["answers"] == [{"index": 0, "answer": "admitted", "tokens": 1}]


def test_a_call_past_the_run_timeout_fails_its_questions_with_the_reason(held):
    service, server = held(LimitsSpec(run_timeout_s=0.3))
    with GatewayClient(server.address, timeout=60) as c:
        reply = c.solve(["one", "two"])
    assert reply["answers"] == []
    assert [f["index"] for f in reply["failed"]] == [0, 1]
    assert all("limits.run_timeout_s = 0.3 s" in f["reason"] for f in reply["failed"])
    assert _in_flight_drops_to_zero(server.address)


def test_a_client_that_goes_away_frees_its_slot(held):
    from latentray.runtime.gateway.wire import SOLVE_STREAM, method_path, pack

    service, server = held(LimitsSpec(max_concurrent_requests=1))
    channel = grpc.insecure_channel(server.address)
    try:
        stream = channel.unary_stream(method_path(SOLVE_STREAM))
        call = stream(pack(GatewayClient.request(["left"])), timeout=60)
        next(call)  # "queued": the call is admitted and holds the slot
        with GatewayClient(server.address, timeout=30) as c:
            assert c.health()["in_flight"] == 1
        call.cancel()  # the client goes away mid-call
    finally:
        channel.close()
    assert not service.tickets[0].done.is_set()  # its question is still running
    assert _in_flight_drops_to_zero(server.address)
