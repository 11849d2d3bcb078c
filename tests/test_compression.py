"""Per-channel compression: bytes sent and fidelity on the receiver, for every step.

Fidelity = the receiver's next-token logits after prefilling with the decompressed
message, against the same receiver reading the uncompressed message: max |logit diff|
and the lowest per-row cosine. `pytest -s` prints the table.
"""
from __future__ import annotations

import pytest
import torch

from latentray.agents.agent import Agent, AgentConfig
from latentray.agents.fingerprint import model_fingerprint
from latentray.agents.kv_cache import cache_layers
from latentray.agents.models import build_tiny
from latentray.channels.compression import compress_message, decompress_message, get_compression, parse_layers
from latentray.channels.compression.int8 import dequantise, quantise
from latentray.channels.errors import CompressionError
from latentray.channels.message import LatentMessage
from latentray.channels.validate import validate_message

QUESTIONS = ["What is 2+2?", "A train leaves at 3pm at 60 km/h; another at 4pm at 90 km/h. When does it catch up?"]
LATENT = 4


@pytest.fixture(scope="module")
def setup():
    model, tok = build_tiny("qwen3-128")  # 3 layers, 2 KV heads, head dim 32
    fp = model_fingerprint(model, tok)
    sender = Agent(AgentConfig("planner", "Plan step by step: {question}", latent_steps=LATENT), model, tok, fp)
    receiver = Agent(AgentConfig("judger", "Answer: {question}"), model, tok, fp)
    state = sender.think(sender.prefill(QUESTIONS))
    msg = sender.emit(state, "kv")
    ref = receiver.prefill(QUESTIONS, [msg]).logits
    return dict(model=model, fp=fp, sender=sender, receiver=receiver, state=state, msg=msg, ref=ref)


@pytest.fixture(scope="module")
def table():
    rows = []
    yield rows
    print("\ncompression                                   bytes sent  (of)      ratio   max|dlogit|  min cosine")
    for r in rows:
        print(f"{r[0]:<45} {r[1]:>10}  {r[2]:>8}  {r[2] / r[1]:>6.2f}x  {r[3]:>11.2e}  {r[4]:.6f}")


def fidelity(logits, ref) -> tuple:
    cos = torch.nn.functional.cosine_similarity(logits.double(), ref.double(), dim=-1)
    return float((logits - ref).abs().max()), float(cos.min())


def hidden_message(s) -> LatentMessage:
    msg = s["sender"].emit(s["state"], "hidden")
    # seq_lens counts the message's own real slots (its latent vectors).
    assert msg.header.seq_lens == tuple(int(n) for n in msg.tensors["mask"].sum(-1))
    return msg


def roundtrip(s, names, kind="kv"):
    """Compress, validate as received, decompress, validate again, prefill the receiver."""
    msg = s["msg"] if kind == "kv" else hidden_message(s)
    sent = compress_message(msg, names, receiver="judger")
    check = dict(receiver="judger", receiver_fingerprint=s["fp"], edge_kind=kind, model_dtype=s["model"].dtype)
    validate_message(sent, **check)
    got = decompress_message(sent, s["model"].dtype, receiver="judger")
    validate_message(got, **check)
    assert got.tensors.keys() == msg.tensors.keys() and got.header.layers == msg.header.layers
    return sent, got, s["receiver"].prefill(QUESTIONS, [got]).logits


def float_bytes(msg) -> int:
    return sum(t.numel() * t.element_size() for k, t in msg.tensors.items() if k not in ("mask", "positions"))


@pytest.mark.parametrize("name,bound", [("bf16", 0.999), ("fp16", 0.9999)])
def test_cast_halves_float_bytes_exactly(setup, table, name, bound):
    sent, got, logits = roundtrip(setup, [name])
    assert float_bytes(sent) * 2 == float_bytes(setup["msg"])
    assert sent.header.extra["uncompressed_bytes"] == setup["msg"].nbytes
    assert got.tensors["keys"].dtype == torch.float32
    diff, cos = fidelity(logits, setup["ref"])
    table.append((name, sent.nbytes, setup["msg"].nbytes, diff, cos))
    assert cos > bound and diff < 0.05


def test_int8_about_four_times_smaller(setup, table):
    sent, got, logits = roundtrip(setup, ["int8"])
    keys = setup["msg"].tensors["keys"]
    L, B, H, T, D = keys.shape
    assert sent.tensors["keys"].dtype == torch.int8
    assert float_bytes(sent) == 2 * (keys.numel() + L * B * H * D * 4)  # int8 payload + fp32 scales
    assert float_bytes(setup["msg"]) / float_bytes(sent) > 3.5
    diff, cos = fidelity(logits, setup["ref"])
    table.append(("int8", sent.nbytes, setup["msg"].nbytes, diff, cos))
    assert cos > 0.99 and diff < 0.05


def test_int8_error_is_at_most_half_a_step():
    x = torch.randn(2, 3, 5, 7) * torch.tensor([0.01, 1.0, 100.0, 0, 3, 3, 3])  # one all-zero channel
    q, scale = quantise(x)
    assert scale.shape == (2, 3, 1, 7)
    err = (dequantise(q, scale, torch.float32) - x).abs()
    assert bool((err <= scale / 2 + 1e-6 * x.abs()).all())
    assert bool((dequantise(q, scale, torch.float32)[..., 3] == 0).all())


def test_latent_only_equals_receiver_reading_just_the_latent_slots(setup, table):
    sent, got, logits = roundtrip(setup, ["latent_only"])
    T = setup["msg"].tensors["mask"].shape[1]
    assert float_bytes(sent) * T == float_bytes(setup["msg"]) * LATENT
    assert sent.header.seq_lens == (LATENT,) * len(QUESTIONS)
    # Reference built from the sender's working cache, not from the message.
    state = setup["state"]
    pairs = cache_layers(state.cache)
    keys = torch.stack([k[:, :, -LATENT:] for k, _ in pairs])
    values = torch.stack([v[:, :, -LATENT:] for _, v in pairs])
    mask = torch.ones(len(QUESTIONS), LATENT, dtype=torch.long)
    ref_msg = LatentMessage.build("kv", "planner", setup["fp"], dict(
        keys=keys, values=values, mask=mask, positions=state.positions[:, -LATENT:]),
        layers=tuple(range(len(pairs))), seq_lens=(LATENT,) * len(QUESTIONS), latent_slots=LATENT)
    expect = setup["receiver"].prefill(QUESTIONS, [ref_msg]).logits
    assert torch.allclose(logits, expect, atol=1e-5)
    diff, cos = fidelity(logits, setup["ref"])
    table.append(("latent_only (vs full message)", sent.nbytes, setup["msg"].nbytes, diff, cos))


@pytest.mark.parametrize("name,bound", [("layers:0,2", 0.8), ("layers:1", 0.5)])
def test_layer_selection_sends_a_proportional_share_and_runs(setup, table, name, bound):
    sent, got, logits = roundtrip(setup, [name])
    full, keep = setup["msg"].tensors, parse_layers(name)
    L, B, H, T, D = full["keys"].shape
    assert float_bytes(sent) == float_bytes(setup["msg"]) * len(keep) // L + 2 * (L - len(keep)) * B * H * D * 4
    first = full["mask"].argmax(1)
    for layer in range(L):
        for key in ("keys", "values"):
            if layer in keep:
                assert torch.equal(got.tensors[key][layer], full[key][layer])
                continue
            for b in range(B):  # the attention sink, and zeros elsewhere
                assert torch.equal(got.tensors[key][layer, b, :, first[b]], full[key][layer, b, :, first[b]])
                assert got.tensors[key][layer, b].abs().sum() == got.tensors[key][layer, b, :, first[b]].abs().sum()
    diff, cos = fidelity(logits, setup["ref"])
    table.append((name, sent.nbytes, setup["msg"].nbytes, diff, cos))
    assert bool(torch.isfinite(logits).all()) and cos > bound


def test_selecting_every_layer_is_exact(setup):
    _, got, logits = roundtrip(setup, ["layers:0,1,2"])
    assert torch.equal(logits, setup["ref"])


def test_stacked_compressions(setup, table):
    names = ["latent_only", "layers:0,2", "bf16", "int8"]
    sent, got, logits = roundtrip(setup, names)
    assert sent.header.extra["compression"] == names and got.header.extra["decompressed"] == names
    only = decompress_message(compress_message(setup["msg"], ["latent_only"]), torch.float32)
    diff, cos = fidelity(logits, setup["receiver"].prefill(QUESTIONS, [only]).logits)
    table.append(("+".join(names) + " (vs latent_only)", sent.nbytes, setup["msg"].nbytes, diff, cos))


@pytest.mark.parametrize("names,bound", [(["bf16"], 0.999), (["int8"], 0.99), (["latent_only", "fp16"], 0.999)])
def test_hidden_messages(setup, table, names, bound):
    full = hidden_message(setup)
    sent, got, logits = roundtrip(setup, names, kind="hidden")
    diff, cos = fidelity(logits, setup["receiver"].prefill(QUESTIONS, [full]).logits)
    table.append(("hidden " + "+".join(names), sent.nbytes, full.nbytes, diff, cos))
    assert cos > bound


def test_compression_never_writes_its_input_and_ships_only_its_bytes(setup):
    msg = setup["msg"]
    before = {k: t.clone() for k, t in msg.tensors.items()}
    for names in (["bf16"], ["int8"], ["latent_only"], ["layers:1"], ["latent_only", "layers:0", "fp16", "int8"]):
        sent = compress_message(msg, names)
        for t in sent.tensors.values():  # a view of a larger storage would be serialised whole
            assert t.untyped_storage().nbytes() == t.numel() * t.element_size()
        decompress_message(sent, torch.float32)
    assert all(torch.equal(before[k], t) for k, t in msg.tensors.items())


def test_misuse_is_a_clear_error(setup):
    msg = setup["msg"]
    text = LatentMessage.build("text", "planner", setup["fp"], {}, texts=("a", "b"))
    cases = [
        (text, ["latent_only"], "compression.latent_only", "does not apply"),
        (msg.replace(latent_slots=0), ["latent_only"], "latent_slots", "latent_steps > 0"),
        (msg, ["int8", "bf16"], "compression", "cannot follow"),
        (msg, ["bf16", "bf16"], "compression", "cannot follow"),
        (msg, ["zstd"], "compression", "unknown compression"),
        (msg, ["layers:0,7"], "compression.layers:0,7", "not in the message"),
        (hidden_message(setup), ["layers:0"], "compression.layers:0", "does not apply"),
        (msg.replace({**msg.tensors, "keys": msg.tensors["keys"] * 1e6}), ["fp16"], "compression.fp16", "range"),
    ]
    for m, names, field, text_part in cases:
        with pytest.raises(CompressionError, match=text_part) as e:
            compress_message(m, names, receiver="judger")
        assert (e.value.sender, e.value.receiver, e.value.field) == ("planner", "judger", field)
    with pytest.raises(ValueError, match="distinct"):
        get_compression("layers:1,1")
    assert get_compression("layers:2,0").name == "layers:0,2"
