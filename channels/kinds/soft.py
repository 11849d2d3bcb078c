"""What hidden and embeds share: a sequence of vectors [B, S, D] with its mask [B, S],
read by an agent as soft tokens, and combined by a hub without a model call.

Aggregation (all inputs in one space, after each edge's codec: one kind, one vector
size, one batch):
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

from latentray.channels.errors import MessageError

from .base import SOFT_TOKENS, Arrival, MessageKind, check_mask_rows

TAU = 0.1  # agreement temperature: cosine 0.1 apart -> weights e (2.7) times apart


class SoftTokenKind(MessageKind):
    """A kind whose one payload tensor holds [B, S, D] vectors beside a [B, S] mask
    (subclasses set name, tensors, seq_axis and payload)."""

    role = SOFT_TOKENS
    index_tensors = ("mask",)
    aggregatable = True
    needs_latent_steps = True

    @property
    def vectors(self) -> str:
        """Name of the tensor that holds the vectors."""
        return self.payload[0]

    def soft_tokens(self, msg) -> tuple:
        """([B, S, D] vectors, [B, S] mask) an agent places before its prompt."""
        return msg.tensors[self.vectors], msg.tensors["mask"]

    def validate(self, msg, arrival: Arrival) -> None:
        size = arrival.soft_dim
        if size == "receiver":
            size = (arrival.fingerprint or {}).get("hidden_size")
        vecs, mask, fail = msg.tensors[self.vectors], msg.tensors["mask"], arrival.fail
        if vecs.ndim != 3 or list(vecs.shape[:2]) != list(mask.shape):
            fail(self.vectors, f"must be [B, S, D] with mask [B, S]; got {list(vecs.shape)} and mask {list(mask.shape)}")
        if size is not None and vecs.shape[-1] != size:
            fail(self.vectors, f"vectors have size {vecs.shape[-1]} but this edge reads vectors of size {size}; "
                               "put a codec (ridge, relative or hub) fitted for these two models on this edge")
        check_mask_rows(msg, fail)

    def aggregate(self, messages: list, mode: str, sender: str) -> tuple:
        import torch

        self._check_shapes(messages, sender)
        name = self.vectors
        dtype = messages[0].tensors[name].dtype
        if mode == "concat":
            out = torch.cat([m.tensors[name] for m in messages], dim=1)
            mask = torch.cat([m.tensors["mask"].long() for m in messages], dim=1)
        else:
            x, present = right_aligned(messages, name)
            w = present if mode == "mean" else present * agreement_weights(x, present)[..., None]
            out = ((w[..., None] * x).sum(0) / w.sum(0)[..., None].clamp_min(1e-12)).to(dtype)
            mask = (present.sum(0) > 0).long()
        fields = dict(seq_lens=tuple(int(n) for n in mask.sum(-1)),
                      latent_steps=max(m.header.latent_steps for m in messages), latent_slots=out.shape[1],
                      extra={"aggregate": mode, "from": [m.sender for m in messages], **_space_of(messages, sender)})
        return {name: out, "mask": mask}, fields

    def _check_shapes(self, messages: list, sender: str) -> None:
        name = self.vectors
        ref = messages[0].tensors[name]
        for m in messages:
            x = m.tensors[name]
            if x.shape[0] != ref.shape[0] or x.shape[2] != ref.shape[2]:
                raise MessageError(f"{name} shape {tuple(x.shape)} does not fit {tuple(ref.shape)} of "
                                   f"{messages[0].sender}; map both into one space with a codec",
                                   sender=m.sender, receiver=sender, field=name)


def _space_of(messages: list, sender: str) -> dict:
    """The wire space the inputs share (a codec's shared space), carried to the aggregate;
    {} for raw hidden states of the hub's own model."""
    spaces = {m.header.extra.get("space") for m in messages}
    if len(spaces) > 1:
        raise MessageError(f"messages arrive in different spaces {sorted(map(str, spaces))}; encode every spoke "
                           "with one fitted codec", receiver=sender, field="extra.space")
    space = spaces.pop()
    return {"space": space, "codec": messages[0].header.extra.get("codec")} if space else {}


def right_aligned(messages: list, name: str) -> tuple:
    """x [N, B, S, D] and mask [N, B, S] with every message ending at slot S - 1."""
    import torch

    width = max(m.tensors[name].shape[1] for m in messages)
    xs, masks = [], []
    for m in messages:
        x, mask = m.tensors[name].float(), m.tensors["mask"].float()
        pad = width - x.shape[1]
        xs.append(torch.nn.functional.pad(x, (0, 0, pad, 0)))
        masks.append(torch.nn.functional.pad(mask, (pad, 0)))
    return torch.stack(xs), torch.stack(masks)


def agreement_weights(x, mask):
    """[N, B] softmax over messages of each one's cosine to the consensus of their means."""
    import torch

    pooled = (x * mask[..., None]).sum(2) / mask.sum(2, keepdim=True).clamp_min(1.0)  # [N, B, D]
    consensus = pooled.mean(0, keepdim=True)
    cos = torch.nn.functional.cosine_similarity(pooled, consensus.expand_as(pooled), dim=-1)
    return torch.softmax(cos / TAU, dim=0)
