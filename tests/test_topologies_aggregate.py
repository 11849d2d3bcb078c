"""Hub aggregation over hidden messages: concat order, masked mean, agreement weights."""
from __future__ import annotations

import pytest
import torch

from latentray.channels.aggregate import aggregate_messages, agreement_weights
from latentray.channels.errors import MessageError
from latentray.channels.message import LatentMessage


def hidden(sender: str, x: torch.Tensor, mask=None, kind: str = "hidden") -> LatentMessage:
    mask = torch.ones(x.shape[:2], dtype=torch.long) if mask is None else mask
    return LatentMessage.build(kind, sender=sender, fingerprint={}, tensors={kind: x, "mask": mask})


def test_concat_keeps_inbox_order():
    a, b = torch.randn(2, 3, 4), torch.randn(2, 1, 4)
    out = aggregate_messages([hidden("a", a), hidden("b", b)], "concat", "hub", {"h": 1})
    assert torch.equal(out.tensors["hidden"], torch.cat([a, b], 1))
    assert out.sender == "hub" and out.header.extra["from"] == ["a", "b"] and out.header.seq_lens == (4, 4)


def test_mean_aligns_messages_at_their_last_slot():
    a = torch.ones(1, 3, 2)
    b = torch.full((1, 1, 2), 3.0)
    out = aggregate_messages([hidden("a", a), hidden("b", b)], "mean", "hub", {})
    assert torch.allclose(out.tensors["hidden"], torch.tensor([[[1.0, 1.0], [1.0, 1.0], [2.0, 2.0]]]))
    assert out.tensors["mask"].tolist() == [[1, 1, 1]]


def test_mean_skips_masked_slots():
    a = torch.tensor([[[1.0], [5.0]]])
    b = torch.tensor([[[9.0], [7.0]]])
    out = aggregate_messages([hidden("a", a, torch.tensor([[0, 1]])), hidden("b", b)], "mean", "hub", {})
    assert out.tensors["hidden"].flatten().tolist() == [9.0, 6.0]


def test_weighted_favours_agreement_and_equals_mean_for_equal_inputs():
    x = torch.randn(2, 3, 8)
    same = aggregate_messages([hidden("a", x), hidden("b", x.clone())], "weighted", "hub", {})
    assert torch.allclose(same.tensors["hidden"], x, atol=1e-6)
    agree = torch.randn(1, 2, 8)
    outlier = -agree
    msgs = [hidden("a", agree), hidden("b", agree + 0.01), hidden("c", outlier)]
    xs = torch.stack([m.tensors["hidden"] for m in msgs])
    w = agreement_weights(xs, torch.ones(xs.shape[:3]))
    assert w.shape == (3, 1) and w[2, 0] < 0.01 and torch.allclose(w.sum(0), torch.ones(1))
    out = aggregate_messages(msgs, "weighted", "hub", {})
    assert torch.allclose(out.tensors["hidden"], agree, atol=0.05)


def test_errors_are_typed():
    with pytest.raises(MessageError, match="unknown aggregate mode 'max'"):
        aggregate_messages([hidden("a", torch.ones(1, 1, 2))], "max", "hub", {})
    with pytest.raises(MessageError, match="hidden or embeds messages of one kind"):
        aggregate_messages([hidden("a", torch.ones(1, 1, 2)), hidden("b", torch.ones(1, 1, 2), kind="embeds")],
                           "mean", "hub", {})
    with pytest.raises(MessageError, match="map both into one space with a codec"):
        aggregate_messages([hidden("a", torch.ones(1, 1, 2)), hidden("b", torch.ones(1, 1, 3))], "concat", "hub", {})
