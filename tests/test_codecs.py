"""Codecs: the math of each one, their files, and the checks that keep spaces apart."""
from __future__ import annotations

import json

import pytest
import torch
from safetensors.torch import load_file

from latentray.channels.codecs import REGISTRY, codec_class, make_codec
from latentray.channels.codecs.apply import decode_message, encode_message
from latentray.channels.codecs.base import AnchorStates, Receiver, raw_space, ridge_fit
from latentray.channels.codecs.storage import check_fingerprint, load_part, read_meta, save_part
from latentray.channels.errors import CodecError, CodecMismatchError, MessageError
from latentray.channels.message import LatentMessage


def fp(name: str, hidden: int) -> dict:
    return {"architecture": name, "hidden_size": hidden, "num_layers": 2, "vocab_size": 10,
            "tokenizer_hash": "t", "weights_hash": f"w-{name}"}


def states(ref: str, hidden: torch.Tensor, embeds: torch.Tensor | None = None) -> AnchorStates:
    keys = tuple((i // 10, i % 10 + 1) for i in range(hidden.shape[0]))
    embeds = hidden if embeds is None else embeds
    return AnchorStates(ref, fp(ref, hidden.shape[1]), keys, hidden.float(), "anchors-1", embeds.float())


def test_ridge_fit_recovers_a_known_affine_map():
    g = torch.Generator().manual_seed(0)
    x = torch.randn(600, 16, generator=g)
    a, b = torch.randn(16, 24, generator=g), torch.randn(24, generator=g)
    w, bias = ridge_fit(x, x @ a + b, lam=1e-9)
    assert torch.allclose(w, a, atol=1e-4) and torch.allclose(bias, b, atol=1e-4)


def test_ridge_codec_fits_the_map_between_two_models_and_decodes_through_it():
    g = torch.Generator().manual_seed(1)
    x = torch.randn(500, 12, generator=g)
    a, reads = torch.randn(12, 20, generator=g), torch.randn(12, 20, generator=g)
    part, = make_codec("ridge", ridge_lambda=1e-9).fit({"s": states("s", x), "r": states("r", x @ a, x @ reads)},
                                                       [("s", "r")])
    assert part.meta["models"]["src"]["ref"] == "s" and part.meta["models"]["dst"]["ref"] == "r"
    dec = make_codec("ridge").decoder(part, Receiver(fp("r", 20), 20))
    probe = torch.randn(7, 12, generator=g)
    assert torch.allclose(dec(probe), probe @ a, atol=1e-3)
    assert dec.space == raw_space(fp("s", 12)) and dec.in_dim == 12
    # prompt states take the read map: the receiver's embeddings, at their mean norm
    read = dec.read(probe)
    assert torch.allclose(torch.nn.functional.cosine_similarity(read, probe @ reads, dim=-1), torch.ones(7), atol=1e-4)
    assert torch.allclose(read.norm(dim=-1), (x @ reads).norm(dim=-1).mean().expand(7), rtol=1e-4)


def test_relative_representation_is_invariant_to_rotation_and_scale():
    g = torch.Generator().manual_seed(2)
    h = torch.randn(400, 32, generator=g) + 3.0  # off-centre, as LLM states are
    q, _ = torch.linalg.qr(torch.randn(32, 32, generator=g))
    turned = 7.5 * h @ q + 1.0
    codec = make_codec("relative", relative_k=64)
    parts = {p.meta["models"]["model"]["ref"]: p for p in codec.fit({"a": states("a", h), "b": states("b", turned)},
                                                                    [("a", "b")])}
    assert parts["a"].meta["space"] == parts["b"].meta["space"]
    probe = torch.randn(5, 32, generator=g) + 3.0
    rel_a = codec.encoder(parts["a"], fp("a", 32))(probe)
    rel_b = codec.encoder(parts["b"], fp("b", 32))(7.5 * probe @ q + 1.0)
    assert rel_a.shape == (5, 64)
    assert torch.allclose(rel_a, rel_b, atol=1e-4)
    # K >= D: the receiver rebuilds the direction of the vector in its own space
    back = codec.decoder(parts["b"], Receiver(fp("b", 32), 32))(rel_a)
    target = 7.5 * probe @ q + 1.0
    mean = parts["b"].tensors["mean"]
    cos = torch.nn.functional.cosine_similarity(back - mean, target - mean, dim=-1)
    assert bool((cos > 0.99).all()), cos


def test_hub_has_two_maps_per_model_and_carries_linearly_related_models_exactly():
    g = torch.Generator().manual_seed(3)
    base = torch.randn(800, 12, generator=g)  # one 12-dimensional content seen through three linear lenses
    models = {"a": base @ torch.randn(12, 24, generator=g), "b": base @ torch.randn(12, 40, generator=g),
              "c": base @ torch.randn(12, 16, generator=g) + 2.0}
    codec = make_codec("hub", hub_dim=16, hub_lambda=1e-9)
    parts = codec.fit({k: states(k, v) for k, v in models.items()}, [("a", "c"), ("b", "c"), ("c", "a")])
    assert len(parts) == 3  # one part per model, none per pair
    for p in parts:  # each: one encoder into the hub, one decoder out of it (two heads: think, read)
        assert {k.split("_")[0] for k in p.tensors} - {"read"} == {"encoder", "decoder"}
        assert [k for k in p.tensors if k.endswith("_weight")] == ["encoder_weight", "decoder_weight",
                                                                   "decoder_read_weight"]
    by = {p.meta["models"]["model"]["ref"]: p for p in parts}
    assert {p.meta["space"] for p in parts} == {by["a"].meta["space"]}
    assert by["b"].tensors["encoder_weight"].shape == (40, 16) and by["b"].tensors["decoder_weight"].shape == (16, 40)
    enc = codec.encoder(by["b"], fp("b", 40))
    dec = codec.decoder(by["c"], Receiver(fp("c", 16), 16))
    probe = torch.randn(6, 12, generator=g)  # content the fit never saw
    lens_b = torch.linalg.lstsq(base, models["b"]).solution
    lens_c = torch.linalg.lstsq(base, models["c"] - 2.0).solution
    assert torch.allclose(dec(enc(probe @ lens_b)), probe @ lens_c + 2.0, atol=1e-3)


def test_part_files_round_trip_exactly_and_hold_no_pickle(tmp_path):
    g = torch.Generator().manual_seed(4)
    part, = make_codec("ridge").fit({"s": states("s", torch.randn(100, 8, generator=g)),
                                     "r": states("r", torch.randn(100, 6, generator=g))}, [("s", "r")])
    save_part(tmp_path, part)
    back = load_part(tmp_path, part.name)
    assert set(back.tensors) == set(part.tensors)
    assert all(torch.equal(back.tensors[k], part.tensors[k]) for k in part.tensors)
    meta = json.loads((tmp_path / f"{part.name}.json").read_text())
    assert meta["codec"] == "ridge" and meta["version"] == 1 and meta["anchors"]["hash"] == "anchors-1"
    assert meta["layers"] == "last" and meta["models"]["src"]["fingerprint"]["weights_hash"] == "w-s"
    raw = (tmp_path / f"{part.name}.safetensors").read_bytes()
    assert not raw.startswith(b"\x80")
    assert set(load_file(str(tmp_path / f"{part.name}.safetensors"))) == {"weight", "bias", "read_weight", "read_bias",
                                                                        "read_norm"}
    assert not list(tmp_path.glob(".*.tmp"))


def test_a_part_fitted_for_other_weights_is_refused(tmp_path):
    g = torch.Generator().manual_seed(5)
    part, = make_codec("ridge").fit({"s": states("s", torch.randn(50, 4, generator=g)),
                                     "r": states("r", torch.randn(50, 4, generator=g))}, [("s", "r")])
    check_fingerprint(part.meta, "dst", fp("r", 4), part.name)
    other = {**fp("r", 4), "weights_hash": "w-finetuned"}
    with pytest.raises(CodecMismatchError, match="weights_hash: fitted 'w-r', here 'w-finetuned'.*refit"):
        check_fingerprint(part.meta, "dst", other, part.name)
    from latentray.agents.codec_bank import CodecBank
    from latentray.agents.step_call import CodecUse

    save_part(tmp_path, part)
    with pytest.raises(CodecMismatchError, match="fitted for dst model 'r'"):
        CodecBank(other).decoder(CodecUse("ridge", part.name), str(tmp_path))


def test_shipped_parts_are_used_without_reading_any_path(tmp_path):
    """A run's parts reach every actor through the object store: an actor on another node
    applies them though the driver's codec directory does not exist there."""
    from latentray.agents.codec_bank import CodecBank
    from latentray.agents.step_call import CodecUse

    g = torch.Generator().manual_seed(6)
    part, = make_codec("ridge").fit({"s": states("s", torch.randn(60, 4, generator=g)),
                                     "r": states("r", torch.randn(60, 4, generator=g))}, [("s", "r")])
    save_part(tmp_path, part)
    from_disk = CodecBank(fp("r", 4)).decoder(CodecUse("ridge", part.name), str(tmp_path))
    shipped = CodecBank(fp("r", 4), {part.name: load_part(tmp_path, part.name)})
    elsewhere = shipped.decoder(CodecUse("ridge", part.name), str(tmp_path / "not-on-this-node"))
    x = torch.randn(3, 4, generator=g)
    assert torch.equal(elsewhere(x), from_disk(x))
    with pytest.raises(CodecError, match="is not in"):  # without it, that path would have been read
        CodecBank(fp("r", 4)).decoder(CodecUse("ridge", part.name), str(tmp_path / "not-on-this-node"))


def test_damaged_or_foreign_part_files_are_refused(tmp_path):
    with pytest.raises(CodecError, match="fit it with `latentray fit-codec"):
        read_meta(tmp_path, "missing")
    (tmp_path / "x.json").write_text(json.dumps({"format": "latentray-codec", "version": 99}))
    with pytest.raises(CodecError, match="format version 99"):
        read_meta(tmp_path, "x")
    (tmp_path / "y.json").write_text(json.dumps({"format": "latentray-codec", "version": 1, "codec": "ridge"}))
    (tmp_path / "y.safetensors").write_bytes(b"\x80\x04not a safetensors file")
    with pytest.raises(CodecError, match="cannot read"):
        load_part(tmp_path, "y")


def hidden_msg(x: torch.Tensor, fingerprint: dict) -> LatentMessage:
    mask = torch.ones(x.shape[:2], dtype=torch.long)
    return LatentMessage.build("hidden", sender="s", fingerprint=fingerprint, tensors={"hidden": x, "mask": mask},
                               seq_lens=tuple(int(n) for n in mask.sum(-1)), latent_steps=x.shape[1],
                               latent_slots=x.shape[1])


def test_encoded_message_notes_its_space_and_decodes_to_receiver_embeds():
    g = torch.Generator().manual_seed(6)
    models = {"a": torch.randn(300, 8, generator=g), "b": torch.randn(300, 12, generator=g)}
    codec = make_codec("hub", hub_dim=6)
    by = {p.meta["models"]["model"]["ref"]: p for p in codec.fit({k: states(k, v) for k, v in models.items()},
                                                                 [("a", "b")])}
    x = torch.randn(2, 3, 8, generator=g)
    sent = encode_message(hidden_msg(x, fp("a", 8)), codec.encoder(by["a"], fp("a", 8)), "hub")
    assert sent.tensors["hidden"].shape == (2, 3, 6) and sent.header.extra["space"] == by["a"].meta["space"]
    dec = codec.decoder(by["b"], Receiver(fp("b", 12), 12))
    scale = lambda h: 2.0 * h / h.norm(dim=-1, keepdim=True)  # noqa: E731  (a stand-in realignment)
    got = decode_message(sent, dec, scale, receiver="r", out_dtype=torch.float32, latent_decode="think")
    assert got.kind == "embeds" and got.tensors["embeds"].shape == (2, 3, 12)
    expect = scale(x.reshape(6, 8) @ by["a"].tensors["encoder_weight"] + by["a"].tensors["encoder_bias"])
    assert expect.shape == (6, 6)
    manual = (x.reshape(6, 8) @ by["a"].tensors["encoder_weight"] + by["a"].tensors["encoder_bias"]) \
        @ by["b"].tensors["decoder_weight"] + by["b"].tensors["decoder_bias"]
    assert torch.allclose(got.tensors["embeds"].reshape(6, 12), scale(manual), atol=1e-5)
    raw = hidden_msg(torch.randn(2, 3, 6), fp("a", 8))  # not encoded: arrives in a's own space
    with pytest.raises(MessageError, match="arrives in space 'hidden:w-a'"):
        decode_message(raw, dec, scale, receiver="r", out_dtype=torch.float32)


def test_realign_refuses_states_of_other_weights():
    dec = make_codec("realign").decoder(None, Receiver(fp("r", 4), 4))
    with pytest.raises(MessageError, match="arrives in space 'hidden:w-s'"):
        decode_message(hidden_msg(torch.randn(1, 2, 4), fp("s", 4)), dec, lambda h: h, receiver="r",
                       out_dtype=torch.float32)


def test_codecs_by_key_or_module_class():
    assert set(REGISTRY) == {"identity", "realign", "ridge", "relative", "hub", "resampler"}
    assert codec_class("latentray.channels.codecs.ridge:Ridge") is REGISTRY["ridge"]
    with pytest.raises(CodecError, match="not a subclass"):
        codec_class("latentray.channels.codecs.base:Part")
    with pytest.raises(CodecError, match="cannot be imported"):
        codec_class("no_such_module_x:Codec")


def test_prompt_states_are_read_and_latent_states_read_or_thought():
    g = torch.Generator().manual_seed(7)
    x = torch.randn(400, 8, generator=g)
    part, = make_codec("ridge").fit({"s": states("s", x), "r": states("r", x @ torch.randn(8, 10, generator=g),
                                                                   x @ torch.randn(8, 10, generator=g))}, [("s", "r")])
    dec = make_codec("ridge").decoder(part, Receiver(fp("r", 10), 10))
    msg = hidden_msg(torch.randn(1, 5, 8, generator=g), fp("s", 8)).replace(latent_slots=2)
    wire = msg.tensors["hidden"][0]
    think = lambda h: 3.0 * h / h.norm(dim=-1, keepdim=True)  # noqa: E731  (a stand-in W_a)
    read = decode_message(msg, dec, think, receiver="r", out_dtype=torch.float32)
    assert torch.allclose(read.tensors["embeds"][0], dec.read(wire), atol=1e-6)
    mixed = decode_message(msg, dec, think, receiver="r", out_dtype=torch.float32, latent_decode="think")
    assert torch.allclose(mixed.tensors["embeds"][0, :3], dec.read(wire[:3]), atol=1e-6)
    assert torch.allclose(mixed.tensors["embeds"][0, 3:], think(dec(wire[3:])), atol=1e-6)


def test_an_agent_reads_raw_hidden_states_of_its_own_model_realigned_and_refuses_others():
    from helpers import make_agents

    _, _, (a, b) = make_agents("qwen3-64", roles=("a", "b"), latent_steps=2)
    _, _, (other,) = make_agents("llama-64", roles=("o",), latent_steps=2)
    questions = ["What is 2 + 3?"]
    state = a.think(a.prefill(questions))
    raw = a.emit(state, "hidden")
    realigned = a.emit(state, "embeds")  # the latents a fed itself: realign(thoughts)
    assert torch.allclose(b.prefill(questions, [raw]).logits, b.prefill(questions, [realigned]).logits, atol=1e-5)
    with pytest.raises(MessageError, match="arrives in space"):
        other.prefill(questions, [raw])


def test_anchor_files_are_checked_and_split_the_same_way_every_time(tmp_path):
    from latentray.channels.codecs.anchors import SHIPPED, anchor_hash, load_anchor_texts, split_anchors

    shipped = load_anchor_texts()
    assert len(shipped) == 400 and load_anchor_texts(SHIPPED) == shipped
    fit, held = split_anchors(shipped)
    assert (len(fit), len(held)) == (320, 80) and {i for i, _ in held} == set(range(4, 400, 5))
    assert anchor_hash(shipped) == anchor_hash(list(shipped)) != anchor_hash(shipped[:-1])
    bad = tmp_path / "latin1.txt"
    bad.write_bytes("caf\xe9 au lait\n".encode("latin-1") * 30)
    with pytest.raises(CodecError, match="not UTF-8 text"):
        load_anchor_texts(bad)
    few = tmp_path / "few.txt"
    few.write_text("one line\n\n  \ntwo lines\n")
    with pytest.raises(CodecError, match="2 anchor lines; a fit needs at least 20"):
        load_anchor_texts(few)
    with pytest.raises(CodecError, match="cannot read it"):
        load_anchor_texts(tmp_path / "missing.txt")


def test_anchor_points_line_up_across_tokenizers():
    from latentray.agents.anchor_states import points_of, token_spans, word_ends
    from latentray.agents.models.byte_tokenizer import byte_level_tokenizer

    text = "The cat sat on the mat. It cost 12 dollars."
    assert word_ends(text) == [3, 7, 11, 14, 18, 23, 26, 31, 34, 43]
    ids, spans = token_spans(byte_level_tokenizer(), text)
    assert [c for c, _ in points_of(text, spans)] == word_ends(text)  # one byte per token: every word end
