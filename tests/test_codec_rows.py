"""The resampler's row shapes (--tokens rows: one soft token per message row, --per-row
slots) and its vocabulary output (--output vocabulary, --top-k), on tiny models: each
trains, decodes as computed by hand from the part tensors, and aligns row targets across
tokenizers."""
from __future__ import annotations

import pytest
import torch

from codec_hand import (CHAIN, OPTIONS, decode_padded, facts, hand_cosines, hand_encode, hand_read, hand_resample,
                        hand_vocabulary, trained_rows)
from latentray.channels.codecs import make_codec
from latentray.channels.codecs.storage import load_part
from latentray.channels.errors import CodecError
from latentray.topologies import build_plan
from test_replicas import load_spec_text

LAYER_1 = {"kind": "hidden", "hidden_states": "prompt", "codec": "resampler", "hidden_layer": 1}


def test_row_soft_tokens_from_a_layers_states_train_and_decode_as_by_hand(tmp_path):
    """tokens: rows with hidden_layer 1: the token loss (across two models, so through the
    character alignment) and the answer loss train; a padded message decodes to one soft
    token per real row, equal to the hand computation; the parts record their layer; they
    cannot be read nearest (their soft tokens are no distributions over a vocabulary)."""
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
    with pytest.raises(CodecError, match="has output free: codec_read nearest reads soft tokens that are "
                                         "distributions over the receiver's vocabulary"):
        make_codec("resampler", read="nearest").decoder(dec, None)


def test_row_targets_align_the_senders_tokens_with_the_receivers_by_characters():
    """Across two models the targets of a prompt row are the receiver's tokens that end
    within the sender's token: with two byte-level tokenizers that is the sender's own byte;
    latent-step rows have none; within one model the sender's ids are taken as they are."""
    from latentray.runtime.codecs.row_targets import row_targets
    from latentray.runtime.codecs.train import Edge, _Model
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


def test_vocabulary_soft_tokens_are_mixtures_of_the_receivers_own_embeddings(tmp_path):
    """output vocabulary, for a Gemma receiver (its embedding module scales by sqrt(d)):
    training lowers both held-out losses, the decoder holds no gate, a padded message
    decodes per real row to the hand computation over the module's own outputs, a sure
    token is exactly that token's embedding, read nearest each soft token is its most likely
    token's embedding, and a decoder without the receiver's model,
    an unknown output or a sharpness without it are refused."""
    from latentray.agents.models import load_model
    from latentray.channels.codecs.base import Receiver
    from latentray.channels.codecs.vocabulary import Vocabulary

    spec = load_spec_text(CHAIN.replace("tiny:llama-128", "tiny:gemma3-64"),
                          channels=LAYER_1)
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
    # read nearest (channels.codec_read): each soft token is what the embedding module
    # outputs for the one id of the highest hand cosine
    _, _, near = decode_padded(enc, dec, receiver, read="nearest")
    embed = model.get_input_embeddings()
    for b in range(2):
        ids = [int(hand_cosines(v, embed.weight.detach().float()).argmax()) for v in want[b]]
        with torch.no_grad():
            torch.testing.assert_close(near.tensors["embeds"][b][mask[b].bool()], embed(torch.tensor(ids)).float(),
                                       rtol=1e-5, atol=1e-5)

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
                          channels=LAYER_1)
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
    and a byte row that does not end a SmolLM2 token gets none; every receiver token is
    some row's target, once, in order."""
    from latentray.runtime.codecs.row_targets import row_targets
    from latentray.runtime.codecs.train import Edge, _Model
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
    # a SmolLM2 token is the target of the byte row holding its last character: the sender
    # is causal, so no earlier row has read all of it
    assert up[start] == [] and up[start + 1] == [smol.tokenizer.convert_tokens_to_ids("ĠT")]  # the space has none
    assert up[start + 2] == up[start + 3] == up[start + 4] == []
    assert up[start + 5] == [smol.tokenizer.convert_tokens_to_ids("omas")]
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
