"""The driver's progress display: problems done, problems/s, tokens/s.

A tqdm bar on stderr when stderr is a terminal; otherwise (a job's log, a pipe) one plain
line at most every `log_every_s` seconds and at the end, so logs stay readable; nothing at
all with `quiet`. The engine calls `update` each time `ray.wait` hands it a finished batch.
"""
from __future__ import annotations

import sys
import time


class Progress:
    def __init__(self, total: int, desc: str = "problems", quiet: bool = False, stream=None,
                 log_every_s: float = 10.0, done: int = 0):
        self.stream = stream or sys.stderr
        self.total, self.done, self.tokens = total, done, 0
        self.desc, self.quiet, self.log_every_s = desc, quiet, log_every_s
        self._t0 = self._last_log = time.perf_counter()
        self._start_done = done
        self._bar = None
        if not quiet and _is_tty(self.stream):
            from tqdm import tqdm

            self._bar = tqdm(total=total, initial=done, desc=desc, unit="problem", file=self.stream,
                             dynamic_ncols=True, smoothing=0.1)

    def resume_from(self, done: int) -> None:
        """Problems an earlier run finished: counted as done, not in the rates."""
        self.done = self._start_done = done
        self._redraw()

    def start(self) -> None:
        """Restart the clock: rates count from the first step submitted, not from model loading."""
        self._t0 = self._last_log = time.perf_counter()
        self._redraw()

    def _redraw(self) -> None:
        if self._bar is not None:  # tqdm's own clock and count restart with ours
            self._bar.reset(total=self.total)
            self._bar.update(self.done)

    @property
    def enabled(self) -> bool:
        """Whether a bar is drawn (a terminal, not quiet)."""
        return self._bar is not None

    def rates(self) -> tuple:
        """(problems/s, tokens/s) since this display started."""
        dt = max(time.perf_counter() - self._t0, 1e-9)
        return (self.done - self._start_done) / dt, self.tokens / dt

    def update(self, problems: int, tokens: int = 0) -> None:
        self.done += problems
        self.tokens += tokens
        if self.quiet:
            return
        if self._bar is not None:
            self._bar.set_postfix_str(f"{self.rates()[1]:.1f} tok/s", refresh=False)
            self._bar.update(problems)
        elif self.done >= self.total or time.perf_counter() - self._last_log >= self.log_every_s:
            self._last_log = time.perf_counter()
            print(self.line(), file=self.stream, flush=True)

    def line(self) -> str:
        per_s, tok_s = self.rates()
        return (f"[latentray] {self.desc}: {self.done}/{self.total} problems, {per_s:.2f} problems/s, "
                f"{tok_s:.1f} tokens/s")

    def close(self) -> None:
        if self._bar is not None:
            self._bar.close()
            self._bar = None


def _is_tty(stream) -> bool:
    try:
        return stream.isatty()
    except (AttributeError, ValueError):
        return False
