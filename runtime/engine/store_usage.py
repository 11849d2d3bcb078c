"""Peak object-store use during a run, sampled from the raylets.

Ray reports the bytes held in every node's shared-memory object store (and the bytes
spilled to disk) through the raylet's memory-info call, the numbers `ray memory
--stats-only` prints; there is no public API for them, so this is the one place that
uses Ray's internal call, and a Ray that lacks it reports no figures instead of failing
the run. A background thread samples every `interval_s`, and at once after
`sample_soon()` (moments the caller knows matter: a batch finished). The driver's loop
never waits on a sample: the call asks every worker, and a hung one delays its answer.
"""
from __future__ import annotations

import threading


class StorePeak:
    def __init__(self, interval_s: float = 0.2):
        self.interval_s = interval_s
        self.peak_bytes: int | None = None
        self.spilled_bytes: int | None = None  # spilled to disk while sampling
        self._spilled_at_start: int | None = None
        self.samples = 0
        self._state = None
        self._stop = threading.Event()
        self._soon = threading.Event()
        self._lock = threading.Lock()
        self._thread = None

    def _read(self):
        from ray._private.internal_api import get_memory_info_reply, get_state_from_address

        if self._state is None:
            import ray

            self._state = get_state_from_address(ray.get_runtime_context().gcs_address)
        return get_memory_info_reply(self._state, timeout_seconds=2.0).store_stats

    def sample(self) -> None:
        try:
            stats = self._read()
        except Exception:  # an internal API that changed or a node going away: no figure
            return
        with self._lock:
            self.samples += 1
            self.peak_bytes = max(self.peak_bytes or 0, int(stats.object_store_bytes_used))
            if self._spilled_at_start is None:
                self._spilled_at_start = int(stats.spilled_bytes_total)
            self.spilled_bytes = int(stats.spilled_bytes_total) - self._spilled_at_start

    def sample_soon(self) -> None:
        self._soon.set()

    def _loop(self) -> None:
        while not self._stop.is_set():
            self._soon.wait(self.interval_s)
            self._soon.clear()
            if not self._stop.is_set():
                self.sample()

    def __enter__(self) -> "StorePeak":
        self.sample()
        self._thread = threading.Thread(target=self._loop, name="latentray-store-peak", daemon=True)
        self._thread.start()
        return self

    def __exit__(self, *exc) -> None:
        self._stop.set()
        self._soon.set()
        if self._thread is not None:
            self._thread.join()
        self.sample()
