"""The driver's progress display: a bar on a terminal, sparse lines in a log, nothing when quiet."""
import io

from latentray.runtime.engine.progress import Progress


class Terminal(io.StringIO):
    def isatty(self):
        return True


def test_bar_on_a_terminal_shows_problems_and_rates():
    out = Terminal()
    p = Progress(8, desc="chain", stream=out)
    assert p.enabled
    p.start()
    p.update(4, tokens=40)
    p.update(4, tokens=40)
    p.close()
    text = out.getvalue()
    assert "8/8" in text and "problem/s" in text and "tok/s" in text


def test_not_a_terminal_prints_plain_lines_at_most_every_interval_and_at_the_end():
    out = io.StringIO()
    p = Progress(10, desc="chain", stream=out, log_every_s=3600)
    assert not p.enabled
    for _ in range(9):
        p.update(1, tokens=5)
    assert out.getvalue() == ""  # within the interval: nothing
    p.update(1, tokens=5)
    lines = out.getvalue().splitlines()
    assert len(lines) == 1 and lines[0].startswith("[latentray] chain: 10/10 problems, ")
    assert "problems/s" in lines[0] and "tokens/s" in lines[0]


def test_quiet_prints_nothing_even_on_a_terminal():
    out = Terminal()
    p = Progress(2, stream=out, quiet=True)
    p.update(2, tokens=3)
    p.close()
    assert not p.enabled and out.getvalue() == ""
    assert p.done == 2 and p.tokens == 3


def test_resumed_runs_count_from_the_problems_already_done():
    out = io.StringIO()
    p = Progress(10, stream=out, done=6, log_every_s=3600)
    p.update(4)
    assert "10/10 problems" in out.getvalue()
