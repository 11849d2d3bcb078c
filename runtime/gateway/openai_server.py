"""The OpenAI-compatible HTTP endpoint: POST /v1/chat/completions (plain, or streamed as
server-sent events) and GET /v1/models, in front of a started GatewayService, on the same
warm actors and batching as the gRPC server (docs/gateway.md).

aiohttp serves on an event loop of its own thread; a request's questions go to the
service's Collector and its events come back to the loop through call_soon_threadsafe, so
no thread waits per request. Every request is checked in this order: the token (401), the
body's size (413), its JSON and fields (400; 404 for another model), the slots shared with
the gRPC server (429, never queued). An admitted request holds its slot until it ends,
however it ends: answered, failed (500 with the reason), or its client gone (the slot is
freed at once; its question finishes in its batch and the answer is dropped).
"""
from __future__ import annotations

import asyncio
import json
import socket
import threading

from latentray.runtime.engine.errors import RunError
from latentray.runtime.gateway.admission import Admission, Busy
from latentray.runtime.gateway.auth import TokenCheck
from latentray.runtime.gateway.batching import DONE
from latentray.runtime.gateway.openai_wire import (OpenAIError, chunk, completion, decode_json, extension,
                                                   invalid, model_card, models, parse_chat, usage)
from latentray.runtime.gateway.server import host_port

READ_CHUNK = 64 << 10
# After the grace period, how long aiohttp may take to cancel the requests still running.
CANCEL_S = 1.0


def _error(exc: OpenAIError, headers: dict | None = None):
    from aiohttp import web

    return web.json_response(exc.body(), status=exc.status, headers=headers)


async def _errors_as_json(request, handler):
    """aiohttp's own refusals (unknown path, wrong method) in OpenAI's error shape."""
    from aiohttp import web

    try:
        return await handler(request)
    except web.HTTPException as exc:
        if exc.status < 400:
            raise
        return _error(OpenAIError(exc.status, f"{request.method} {request.path}: {exc.reason}; this endpoint "
                                              "serves POST /v1/chat/completions and GET /v1/models",
                                  code="not_found" if exc.status == 404 else None))


def _deliver(loop, events: asyncio.Queue):
    """on_event for a ticket: hand each event to the loop's queue from the service's threads
    (dropped once the loop is closed: its request is gone with the server)."""
    def put(event) -> None:
        try:
            loop.call_soon_threadsafe(events.put_nowait, event)
        except RuntimeError:
            pass

    return put


def _sse(obj) -> bytes:
    return b"data: " + json.dumps(obj, separators=(",", ":")).encode() + b"\n\n"


class OpenAIServer:
    def __init__(self, service, host: str = "127.0.0.1", port: int = 8000, token: str | None = None,
                 admission: Admission | None = None):
        """Binds the port now (a taken one fails before any model loads); serves on start().
        admission: the slots shared with the service's other front ends (default: its own)."""
        self.service, self.host = service, host
        self.auth = TokenCheck(token)
        self.admission = admission or Admission(service.spec.limits.max_concurrent_requests)
        self.model = service.spec.name
        self.created = 0
        self.active = 0  # requests being handled now (for a graceful stop)
        self._stopping = False
        try:
            self._sock = socket.create_server((host, port), family=socket.AF_INET6 if ":" in host else socket.AF_INET)
        except OSError as exc:
            raise RunError(f"cannot listen on {host_port(host, port)} ({exc.strerror or exc}): the port is in use or "
                           "the host is not this machine's; give another --openai-port or --host") from None
        self.port = self._sock.getsockname()[1]
        self._loop = self._runner = self._thread = None
        self._stopped: threading.Event | None = None  # set once stopped; a second stop() returns it

    @property
    def address(self) -> str:
        return host_port(self.host, self.port)

    @property
    def url(self) -> str:
        return f"http://{self.address}/v1"

    # -- life cycle ------------------------------------------------------------------------

    def start(self) -> "OpenAIServer":
        import time

        from aiohttp import web

        self.created = int(time.time())
        app = web.Application(middlewares=[web.middleware(_errors_as_json)])
        app.router.add_post("/v1/chat/completions", self._chat)
        app.router.add_get("/v1/models", self._models)
        app.router.add_get("/v1/models/{model}", self._model)
        self._loop = asyncio.new_event_loop()
        self._runner = web.AppRunner(app, handle_signals=False, handler_cancellation=True, access_log=None,
                                     shutdown_timeout=CANCEL_S)
        started = threading.Event()
        failed: list = []

        async def serve() -> None:
            try:
                await self._runner.setup()
                await web.SockSite(self._runner, self._sock).start()
            except Exception as exc:  # noqa: BLE001 - raised to the caller of start()
                failed.append(exc)
            started.set()

        def loop() -> None:
            asyncio.set_event_loop(self._loop)
            self._loop.create_task(serve())
            self._loop.run_forever()

        self._thread = threading.Thread(target=loop, name="latentray-openai", daemon=True)
        self._thread.start()
        started.wait()
        if failed:
            raise RunError(f"the OpenAI endpoint on {self.address} did not start: {failed[0]}")
        return self

    def stop(self, grace_s: float, wait: bool = True) -> threading.Event:
        """Refuse new requests at once: when this returns, no new connection is taken (and a
        request on an open one gets 503). Those in flight finish for up to grace_s seconds,
        then are cancelled. Returns the event set once stopped (already set if `wait`)."""
        if self._stopped is not None:
            if wait:
                self._stopped.wait()
            return self._stopped
        stopped = self._stopped = threading.Event()
        if self._loop is None:
            self._sock.close()
            stopped.set()
            return stopped
        refusing = threading.Event()

        async def shut() -> None:
            try:
                self._stopping = True
                for site in list(self._runner.sites):
                    await site.stop()  # closes the listening socket
            finally:
                refusing.set()
            deadline = self._loop.time() + grace_s
            while self.active and self._loop.time() < deadline:
                await asyncio.sleep(0.05)
            await self._runner.cleanup()

        def finish(_future) -> None:
            self._loop.call_soon(self._loop.stop)

        def begin() -> None:
            self._loop.create_task(shut()).add_done_callback(finish)

        def closed() -> None:
            self._thread.join()
            self._loop.close()
            self._sock.close()
            stopped.set()

        self._loop.call_soon_threadsafe(begin)
        refusing.wait(30)
        if wait:
            closed()
        else:
            threading.Thread(target=closed, name="latentray-openai-stop", daemon=True).start()
        return stopped

    # -- checks ----------------------------------------------------------------------------

    def _check_token(self, request) -> None:
        if not self.auth.required:
            return
        given = request.headers.get("Authorization")
        if given is None:
            raise OpenAIError(401, "this endpoint needs a token: send 'Authorization: Bearer <token>' (the "
                                   "OpenAI client's api_key)", code="invalid_api_key")
        if not self.auth.matches(given):
            raise OpenAIError(401, "the token does not match the server's", code="invalid_api_key")

    async def _body(self, request) -> bytes:
        limit = self.service.spec.limits.max_request_bytes
        too_large = OpenAIError(413, f"the request body is larger than limits.max_request_bytes = {limit}; send a "
                                     "shorter question", code="request_too_large")
        if request.content_length is not None and request.content_length > limit:
            raise too_large
        body = bytearray()
        async for piece in request.content.iter_chunked(READ_CHUNK):
            body += piece
            if len(body) > limit:
                raise too_large
        return bytes(body)

    def _refuse_while_stopping(self) -> None:
        if self._stopping:
            raise OpenAIError(503, "the server is shutting down; send the request to another one",
                              "server_error", code="shutting_down")

    # -- handlers --------------------------------------------------------------------------

    async def _models(self, request):
        from aiohttp import web

        try:
            self._check_token(request)
        except OpenAIError as exc:
            return _error(exc)
        return web.json_response(models(self.model, self.created))

    async def _model(self, request):
        from aiohttp import web

        try:
            self._check_token(request)
            if request.match_info["model"] != self.model:
                raise OpenAIError(404, f"the model {request.match_info['model'][:80]!r} does not exist here; this "
                                       f"endpoint serves {self.model!r}", param="model", code="model_not_found")
        except OpenAIError as exc:
            return _error(exc)
        return web.json_response(model_card(self.model, self.created))

    async def _chat(self, request):
        self.active += 1  # only the loop's thread touches it
        try:
            try:
                self._refuse_while_stopping()
                self._check_token(request)
                chat = parse_chat(decode_json(await self._body(request)), self.model, self.service.max_new_tokens())
                release = self.admission.enter()
            except Busy as exc:
                return _error(OpenAIError(429, str(exc), "rate_limit_exceeded", code="rate_limit_exceeded"),
                              headers={"Retry-After": "1"})
            except OpenAIError as exc:
                return _error(exc)
            try:
                return await self._answer(request, chat)
            finally:
                release()
        finally:
            self.active -= 1

    async def _answer(self, request, chat):
        from aiohttp import web

        loop = asyncio.get_running_loop()
        events: asyncio.Queue = asyncio.Queue()
        ticket = self.service.submit([chat.question], on_event=_deliver(loop, events), overrides=chat.overrides)
        if not ticket.valid:  # it failed the question checks: nothing runs
            return _error(invalid(f"the question cannot run: {ticket.failed[0]}", "messages"))
        if chat.stream:
            return await self._stream(request, chat, ticket, events)
        async for _ in self._events(ticket, events):
            pass
        outcome = self._outcome(chat, ticket)
        if isinstance(outcome, OpenAIError):
            return _error(outcome)
        return web.json_response(completion(chat, *outcome))

    async def _events(self, ticket, events: asyncio.Queue):
        """The ticket's events until its last, failing its question past limits.run_timeout_s."""
        loop = asyncio.get_running_loop()
        timeout = self.service.spec.limits.run_timeout_s
        deadline = loop.time() + timeout
        while True:
            try:
                event = await asyncio.wait_for(events.get(), max(deadline - loop.time(), 0.0))
            except asyncio.TimeoutError:
                ticket.abandon(f"the request passed limits.run_timeout_s = {timeout:g} s before its question "
                               "finished; raise the limit")
                deadline = float("inf")  # the abandon's own last event follows
                continue
            if event is DONE:
                return
            yield event

    def _outcome(self, chat, ticket):
        """(answer, finish_reason, detail, times) of a finished ticket, or the OpenAIError of
        its failed question (counted as served either way)."""
        reply = self.service.reply(ticket)
        if not ticket.answers:
            reason = ticket.failed.get(0, "the question was not answered")
            return OpenAIError(500, f"the question failed: {reason}", "server_error", code="question_failed")
        answer, _ = ticket.answers[0]
        detail = ticket.details[0]
        answering = set(self.service.plan.answer_steps)
        limit = self.service.max_new_tokens(chat.overrides)
        hit = any(s["tokens"] >= limit for s in detail["steps"] if s["step"] in answering)
        return answer, "length" if hit else "stop", detail, reply["time"]

    async def _stream(self, request, chat, ticket, events):
        from aiohttp import web

        response = web.StreamResponse(headers={"Content-Type": "text/event-stream", "Cache-Control": "no-cache"})
        await response.prepare(request)
        await response.write(_sse(chunk(chat, {"role": "assistant", "content": ""})))
        async for event in self._events(ticket, events):
            if chat.events:
                await response.write(_sse(chunk(chat, x_latentray={"event": event})))
        outcome = self._outcome(chat, ticket)
        if isinstance(outcome, OpenAIError):
            await response.write(_sse(outcome.body()))
        else:
            answer, finish, detail, times = outcome
            await response.write(_sse(chunk(chat, {"content": answer})))
            await response.write(_sse(chunk(chat, {}, finish,
                                            x_latentray=extension(detail, times, chat.earlier_messages))))
            if chat.include_usage:
                await response.write(_sse(chunk(chat, usage=usage(detail))))
        await response.write(b"data: [DONE]\n\n")
        await response.write_eof()
        return response
