"""Text decoding on top of a working state: greedy or sampled, stopping per row at EOS or
at one of the agent's stop strings.

Sampling draws from one generator per row, seeded from the run seed and the row's
question, so a problem gets the same text whether it runs alone or in a batch.
"""
from __future__ import annotations

import hashlib
from dataclasses import dataclass

import torch


@dataclass(frozen=True)
class SamplingConfig:
    temperature: float = 0.0
    top_p: float = 1.0
    top_k: int = 0
    seed: int = 0


def row_generators(questions, seed: int, device) -> list:
    gens = []
    for q in questions:
        digest = hashlib.blake2b(f"{seed}\0{q}".encode(), digest_size=8).digest()
        gens.append(torch.Generator(device=device).manual_seed(int.from_bytes(digest, "little") >> 1))
    return gens


def pick_tokens(logits: torch.Tensor, cfg: SamplingConfig, gens) -> torch.Tensor:
    """[B, V] float logits -> [B] next token ids."""
    if cfg.temperature == 0.0:
        return logits.argmax(dim=-1)
    scaled = logits / cfg.temperature
    if cfg.top_k:
        kth = torch.topk(scaled, min(cfg.top_k, scaled.shape[-1]), dim=-1).values[:, -1:]
        scaled = scaled.masked_fill(scaled < kth, float("-inf"))
    probs = torch.softmax(scaled, dim=-1)
    if cfg.top_p < 1.0:
        sorted_p, order = probs.sort(dim=-1, descending=True)
        # keep the smallest prefix whose mass reaches top_p (always at least one token)
        drop = sorted_p.cumsum(-1) - sorted_p >= cfg.top_p
        sorted_p = sorted_p.masked_fill(drop, 0.0)
        probs = torch.zeros_like(probs).scatter(-1, order, sorted_p)
    return torch.stack([torch.multinomial(probs[b], 1, generator=gens[b])[0] for b in range(len(gens))])


@dataclass
class DecodeResult:
    texts: list  # one answer per row
    token_ids: list  # generated ids per row, stop token excluded
    first_logits: torch.Tensor  # [B, V] logits the first token was picked from
    prompt_tokens: list = None  # per row, the prompt tokens the decoding agent read

    @property
    def tokens(self) -> list:
        return [len(ids) for ids in self.token_ids]


def stop_ids(model, tokenizer) -> frozenset:
    """Token ids that end an answer: the tokenizer's EOS and every EOS the model's
    generation config lists (instruct models list their end-of-turn token there)."""
    ids = {tokenizer.eos_token_id}
    gen = getattr(getattr(model, "generation_config", None), "eos_token_id", None)
    ids.update(gen if isinstance(gen, (list, tuple)) else [gen])
    return frozenset(int(i) for i in ids if i is not None)


def first_stop(text: str, stops) -> int | None:
    """Where the earliest of `stops` begins in `text` (the answer ends there), or None. The
    search starts at the first character that is not whitespace: a base model often opens
    with a newline, and stop "\n" must end its first line, not the answer before it begins."""
    start = len(text) - len(text.lstrip())
    found = [i for i in (text.find(s, start) for s in stops) if i >= 0]
    return min(found) if found else None
