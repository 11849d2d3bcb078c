"""The gRPC server: generic handlers (no codegen) for Solve, SolveStream and Health on
msgpack bytes, in front of a started GatewayService.

Every call is checked in this order: the token (UNAUTHENTICATED), the request's bytes and
shape (RESOURCE_EXHAUSTED past max_request_bytes or max_questions_per_request,
INVALID_ARGUMENT for anything malformed), then admission: more than
max_concurrent_requests Solve/SolveStream calls at once are refused with
RESOURCE_EXHAUSTED, never queued. grpc's own receive limit sits a little above
max_request_bytes, so a larger message is refused by grpc with the same status.

An admitted call holds its slot until it ends, however it ends: answered, past its
client's deadline (DEADLINE_EXCEEDED), past limits.run_timeout_s (its unfinished questions
fail with the reason), or cancelled by a client that went away (the slot is freed at
once; its questions finish in their batch and the answers are dropped).
"""
from __future__ import annotations

import queue
import threading
import time
from concurrent.futures import ThreadPoolExecutor

import grpc

from latentray.runtime.engine.errors import RunError
from latentray.runtime.gateway.admission import Admission, Busy
from latentray.runtime.gateway.auth import TokenCheck
from latentray.runtime.gateway.batching import DONE
from latentray.runtime.gateway.errors import RequestRejected
from latentray.runtime.gateway.wire import HEALTH, SERVICE, SOLVE, SOLVE_STREAM, decode_request, pack

# Room above max_request_bytes for gRPC framing, so our own check answers first.
RECEIVE_SLACK_BYTES = 64 << 10
# Threads beyond the admission limit: Health and the refusals must get one while it is full.
SPARE_THREADS = 8
# How often a waiting call looks at its client and its deadline.
POLL_S = 0.1


def host_port(host: str, port: int) -> str:
    return f"[{host}]:{port}" if ":" in host and not host.startswith("[") else f"{host}:{port}"


class GatewayServer:
    def __init__(self, service, host: str = "127.0.0.1", port: int = 50051, token: str | None = None,
                 admission: Admission | None = None):
        """admission: the slots this server shares with the service's other front ends
        (default: its own, limits.max_concurrent_requests of them)."""
        self.service, self.host = service, host
        self.auth = TokenCheck(token)
        limits = service.spec.limits
        self.admission = admission or Admission(limits.max_concurrent_requests)
        self.max_concurrent = self.admission.limit
        workers = self.max_concurrent + SPARE_THREADS
        self._server = grpc.server(
            ThreadPoolExecutor(max_workers=workers, thread_name_prefix="latentray-gateway"),
            maximum_concurrent_rpcs=workers,  # beyond this grpc itself answers RESOURCE_EXHAUSTED
            options=[("grpc.max_receive_message_length", limits.max_request_bytes + RECEIVE_SLACK_BYTES),
                     ("grpc.so_reuseport", 0)])
        self._server.add_generic_rpc_handlers((grpc.method_handlers_generic_handler(SERVICE, {
            SOLVE: grpc.unary_unary_rpc_method_handler(self._solve),
            SOLVE_STREAM: grpc.unary_stream_rpc_method_handler(self._solve_stream),
            HEALTH: grpc.unary_unary_rpc_method_handler(self._health),
        }),))
        try:
            self.port = self._server.add_insecure_port(host_port(host, port))
        except RuntimeError:
            self.port = 0
        if not self.port:
            raise RunError(f"cannot listen on {host_port(host, port)}: the port is in use or the host is not "
                           "this machine's; give another --port or --host")

    @property
    def address(self) -> str:
        return host_port(self.host, self.port)

    @property
    def in_flight(self) -> int:
        return self.admission.in_flight

    def start(self) -> "GatewayServer":
        self._server.start()
        return self

    def stop(self, grace_s: float, wait: bool = True) -> threading.Event:
        """Refuse new calls at once; let those in flight finish for up to grace_s seconds,
        then cancel them. Returns the event set once stopped (already set if `wait`)."""
        stopped = self._server.stop(grace_s)
        if wait:
            stopped.wait()
        return stopped

    def _hold_slot(self, context):
        """Take an admission slot, released when the call ends or as soon as grpc sees its
        client go away (cancelled, disconnected, past its deadline)."""
        try:
            release = self.admission.enter()
        except Busy as exc:
            raise RequestRejected(grpc.StatusCode.RESOURCE_EXHAUSTED, str(exc)) from None
        context.add_callback(release)
        return release

    def _accept(self, data: bytes, context):
        """(the checked request, its slot's release), or RequestRejected."""
        self.auth.check(context.invocation_metadata())
        request = decode_request(data, self.service.spec.limits)
        return request, self._hold_slot(context)

    def _deadline(self, context) -> tuple:
        """(monotonic deadline, whose): the client's own, or limits.run_timeout_s, the sooner."""
        ours = time.monotonic() + self.service.spec.limits.run_timeout_s
        remaining = context.time_remaining()
        if remaining is not None and time.monotonic() + remaining < ours:
            return time.monotonic() + remaining, "client"
        return ours, "limits"

    def _past_run_timeout(self, ticket) -> None:
        ticket.abandon(f"the request passed limits.run_timeout_s = {self.service.spec.limits.run_timeout_s:g} s "
                       "before this question finished; raise the limit or send fewer questions")

    def _wait(self, ticket, context, until) -> bool:
        """Wait for the ticket while the client is there and the deadline has not passed.
        False: the client went away or its deadline passed (the call is over); past
        limits.run_timeout_s the ticket's unfinished questions fail with the reason."""
        deadline, whose = until
        while not ticket.done.wait(POLL_S):
            if not context.is_active():
                return False
            if time.monotonic() >= deadline:
                if whose == "client":
                    return False
                self._past_run_timeout(ticket)
        return True

    def _solve(self, data: bytes, context) -> bytes:
        try:
            request, release = self._accept(data, context)
        except RequestRejected as exc:
            context.abort(exc.code, str(exc))
        try:
            ticket = self.service.submit(request.questions)
            if not self._wait(ticket, context, self._deadline(context)):
                release()
                context.abort(grpc.StatusCode.DEADLINE_EXCEEDED, "the request's deadline passed before its "
                              "questions finished; give the client a longer timeout")
            return pack(self.service.reply(ticket, request.id))
        finally:
            release()

    def _solve_stream(self, data: bytes, context):
        try:
            request, release = self._accept(data, context)
        except RequestRejected as exc:
            context.abort(exc.code, str(exc))
        try:
            events: queue.Queue = queue.Queue()
            ticket = self.service.submit(request.questions, on_event=events.put)
            deadline, whose = self._deadline(context)
            while True:
                try:
                    event = events.get(timeout=POLL_S)
                except queue.Empty:
                    if not context.is_active():
                        return
                    if time.monotonic() >= deadline:
                        if whose == "client":
                            return
                        self._past_run_timeout(ticket)
                    continue
                if event is DONE:  # the ticket's last event
                    break
                yield pack(event)
            yield pack({"event": "answer", **self.service.reply(ticket, request.id)})
        finally:
            release()

    def _health(self, data: bytes, context) -> bytes:
        try:
            self.auth.check(context.invocation_metadata())
        except RequestRejected as exc:
            context.abort(exc.code, str(exc))
        return pack({"ok": True, **self.service.health(), "in_flight": self.in_flight,
                     "max_concurrent_requests": self.max_concurrent})
