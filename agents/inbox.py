"""Turn the messages a step receives into what its prefill consumes.

Order is the plan's inbox order (the step's `inputs`). Each message's kind says how it is
read (its role, channels/kinds/):
  memory (kv):   becomes the working-memory prefix (past_key_values); several kv messages
                 (one model) are laid side by side in inbox order by `rope_join`
                 (agents/kv_join.join_kv: later caches' keys re-rotated to continue after
                 the earlier ones, per row; nothing recomputed), or, with merge "concat",
                 are the parts of one working memory (a chain's delta memory: each agent
                 sent only the slots it added), kept as parts for the cache to assemble
  soft tokens (hidden/embeds):
                 concatenated along the sequence, in inbox order, and placed as soft
                 tokens before the prompt (a `hidden` message arrives here already
                 decoded by its edge codec into this model's input space)
  text:          joined per row, in inbox order, into the prompt
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Optional

import torch

from latentray.channels.errors import MessageError
from latentray.channels.kinds import MEMORY, SOFT_TOKENS, TEXT, get_kind
from latentray.channels.message import LatentMessage


@dataclass
class Inbox:
    kv: Optional[LatentMessage] = None
    kv_parts: Optional[list] = None  # delta working memory: the parts of one memory, in slot order
    embeds: Optional[torch.Tensor] = None  # [B, S, D]
    embeds_mask: Optional[torch.Tensor] = None  # [B, S]
    texts: Optional[list] = None  # one string per row


def check_parts(parts: list, receiver: str) -> None:
    """Parts of one memory must agree on everything but their slot count."""
    first = parts[0].tensors["keys"]
    for m in parts[1:]:
        k = m.tensors["keys"]
        if (k.shape[:3], k.shape[4], k.dtype) != (first.shape[:3], first.shape[4], first.dtype):
            raise MessageError(f"part of the working memory has keys {tuple(k.shape)} {k.dtype}, the first part "
                               f"{tuple(first.shape)} {first.dtype}: parts must match but for their slots",
                               sender=m.sender, receiver=receiver, field="keys")


def by_role(messages, receiver: str) -> dict:
    """{role: [messages]} in inbox order; a kind no agent reads is refused."""
    groups: dict = {MEMORY: [], SOFT_TOKENS: [], TEXT: []}
    for m in messages:
        role = get_kind(m.kind).role
        if role not in groups:
            raise MessageError(f"an agent cannot read {m.kind} messages; send them to a step that consumes them",
                               sender=m.sender, receiver=receiver, field="kind")
        groups[role].append(m)
    return groups


def merge_inbox(messages, receiver: str = "?", rope_join=None, kv_merge: str = "join") -> Inbox:
    """Group messages by how they are read. Several kv messages need `rope_join(list) ->
    message`, or are the parts of one memory (kv_merge "concat")."""
    groups = by_role(messages, receiver)
    kv, soft, texts = groups[MEMORY], groups[SOFT_TOKENS], groups[TEXT]
    inbox = Inbox()
    if len(kv) == 1:
        inbox.kv = kv[0]
    elif kv and kv_merge == "concat":
        check_parts(kv, receiver)
        inbox.kv, inbox.kv_parts = kv[-1], kv
    elif kv:
        if rope_join is None:
            raise MessageError("several kv messages but no way to join them", sender=kv[1].sender,
                               receiver=receiver, field="kind")
        inbox.kv = rope_join(kv)
    if soft:
        vectors, masks = zip(*(get_kind(m.kind).soft_tokens(m) for m in soft))
        inbox.embeds = torch.cat(vectors, dim=1)
        inbox.embeds_mask = torch.cat(masks, dim=1)
    if texts:
        rows = [get_kind(m.kind).texts(m) for m in texts]
        inbox.texts = ["\n\n".join(f"[{m.sender}] {r[b]}" for m, r in zip(texts, rows)) for b in range(len(rows[0]))]
    return inbox
