"""Hub aggregation: combine the spokes' hidden/embeds messages into one, without a model call.

All inputs must already live in one space (the hub's, after each edge's codec): one kind,
one vector size, one batch. Modes:
  concat:   every message's slots one after another, in inbox order ([B, sum S_i, D]).
  mean:     slot-wise mean. Messages are aligned at their last slot (the batch layout is
            left padded, so a shorter message lacks its earliest slots); each slot averages
            the messages that have it. [B, max S_i, D]
  weighted: like mean, but message i weighs w_i = softmax_i(cos(p_i, c) / TAU) per row,
            where p_i is message i's mean vector and c the mean of all p_i: messages that
            agree with the consensus count more, an outlier counts less. Attention-free,
            no learned parameters; with identical messages it equals mean.
"""
from __future__ import annotations

import torch

from channels.errors import MessageError
from channels.message import LatentMessage

MODES = ("concat", "mean", "weighted")
TAU = 0.1  # agreement temperature: cosine 0.1 apart -> weights e (2.7) times apart


def _check(messages: list, mode: str, sender: str) -> str:
    if mode not in MODES:
        raise MessageError(f"unknown aggregate mode {mode!r}; use one of {', '.join(MODES)}",
                           receiver=sender, field="aggregate")
    if not messages:
        raise MessageError("nothing to aggregate", receiver=sender, field="inputs")
    kind = messages[0].kind
    ref = messages[0].tensors.get(kind)
    for m in messages:
        if m.kind != kind or kind not in ("hidden", "embeds"):
            raise MessageError(f"aggregation needs hidden or embeds messages of one kind, got {m.kind}",
                               sender=m.sender, receiver=sender, field="kind")
        x = m.tensors[kind]
        if x.shape[0] != ref.shape[0] or x.shape[2] != ref.shape[2]:
            raise MessageError(f"{kind} shape {tuple(x.shape)} does not fit {tuple(ref.shape)} of "
                               f"{messages[0].sender}; map both into one space with a codec",
                               sender=m.sender, receiver=sender, field=kind)
    return kind


def _space_of(messages: list, sender: str) -> dict:
    """The wire space the inputs share (a codec's shared space), carried to the aggregate;
    {} for raw hidden states of the hub's own model."""
    spaces = {m.header.extra.get("space") for m in messages}
    if len(spaces) > 1:
        raise MessageError(f"messages arrive in different spaces {sorted(map(str, spaces))}; encode every spoke "
                           "with one fitted codec", receiver=sender, field="extra.space")
    space = spaces.pop()
    return {"space": space, "codec": messages[0].header.extra.get("codec")} if space else {}


def _right_aligned(messages: list, kind: str) -> tuple:
    """x [N, B, S, D] and mask [N, B, S] with every message ending at slot S - 1."""
    width = max(m.tensors[kind].shape[1] for m in messages)
    xs, masks = [], []
    for m in messages:
        x, mask = m.tensors[kind].float(), m.tensors["mask"].float()
        pad = width - x.shape[1]
        xs.append(torch.nn.functional.pad(x, (0, 0, pad, 0)))
        masks.append(torch.nn.functional.pad(mask, (pad, 0)))
    return torch.stack(xs), torch.stack(masks)


def agreement_weights(x: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    """[N, B] softmax over messages of each one's cosine to the consensus of their means."""
    pooled = (x * mask[..., None]).sum(2) / mask.sum(2, keepdim=True).clamp_min(1.0)  # [N, B, D]
    consensus = pooled.mean(0, keepdim=True)
    cos = torch.nn.functional.cosine_similarity(pooled, consensus.expand_as(pooled), dim=-1)
    return torch.softmax(cos / TAU, dim=0)


def aggregate_messages(messages: list, mode: str, sender: str, fingerprint: dict) -> LatentMessage:
    kind = _check(messages, mode, sender)
    dtype = messages[0].tensors[kind].dtype
    if mode == "concat":
        out = torch.cat([m.tensors[kind] for m in messages], dim=1)
        mask = torch.cat([m.tensors["mask"].long() for m in messages], dim=1)
    else:
        x, present = _right_aligned(messages, kind)
        w = present if mode == "mean" else present * agreement_weights(x, present)[..., None]
        out = ((w[..., None] * x).sum(0) / w.sum(0)[..., None].clamp_min(1e-12)).to(dtype)
        mask = (present.sum(0) > 0).long()
    return LatentMessage.build(
        kind, sender=sender, fingerprint=fingerprint, tensors={kind: out, "mask": mask},
        seq_lens=tuple(int(n) for n in mask.sum(-1)),
        latent_steps=max(m.header.latent_steps for m in messages), latent_slots=out.shape[1],
        extra={"aggregate": mode, "from": [m.sender for m in messages], **_space_of(messages, sender)},
    )
