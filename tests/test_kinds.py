"""Message kinds: each built-in kind's tensors, axes and payload, typed lookups, and a new
kind defined here and registered with one line, which the object-store transport,
validation, compression and byte accounting then handle with no other change."""
from __future__ import annotations

from types import MappingProxyType

import pytest
import torch

from latentray.channels.compression import compress_message, decompress_message
from latentray.channels.errors import CompressionError, MessageError, MessageTooLargeError, UnknownKindError
from latentray.channels.kinds import (KINDS, MEMORY, SOFT_TOKENS, TEXT, MessageKind, find_kind, get_kind, kinds_with,
                            register_kind)
from latentray.channels.message import LatentMessage, message_checksum
from latentray.channels.transports import get_transport
from latentray.channels.transports.object_store import INLINE_BYTES, ByteViewMessage, InlineMessage
from latentray.channels.validate import validate_message


class ScoresKind(MessageKind):
    """A toy kind: one score vector per problem, [B, D]; no sequence, no mask."""

    name = "scores"
    tensors = ("scores",)
    seq_axis = MappingProxyType({})
    payload = ("scores",)

    def validate(self, msg, arrival) -> None:
        scores = msg.tensors["scores"]
        if scores.ndim != 2 or scores.shape[0] != len(msg.header.seq_lens):
            arrival.fail("scores", f"must be [B, D] with one row per problem in seq_lens; got {list(scores.shape)}")


@pytest.fixture(autouse=True)
def toy_kinds_registered():
    """The toy kinds are registered only while each test here runs: one left registered
    would change the kind lists that other tests' messages name."""
    from latentray.channels import kinds

    registry, instances = dict(kinds.REGISTRY), dict(kinds._INSTANCES)
    register_kind(ScoresKind)
    yield
    kinds.REGISTRY.clear()
    kinds.REGISTRY.update(registry)
    kinds._INSTANCES.clear()
    kinds._INSTANCES.update(instances)


def scores(rows: int = 3, dim: int = 8, seed: int = 0, **header) -> LatentMessage:
    g = torch.Generator().manual_seed(seed)
    return LatentMessage.build("scores", "ranker", {"model": "toy"}, {"scores": torch.randn(rows, dim, generator=g)},
                               seq_lens=(1,) * rows, **header)


def check(msg, **kw):
    return validate_message(msg, receiver="judger", receiver_fingerprint=None, edge_kind=msg.kind, **kw)


# ---- the built-in kinds ----------------------------------------------------------------
@pytest.mark.parametrize("name, tensors, axes, payload", [
    ("kv", ("keys", "values", "mask", "positions"), {"keys": 3, "values": 3, "mask": 1, "positions": 1},
     ("keys", "values")),
    ("hidden", ("hidden", "mask"), {"hidden": 1, "mask": 1}, ("hidden",)),
    ("embeds", ("embeds", "mask"), {"embeds": 1, "mask": 1}, ("embeds",)),
    ("text", (), {}, ()),
])
def test_builtin_kinds_name_their_tensors_axes_and_payload(name, tensors, axes, payload):
    kind = get_kind(name)
    assert (kind.name, kind.tensors, dict(kind.seq_axis), kind.payload) == (name, tensors, axes, payload)
    assert set(kind.payload) <= set(kind.tensors) and set(kind.seq_axis) <= set(kind.tensors)


def test_builtin_kinds_answer_what_specs_and_agents_ask():
    kv, hidden, embeds, text = (get_kind(k) for k in ("kv", "hidden", "embeds", "text"))
    assert (kv.role, hidden.role, embeds.role, text.role) == (MEMORY, SOFT_TOKENS, SOFT_TOKENS, TEXT)
    assert kinds_with("same_model_only") == ["kv", "embeds"]
    assert kinds_with("takes_codec") == ["hidden"]
    assert kinds_with("aggregatable") == ["hidden", "embeds"]
    assert kinds_with("rope_joined") == kinds_with("layered") == ["kv"]
    assert kinds_with("needs_latent_steps") == ["hidden", "embeds"]


def test_an_unknown_kind_is_a_typed_error_naming_the_known_ones():
    with pytest.raises(UnknownKindError, match=r"unknown message kind 'scalar'; use one of kv, hidden, embeds, text"):
        get_kind("scalar")
    assert find_kind("scalar") is None and find_kind(["kv"]) is None
    with pytest.raises(ValueError, match="unknown message kind 'scalar'"):  # still a ValueError
        LatentMessage.build("scalar", "a", {}, {})


def test_register_kind_refuses_what_it_cannot_register():
    class Other(MessageKind):
        name = "kv"

    with pytest.raises(ValueError, match="already registered by KvKind"):
        register_kind(Other)
    with pytest.raises(TypeError, match="subclass of channels.kinds.MessageKind"):
        register_kind(dict)
    Nameless = type("Nameless", (MessageKind,), {"name": "not a name"})
    with pytest.raises(ValueError, match="short identifier"):
        register_kind(Nameless)
    assert register_kind(ScoresKind) is ScoresKind  # the same class again: a no-op


def test_validation_errors_still_name_the_field():
    fp = {"hidden_size": 4}
    vecs = torch.randn(2, 3, 4)
    good = LatentMessage.build("hidden", "planner", fp, {"hidden": vecs, "mask": torch.ones(2, 3, dtype=torch.long)},
                               seq_lens=(3, 3))
    assert validate_message(good, receiver="judger", receiver_fingerprint=fp) is None
    cases = [
        (good.replace({"hidden": torch.randn(2, 3, 5), "mask": good.tensors["mask"]}), "hidden", "size 5"),
        (good.replace(seq_lens=(3, 2)), "seq_lens", r"mask has \[3, 3\]"),
        (good.replace({"hidden": vecs, "mask": good.tensors["mask"].float()}), "dtypes.mask", "integer or bool"),
        (good.replace({"hidden": vecs}), "mask", "needs tensor 'mask'"),
        (LatentMessage.build("text", "planner", fp, {}, texts=()), "texts", "one string per row"),
    ]
    for msg, field, text in cases:
        with pytest.raises(MessageError, match=text) as e:
            validate_message(msg, receiver="judger", receiver_fingerprint=fp, edge_kind=msg.kind)
        assert (e.value.sender, e.value.receiver, e.value.field) == ("planner", "judger", field)


def test_text_bytes_are_its_utf8_texts():
    msg = LatentMessage.build("text", "planner", {}, {}, texts=("ab", "é"))
    assert msg.nbytes == get_kind("text").nbytes(msg) == 2 + 2


# ---- a kind defined here ----------------------------------------------------------------
def test_a_registered_kind_is_known_everywhere_kinds_are_listed():
    assert "scores" in KINDS and get_kind("scores").name == "scores"
    assert get_kind("scores").role is None and not get_kind("scores").aggregatable


@pytest.mark.parametrize("rows", [3, 4096])  # inline blob, and big enough for the shared store
def test_new_kind_round_trips_through_the_object_store_transport(rows):
    msg = scores(rows)
    assert (msg.nbytes <= INLINE_BYTES) == (rows == 3)
    store = get_transport("object_store")
    for packed in (store.pack(msg), InlineMessage.of(msg), ByteViewMessage.of(msg)):
        got = store.unpack(packed)
        assert got.header == msg.header and torch.equal(got.tensors["scores"], msg.tensors["scores"])
        assert message_checksum(got) == message_checksum(msg)
        check(got)


def test_new_kind_is_validated_like_any_other():
    assert check(scores()) is None
    bad = [
        (scores().replace({"scores": torch.randn(3, 2, 8)}), "scores", "must be \\[B, D\\]"),
        (scores().replace({"scores": torch.ones(3, 8, dtype=torch.long)}), "dtypes.scores", "not a float type"),
        (scores().replace({"scores": torch.full((3, 8), float("nan"))}), "scores", "NaN"),
        (scores().replace({"scores": torch.randn(3, 8), "mask": torch.ones(3, 1)}), "mask", "unexpected tensor"),
    ]
    for msg, field, text in bad:
        with pytest.raises(MessageError, match=text) as e:
            check(msg)
        assert (e.value.sender, e.value.field) == ("ranker", field)
    with pytest.raises(MessageError, match="carries 'kv' messages but this one is 'scores'"):
        validate_message(scores(), receiver="judger", receiver_fingerprint=None, edge_kind="kv")


def test_new_kind_compresses_to_bf16_and_back():
    msg = scores(rows=5, dim=16)
    sent = compress_message(msg, ["bf16"], receiver="judger")
    assert sent.tensors["scores"].dtype == torch.bfloat16
    assert sent.nbytes == msg.nbytes // 2 == 5 * 16 * 2  # byte accounting follows the kind's tensors
    assert sent.header.extra["uncompressed_bytes"] == msg.nbytes and sent.header.extra["source_dtype"] == "float32"
    check(sent)  # what arrives compressed passes validation as is
    back = decompress_message(get_transport("object_store").unpack(get_transport("object_store").pack(sent)),
                              torch.float32)
    assert back.tensors["scores"].dtype == torch.float32
    assert torch.allclose(back.tensors["scores"], msg.tensors["scores"], rtol=1e-2, atol=1e-2)


@pytest.mark.parametrize("name", ["latent_only", "int8", "layers:0"])
def test_compressions_that_need_what_the_new_kind_lacks_refuse_it(name):
    with pytest.raises(CompressionError, match="does not apply to a 'scores' message") as e:
        compress_message(scores(), [name], receiver="judger")
    assert e.value.field == f"compression.{name}"


def test_an_agent_refuses_a_kind_it_cannot_read():
    from latentray.agents.inbox import merge_inbox

    with pytest.raises(MessageError, match="an agent cannot read scores messages") as e:
        merge_inbox([scores()], receiver="judger")
    assert e.value.field == "kind"


# ---- the send side ----------------------------------------------------------------------
def test_send_gives_one_variant_per_compression_list_and_holds_the_limit():
    from latentray.channels.send import edge_stats, send

    msg = scores(rows=4, dim=8)
    outputs, stats = send(msg, compressions=((), ("bf16",)), encodes=(), encoder_for=None, limit=None,
                          agent="ranker", step_id="r1/ranker", checksum=True)
    assert [o.tensors["scores"].dtype for o in outputs] == [torch.float32, torch.bfloat16]
    assert stats["out_bytes"] == [128, 64] and len(stats["out_checksums"]) == 2
    assert "sent_at" in outputs[0].header.extra and edge_stats(outputs[1])["bytes"] == 64
    with pytest.raises(MessageTooLargeError, match=r"agent 'ranker' \(step r1/ranker\) made a scores message of "
                                                   r"128 bytes for 4 problem\(s\), more than limits.max_message_bytes"):
        send(msg, compressions=((),), encodes=(), encoder_for=None, limit=100, agent="ranker", step_id="r1/ranker")


# ---- a spec names a registered kind ------------------------------------------------------
def test_a_spec_names_a_registered_kind_an_agent_can_send():
    from latentray.channels.kinds.embeds import EmbedsKind
    from latentray.topologies.errors import SpecError
    from latentray.topologies.loader import parse_spec

    @register_kind
    class Gist(EmbedsKind):  # a soft-token kind of its own name: agents send it as they send embeds
        name = "gist"

    def spec(kind: str) -> dict:
        return {"version": 1, "name": "k", "models": {"m": {"ref": "tiny:qwen3-64"}},
                "agents": {"a": {"model": "m", "role": "A {question}"},
                           "j": {"model": "m", "role": "J {question}", "output": "text"}},
                "topology": {"type": "chain", "order": ["a", "j"]}, "channels": {"kind": kind}}

    assert parse_spec(spec("gist")).channels.kind == "gist"
    with pytest.raises(SpecError, match="'scores' is not a message kind an agent can send; use one of "):
        parse_spec(spec("scores"))  # registered, but no agent makes it: refused, not accepted and ignored
