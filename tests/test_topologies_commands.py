"""`latentray validate` and `latentray graph` on the example specs and on a bad spec."""
from __future__ import annotations

from pathlib import Path

import pytest

from latentray.runtime.cli import main

ROOT = Path(__file__).resolve().parents[1]
EXAMPLES = sorted((ROOT / "topologies" / "examples").glob("*.yaml"))
BAD = ROOT / "tests" / "bad_specs" / "unbounded_cycle.yaml"


@pytest.mark.parametrize("path", EXAMPLES, ids=[p.stem for p in EXAMPLES])
def test_validate_prints_the_plan_table(path, capsys):
    code = main(["validate", str(path)])
    captured = capsys.readouterr()
    refused = [line for line in captured.out.splitlines() if line.startswith("NOT READY (")]
    assert code == (2 if refused else 0)  # e.g. codecs not fitted here yet: `run` would refuse it too
    out = captured.out.splitlines()
    assert out[2].split() == ["step", "agent", "action", "round", "emits", "inputs", "(src:kind)"]
    assert len(out) > 5


def test_validate_table_rows_for_the_hub(capsys):
    assert main(["validate", str(ROOT / "topologies/examples/hub.yaml")]) == 0
    out = capsys.readouterr().out
    assert "messages per problem batch: 13 (r1: 4, r2: 8, r3: 1); answer: final/center" in out
    row = next(line for line in out.splitlines() if line.startswith("r2/center"))
    assert row.split()[:5] == ["r2/center", "center", "aggregate:weighted", "2", "hidden"]


def test_validate_bad_spec_exits_2_with_one_line(capsys):
    assert main(["validate", str(BAD)]) == 2
    captured = capsys.readouterr()
    assert captured.out == ""
    assert captured.err == (f"error: {BAD}: topology.rounds: cycle a -> b -> a has no round bound "
                            "(fix: set topology.rounds to how many times the cycle runs)\n")


def test_cli_dispatches_to_validate(capsys):
    assert main(["validate", str(ROOT / "topologies/examples/mesh.yaml")]) == 0
    assert "final/judger" in capsys.readouterr().out
    assert main(["validate", str(BAD)]) == 2


@pytest.mark.parametrize("ext,magic", [(".png", b"\x89PNG"), (".svg", b"<?xml")])
def test_graph_draws_png_and_svg(tmp_path, ext, magic):
    out = tmp_path / f"mesh{ext}"
    assert main(["graph", str(ROOT / "topologies/examples/mesh.yaml"), "-o", str(out)]) == 0
    assert out.read_bytes().startswith(magic)


def test_graph_svg_labels_edges_with_their_kind(tmp_path):
    out = tmp_path / "graph.svg"
    assert main(["graph", str(ROOT / "topologies/examples/graph.yaml"), "-o", str(out)]) == 0
    svg = out.read_text()
    assert "r2/checker" in svg and "hidden" in svg and "kv" in svg


def test_graph_refuses_unknown_extension_and_bad_spec(tmp_path, capsys):
    assert main(["graph", str(ROOT / "topologies/examples/hub.yaml"), "-o", str(tmp_path / "g.pdf")]) == 2
    assert "cannot draw '.pdf' (fix: name the output FILE.png or FILE.svg)" in capsys.readouterr().err
    assert main(["graph", str(BAD), "-o", str(tmp_path / "g.png")]) == 2
    assert not (tmp_path / "g.png").exists()


def test_validate_says_whether_the_codecs_are_fitted(tmp_path, capsys):
    import yaml

    from latentray.runtime.codecs.fit import fit_codecs
    from latentray.topologies import build_plan, load_spec

    data = yaml.safe_load((ROOT / "topologies/examples/hub_mixed_tiny.yaml").read_text())
    data["channels"]["codecs"] = str(tmp_path / "parts")
    spec_path = tmp_path / "spec.yaml"
    spec_path.write_text(yaml.safe_dump(data))
    assert main(["validate", str(spec_path)]) == 2  # `run` would refuse it: validate says so
    captured = capsys.readouterr()
    assert "NOT READY (codecs): channels.codecs: codec part" in captured.out
    assert "`latentray run` would refuse this spec (1 problem(s) above)" in captured.err
    spec = load_spec(spec_path)
    fit_codecs(spec, build_plan(spec), spec.channels.codecs, quiet=True, log=lambda _: None)
    assert main(["validate", str(spec_path)]) == 0
    assert f"codecs: fitted (hub in {tmp_path / 'parts'})" in capsys.readouterr().out
