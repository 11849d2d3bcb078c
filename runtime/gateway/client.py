"""GatewayClient: the Python client of `latentray serve`.

    with GatewayClient("127.0.0.1:50051", token=...) as gw:
        reply = gw.solve("What is 2 + 2?")          # or a list of questions
        for event in gw.solve_stream("What is 2 + 2?"):
            ...                                     # queued, running, step..., answer
        gw.health()

A failed call raises a GatewayError subclass (runtime/gateway/errors.py) whose `code` is
the grpc.StatusCode: GatewayUnavailable, GatewayAuthError, GatewayBusy, GatewayRequestError.
"""
from __future__ import annotations

import grpc

from latentray.runtime.gateway.errors import from_rpc_error
from latentray.runtime.gateway.wire import HEALTH, SOLVE, SOLVE_STREAM, method_path, pack, unpack_reply

MAX_REPLY_BYTES = 256 << 20  # answers are short; this only guards against a runaway reply


class GatewayClient:
    def __init__(self, address: str, token: str | None = None, timeout: float | None = 600.0):
        self.address, self.timeout = address, timeout
        self._metadata = (("authorization", f"Bearer {token}"),) if token else None
        self._channel = grpc.insecure_channel(address, options=[("grpc.max_receive_message_length", MAX_REPLY_BYTES)])
        self._solve = self._channel.unary_unary(method_path(SOLVE))
        self._stream = self._channel.unary_stream(method_path(SOLVE_STREAM))
        self._health = self._channel.unary_unary(method_path(HEALTH))

    @staticmethod
    def request(questions, request_id=None) -> dict:
        """The request payload for one question (a string) or several (a list of strings
        or {"question", "context"} maps)."""
        payload = {"question": questions} if isinstance(questions, str) else {"questions": list(questions)}
        if request_id is not None:
            payload["id"] = request_id
        return payload

    def solve(self, questions, request_id=None) -> dict:
        """{"id", "answers": [{"index", "answer", "tokens"}], "failed": [{"index", "reason"}],
        "time": {"queue_s", "run_s", "total_s"}}."""
        return self._call(self._solve, pack(self.request(questions, request_id)))

    def solve_stream(self, questions, request_id=None):
        """Yield progress events as dicts; the last has "event": "answer" and the fields of solve()."""
        try:
            for data in self._stream(pack(self.request(questions, request_id)), timeout=self.timeout,
                                     metadata=self._metadata):
                yield unpack_reply(data)
        except grpc.RpcError as exc:
            raise from_rpc_error(exc, self.address) from None

    def health(self) -> dict:
        return self._call(self._health, pack({}))

    def _call(self, method, payload: bytes):
        try:
            return unpack_reply(method(payload, timeout=self.timeout, metadata=self._metadata))
        except grpc.RpcError as exc:
            raise from_rpc_error(exc, self.address) from None

    def close(self) -> None:
        self._channel.close()

    def __enter__(self) -> "GatewayClient":
        return self

    def __exit__(self, *exc) -> None:
        self.close()
