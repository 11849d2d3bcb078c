"""Errors of the gateway: a request the server refuses, and what the client raises.

Each carries the gRPC status code, so a caller can tell a busy server from a bad request.
"""
from __future__ import annotations

import grpc

from latentray.agents.errors import LatentrayError


class RequestRejected(Exception):
    """The server refuses a request; `code` is the status the client sees."""

    def __init__(self, code: grpc.StatusCode, message: str):
        super().__init__(message)
        self.code = code


class GatewayError(LatentrayError):
    """A gateway call that failed; `code` is its grpc.StatusCode."""

    def __init__(self, code: grpc.StatusCode, message: str):
        super().__init__(message)
        self.code = code


class GatewayUnavailable(GatewayError):
    """Nothing answers at the address (not started, wrong port, shutting down) or too late."""


class GatewayAuthError(GatewayError):
    """The token is missing or wrong."""


class GatewayBusy(GatewayError):
    """A limit refused the request: too many in flight, too large, too many questions."""


class GatewayRequestError(GatewayError):
    """The server found the request malformed."""


_BY_CODE = {
    grpc.StatusCode.UNAVAILABLE: GatewayUnavailable,
    # a call the server took as it began shutting down is cancelled by it, not refused
    grpc.StatusCode.CANCELLED: GatewayUnavailable,
    grpc.StatusCode.DEADLINE_EXCEEDED: GatewayUnavailable,
    grpc.StatusCode.UNAUTHENTICATED: GatewayAuthError,
    grpc.StatusCode.RESOURCE_EXHAUSTED: GatewayBusy,
    grpc.StatusCode.INVALID_ARGUMENT: GatewayRequestError,
}

_FIXES = {
    GatewayUnavailable: "check that `latentray serve` runs there and the address (HOST:PORT) is right",
    GatewayAuthError: "give the server's token with --token-file or LATENTRAY_GATEWAY_TOKEN",
    GatewayBusy: "send fewer or smaller questions, or retry when fewer requests are in flight",
    GatewayRequestError: "fix the request as the message says",
}


def from_rpc_error(exc: grpc.RpcError, address: str) -> GatewayError:
    """The typed error for a failed call to `address`, its message one line with the fix."""
    code = exc.code() if hasattr(exc, "code") else grpc.StatusCode.UNKNOWN
    details = (exc.details() if hasattr(exc, "details") else "") or code.name
    kind = _BY_CODE.get(code, GatewayError)
    fix = _FIXES.get(kind, "see the server's output")
    first = details.strip().splitlines()[0] if details.strip() else code.name
    return kind(code, f"gateway {address}: {code.name}: {first} (fix: {fix})")
