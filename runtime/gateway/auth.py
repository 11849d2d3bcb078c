"""The gateway's optional shared secret: where it comes from, and the check of each call.

Callers send `authorization: Bearer <token>` in the call's metadata. The comparison takes
constant time, and the token is never printed or put in an error message.
"""
from __future__ import annotations

import hmac
import os
from pathlib import Path

import grpc

from latentray.runtime.engine.errors import RunError
from latentray.runtime.gateway.errors import RequestRejected

TOKEN_ENV = "LATENTRAY_GATEWAY_TOKEN"


def load_token(token_file: str | None) -> str | None:
    """The token in `token_file` (surrounding whitespace dropped), else $LATENTRAY_GATEWAY_TOKEN,
    else None (no token)."""
    if token_file:
        path = Path(token_file).expanduser()
        try:
            token = path.read_text(encoding="utf-8").strip()
        except (OSError, UnicodeDecodeError) as exc:
            raise RunError(f"--token-file {token_file}: cannot read it ({type(exc).__name__}); "
                           "give a readable UTF-8 file holding the token") from None
        if not token:
            raise RunError(f"--token-file {token_file} is empty; write the token into it")
        return token
    return os.environ.get(TOKEN_ENV, "").strip() or None


class TokenCheck:
    def __init__(self, token: str | None):
        self._expected = f"Bearer {token}".encode() if token else None

    @property
    def required(self) -> bool:
        return self._expected is not None

    def matches(self, authorization) -> bool:
        """Whether an `authorization` value (str or bytes) is 'Bearer <the token>'."""
        value = authorization.encode("utf-8", "replace") if isinstance(authorization, str) else bytes(authorization)
        return hmac.compare_digest(value, self._expected)

    def check(self, metadata) -> None:
        """Raise RequestRejected(UNAUTHENTICATED) unless the call's metadata holds the token."""
        if self._expected is None:
            return
        given = [v for k, v in (metadata or ()) if k == "authorization"]
        if not given:
            raise RequestRejected(grpc.StatusCode.UNAUTHENTICATED,
                                  "this gateway needs a token: send 'authorization: Bearer <token>' metadata")
        if not self.matches(given[0]):
            raise RequestRejected(grpc.StatusCode.UNAUTHENTICATED, "the token does not match the gateway's")
