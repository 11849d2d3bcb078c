"""Heterogeneous agents end to end: codecs fitted from a spec, checked before any actor
starts, and applied on the right actors; the hub run matches the same computation done
by hand (raw codec tensors, a plain mean) in one process."""
from __future__ import annotations

from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file

from latentray.channels.codecs import make_codec
from latentray.channels.errors import CodecError
from latentray.channels.message import LatentMessage
from latentray.topologies import build_plan, load_spec
from latentray.topologies.loader import with_codec_dir

EXAMPLES = Path(__file__).resolve().parents[1] / "topologies" / "examples"
QUESTIONS = ["What is 2 + 3?", "Name a color, please."]


def require_builtin(name: str) -> None:
    from latentray.agents.errors import ModelRefError
    from latentray.agents.models import ModelRef

    try:
        ModelRef.parse(f"builtin:{name}").check_available()
    except ModelRefError as exc:
        pytest.skip(str(exc))


def fitted(spec_path: Path, tmp_path: Path):
    from latentray.runtime.codecs.fit import fit_codecs

    spec = with_codec_dir(load_spec(spec_path), Path("."), str(tmp_path / "codecs"))
    plan = build_plan(spec, str(spec_path))
    fit_codecs(spec, plan, spec.channels.codecs, quiet=True, log=lambda _: None)
    return spec, plan


def test_a_run_needing_an_unfitted_codec_is_refused_before_any_actor_starts(tmp_path):
    from latentray.runtime.engine.run import run_spec

    spec = with_codec_dir(load_spec(EXAMPLES / "hub_mixed_tiny.yaml"), Path("."), str(tmp_path / "empty"))
    plan = build_plan(spec)
    with pytest.raises(CodecError, match="channels.codecs: codec part 'hub--tiny-qwen3-64-.*latentray fit-codec"):
        run_spec(spec, plan, QUESTIONS)  # raises before Ray is even started
    none = spec.model_copy(update={"channels": spec.channels.model_copy(update={"codecs": None})})
    with pytest.raises(CodecError, match="set channels.codecs to a directory and run `latentray fit-codec"):
        run_spec(none, plan, QUESTIONS)


def test_parts_of_another_fit_are_refused_beside_this_one(tmp_path):
    from latentray.runtime.codecs.plan import check_codec_parts
    from latentray.runtime.codecs.fit import fit_codecs

    spec, plan = fitted(EXAMPLES / "hub_mixed_tiny.yaml", tmp_path)
    check_codec_parts(spec, plan)
    other = tmp_path / "other"
    fit_codecs(spec, plan, str(other), options={"hub_dim": 16}, quiet=True, log=lambda _: None)
    name = make_codec("hub").encode_part("tiny:llama-128", "x")
    for suffix in (".json", ".safetensors"):
        (Path(spec.channels.codecs) / f"{name}{suffix}").write_bytes((other / f"{name}{suffix}").read_bytes())
    with pytest.raises(CodecError, match="come from different fits"):
        check_codec_parts(spec, plan)


def _agents(spec):
    from latentray.agents.agent import Agent
    from latentray.agents.fingerprint import model_fingerprint
    from latentray.agents.models import load_model
    from latentray.runtime.engine.agent_configs import agent_configs_for

    out = {}
    for name, cfg in agent_configs_for(tuple(spec.agents), spec, latent=True).items():
        m = spec.models[spec.agents[name].model]
        model, tok, _ = load_model(m.ref, seed=m.seed or 0)
        out[name] = Agent(cfg, model, tok, model_fingerprint(model, tok))
    return out


def _soft(vecs: torch.Tensor) -> LatentMessage:
    mask = torch.ones(vecs.shape[:2], dtype=torch.long)
    return LatentMessage.build("embeds", sender="ref", fingerprint={}, tensors={"embeds": vecs, "mask": mask},
                               seq_lens=tuple(int(n) for n in mask.sum(-1)), latent_slots=vecs.shape[1])


def reference_hub_answers(spec, directory: str) -> list:
    """Two rounds of the hub by hand: encode each spoke's latent-step states with its own
    encoder tensors, average, decode with each receiver's read head (the default
    latent_decode: read) at its mean embedding norm."""
    agents = _agents(spec)
    hub = make_codec("hub")
    raw = {name: load_file(str(Path(directory) / f"{hub.encode_part(spec.models[spec.agents[name].model].ref, '')}"
                               ".safetensors")) for name in agents}

    def encode(name, state):
        h = torch.stack(state.thoughts, 1).float()
        return h @ raw[name]["encoder_weight"] + raw[name]["encoder_bias"]

    def decode(name, u):
        e = u @ raw[name]["decoder_read_weight"] + raw[name]["decoder_read_bias"]
        return e * raw[name]["read_norm"] / e.norm(dim=-1, keepdim=True)

    spokes = ["s_qwen", "s_llama"]
    u = torch.stack([encode(s, agents[s].think(agents[s].prefill(QUESTIONS))) for s in spokes]).mean(0)
    u = torch.stack([encode(s, agents[s].think(agents[s].prefill(QUESTIONS, [_soft(decode(s, u))])))
                     for s in spokes]).mean(0)
    center = agents["center"]
    return center.decode(center.think(center.prefill(QUESTIONS, [_soft(decode("center", u))]))).texts


@pytest.mark.ray
def test_heterogeneous_hub_over_three_architectures_matches_the_hand_computation(ray_session, tmp_path):
    from latentray.runtime.engine.run import run_spec

    spec, plan = fitted(EXAMPLES / "hub_mixed_tiny.yaml", tmp_path)
    result = run_spec(spec, plan, QUESTIONS, run_name="codec-hub-tiny")
    assert result.answers == reference_hub_answers(spec, spec.channels.codecs)
    # what travels between the spokes and the hub is the hub vector (d = 64), not a model's states
    into_hub = [r for r in result.trace if r["dst"] == "r1/center"]
    assert len(into_hub) == 2 and all(r["bytes"] == 2 * 3 * 64 * 4 + 2 * 3 * 8 for r in into_hub)


@pytest.mark.ray
def test_smollm2_and_gemma3_hub_example_runs_end_to_end(ray_session, tmp_path):
    from latentray.runtime.engine.run import run_spec

    require_builtin("smollm2-135m")
    require_builtin("gemma3-270m")
    spec, plan = fitted(EXAMPLES / "hub_smollm2_gemma3.yaml", tmp_path)
    result = run_spec(spec, plan, ["What is the capital of France?"], run_name="codec-hub-real")
    assert result.answers[0].strip() and result.tokens[0] > 0
    assert {r["src"] for r in result.trace} == {"smol_spoke", "gemma_spoke", "center"}
