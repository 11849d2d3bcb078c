"""How many requests the gateway serves at once: limits.max_concurrent_requests, shared by
every front end of one service (the gRPC server and the OpenAI-compatible endpoint), so a
caller cannot double the limit by using both."""
from __future__ import annotations

import threading


class Busy(Exception):
    """The limit is reached; the front end answers RESOURCE_EXHAUSTED or HTTP 429."""


class Admission:
    def __init__(self, limit: int):
        self.limit = limit
        self.in_flight = 0
        self._lock = threading.Lock()

    def enter(self):
        """Take a slot, or raise Busy. Returns its release(), which frees the slot once
        however many times it is called (a call can end in several ways at once)."""
        with self._lock:
            if self.in_flight >= self.limit:
                raise Busy(f"{self.in_flight} requests are in flight, limits.max_concurrent_requests = "
                           f"{self.limit}; retry when one has finished")
            self.in_flight += 1
        held = [True]

        def release() -> None:
            with self._lock:
                if held[0]:
                    held[0] = False
                    self.in_flight -= 1

        return release
