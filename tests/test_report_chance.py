"""The report's chance reference for multiple choice: 1 / number of options, averaged over
the problems, as a column of the table and a line on the accuracy plot."""
from __future__ import annotations

import pytest

from latentray.runtime.eval.problem import Problem
from latentray.runtime.eval.runner import options
from latentray.runtime.eval.stats import chance, format_table, method_figures


def _row(method: str, correct: bool, n_options: int) -> dict:
    return {"method": method, "id": f"p{n_options}", "correct": correct, "decoded_tokens": 4, "prompt_tokens": 9,
            "seconds": 1.0, "message_bytes": 0, "options": n_options}


def test_chance_averages_one_over_the_options():
    assert chance([_row("latent", True, 4), _row("latent", False, 4)]) == pytest.approx(0.25)
    assert chance([_row("latent", True, 4), _row("latent", False, 2)]) == pytest.approx((0.25 + 0.5) / 2)
    assert chance([_row("latent", True, 0)]) is None  # not multiple choice: luck alone cannot answer
    assert chance([_row("latent", True, 4), _row("latent", True, 0)]) is None  # a mixed set has no one line
    assert chance([]) is None


def test_options_counts_a_choice_problems_options_only():
    assert options(Problem(id="a", question="Q?", gold="B", task="choice", choices=("x", "y", "z"))) == 3
    assert options(Problem(id="b", question="2+2?", gold="4", task="math")) == 0


def test_the_table_has_a_chance_column():
    rows = [_row(m, c, 4) for m in ("single", "latent") for c in (True, False, False, False)]
    figures = method_figures(rows, {})
    assert [f["chance"] for f in figures] == [pytest.approx(0.25)] * 2
    table = format_table(figures).splitlines()
    assert "chance" in table[0].split()
    assert table[2].split()[4] == "25.0%"  # method, n, accuracy, (interval), chance
    math_rows = [_row("latent", True, 0)]
    assert format_table(method_figures(math_rows, {})).splitlines()[2].split()[4] == "-"


def test_the_accuracy_plot_draws_the_chance_line(tmp_path):
    pytest.importorskip("matplotlib")
    from latentray.runtime.eval.report import write_plots

    rows = [_row("latent", c, 4) for c in (True, False, False, False)]
    with_line = method_figures(rows, {})
    without = [{**f, "chance": None} for f in with_line]
    (tmp_path / "a").mkdir()
    (tmp_path / "b").mkdir()
    drawn = write_plots(tmp_path / "a", with_line)[0].read_bytes()
    plain = write_plots(tmp_path / "b", without)[0].read_bytes()
    assert drawn != plain
