"""A model's last-layer hidden states at anchor points, the data codecs are fitted on.

An anchor point is (text index, character offset of a word end): a place in the text
that every tokenizer ends a token at, so states of models with different tokenizers
line up by character spans. A model contributes a point only where one of its tokens
ends exactly there; its state is that token's final-norm last-layer hidden state (the
state a latent step would realign), with the text read as plain text after the
tokenizer's own special tokens. Beside it, what the embedding module outputs for that
token (what the model read there).
"""
from __future__ import annotations

import torch

from latentray.channels.codecs.base import AnchorStates
from latentray.channels.errors import CodecError

from .forward import forward_slots, new_positions

MAX_TOKENS = 256  # per anchor text; longer texts are cut (their later points dropped)


def word_ends(text: str) -> list:
    """Character offsets just past each whitespace-delimited word."""
    return [i + 1 for i, ch in enumerate(text) if not ch.isspace() and (i + 1 == len(text) or text[i + 1].isspace())]


def token_spans(tokenizer, text: str) -> tuple:
    """(token ids, [(start, end)] character span per token; (0, 0) for special tokens)."""
    if not getattr(tokenizer, "is_fast", False):
        raise CodecError(f"{type(tokenizer).__name__} gives no character offsets; codecs need a fast tokenizer")
    enc = tokenizer(text, return_offsets_mapping=True, truncation=True, max_length=MAX_TOKENS)
    return list(enc["input_ids"]), [tuple(o) for o in enc["offset_mapping"]]


def points_of(text: str, spans: list) -> list:
    """[(char offset, token index)] for word ends where a token ends exactly."""
    ends = set(word_ends(text))
    out, seen = [], set()
    for t, (start, end) in enumerate(spans):
        if end > start and end in ends and end not in seen:
            out.append((end, t))
            seen.add(end)
    return out


@torch.inference_mode()
def anchor_states(model, tokenizer, texts: list, *, ref: str, fingerprint: dict, anchor_hash: str,
                  batch_size: int = 8, progress=None) -> AnchorStates:
    """States at every anchor point of `texts` ([(text index, text)])."""
    embed = model.get_input_embeddings()
    device = model.device
    keys, rows, embeds = [], [], []
    for start in range(0, len(texts), batch_size):
        chunk = texts[start:start + batch_size]
        encoded = [token_spans(tokenizer, t) for _, t in chunk]
        width = max(len(ids) for ids, _ in encoded)
        ids = torch.full((len(chunk), width), int(tokenizer.pad_token_id or 0), dtype=torch.long, device=device)
        mask = torch.zeros((len(chunk), width), dtype=torch.long, device=device)
        for b, (tok, _) in enumerate(encoded):
            ids[b, width - len(tok):] = torch.tensor(tok, device=device)
            mask[b, width - len(tok):] = 1
        empty = torch.zeros((len(chunk), 0), dtype=torch.long, device=device)
        inputs = embed(ids)
        out = forward_slots(model, cache=None, past_mask=empty, past_positions=empty, inputs_embeds=inputs,
                            new_mask=mask, positions=new_positions(torch.zeros(len(chunk), dtype=torch.long,
                                                                               device=device), mask))
        for b, ((index, text), (tok, spans)) in enumerate(zip(chunk, encoded)):
            offset = width - len(tok)
            for char, t in points_of(text, spans):
                keys.append((index, char))
                rows.append(out.hidden[b, offset + t].float().cpu())
                embeds.append(inputs[b, offset + t].float().cpu())
        if progress:
            progress(len(chunk))
    if not rows:
        raise CodecError("no anchor point found in the anchor texts; use plain prose with spaces between words")
    order = sorted(range(len(keys)), key=keys.__getitem__)
    return AnchorStates(ref, dict(fingerprint), tuple(keys[i] for i in order), torch.stack([rows[i] for i in order]),
                        anchor_hash, torch.stack([embeds[i] for i in order]))
