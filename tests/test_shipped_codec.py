"""The trained SmolLM2 -> SmolLM2 resampler parts that ship with the example spec
(topologies/examples/codecs/split_info_trained): they load for the built-in model, and on
held-out split-information notes, read as the spec reads them (codec_read nearest, one
latent step), they carry the fact, which the answerer cannot give without them."""
from __future__ import annotations

from pathlib import Path

import pytest

from latentray.channels.codecs.storage import load_part
from latentray.runtime.eval.datasets import load_problems
from latentray.runtime.eval.runner import run_method
from latentray.topologies import load_spec

SPEC = Path(__file__).resolve().parents[1] / "topologies/examples/split_info_trained.yaml"
CARRIED = ("split-0-0", "split-0-1", "split-0-2")  # a door code, a name (Tomas: 'ĠT' + 'omas'), a count


def test_the_shipped_parts_are_the_specs_own_and_small():
    spec = load_spec(str(SPEC))
    parts = sorted(Path(spec.channels.codecs).glob("resampler-*.json"))
    assert [p.stem.split("--")[0] for p in parts] == ["resampler-dec", "resampler-enc"]
    for p in parts:
        part = load_part(p.parent, p.stem)
        assert part.meta["models"]["model"]["ref"] == "builtin:smollm2-135m"
        assert part.meta["layers"] == spec.channels.hidden_layer == 2
        assert part.meta["options"]["output"] == "vocabulary" and part.meta["options"]["tokens"] == "rows"
    assert spec.channels.codec_read == "nearest" and spec.agents["reader"].latent_steps == 1
    assert sum(p.with_suffix(".safetensors").stat().st_size for p in parts) < 20e6


@pytest.mark.ray
def test_the_shipped_parts_carry_a_held_out_note_the_answerer_never_read(ray_session):
    from latentray.agents.errors import ModelRefError
    from latentray.agents.models import ModelRef

    try:
        ModelRef.parse("builtin:smollm2-135m").check_available()
    except ModelRefError as exc:
        pytest.skip(str(exc))
    spec = load_spec(str(SPEC))
    problems = [p for p in load_problems("split-info") if p.id in CARRIED]
    assert [p.id for p in problems] == list(CARRIED)
    latent, _ = run_method(spec, problems, "latent", dataset="split-info")
    alone, _ = run_method(spec, problems, "single", dataset="split-info")
    for row, problem in zip(latent, problems):
        assert row["correct"] and problem.gold in row["answer"], row["answer"]
    assert not any(row["correct"] for row in alone), [row["answer"] for row in alone]
