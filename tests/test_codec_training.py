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

ROOT = Path(__file__).resolve().parents[1]
CHAIN = """\
version: 1
name: rs_chain
models:
  a: {ref: "tiny:qwen3-64"}
  b: {ref: "tiny:llama-128"}
agents:
  reader: {model: a, role: "Note: {context}\\nRepeat it.", latent_steps: 2}
  answerer: {model: b, role: "{question}", output: text, max_new_tokens: 4}
topology: {type: chain, order: [reader, answerer]}
channels: {kind: hidden, hidden_states: prompt, codec: resampler}
"""
OPTIONS = {"dim": 32, "tokens": 4, "heads": 2}


def facts(path: Path, n: int = 60) -> Path:
    rows = [{"context": f"The box holds {10 + (7 * i) % 90} pens.", "question": "How many pens does the box hold?",
             "answer": str(10 + (7 * i) % 90)} for i in range(n)]
    path.write_text("\n".join(json.dumps(r) for r in rows))
    return path


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


def hand_read(z: torch.Tensor, mask: torch.Tensor, t: dict, heads: int) -> list:
    """What each query read, written out one problem, head and query at a time from the
    part's tensors; without queries (tokens: rows) each real row is its own query (a list
    per problem of [d] vectors)."""
    def rms(v):
        return v / torch.sqrt((v * v).mean() + 1e-6)

    out = []
    for b in range(z.shape[0]):
        real = [z[b, s] for s in range(z.shape[1]) if mask[b, s]]
        read_by = []
        for query in (t["queries"] if "queries" in t else real):
            d = query.shape[0]
            hd = d // heads
            read = []
            for h in range(heads):
                cols = slice(h * hd, (h + 1) * hd)
                q = (query @ t["attn_q"])[cols]
                scores = torch.stack([(q * (v @ t["attn_k"])[cols]).sum() / math.sqrt(hd) for v in real])
                w = torch.exp(scores - scores.max())
                w = w / w.sum()
                read.append(sum(w[i] * (v @ t["attn_v"])[cols] for i, v in enumerate(real)))
            h1 = query + torch.cat(read) @ t["attn_o"]
            inner = rms(h1) @ t["mlp_in"] + t["mlp_in_bias"]
            h2 = h1 + (0.5 * inner * (1 + torch.erf(inner / math.sqrt(2)))) @ t["mlp_out"] + t["mlp_out_bias"]
            read_by.append(rms(h2))
        out.append(read_by)
    return out


def hand_resample(z: torch.Tensor, mask: torch.Tensor, t: dict, heads: int) -> torch.Tensor:
    """The decoder by hand (hand_read, then the output projection and, with output free, the
    gate and the receiver's norm); with rows, one soft token per real row (a list of
    [rows, D] per problem)."""
    out = []
    for read_by in hand_read(z, mask, t, heads):
        tokens = []
        for k, r in enumerate(read_by):
            y = r @ t["out_weight"] + t["out_bias"]
            if "gate" in t:  # output free; with output vocabulary y goes on to hand_vocabulary
                y = math.tanh(float(t["gate"][k if "queries" in t else 0])) * y * (t["read_norm"][0] / y.norm())
            tokens.append(y)
        out.append(torch.stack(tokens))
    return torch.stack(out) if "queries" in t else out


def hand_cosines(v: torch.Tensor, weight: torch.Tensor) -> torch.Tensor:
    """v's cosine with every row of weight, one row at a time (a row of zeros has cosine 0)."""
    return torch.stack([(v @ w) / (v.norm() * w.norm()) if w.norm() > 0 else w.sum() * 0 for w in weight])


def hand_vocabulary(y: torch.Tensor, model, sharpness: float, top_k: int | None = None) -> torch.Tensor:
    """The vocabulary output by hand: each [D] vector's softmax over sharpness x its cosine
    with every row of the embedding weight (with top_k, over the k largest only), times what
    the embedding module outputs for every id (the module run on the whole vocabulary, its
    own scale and all)."""
    embed = model.get_input_embeddings()
    with torch.no_grad():
        table = embed(torch.arange(embed.weight.shape[0])).float()
        weight = embed.weight.float()
    out = []
    for v in y.reshape(-1, y.shape[-1]):
        logit = sharpness * hand_cosines(v, weight).detach()
        if top_k is not None:
            order = sorted(range(len(logit)), key=lambda i: -float(logit[i]))
            logit = torch.tensor([float(logit[i]) if i in order[:top_k] else float("-inf") for i in range(len(logit))])
        p = torch.exp(logit - logit.max())
        out.append((p / p.sum()) @ table)
    return torch.stack(out).reshape(*y.shape[:-1], table.shape[-1])


def hand_encode(x: torch.Tensor, t: dict) -> torch.Tensor:
    if "in_mean" in t:  # the sender's fixed per-dimension standardisation
        x = (x - t["in_mean"]) / t["in_scale"]
    return (x / torch.sqrt((x * x).mean(-1, keepdim=True) + 1e-6)) @ t["encoder_weight"] + t["encoder_bias"]


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


def decode_padded(enc, dec, receiver=None) -> tuple:
    """(x, mask, decoded message) of a two-problem layer-1 message, the first left-padded,
    through the parts as a run decodes it."""
    from latentray.channels.codecs.apply import decode_message, encode_message
    from latentray.channels.message import LatentMessage

    codec = make_codec("resampler")
    x = torch.randn(2, 5, 64, generator=torch.Generator().manual_seed(0)) * 3
    mask = torch.tensor([[0, 0, 1, 1, 1], [1, 1, 1, 1, 1]])
    msg = LatentMessage.build("hidden", sender="reader", fingerprint=enc.meta["models"]["model"]["fingerprint"],
                              tensors={"hidden": x, "mask": mask}, latent_steps=2, latent_slots=2, seq_lens=(3, 5),
                              extra={"hidden_layer": 1})
    wire = encode_message(msg, codec.encoder(enc, {}), "resampler")
    return x, mask, decode_message(wire, codec.decoder(dec, receiver), None, receiver="answerer",
                                   out_dtype=torch.float32)


def test_row_soft_tokens_from_a_layers_states_train_and_decode_as_by_hand(tmp_path):
    """tokens: rows with hidden_layer 1: the token loss (across two models, so through the
    character alignment) and the answer loss train; a padded message decodes to one soft
    token per real row, equal to the hand computation; the parts record their layer."""
    from latentray.runtime.codecs.train import train_codec

    spec = load_spec_text(CHAIN, channels={"kind": "hidden", "hidden_states": "prompt", "codec": "resampler",
                                           "hidden_layer": 1})
    out = tmp_path / "parts"
    figures = train_codec(spec, build_plan(spec), str(out), steps=12, data=[str(facts(tmp_path / "f.jsonl"))],
                          seed=3, batch=2, lr=3e-3, options={**OPTIONS, "tokens": "rows"}, quiet=True,
                          log=lambda _text: None)
    assert figures["held_out_after"] < figures["held_out_before"]
    assert figures["token_loss"] == 1.0 and figures["hidden_layer"] == 1
    assert figures["held_out_token_after"] < figures["held_out_token_before"]  # soft tokens nearer their tokens
    enc = load_part(out, next(p.stem for p in out.glob("resampler-enc*.json")))
    dec = load_part(out, next(p.stem for p in out.glob("resampler-dec*.json")))
    assert enc.meta["layers"] == dec.meta["layers"] == 1 and "queries" not in dec.tensors
    assert dec.tensors["gate"].shape == (1,)
    # the sender's states at layer 1, standardised per dimension by statistics the training measured
    assert enc.tensors["in_mean"].shape == enc.tensors["in_scale"].shape == (64,)
    assert bool((enc.tensors["in_scale"] > 0).all()) and float(enc.tensors["in_mean"].abs().sum()) > 0

    x, mask, got = decode_padded(enc, dec)
    want = hand_resample(hand_encode(x, enc.tensors), mask, dec.tensors, heads=2)
    assert torch.equal(got.tensors["mask"], mask) and got.header.seq_lens == (3, 5)
    for b in range(2):
        torch.testing.assert_close(got.tensors["embeds"][b][mask[b].bool()], want[b], rtol=1e-4, atol=1e-5)


def test_row_targets_align_the_senders_tokens_with_the_receivers_by_characters():
    """Across two models the targets of a prompt row are the receiver's tokens that start
    within the sender's token: with two byte-level tokenizers that is the sender's own byte;
    latent-step rows have none; within one model the sender's ids are taken as they are."""
    from latentray.runtime.codecs.train import Edge, _Model, row_targets
    from latentray.runtime.codecs.train_data import Example

    spec = load_spec_text(CHAIN)
    models = {"tiny:qwen3-64": _Model(spec, "tiny:qwen3-64", ["reader"]),
              "tiny:llama-128": _Model(spec, "tiny:llama-128", ["answerer"])}
    example = Example(context="The box holds 17 pens.", question="How many pens?", answer="17", source="test")
    reader = models["tiny:qwen3-64"].agents["reader"]
    before, after = reader.render({"question": example.question, "context": example.context})
    special = set(reader.tokenizer.all_special_ids)
    content = [t for t in before + after if t not in special]
    across = row_targets(models, Edge("reader", "answerer", "tiny:qwen3-64", "tiny:llama-128"), example, "prompt")
    assert across == [[t] for t in content] + [None, None]  # latent_steps: 2
    assert "\nNote: The box holds 17 pens.\n" in reader.tokenizer.decode(content)
    within = row_targets(models, Edge("reader", "reader", "tiny:qwen3-64", "tiny:qwen3-64"), example, "prompt")
    assert within == across
    assert row_targets(models, Edge("reader", "answerer", "tiny:qwen3-64", "tiny:llama-128"), example,
                       "latent") == [None, None]


def trained_rows(tmp_path, spec, options: dict) -> tuple:
    """(encoder part, decoder part) of a 12-step training that lowered both held-out losses."""
    from latentray.runtime.codecs.train import train_codec

    out = tmp_path / "parts"
    figures = train_codec(spec, build_plan(spec), str(out), steps=12, data=[str(facts(tmp_path / "f.jsonl"))],
                          seed=3, batch=2, lr=3e-3, options=options, quiet=True, log=lambda _text: None)
    assert figures["held_out_after"] < figures["held_out_before"]
    assert figures["held_out_token_after"] < figures["held_out_token_before"]
    return (load_part(out, next(p.stem for p in out.glob("resampler-enc*.json"))),
            load_part(out, next(p.stem for p in out.glob("resampler-dec*.json"))))


def test_vocabulary_soft_tokens_are_mixtures_of_the_receivers_own_embeddings(tmp_path):
    """output vocabulary, for a Gemma receiver (its embedding module scales by sqrt(d)):
    training lowers both held-out losses, the decoder holds no gate, a padded message
    decodes per real row to the hand computation over the module's own outputs, a sure
    token is exactly that token's embedding, and a decoder without the receiver's model,
    an unknown output or a sharpness without it are refused."""
    from latentray.agents.models import load_model
    from latentray.channels.codecs.base import Receiver
    from latentray.channels.codecs.vocabulary import Vocabulary

    spec = load_spec_text(CHAIN.replace("tiny:llama-128", "tiny:gemma3-64"),
                          channels={"kind": "hidden", "hidden_states": "prompt", "codec": "resampler", "hidden_layer": 1})
    options = {**OPTIONS, "tokens": "rows", "output": "vocabulary", "sharpness": 30.0}
    enc, dec = trained_rows(tmp_path, spec, options)
    assert "gate" not in dec.tensors and "read_norm" not in dec.tensors
    assert dec.meta["options"]["output"] == "vocabulary" and dec.meta["options"]["sharpness"] == 30.0

    model, _, _ = load_model("tiny:gemma3-64")
    receiver = Receiver(dec.meta["models"]["model"]["fingerprint"], 64, model.get_input_embeddings())
    x, mask, got = decode_padded(enc, dec, receiver)
    codec = make_codec("resampler")
    want = hand_resample(hand_encode(x, enc.tensors), mask, dec.tensors, heads=2)
    for b in range(2):
        torch.testing.assert_close(got.tensors["embeds"][b][mask[b].bool()], hand_vocabulary(want[b], model, 30.0),
                                   rtol=1e-4, atol=1e-5)

    embed = model.get_input_embeddings()
    vocabulary = Vocabulary(embed)
    sure = vocabulary.reading(1e4).mix(embed.weight[7:8].float() * 0.3)  # its own direction, any norm
    torch.testing.assert_close(sure, embed(torch.tensor([7])).float(), rtol=1e-5, atol=1e-5)
    assert vocabulary.scale == pytest.approx(8.0, rel=1e-4)  # sqrt(64), Gemma's own scale

    with pytest.raises(CodecError, match="reads the receiver's vocabulary .*needs the receiving model's embedding"):
        codec.decoder(dec, None)
    with pytest.raises(CodecError, match="output 'words' is not one of free, vocabulary"):
        make_codec("resampler", output="words").init_parts({}, {}, 0)
    with pytest.raises(CodecError, match="sharpness 10 applies to output vocabulary only"):
        make_codec("resampler", sharpness=10).init_parts({}, {}, 0)


def test_top_k_vocabulary_reads_and_names_over_the_nearest_rows_only(tmp_path):
    """output vocabulary with top_k (what makes a 262K-token receiver trainable): training
    lowers both held-out losses; a padded message decodes to the hand computation over each
    row's k nearest embeddings; the token loss is the cross-entropy over those k and the
    target, the target counted once; a top_k of the whole vocabulary is the full output;
    top_k without the vocabulary output, or below 1, is refused."""
    from latentray.agents.models import load_model
    from latentray.channels.codecs.base import Receiver
    from latentray.channels.codecs.vocabulary import Vocabulary

    spec = load_spec_text(CHAIN.replace("tiny:llama-128", "tiny:gemma3-64"),
                          channels={"kind": "hidden", "hidden_states": "prompt", "codec": "resampler", "hidden_layer": 1})
    enc, dec = trained_rows(tmp_path, spec, {**OPTIONS, "tokens": "rows", "output": "vocabulary", "top_k": 4})
    assert dec.meta["options"]["top_k"] == 4
    model, _, _ = load_model("tiny:gemma3-64")
    embed = model.get_input_embeddings()
    x, mask, got = decode_padded(enc, dec, Receiver(dec.meta["models"]["model"]["fingerprint"], 64, embed))
    want = hand_resample(hand_encode(x, enc.tensors), mask, dec.tensors, heads=2)
    for b in range(2):
        torch.testing.assert_close(got.tensors["embeds"][b][mask[b].bool()], hand_vocabulary(want[b], model, 50.0, 4),
                                   rtol=1e-4, atol=1e-5)

    g = torch.Generator().manual_seed(1)
    y = torch.randn(3, 64, generator=g)
    nearest = Vocabulary(embed, 20.0, top_k=3)
    weight = embed.weight.detach().float()
    logits = [20.0 * hand_cosines(v, weight) for v in y]
    top = [sorted(range(weight.shape[0]), key=lambda i, lg=lg: -float(lg[i]))[:3] for lg in logits]
    targets = torch.tensor([top[0][1], 0 if 0 not in top[1] else 1, top[2][0]])  # among the 3, outside, the nearest
    assert int(targets[1]) not in top[1]
    want_loss = sum(float(torch.logsumexp(lg[sorted(set(t) | {int(i)})], 0) - lg[int(i)])
                    for lg, t, i in zip(logits, top, targets)) / 3
    with torch.no_grad():
        assert float(nearest.token_loss(y, targets)) == pytest.approx(want_loss, rel=1e-4)
        whole = Vocabulary(embed, 20.0)
        torch.testing.assert_close(whole.reading(20.0, top_k=weight.shape[0] + 5).mix(y), whole.mix(y),
                                   rtol=1e-5, atol=1e-5)
        assert float(whole.reading(20.0, top_k=weight.shape[0]).token_loss(y, targets)) == pytest.approx(
            float(whole.token_loss(y, targets)), rel=1e-5)
    with pytest.raises(CodecError, match="top_k 8 applies to output vocabulary only"):
        make_codec("resampler", top_k=8).init_parts({}, {}, 0)
    with pytest.raises(CodecError, match="top_k 0 applies to output vocabulary only, and must be 1 or more"):
        make_codec("resampler", output="vocabulary", top_k=0).init_parts({}, {}, 0)


def test_row_targets_across_tokenizers_of_other_sizes_give_several_tokens_or_none():
    """SmolLM2's BPE against a byte-level tokenizer: one SmolLM2 token is several bytes,
    and a byte row that does not start a SmolLM2 token gets none; every receiver token is
    some row's target, once, in order."""
    from latentray.runtime.codecs.train import Edge, _Model, row_targets
    from latentray.runtime.codecs.train_data import Example

    spec = load_spec_text(CHAIN.replace("tiny:qwen3-64", "builtin:smollm2-135m"))
    models = {"builtin:smollm2-135m": _Model(spec, "builtin:smollm2-135m", ["reader"]),
              "tiny:llama-128": _Model(spec, "tiny:llama-128", ["answerer"])}
    example = Example(context="The new coach is called Tomas.", question="Who?", answer="Tomas", source="test")
    smol, tiny = models["builtin:smollm2-135m"], models["tiny:llama-128"]
    ids = smol.agents["reader"].content_ids({"question": example.question, "context": example.context})
    down = row_targets(models, Edge("reader", "answerer", "builtin:smollm2-135m", "tiny:llama-128"), example, "prompt")
    assert down[-2:] == [None, None] and len(down) == len(ids) + 2
    t_row = ids.index(smol.tokenizer.convert_tokens_to_ids("ĠT"))
    assert [tiny.tokenizer.decode([i]) for i in down[t_row]] == [" ", "T"]  # one BPE token, two bytes
    assert "".join(tiny.tokenizer.decode(down[r]) for r in range(len(ids))) == smol.tokenizer.decode(ids)

    up_spec = load_spec_text(CHAIN.replace("tiny:llama-128", "builtin:smollm2-135m"))
    up_models = {"tiny:qwen3-64": _Model(up_spec, "tiny:qwen3-64", ["reader"]),
                 "builtin:smollm2-135m": _Model(up_spec, "builtin:smollm2-135m", ["answerer"])}
    up = row_targets(up_models, Edge("reader", "answerer", "tiny:qwen3-64", "builtin:smollm2-135m"), example,
                     "prompt")
    byte_ids = up_models["tiny:qwen3-64"].agents["reader"].content_ids({"question": "Who?", "context": example.context})
    text = up_models["tiny:qwen3-64"].tokenizer.decode(byte_ids)
    start = text.index(" Tomas")
    assert up[start] == [] and up[start + 1] == [smol.tokenizer.convert_tokens_to_ids("ĠT")]  # the space has none
    assert up[start + 2] == [smol.tokenizer.convert_tokens_to_ids("omas")] and up[start + 3] == []
    flat = [i for row in up[:len(byte_ids)] for i in row]
    assert flat == smol.tokenizer(text, add_special_tokens=False)["input_ids"]


def test_per_row_slots_train_and_send_where_their_presence_is_above_zero(tmp_path):
    """per_row 2 (rows, vocabulary output): training lowers the held-out losses; a padded
    message decodes to the slots whose presence logit is above 0, in order and left-packed,
    each equal to the hand computation; per_row is refused without rows or the token loss."""
    from latentray.agents.models import load_model
    from latentray.channels.codecs.base import Receiver
    from latentray.runtime.codecs.train import train_codec

    spec = load_spec_text(CHAIN, channels={"kind": "hidden", "hidden_states": "prompt", "codec": "resampler",
                                           "hidden_layer": 1})
    options = {**OPTIONS, "tokens": "rows", "output": "vocabulary", "per_row": 2}
    enc, dec = trained_rows(tmp_path, spec, options)
    t = dec.tensors
    assert t["slot_out_weight"].shape == (1, 32, 128) and t["presence_weight"].shape == (32, 2)
    x = torch.randn(2, 5, 64, generator=torch.Generator().manual_seed(0)) * 3
    mask = torch.tensor([[0, 0, 1, 1, 1], [1, 1, 1, 1, 1]])
    # make the presence of slot 1 depend on the row, so that some rows send two and some one:
    # a random direction, with its threshold between the middle two rows (no row on it)
    t["presence_weight"] = torch.zeros(32, 2)
    t["presence_weight"][:, 1] = torch.randn(32, generator=torch.Generator().manual_seed(1))
    rows = torch.stack([r for read_by in hand_read(hand_encode(x, enc.tensors), mask, t, heads=2) for r in read_by])
    along = sorted(float(v) for v in rows @ t["presence_weight"][:, 1])
    t["presence_bias"] = torch.tensor([5.0, -(along[3] + along[4]) / 2])  # 8 rows: 4 above, 4 below

    model, _, _ = load_model("tiny:llama-128")
    receiver = Receiver(dec.meta["models"]["model"]["fingerprint"], 128, model.get_input_embeddings())
    _, _, got = decode_padded(enc, dec, receiver)  # the same x and mask
    want, sent = [], []
    for read_by in hand_read(hand_encode(x, enc.tensors), mask, t, heads=2):
        slots = []
        for r in read_by:
            logits = r @ t["presence_weight"] + t["presence_bias"]
            if logits[0] > 0:
                slots.append(r @ t["out_weight"] + t["out_bias"])
            if logits[1] > 0:
                slots.append(r @ t["slot_out_weight"][0] + t["slot_out_bias"][0])
        want.append(hand_vocabulary(torch.stack(slots), model, 50.0))
        sent.append(len(slots))
    assert sum(sent) == 8 + 4  # slot 0 of every row, slot 1 of half of them
    width = max(sent)
    assert got.tensors["mask"].tolist() == [[0] * (width - n) + [1] * n for n in sent]
    assert got.header.seq_lens == tuple(sent)
    for b in range(2):
        torch.testing.assert_close(got.tensors["embeds"][b][width - sent[b]:], want[b], rtol=1e-4, atol=1e-5)

    with pytest.raises(CodecError, match="per_row 2 needs tokens rows"):
        make_codec("resampler", per_row=2).init_parts({}, {}, 0)
    with pytest.raises(CodecError, match="--per-row .*needs the token loss"):
        train_codec(spec, build_plan(spec), str(tmp_path / "o"), steps=2, data=[str(facts(tmp_path / "f.jsonl"))],
                    options=options, token_weight=0.0)
