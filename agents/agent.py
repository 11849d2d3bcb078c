"""Agent: one LLM in one role. Plain Python (no Ray), works on a batch of problems.

Steps, LatentMAS style:
  prefill(questions, inbox)  read incoming messages (kv -> working memory) and the role prompt
  think(state, m)            m latent steps: final hidden state -> W_a -> fed back as an embedding
  emit(state, kind, scope)   a kv / hidden / embeds message from the working state
  decode(state, ...)         text, greedy or sampled, stopping at EOS per row
A batch is left padded with real masks and positions, so it computes what each
problem computes alone.
"""
from __future__ import annotations

from dataclasses import dataclass, replace

import torch

from channels.message import LatentMessage

from .decoding import DecodeResult, SamplingConfig, pick_tokens, row_generators
from .forward import forward_slots, new_positions, next_positions
from .inbox import Inbox, merge_inbox
from .kv_cache import cache_from_tensors, stack_cache
from .kv_join import join_kv
from .realign import Realigner


@dataclass(frozen=True)
class AgentConfig:
    name: str
    role: str  # template with {question}
    latent_steps: int = 0
    max_new_tokens: int = 64
    sampling: SamplingConfig = SamplingConfig()
    realign: bool = True
    ridge_lambda: float = 1e-5


@dataclass
class WorkingState:
    questions: list
    cache: object
    mask: torch.Tensor  # [B, T] 1 = real slot
    positions: torch.Tensor  # [B, T] RoPE position of each slot
    own_start: int  # first slot this agent added
    last_hidden: torch.Tensor  # [B, D]
    logits: torch.Tensor  # [B, V]
    latents: list  # [B, D] per latent step, the embeddings fed back


class Agent:
    def __init__(self, config: AgentConfig, model, tokenizer, fingerprint: dict):
        self.config, self.model, self.tokenizer, self.fingerprint = config, model, tokenizer, fingerprint
        self.realigner = Realigner.for_model(model, realign=config.realign, ridge_lambda=config.ridge_lambda)
        self.stop_ids = self._stop_ids()

    # ---- prompts -------------------------------------------------------------------
    def render(self, question: str, team_text: str | None = None) -> list:
        content = self.config.role.replace("{question}", question)
        if team_text:
            content = f"Messages from the team:\n{team_text}\n\n{content}"
        messages = [{"role": "user", "content": content}]
        if getattr(self.tokenizer, "chat_template", None):
            ids = self.tokenizer.apply_chat_template(messages, add_generation_prompt=True, tokenize=True)
            ids = ids["input_ids"] if hasattr(ids, "keys") else ids
            return list(ids)
        return self.tokenizer(content)["input_ids"]

    def _stop_ids(self) -> set:
        ids = {self.tokenizer.eos_token_id}
        end = self.tokenizer.convert_tokens_to_ids("<|im_end|>")
        if isinstance(end, int) and end != self.tokenizer.unk_token_id:
            ids.add(end)
        gen_eos = getattr(getattr(self.model, "generation_config", None), "eos_token_id", None)
        ids.update(gen_eos if isinstance(gen_eos, list) else [gen_eos])
        return {i for i in ids if i is not None}

    def _left_pad(self, rows: list) -> tuple:
        width = max(len(r) for r in rows)
        pad = self.tokenizer.pad_token_id if self.tokenizer.pad_token_id is not None else self.tokenizer.eos_token_id
        ids = torch.full((len(rows), width), pad, dtype=torch.long)
        mask = torch.zeros((len(rows), width), dtype=torch.long)
        for b, r in enumerate(rows):
            ids[b, width - len(r):] = torch.tensor(r, dtype=torch.long)
            mask[b, width - len(r):] = 1
        return ids.to(self.model.device), mask.to(self.model.device)

    # ---- steps ---------------------------------------------------------------------
    def prefill(self, questions: list, inbox=()) -> WorkingState:
        name = self.config.name
        box = inbox if isinstance(inbox, Inbox) else merge_inbox(
            list(inbox), receiver=name, rope_join=lambda msgs: join_kv(msgs, self.model, name))
        device = self.model.device
        rows = [self.render(q, box.texts[b] if box.texts else None) for b, q in enumerate(questions)]
        ids, new_mask = self._left_pad(rows)
        embeds = self.model.get_input_embeddings()(ids)
        if box.embeds is not None:
            embeds = torch.cat([box.embeds.to(device, embeds.dtype), embeds], dim=1)
            new_mask = torch.cat([box.embeds_mask.to(device).long(), new_mask], dim=1)
        if box.kv is not None:
            t = box.kv.tensors
            cache = cache_from_tensors(t["keys"].to(device), t["values"].to(device), self.model.config)
            past_mask, past_pos = t["mask"].to(device).long(), t["positions"].to(device).long()
        else:
            cache = None
            past_mask = torch.zeros((len(questions), 0), dtype=torch.long, device=device)
            past_pos = past_mask.clone()
        positions = new_positions(next_positions(past_mask, past_pos), new_mask)
        out = forward_slots(self.model, cache=cache, past_mask=past_mask, inputs_embeds=embeds,
                            new_mask=new_mask, positions=positions)
        return WorkingState(list(questions), out.cache, torch.cat([past_mask, new_mask], 1),
                            torch.cat([past_pos, positions], 1), past_mask.shape[1],
                            out.last_hidden, out.logits, [])

    def think(self, state: WorkingState, steps: int | None = None) -> WorkingState:
        steps = self.config.latent_steps if steps is None else steps
        for _ in range(steps):
            latent = self.realigner(state.last_hidden)  # [B, D]
            state = self._append_slot(state, latent)
            state.latents = state.latents + [latent]
        return state

    def _append_slot(self, state: WorkingState, embeds: torch.Tensor) -> WorkingState:
        """Feed one real slot per row (embeds [B, D]) after the working memory."""
        one = torch.ones((embeds.shape[0], 1), dtype=torch.long, device=embeds.device)
        pos = next_positions(state.mask, state.positions)[:, None]
        out = forward_slots(self.model, cache=state.cache, past_mask=state.mask,
                            inputs_embeds=embeds[:, None, :], new_mask=one, positions=pos)
        return replace(state, cache=out.cache, mask=torch.cat([state.mask, one], 1),
                       positions=torch.cat([state.positions, pos], 1), last_hidden=out.last_hidden,
                       logits=out.logits)

    def emit(self, state: WorkingState, kind: str = "kv", scope: str = "all") -> LatentMessage:
        start = state.own_start if scope == "own" else 0
        latent = len(state.latents)
        common = dict(sender=self.config.name, fingerprint=self.fingerprint, latent_steps=latent,
                      latent_slots=latent, seq_lens=tuple(int(n) for n in state.mask[:, start:].sum(-1)))
        if kind == "kv":
            keys, values = stack_cache(state.cache, start)
            mask = state.mask[:, start:]
            # Pad slots hold whatever padding produced; zero them so a message depends only
            # on its real content.
            keep = mask[None, :, None, :, None].to(keys.dtype)
            keys.mul_(keep)
            values.mul_(keep)
            tensors = {"keys": keys, "values": values, "mask": mask.clone(),
                       "positions": state.positions[:, start:].clone()}
            return LatentMessage.build("kv", tensors=tensors, layers=tuple(range(keys.shape[0])), **common)
        if kind in ("hidden", "embeds"):
            if not state.latents:
                raise ValueError(f"agent {self.config.name!r} has latent_steps 0 and cannot emit {kind}; "
                                 "set latent_steps > 0 or use kind kv")
            vecs = torch.stack(state.latents, dim=1)
            mask = torch.ones(vecs.shape[:2], dtype=torch.long, device=vecs.device)
            return LatentMessage.build(kind, tensors={kind: vecs, "mask": mask},
                                       **{**common, "seq_lens": tuple(int(n) for n in mask.sum(-1))})
        if kind == "text":
            result = self.decode(state)
            return LatentMessage.build("text", tensors={}, texts=tuple(result.texts),
                                       extra={"tokens": result.tokens}, **common)
        raise ValueError(f"unknown message kind {kind!r}")

    @torch.inference_mode()
    def decode(self, state: WorkingState, max_new_tokens: int | None = None,
               sampling: SamplingConfig | None = None) -> DecodeResult:
        max_new = max_new_tokens or self.config.max_new_tokens
        cfg = sampling or self.config.sampling
        gens = row_generators(state.questions, cfg.seed, state.logits.device)
        batch = state.logits.shape[0]
        done = torch.zeros(batch, dtype=torch.bool, device=state.logits.device)
        generated = [[] for _ in range(batch)]
        first_logits, embed = state.logits, self.model.get_input_embeddings()
        for i in range(max_new):
            tokens = pick_tokens(state.logits, cfg, gens)
            for b in range(batch):
                if not done[b]:
                    if int(tokens[b]) in self.stop_ids:
                        done[b] = True
                    else:
                        generated[b].append(int(tokens[b]))
            if bool(done.all()) or i == max_new - 1:
                break
            state = self._append_slot(state, embed(tokens))
        texts = [self.tokenizer.decode(g, skip_special_tokens=True) for g in generated]
        return DecodeResult(texts, generated, first_logits)

    def step(self, questions: list, inbox=(), *, action: str = "latent", emit: str = "kv",
             scope: str = "all"):
        """prefill + think, then emit a message (action "latent") or decode (action "text")."""
        state = self.think(self.prefill(questions, inbox))
        if action == "text":
            return self.decode(state)
        return self.emit(state, emit, scope)
