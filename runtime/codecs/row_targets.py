"""What each row of a sender's hidden message should name, for train-codec's token loss
(runtime/codecs/train.py): the receiver's token ids a prompt row was, aligned across
tokenizers by characters; which of a row's per-row slots are sent; and the token loss
itself. `models` is train-codec's {ref: _Model}, `edge` its Edge (sender and receiver
agents and model refs)."""
from __future__ import annotations

import torch

from latentray.channels.codecs.vocabulary import Vocabulary


def row_targets(models: dict, edge, example, hidden_scope: str) -> list:
    """For each real row of the sender's message, the receiver's token ids that row was: a
    list (one id within one model; across tokenizers the receiver tokens that end within
    the sender token's characters, so possibly several or none), or None for a latent-step
    row (a thought, no token)."""
    snd, rcv = models[edge.src], models[edge.dst]
    agent = snd.agents[edge.sender]
    steps = [None] * agent.config.latent_steps
    if hidden_scope not in ("prompt", "role"):
        return steps
    ids = agent.content_ids({"question": example.question, "context": example.context}, hidden_scope)  # prompt rows
    if snd.fingerprint == rcv.fingerprint:
        return [[i] for i in ids] + steps
    # Where each sender token starts in the decoded text: decoding growing prefixes keeps the
    # spaces a tokenizer folds into its tokens (a lone SentencePiece token decodes without its own).
    ends, text = [], ""
    for k in range(len(ids)):
        text = snd.tokenizer.decode(ids[:k + 1])
        ends.append(len(text))
    enc = rcv.tokenizer(text, add_special_tokens=False, return_offsets_mapping=True)
    out = [[] for _ in ids]
    row = 0
    for tid, (a, b) in zip(enc["input_ids"], enc["offset_mapping"]):
        # A receiver token belongs to the sender row holding its last character that is not a
        # space: the sender is causal, so only from there on has it read the whole token
        # (SmolLM2's ' T' cannot name Gemma's ' Tomas'; its 'omas' can).
        last = next((c for c in reversed(range(a, b)) if not text[c].isspace()), max(a, b - 1))
        while row < len(ids) - 1 and last >= ends[row]:
            row += 1
        out[row].append(tid)
    return out + steps


def token_loss(y: torch.Tensor, targets: list, vocabulary: Vocabulary) -> torch.Tensor | None:
    """Mean cross-entropy of each slot's vector (y [S, P, D], before its output) naming its
    target token among the receiver's vocabulary (Vocabulary.token_loss: cosine x sharpness,
    over the whole vocabulary or the top_k nearest rows): slot k of row r aims at
    targets[r][k], where there is one; None if no slot has one. With the vocabulary output
    these are the very logits it mixes by."""
    pairs = [(r, k) for r, ids in enumerate(targets) for k in range(min(len(ids or []), y.shape[1]))]
    if not pairs:
        return None
    picked = torch.stack([y[r, k] for r, k in pairs])
    ids = torch.tensor([targets[r][k] for r, k in pairs], device=y.device)
    return vocabulary.token_loss(picked, ids)


def presence_targets(targets: list, slots: int) -> torch.Tensor:
    """[S, P] 1 where a slot is sent: a prompt row's first len(ids) slots, a latent-step
    row's first slot (its thought)."""
    return torch.tensor([[float(k < (1 if ids is None else len(ids))) for k in range(slots)] for ids in targets])
