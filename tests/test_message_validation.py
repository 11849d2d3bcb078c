"""validate_message: every malformed or mismatched message is a typed error naming
sender, receiver and field; a good message passes untouched. Plus the header's msgpack
round trip."""
from __future__ import annotations

import dataclasses

import pytest
import torch

from latentray.agents.agent import Agent, AgentConfig
from latentray.agents.fingerprint import model_fingerprint
from latentray.agents.models import build_tiny
from latentray.channels.compression import compress_message
from latentray.channels.errors import FingerprintMismatchError, MessageError
from latentray.channels.message import LatentMessage, MessageHeader
from latentray.channels.validate import validate_message

QUESTIONS = ["q1", "a longer second question"]


@pytest.fixture(scope="module")
def env():
    model, tok = build_tiny("qwen3-64")
    fp = model_fingerprint(model, tok)
    sender = Agent(AgentConfig("planner", "Plan: {question}", latent_steps=2), model, tok, fp)
    state = sender.think(sender.prefill(QUESTIONS))
    hidden = sender.emit(state, "hidden")
    hidden = hidden.replace(seq_lens=tuple(int(n) for n in hidden.tensors["mask"].sum(-1)))
    text = LatentMessage.build("text", "planner", fp, {}, texts=("x", "y"), seq_lens=(3, 5))
    return dict(model=model, tok=tok, fp=fp, kv=sender.emit(state, "kv"), hidden=hidden, text=text)


def check(msg, fp, **kw):
    kw.setdefault("edge_kind", msg.kind)
    return validate_message(msg, receiver="judger", receiver_fingerprint=fp, **kw)


def expect(field, msg, fp, error=MessageError, match=None, **kw):
    with pytest.raises(error, match=match) as e:
        check(msg, fp, **kw)
    assert (e.value.sender, e.value.receiver, e.value.field) == ("planner", "judger", field)
    assert "planner -> judger" in str(e.value)


def lie(msg, tensors=None, **header) -> LatentMessage:
    """A message whose header is changed without re-deriving shapes and dtypes."""
    return LatentMessage(dataclasses.replace(msg.header, **header), dict(tensors or msg.tensors))


def with_tensor(msg, **tensors) -> LatentMessage:
    """A consistent envelope (shapes/dtypes re-derived) around changed tensors."""
    return msg.replace({**msg.tensors, **tensors})


def test_good_messages_pass_unchanged(env):
    for kind in ("kv", "hidden", "text"):
        before = {k: t.clone() for k, t in env[kind].tensors.items()}
        assert check(env[kind], env["fp"], model_dtype=torch.float32) is None
        assert all(torch.equal(before[k], t) for k, t in env[kind].tensors.items())


@pytest.mark.parametrize("kind", ["kv", "text"])
def test_header_msgpack_round_trip(env, kind):
    msg = env[kind]
    if kind == "kv":
        msg = compress_message(msg, ["layers:1", "int8"])  # extra holds lists, ints, dtype names
    data = msg.header.to_bytes()
    assert isinstance(data, bytes) and len(data) < 4096
    assert MessageHeader.from_bytes(data) == msg.header


def test_fingerprint_mismatch_names_the_field(env):
    kv, fp = env["kv"], env["fp"]
    other_seed = model_fingerprint(*build_tiny("qwen3-64", seed=1))
    expect("fingerprint.weights_hash", kv, other_seed, FingerprintMismatchError)
    expect("fingerprint.tokenizer_hash", kv, {**fp, "tokenizer_hash": "0" * 24}, FingerprintMismatchError)
    expect("fingerprint.num_layers", kv, model_fingerprint(*build_tiny("qwen3-128")), FingerprintMismatchError,
           match="use kind hidden with a codec")
    expect("fingerprint.architecture", kv, model_fingerprint(*build_tiny("llama-64")), FingerprintMismatchError)
    expect("fingerprint.rope", kv, {**fp, "rope": {**fp["rope"], "rope_theta": 1.0}}, FingerprintMismatchError)
    expect("fingerprint", kv, None)


def test_header_and_tensors_must_agree(env):
    kv, fp = env["kv"], env["fp"]
    expect("kind", kv, fp, edge_kind="hidden")
    expect("shapes.keys", lie(kv, shapes={**kv.header.shapes, "keys": [1, 2, 3]}), fp)
    expect("dtypes.values", lie(kv, dtypes={**kv.header.dtypes, "values": "float16"}), fp)
    expect("positions", kv.replace({k: t for k, t in kv.tensors.items() if k != "positions"}), fp,
           match="missing")
    expect("extra_thing", with_tensor(kv, extra_thing=torch.zeros(1)), fp, match="unexpected")
    expect("seq_lens", kv.replace(seq_lens=(1, 2)), fp)
    expect("layers", kv.replace(layers=(0,)), fp)
    expect("latent_slots", kv.replace(latent_slots=10_000), fp)


def test_kv_geometry(env):
    kv, fp = env["kv"], env["fp"]
    k, v = kv.tensors["keys"], kv.tensors["values"]
    expect("values", with_tensor(kv, values=v[..., :-1]), fp)
    expect("mask", with_tensor(kv, mask=kv.tensors["mask"][:, 1:]), fp)
    expect("positions", with_tensor(kv, positions=kv.tensors["positions"][:1]), fp)
    expect("mask", with_tensor(kv, mask=kv.tensors["mask"] * 2), fp, match="0 \\(pad\\) or 1")
    expect("keys", with_tensor(kv, keys=k[:, :, :1], values=v[:, :, :1]), fp, match="H_kv, D")
    expect("layers", with_tensor(kv, keys=k[:1], values=v[:1]).replace(layers=(0,)), fp,
           match="layers:<i,j,...> compression")


def test_non_finite_values_are_refused(env):
    kv, hidden, fp = env["kv"], env["hidden"], env["fp"]
    v = kv.tensors["values"].clone()
    v[0, 0, 0, -1, 0] = float("nan")
    expect("values", with_tensor(kv, values=v), fp, match="NaN/Inf")
    h = hidden.tensors["hidden"].clone()
    h[1, 0, 3] = float("inf")
    expect("hidden", with_tensor(hidden, hidden=h), fp, match="NaN/Inf")


def test_dtypes_are_never_coerced(env):
    kv, hidden, fp = env["kv"], env["hidden"], env["fp"]
    as64 = with_tensor(kv, keys=kv.tensors["keys"].double(), values=kv.tensors["values"].double())
    expect("dtypes.keys", as64, fp, match="not a float type")
    expect("dtypes.mask", with_tensor(hidden, mask=hidden.tensors["mask"].float()), fp)
    expect("dtypes.keys", kv, fp, model_dtype=torch.bfloat16, match="one dtype")
    # a cast on the wire is fine: decompression restores the model dtype
    assert check(compress_message(kv, ["bf16"]), fp, model_dtype=torch.float32) is None


def test_latents_must_fit_the_receiver(env):
    fp128 = model_fingerprint(*build_tiny("qwen3-128"))
    expect("hidden", env["hidden"], fp128, match="put a codec")
    assert check(env["hidden"], None) is None  # no receiver model known: shapes only


def test_text_messages(env):
    text, fp = env["text"], env["fp"]
    expect("texts", text.replace(texts=()), fp)
    expect("seq_lens", text.replace(seq_lens=(1,)), fp)
    expect("mask", with_tensor(text, mask=torch.ones(2, 1)), fp, match="unexpected")


def test_compressed_messages_are_checked_too(env):
    kv, fp = env["kv"], env["fp"]
    q = compress_message(kv, ["int8"])
    assert check(q, fp) is None
    expect("keys_scale", q.replace({k: t for k, t in q.tensors.items() if k != "keys_scale"}), fp,
           match="missing")
    s = q.tensors["values_scale"].clone()
    s[0, 0, 0, 0, 0] = float("nan")
    expect("values_scale", with_tensor(q, values_scale=s), fp, match="NaN/Inf")
    expect("values_scale", with_tensor(q, values_scale=s.nan_to_num(0.0)), fp, match="> 0")
    expect("dtypes.keys", with_tensor(q, keys=kv.tensors["keys"]), fp, match="int8")
    sel = compress_message(kv, ["layers:1"])
    expect("sink_keys", with_tensor(sel, sink_keys=sel.tensors["sink_keys"][:, :1]), fp)
    expect("layers", sel.replace(layers=(0,)), fp)
    unknown = {**kv.header.extra, "compression": ["zstd"]}
    expect("extra.compression", kv.replace(extra=unknown), fp, match="unknown compression")
