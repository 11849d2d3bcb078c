"""channels.hidden_layer: a hidden message can carry a decoder layer's states instead of the
last layer's. Checked against the model's own forward with output_hidden_states (no cache,
no padding, its own masks), for a padded batch, for the latent steps' states, on three
architectures (a sliding-window Gemma 3, GPT-2's `h` stack); and the refusals where
nothing could read such a message."""
from __future__ import annotations

import pytest
import torch

from latentray.agents.agent import Agent, AgentConfig
from latentray.agents.fingerprint import model_fingerprint
from latentray.agents.models import load_model
from latentray.channels.codecs import make_codec
from latentray.channels.codecs.apply import encode_message
from latentray.channels.codecs.base import Part
from latentray.channels.codecs.resampler import init_encoder
from latentray.channels.errors import MessageError
from latentray.topologies import build_plan
from latentray.topologies.errors import SpecError
from test_replicas import load_spec_text

QUESTIONS = ["The code is 4812.", "Pens: 17, pencils: 9, erasers: 3."]


def _agent(ref: str, latent_steps: int) -> Agent:
    model, tok, _ = load_model(ref)
    cfg = AgentConfig(name="reader", role="Note: {question}\nRepeat it.", latent_steps=latent_steps)
    return Agent(cfg, model, tok, model_fingerprint(model, tok))


def _reference(agent: Agent, question: str, layer: int, latents: list) -> tuple:
    """(prompt content rows, latent-step rows) of layer `layer` from the model's own forward over
    the prompt and the fed-back latents, one problem, no cache."""
    before, after = agent.render(question)
    ids = torch.tensor([before + after])
    embeds = agent.model.get_input_embeddings()(ids)
    if len(latents) > 1:
        embeds = torch.cat([embeds, torch.stack(latents[:-1], dim=1)], dim=1)  # the last one is never fed back here
    with torch.no_grad():
        states = agent.model(inputs_embeds=embeds, output_hidden_states=True).hidden_states[layer][0]
    special = set(agent.tokenizer.all_special_ids)
    content = [i for i, t in enumerate(before + after) if t not in special]
    n = ids.shape[1]
    return states[content], states[n - 1:n - 1 + len(latents)]


@pytest.mark.parametrize("ref,layer", [("tiny:llama-128", 1), ("tiny:gemma3-64", 2), ("tiny:gpt2-64", 1)])
def test_a_layers_states_equal_the_models_own_hidden_states_in_a_padded_batch(ref, layer):
    agent = _agent(ref, latent_steps=3)
    state = agent.think(agent.prefill(QUESTIONS, tap=layer))
    msg = agent.emit(state, "hidden", "prompt")
    assert msg.header.extra["hidden_layer"] == layer
    vecs, mask = msg.tensors["hidden"], msg.tensors["mask"]
    assert int(mask[0].sum()) < int(mask[1].sum())  # the first row is left-padded
    for b, q in enumerate(QUESTIONS):
        alone = agent.think(agent.prefill([q], tap=layer))
        latents = [x[b:b + 1] for x in state.latents]
        torch.testing.assert_close(torch.cat(latents), torch.cat(alone.latents), rtol=1e-4, atol=1e-5)
        prompt, thoughts = _reference(agent, q, layer, latents)
        got = vecs[b][mask[b].bool()]
        torch.testing.assert_close(got[:len(prompt)], prompt, rtol=1e-4, atol=1e-5)
        torch.testing.assert_close(got[len(prompt):], thoughts, rtol=1e-4, atol=1e-5)
    last = agent.emit(agent.think(agent.prefill(QUESTIONS)), "hidden", "prompt")
    assert "hidden_layer" not in last.header.extra
    assert not torch.allclose(last.tensors["hidden"][1], vecs[1])  # the last layer's states are others


def test_a_layer_the_model_lacks_is_refused_naming_the_field():
    agent = _agent("tiny:llama-128", latent_steps=1)
    depth = agent.model.config.num_hidden_layers
    with pytest.raises(ValueError, match=rf"channels.hidden_layer: {depth + 1} .* use 1 to {depth}"):
        agent.step(QUESTIONS, action="latent", emit="hidden", scope="prompt", layer=depth + 1)


SPEC = """\
version: 1
name: layer_spec
models:
  m: {ref: "tiny:llama-128"}
agents:
  reader: {model: m, role: "Note: {question}", latent_steps: 1}
  answerer: {model: m, role: "{question}", output: text, max_new_tokens: 2}
topology: {type: chain, order: [reader, answerer]}
channels: CHANNELS
"""


@pytest.mark.parametrize("channels,why", [
    ("{kind: hidden, hidden_layer: 1}", "codec realign, which maps last-layer states only"),
    ("{kind: hidden, codec: ridge, hidden_layer: 1}", "codec ridge, which maps last-layer states only"),
    ("{kind: kv, hidden_layer: 1}", "no edge carries one"),
])
def test_a_layer_no_codec_reads_is_refused_before_anything_starts(channels, why):
    spec = load_spec_text(SPEC.replace("CHANNELS", channels))
    with pytest.raises(SpecError, match=why) as err:
        build_plan(spec)
    assert err.value.field == "channels.hidden_layer"


def test_the_baselines_of_a_spec_with_a_layer_still_run():
    """text and single send no hidden message: the layer is the latent method's alone."""
    from latentray.runtime.eval.runner import with_method

    spec = load_spec_text(SPEC.replace("CHANNELS", "{kind: hidden, codec: resampler, hidden_layer: 1}"))
    for method in ("single", "text", "latent"):
        plan = build_plan(with_method(spec, method))
        assert any(e.kind == "hidden" for e in plan.edges) == (method == "latent")


def test_layer_zero_is_refused_by_the_schema():
    with pytest.raises(Exception, match="hidden_layer"):
        load_spec_text(SPEC.replace("CHANNELS", "{kind: hidden, codec: resampler, hidden_layer: 0}"))


def _message(agent: Agent, layer):
    return agent.step(QUESTIONS, action="latent", emit="hidden", scope="prompt", layer=layer)


def test_an_encoder_trained_on_another_layer_refuses_the_message():
    agent = _agent("tiny:llama-128", latent_steps=1)
    codec = make_codec("resampler")
    tensors = init_encoder(128, 16, torch.Generator().manual_seed(0))
    meta = {"codec": "resampler", "side": "encode", "space": "resampler:x", "layers": 2}
    encoder = codec.encoder(Part("resampler-enc--x", tensors, meta), agent.fingerprint)
    assert encode_message(_message(agent, 2), encoder, "resampler").header.extra["space"] == "resampler:x"
    for sent in (None, 1):
        with pytest.raises(MessageError, match="trained on layer 2 states; set channels.hidden_layer: 2"):
            encode_message(_message(agent, sent), encoder, "resampler")
    # a raw message of another layer is read by no decoder (here the agent's own realign): only
    # an encoder trained on that layer reads it
    with pytest.raises(MessageError, match="raw hidden message of layer 1 states"):
        agent.step(QUESTIONS, [_message(agent, 1)], action="text")
