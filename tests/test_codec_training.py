"""The trained codec (resampler) and `latentray train-codec`, on tiny models of two
architectures: training lowers the held-out loss, a kill resumes to the same result as an
uninterrupted training, a diverging loss keeps the last good checkpoint, parts round-trip
bit for bit and are refused where they do not belong, and decoding (alone, and in a hub
run on Ray) equals a computation by hand from the part tensors."""
from __future__ import annotations

import json
import math
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch

from latentray.channels.codecs import make_codec
from latentray.channels.codecs.storage import load_part, save_part
from latentray.channels.errors import CodecError, CodecMismatchError
from latentray.runtime.eval.problem import DataError
from latentray.topologies import build_plan
from latentray.topologies.errors import SpecError
from test_replicas import load_spec_text
from codec_hand import CHAIN, OPTIONS, facts, hand_encode, hand_resample, hand_vocabulary

ROOT = Path(__file__).resolve().parents[1]


def train(tmp_path, out: Path, **kw):
    from latentray.runtime.codecs.train import train_codec

    spec = load_spec_text(CHAIN)
    args = dict(steps=12, data=[str(facts(tmp_path / "facts.jsonl"))], seed=3, batch=2, lr=3e-3, options=OPTIONS,
                quiet=True, log=lambda _text: None)
    return train_codec(spec, build_plan(spec), str(out), **{**args, **kw})


@pytest.fixture(scope="module")
def trained(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("trained")
    return tmp / "parts", train(tmp, tmp / "parts")


def test_training_lowers_the_held_out_loss_and_writes_an_encoder_and_a_decoder(trained):
    out, figures = trained
    assert figures["held_out_after"] < figures["held_out_before"]
    # The two ends it is measured between: the question alone, and the passage read as text.
    alone, reading = figures["held_out_no_message"], figures["held_out_reading_text"]
    assert math.isfinite(alone) and math.isfinite(reading) and alone > 0 and reading > 0 and alone != reading
    names = sorted(p.stem for p in out.glob("*.json"))
    assert [n.split("--")[0] for n in names] == ["resampler-dec", "resampler-enc"]
    parts = [load_part(out, n) for n in names]
    assert len({p.meta["space"] for p in parts}) == 1 and not (out / ".train-checkpoint").exists()
    size = sum(t.numel() * 4 for p in parts for t in p.tensors.values()) / 1e6
    assert figures["size_mb"] == pytest.approx(size)
    dec = next(p for p in parts if p.name.startswith("resampler-dec"))
    assert dec.tensors["queries"].shape == (4, 32) and dec.tensors["out_weight"].shape == (32, 128)
    assert dec.meta["models"]["model"]["ref"] == "tiny:llama-128"


def test_parts_round_trip_bit_for_bit_and_are_refused_where_they_do_not_belong(trained, tmp_path):
    from latentray.agents.codec_bank import CodecBank
    from latentray.agents.fingerprint import model_fingerprint
    from latentray.agents.models import load_model
    from latentray.agents.step_call import CodecUse

    out, _ = trained
    for path in out.glob("*.json"):
        part = load_part(out, path.stem)
        save_part(tmp_path / "copy", part)
        again = load_part(tmp_path / "copy", path.stem)
        assert again.meta == part.meta and again.tensors.keys() == part.tensors.keys()
        assert all(torch.equal(again.tensors[k], part.tensors[k]) for k in part.tensors)
    dec = next(p.stem for p in out.glob("resampler-dec*.json"))
    model, tok, _ = load_model("tiny:gpt2-64")  # another model than the one it was trained for
    refused = "fitted for model 'tiny:llama-128', not this one .*retrain it with latentray train-codec"
    with pytest.raises(CodecMismatchError, match=refused):
        CodecBank(model_fingerprint(model, tok)).decoder(CodecUse("resampler", dec), str(out))
    meta = json.loads((out / f"{dec}.json").read_text())
    (tmp_path / "copy" / f"{dec}.json").write_text(json.dumps({**meta, "version": 99}))
    with pytest.raises(CodecError, match="codec format version 99.*retrain it with latentray train-codec"):
        load_part(tmp_path / "copy", dec)
    enc = load_part(out, next(p.stem for p in out.glob("resampler-enc*.json")))
    with pytest.raises(CodecError, match="not a trained resampler decoder"):
        make_codec("resampler").decoder(enc, None)
    with pytest.raises(CodecError, match="train-codec"):
        make_codec("resampler").fit({}, [])


def test_soft_tokens_for_a_gemma_receiver_have_the_norm_of_its_scaled_embeddings(tmp_path):
    """Gemma multiplies its embeddings by sqrt(d) inside the embedding module: soft tokens
    placed among its embedded prompt must have that norm, not its raw weight's."""
    from latentray.agents.models import load_model
    from latentray.runtime.codecs.train import train_codec

    spec = load_spec_text(CHAIN.replace("tiny:llama-128", "tiny:gemma3-64"))
    train_codec(spec, build_plan(spec), str(tmp_path / "parts"), steps=1, data=[str(facts(tmp_path / "f.jsonl"))],
                batch=2, options=OPTIONS, quiet=True, log=lambda _text: None)
    dec = load_part(tmp_path / "parts", next(p.stem for p in (tmp_path / "parts").glob("resampler-dec*.json")))
    model, _, _ = load_model("tiny:gemma3-64")
    embed = model.get_input_embeddings()
    with torch.no_grad():
        outputs = embed(torch.arange(embed.weight.shape[0])).float().norm(dim=-1).mean()
        raw = embed.weight.float().norm(dim=-1).mean()
    assert float(outputs / raw) == pytest.approx(8.0, rel=1e-3)  # sqrt(64)
    assert float(dec.tensors["read_norm"][0]) == pytest.approx(float(outputs), rel=1e-5)


def test_bad_training_input_is_refused_naming_the_fix(tmp_path):
    from latentray.runtime.codecs.train import train_codec, training_edges
    from latentray.runtime.codecs.train_data import load_examples

    kv = load_spec_text(CHAIN, channels={"kind": "kv"}, models={"a": {"ref": "tiny:qwen3-64"}},
                        agents={"reader": {"model": "a", "role": "{context}", "latent_steps": 2},
                                "answerer": {"model": "a", "role": "{question}", "output": "text"}})
    with pytest.raises(CodecError, match="needs a hidden edge.*channels.kind: hidden"):
        training_edges(kv, build_plan(kv))
    bad = tmp_path / "bad.jsonl"
    bad.write_text(json.dumps({"context": "c", "question": "q"}) + "\n")
    with pytest.raises(DataError, match="example 0 lacks the field\\(s\\) answer"):
        load_examples([str(bad)])
    with pytest.raises(DataError, match="held out"):
        load_examples(["squad"])
    with pytest.raises(SpecError, match="channels.latent_decode: .*resampler.*fix: leave latent_decode at read"):
        load_spec_text(CHAIN, channels={"kind": "hidden", "codec": "resampler", "latent_decode": "think"})
    spec = load_spec_text(CHAIN)
    with pytest.raises(CodecError, match="--steps"):
        train_codec(spec, build_plan(spec), str(tmp_path / "o"), steps=0, data=[str(bad)])
    with pytest.raises(CodecError, match="--token-loss 1: the token loss needs one soft token per row"):
        train_codec(spec, build_plan(spec), str(tmp_path / "o"), steps=5, token_weight=1.0, data=[str(bad)])
    with pytest.raises(CodecError, match="--token-steps 6: .*cannot be more than --steps \\(5\\)"):
        train_codec(spec, build_plan(spec), str(tmp_path / "o"), steps=5, token_steps=6, data=[str(bad)],
                    options={"tokens": "rows"})
    with pytest.raises(CodecError, match="tokens 'many' is neither a number of soft tokens nor rows"):
        make_codec("resampler", tokens="many").init_parts({}, {}, 0)


def test_the_shipped_training_sources_read_as_passage_question_answer():
    from latentray.runtime.codecs.train_data import load_examples

    for source, size in (("coqa", 7983), ("drop", 1000), ("boolq", 3270)):
        examples = load_examples([source])
        assert len(examples) == size
        assert all(x.context and x.question and x.answer for x in examples)
    from latentray.runtime.codecs.train_data import focus

    story = "Ann woke. The sky was grey. Bob had 7 cats. He fed them. They slept. Night came."
    assert focus(story, "7", 3) == "The sky was grey. Bob had 7 cats. He fed them."
    assert focus(story, "dogs", 2) == "Ann woke. The sky was grey." and focus(story, "7", 0) == story
    first = load_examples(["boolq"], sentences=0)[0]
    assert first.context.startswith("Ethanol fuel") and first.answer == "no" and first.question.endswith("?")


def test_a_diverging_loss_stops_and_keeps_the_last_good_checkpoint(tmp_path, monkeypatch):
    from latentray.runtime.codecs import train as train_module

    real, calls = train_module.example_loss, []

    def diverging(*args, **kwargs):
        calls.append(1)
        loss = real(*args, **kwargs)
        return loss * float("nan") if len(calls) > 32 + 2 * 5 else loss  # the held-out pass, then 5 steps

    monkeypatch.setattr(train_module, "example_loss", diverging)
    out = tmp_path / "parts"
    with pytest.raises(CodecError, match="diverged at step 6 .*checkpoint of step 4 is kept.*lower --lr"):
        train(tmp_path, out, checkpoint_every=2)
    state = json.loads((out / ".train-checkpoint" / "state.json").read_text())
    assert state["step"] == 4 and not list(out.glob("resampler-*.json"))


def test_a_killed_training_resumes_from_its_checkpoint_to_the_uninterrupted_result(tmp_path):
    data = facts(tmp_path / "facts.jsonl")
    spec_path = tmp_path / "spec.yaml"
    spec_path.write_text(CHAIN)
    killed = tmp_path / "killed"
    cmd = [sys.executable, "-m", "latentray", "train-codec", str(spec_path), "--out", str(killed), "--data", str(data),
           "--steps", "40", "--batch", "1", "--seed", "3", "--lr", "3e-3", "--dim", "32", "--tokens", "4",
           "--heads", "2", "--checkpoint-every", "1", "--quiet"]
    proc = subprocess.Popen(cmd, cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    state = killed / ".train-checkpoint" / "state.json"
    deadline = time.monotonic() + 300
    while not (state.is_file() and json.loads(state.read_text())["step"] >= 2):
        assert proc.poll() is None and time.monotonic() < deadline, proc.communicate()
        time.sleep(0.05)
    os.kill(proc.pid, signal.SIGKILL)
    proc.wait()
    stopped_at = json.loads(state.read_text())["step"]
    assert proc.returncode == -signal.SIGKILL and 2 <= stopped_at < 40

    settings = dict(steps=40, batch=1, checkpoint_every=1)
    resumed = train(tmp_path, killed, **settings)
    straight = train(tmp_path, tmp_path / "straight", **settings)
    assert resumed["loss_last"] == straight["loss_last"] and resumed["space"] == straight["space"]
    for path in (tmp_path / "straight").glob("*.json"):
        a, b = load_part(killed, path.stem), load_part(tmp_path / "straight", path.stem)
        assert all(torch.equal(a.tensors[k], b.tensors[k]) for k in a.tensors)


def test_decoding_a_padded_message_equals_the_hand_computation(trained):
    from latentray.channels.codecs.apply import decode_message, encode_message
    from latentray.channels.message import LatentMessage

    out, _ = trained
    codec = make_codec("resampler")
    enc = load_part(out, next(p.stem for p in out.glob("resampler-enc*.json")))
    dec = load_part(out, next(p.stem for p in out.glob("resampler-dec*.json")))
    g = torch.Generator().manual_seed(0)
    x = torch.randn(2, 5, 64, generator=g) * 3
    mask = torch.tensor([[0, 0, 1, 1, 1], [1, 1, 1, 1, 1]])  # the first row left-padded
    msg = LatentMessage.build("hidden", sender="reader", fingerprint=enc.meta["models"]["model"]["fingerprint"],
                              tensors={"hidden": x, "mask": mask}, latent_steps=2, latent_slots=2, seq_lens=(3, 5))
    wire = encode_message(msg, codec.encoder(enc, {}), "resampler")
    got = decode_message(wire, codec.decoder(dec, None), None, receiver="answerer", out_dtype=torch.float32)
    want = hand_resample(hand_encode(x, enc.tensors), mask, dec.tensors, heads=2)
    assert got.kind == "embeds" and got.tensors["embeds"].shape == (2, 4, 128)
    assert torch.equal(got.tensors["mask"], torch.ones(2, 4, dtype=torch.long))
    torch.testing.assert_close(got.tensors["embeds"], want, rtol=1e-4, atol=1e-5)
    assert not torch.allclose(want[0], want[1])  # the pads were left out, not read as states


HUB = """\
version: 1
name: rs_hub
models:
  qwen: {ref: "tiny:qwen3-64"}
  llama: {ref: "tiny:llama-128"}
  gpt2: {ref: "tiny:gpt2-64"}
agents:
  s_qwen: {model: qwen, role: "Think.\\nProblem: {question}", latent_steps: 2}
  s_llama: {model: llama, role: "Think.\\nProblem: {question}", latent_steps: 2}
  center: {model: gpt2, role: "Answer.\\nProblem: {question}", output: text, max_new_tokens: 6}
topology: {type: hub, hub: center, spokes: [s_qwen, s_llama], rounds: 1, aggregate: mean}
channels: {kind: hidden, codec: resampler, codecs: CODECS}
"""


@pytest.mark.ray
@pytest.mark.parametrize("output", ["free", "vocabulary"])
def test_a_hub_run_through_the_resampler_equals_the_hand_computation(ray_session, tmp_path, output):
    from latentray.agents.agent import Agent
    from latentray.agents.fingerprint import model_fingerprint
    from latentray.agents.models import load_model
    from latentray.channels.message import LatentMessage
    from latentray.runtime.engine.agent_configs import agent_configs_for
    from latentray.runtime.engine.run import run_spec

    spec = load_spec_text(HUB.replace("CODECS", str(tmp_path)))
    codec = make_codec("resampler", **OPTIONS, output=output)
    loaded = {r: load_model(r) for r in ("tiny:qwen3-64", "tiny:llama-128", "tiny:gpt2-64")}
    fps = {r: model_fingerprint(m, t) for r, (m, t, _) in loaded.items()}
    norms = {r: float(m.get_input_embeddings().weight.detach().norm(dim=-1).mean()) for r, (m, _, _) in loaded.items()}
    parts = codec.init_parts(fps, norms, seed=5)
    space = codec.space_of(parts, "hand")
    for p in parts:
        p.meta["space"] = space
        save_part(tmp_path, p)
    questions = ["What is 2 + 3?", "Name a colour."]
    result = run_spec(spec, build_plan(spec), questions, run_name="rs_hub")
    assert not result.failed

    configs = agent_configs_for(["s_qwen", "s_llama", "center"], spec)
    part = {p.name: p.tensors for p in parts}
    agents = {a: Agent(configs[a], loaded[r][0], loaded[r][1], fps[r])
              for a, r in (("s_qwen", "tiny:qwen3-64"), ("s_llama", "tiny:llama-128"), ("center", "tiny:gpt2-64"))}
    answers = []
    for q in questions:
        sent = []
        for a, r in (("s_qwen", "tiny:qwen3-64"), ("s_llama", "tiny:llama-128")):
            msg = agents[a].step([q], action="latent", emit="hidden", scope="latent")
            sent.append(hand_encode(msg.tensors["hidden"].float(), part[codec.encode_part(r, r)]))
        mean = (sent[0] + sent[1]) / 2  # the hub's aggregate: mean
        soft = hand_resample(mean, torch.ones(1, mean.shape[1]), part[codec.decode_part("", "tiny:gpt2-64")], heads=2)
        if output == "vocabulary":  # the center's actor mixes its own embeddings
            soft = hand_vocabulary(soft, loaded["tiny:gpt2-64"][0], 50.0)
        embeds = LatentMessage.build("embeds", sender="center", fingerprint=fps["tiny:gpt2-64"],
                                     tensors={"embeds": soft, "mask": torch.ones(1, 4, dtype=torch.long)},
                                     latent_steps=2, latent_slots=0, seq_lens=(4,))
        answers += agents["center"].step([q], [embeds], action="text").texts
    assert result.answers == answers
