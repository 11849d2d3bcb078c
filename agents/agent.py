"""Agent: one LLM in one role. Plain Python (no Ray), works on a batch of problems.

Steps, LatentMAS style:
  prefill(questions, inbox)  read incoming messages (kv -> working memory) and the role prompt
  think(state, m)            m latent steps: final hidden state -> W_a -> fed back as an embedding
  emit(state, kind, scope)   a kv / hidden / embeds / text message from the working state:
                             kv the cache; hidden the last-layer states behind each latent
                             step (scope "prompt": before them, the prompt's states at its
                             content tokens, special tokens left out; scope "role": only at
                             its turn's own text, the chat template's words left out too), which
                             the receiver's codec maps into its input space; embeds the
                             latent vectors themselves, already in this model's input space.
                             A step given a `layer` sends that decoder layer's states in a
                             hidden message instead of the last layer's (the same slots).
  decode(state, ...)         text, greedy or sampled, stopping at EOS or a stop string per row
A batch is left padded with real masks and positions, so it computes what each
problem computes alone. A question is a string, or a mapping {"question": ..., "context": ...}
whose context (private information only some roles show) fills a role's {context}.
"""
from __future__ import annotations

import time
from dataclasses import dataclass, replace

import torch

from latentray.channels.codecs import make_codec
from latentray.channels.codecs.apply import decode_message
from latentray.channels.codecs.base import Receiver
from latentray.channels.kinds import MEMORY, SOFT_TOKENS, TEXT, get_kind
from latentray.channels.message import LatentMessage

from .errors import ProblemInputError, StepTimeoutError
from .decoding import DecodeResult, SamplingConfig, first_stop, pick_tokens, row_generators, stop_ids
from .forward import check_tap, empty_cache, forward_slots, new_positions, next_positions
from .inbox import Inbox, merge_inbox
from .kv_join import join_kv
from .prompt import PromptLayout
from .realign import Realigner
from .slot_cache import SlotCache


def question_fields(question) -> tuple:
    """(question text, context) of a question given as a string or a mapping."""
    if isinstance(question, str):
        return question, ""
    return str(question["question"]), str(question.get("context") or "")


def _select_rows(state: "WorkingState", rows: list) -> "WorkingState":
    """The working state of a subset of its rows (the cache keeps only those rows)."""
    idx = torch.tensor(rows, dtype=torch.long, device=state.mask.device)
    state.cache.batch_select_indices(idx)
    tapped = None if state.last_tapped is None else state.last_tapped[idx]
    return replace(state, mask=state.mask[idx], positions=state.positions[idx], last_hidden=state.last_hidden[idx],
                   logits=state.logits[idx], questions=[state.questions[r] for r in rows], last_tapped=tapped)


@dataclass(frozen=True)
class StepLimits:
    """Bounds one step call runs under (the spec's limits section)."""
    deadline: float | None = None  # time.monotonic() after which the step stops
    timeout_s: float | None = None  # what the deadline came from, for the message
    max_prompt_tokens: int | None = None

    @classmethod
    def starting_now(cls, timeout_s=None, max_prompt_tokens=None) -> "StepLimits":
        return cls(time.monotonic() + timeout_s if timeout_s else None, timeout_s, max_prompt_tokens)


@dataclass(frozen=True)
class AgentConfig:
    name: str
    role: str  # template with {question} and/or {context}
    latent_steps: int = 0
    max_new_tokens: int = 64
    sampling: SamplingConfig = SamplingConfig()
    realign: bool = True
    ridge_lambda: float = 1e-5
    system_prompt: str | None = None  # None: the chat template's own default
    template_kwargs: tuple = ()  # (key, value) pairs passed to the chat template
    stop: tuple = ()  # strings that end a decoded answer where they first appear (not part of it)


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
    prompt_tokens: list = None  # per row, the prompt tokens this agent added (soft tokens not counted)
    thoughts: list = None  # [B, D] per latent step, the state a hidden message carries for it
    prompt_hidden: torch.Tensor = None  # [B, S, D] states of this agent's new prompt slots (as thoughts)
    prompt_mask: torch.Tensor = None  # [B, S] 1 at content slots (not pads, not special tokens)
    tap: int | None = None  # the decoder layer whose states thoughts and prompt_hidden hold (None: last, normed)
    last_tapped: torch.Tensor = None  # [B, D] layer `tap`'s state at the last slot
    sent_rows: str = "prompt"  # which slots prompt_mask marks: prompt (all content) or role (the turn's text)


class Agent:
    def __init__(self, config: AgentConfig, model, tokenizer, fingerprint: dict):
        self.config, self.model, self.tokenizer, self.fingerprint = config, model, tokenizer, fingerprint
        self.realigner = Realigner.for_model(model, realign=config.realign, ridge_lambda=config.ridge_lambda)
        self.layout = PromptLayout(tokenizer, config.system_prompt, dict(config.template_kwargs))
        self.stop_ids = stop_ids(model, tokenizer)
        self.limits = StepLimits()  # set per step by step()

    def _check_time(self) -> None:
        """Called between forward passes: a step past its deadline stops here."""
        if self.limits.deadline is not None and time.monotonic() > self.limits.deadline:
            raise StepTimeoutError(f"agent {self.config.name!r}: the step ran longer than "
                                   f"limits.step_timeout_s = {self.limits.timeout_s:g} s; raise it, or lower "
                                   "run.batch_size, latent_steps or max_new_tokens")

    def _check_prompt_lengths(self, rows: list) -> None:
        limit = self.limits.max_prompt_tokens
        if limit is None:
            return
        over = {b: len(a) + len(c) for b, (a, c) in enumerate(rows) if len(a) + len(c) > limit}
        if over:
            reasons = {b: f"its prompt at agent {self.config.name!r} has {n} tokens, more than "
                          f"limits.max_prompt_tokens = {limit}; shorten the question or raise the limit"
                       for b, n in over.items()}
            raise ProblemInputError(next(iter(reasons.values())), reasons)

    # ---- prompts -------------------------------------------------------------------
    def render(self, question, team_text: str | None = None, *, continuing: bool = False,
               soft_slot: bool = False) -> tuple:
        """(token ids before, after) the soft-token slot of this agent's prompt (see prompt.py)."""
        return self.layout.render(self._turn(question, team_text), continuing=continuing, soft_slot=soft_slot)

    def _turn(self, question, team_text: str | None) -> str:
        """The text of this agent's turn: its role filled in, after the team's messages."""
        text, context = question_fields(question)
        content = self.config.role.replace("{question}", text).replace("{context}", context)
        return f"Messages from the team:\n{team_text}\n\n{content}" if team_text else content

    def _render_turn(self, question, team_text: str | None = None, *, continuing: bool = False,
                     soft_slot: bool = False) -> tuple:
        """(render's (before, after), and each as flags: whether a token is the turn's own text)."""
        return self.layout.render_turn(self._turn(question, team_text), continuing=continuing, soft_slot=soft_slot)

    def _content_flags(self, tokens: list) -> list:
        """Per token, whether it is content: not a special token (BOS, turn markers)."""
        special = set(self.tokenizer.all_special_ids)
        return [t not in special for t in tokens]

    def content_ids(self, question, scope: str = "prompt") -> list:
        """The tokens of this agent's prompt for `question` (no inbox) whose states a hidden
        message with hidden_states `scope` (prompt or role) carries, in order."""
        (before, after), turn = self._render_turn(question) if scope == "role" else (self.render(question), None)
        return [t for t, keep in zip(before + after, self._sent_flags(before, after, 0, turn)) if keep]

    def _sent_flags(self, before: list, after: list, n_soft: int, turn: tuple | None) -> list:
        """Per slot of a prompt (its ids before and after n_soft soft tokens), whether a hidden
        message with prompt states carries it: a token other than special ones (BOS, turn
        markers) or a soft token received; with `turn` (render_turn's flags), only among the
        turn's own tokens."""
        flags = self._content_flags(before) + [True] * n_soft + self._content_flags(after)
        if turn is None:
            return flags
        own = turn[0] + [True] * n_soft + turn[1]
        return [a and c for a, c in zip(flags, own)]

    def _content_mask(self, rows: list, soft_mask=None, width: int = 0, turns: list | None = None) -> torch.Tensor:
        """[B, width] 1 at the slots of each left-padded row a hidden message with prompt
        states carries (_sent_flags; `turns`: each row's turn flags, or None)."""
        out = torch.zeros((len(rows), width), dtype=torch.long, device=self.model.device)
        for b, (before, after) in enumerate(rows):
            n_soft = int(soft_mask[b].sum()) if soft_mask is not None else 0
            flags = self._sent_flags(before, after, n_soft, None if turns is None else turns[b])
            out[b, width - len(flags):] = torch.tensor(flags, dtype=torch.long)
        return out

    def _embed_rows(self, rows: list, soft=None, soft_mask=None) -> tuple:
        """Left-padded input embeddings [B, S, D] and mask [B, S] of each row's prompt, its
        soft tokens (the real slots of soft[b]) placed between the two halves."""
        embed = self.model.get_input_embeddings()
        device = self.model.device
        pieces = []
        for b, (before, after) in enumerate(rows):
            ids = torch.tensor(before + after, dtype=torch.long, device=device)
            e = embed(ids[None])[0]
            if soft is not None:
                vecs = soft[b][soft_mask[b].bool()].to(device, e.dtype)
                e = torch.cat([e[:len(before)], vecs, e[len(before):]], dim=0)
            pieces.append(e)
        width = max(p.shape[0] for p in pieces)
        out = pieces[0].new_zeros((len(pieces), width, pieces[0].shape[1]))
        mask = torch.zeros((len(pieces), width), dtype=torch.long, device=device)
        for b, p in enumerate(pieces):
            out[b, width - p.shape[0]:] = p
            mask[b, width - p.shape[0]:] = 1
        return out, mask

    # ---- steps ---------------------------------------------------------------------
    def _as_received(self, messages: list) -> list:
        """A raw hidden message handed straight to the agent (no actor, so no edge codec)
        is read as the realign codec reads it: this model's states, realigned into its
        input space; another model's states are refused (they need a fitted codec)."""
        coded = [get_kind(m.kind).takes_codec for m in messages]
        if not any(coded):
            return messages
        decoder = make_codec("realign").decoder(None, Receiver(self.fingerprint, int(self.fingerprint["hidden_size"])))
        return [decode_message(m, decoder, self.realigner, receiver=self.config.name, out_dtype=self.model.dtype)
                if c else m for m, c in zip(messages, coded)]

    def prefill(self, questions: list, inbox=(), reserve: int = 0, kv_merge: str = "join",
                layout: str = "heads", tap: int | None = None, sent_rows: str = "prompt") -> WorkingState:
        """reserve: slots to keep room for after the prompt (latent steps, decoded tokens),
        so the working memory grows in place; layout: "slots" for a memory that will be sent
        on (a message is then a view of it), "heads" for one that decodes (slot_cache.py);
        kv_merge: how several kv messages combine (inbox.py); tap: the decoder layer whose
        states a hidden message will carry (None: the last layer's, after its final norm);
        sent_rows: which prompt slots such a message carries (prompt: every content token;
        role: the turn's own text only)."""
        check_tap(self.model, tap)
        name = self.config.name
        box = inbox if isinstance(inbox, Inbox) else merge_inbox(
            self._as_received(list(inbox)), receiver=name, rope_join=self._join, kv_merge=kv_merge)
        how = [dict(team_text=box.texts[b] if box.texts else None, continuing=box.kv is not None,
                    soft_slot=box.embeds is not None) for b in range(len(questions))]
        if sent_rows == "role":  # the ids and which of them are the turn's text, from one tokenization
            rows, turns = map(list, zip(*(self._render_turn(q, **h) for q, h in zip(questions, how))))
        else:
            rows, turns = [self.render(q, **h) for q, h in zip(questions, how)], None
        self._check_prompt_lengths(rows)
        embeds, new_mask = self._embed_rows(rows, box.embeds, box.embeds_mask)
        cache, past_mask, past_pos = self._memory(box, len(questions), embeds.shape[1] + reserve, layout)
        positions = new_positions(next_positions(past_mask, past_pos), new_mask)
        out = forward_slots(self.model, cache=cache, past_mask=past_mask, past_positions=past_pos,
                            inputs_embeds=embeds, new_mask=new_mask, positions=positions, tap=tap)
        sent = out.hidden if tap is None else out.tapped
        return WorkingState(list(questions), out.cache, torch.cat([past_mask, new_mask], 1),
                            torch.cat([past_pos, positions], 1), past_mask.shape[1],
                            out.last_hidden, out.logits, [], [len(a) + len(b) for a, b in rows],
                            [], sent, self._content_mask(rows, box.embeds_mask, new_mask.shape[1], turns),
                            tap, None if tap is None else sent[:, -1], sent_rows)

    def _join(self, messages: list) -> LatentMessage:
        """Several senders' kv side by side, with one conversation head between them."""
        return join_kv(messages, self.model, self.config.name, head_slots=len(self.layout.head()))

    def _memory(self, box: Inbox, rows: int, room: int, layout: str) -> tuple:
        """(cache, mask, positions) of the working memory the inbox's kv makes, with room for
        `room` more slots. A memory that does not start at the conversation's start (only
        the sender's own slots) gets the head written first: the first token is the model's
        attention sink, and a full-context run has it there."""
        device = self.model.device
        if box.kv is None:
            mask = torch.zeros((rows, 0), dtype=torch.long, device=device)
            return empty_cache(self.model, room, layout), mask, mask.clone()
        parts = box.kv_parts or [box.kv]
        tensors = [(m.tensors["keys"], m.tensors["values"]) for m in parts]
        mask = torch.cat([m.tensors["mask"] for m in parts], 1).to(device).long()
        positions = torch.cat([m.tensors["positions"] for m in parts], 1).to(device).long()
        headless = ~(mask.bool() & (positions == 0)).any(-1)  # rows with no slot at the conversation's start
        if not self.layout.head() or not bool(headless.any()):
            return SlotCache.from_parts(tensors, room, device, layout), mask, positions
        cache, head_mask, head_pos = self._write_head(headless, mask.shape[1] + room, layout)
        cache.append_parts(tensors)  # the memory's one copy, after the head
        return cache, torch.cat([head_mask, mask], 1), torch.cat([head_pos, positions], 1)

    def _write_head(self, rows: torch.Tensor, room: int, layout: str) -> tuple:
        """A cache holding the conversation's head at positions 0.. in the rows flagged in
        `rows` [B] (pads in the others), with room for `room` more slots; and its mask and
        positions. The head attends only to itself, so this is what the first agent wrote."""
        ids = torch.tensor(self.layout.head(), dtype=torch.long, device=self.model.device)
        n = ids.shape[0]
        embeds = self.model.get_input_embeddings()(ids)[None].repeat(rows.shape[0], 1, 1)
        mask = rows.long()[:, None].repeat(1, n)
        positions = torch.arange(n, device=ids.device)[None].repeat(rows.shape[0], 1)
        out = forward_slots(self.model, cache=empty_cache(self.model, n + room, layout), past_mask=mask[:, :0],
                            past_positions=positions[:, :0], inputs_embeds=embeds, new_mask=mask, positions=positions)
        return out.cache, mask, positions

    def think(self, state: WorkingState, steps: int | None = None) -> WorkingState:
        steps = self.config.latent_steps if steps is None else steps
        for _ in range(steps):
            self._check_time()
            thought = state.last_hidden
            latent = self.realigner(thought)  # [B, D]
            sent = thought if state.tap is None else state.last_tapped  # the same slot's state at layer `tap`
            state = self._append_slot(state, latent)
            state.thoughts = (state.thoughts or []) + [sent]
            state.latents = state.latents + [latent]
        return state

    def _append_slot(self, state: WorkingState, embeds: torch.Tensor) -> WorkingState:
        """Feed one real slot per row (embeds [B, D]) after the working memory."""
        one = torch.ones((embeds.shape[0], 1), dtype=torch.long, device=embeds.device)
        pos = next_positions(state.mask, state.positions)[:, None]
        out = forward_slots(self.model, cache=state.cache, past_mask=state.mask, past_positions=state.positions,
                            inputs_embeds=embeds[:, None, :], new_mask=one, positions=pos, tap=state.tap)
        return replace(state, cache=out.cache, mask=torch.cat([state.mask, one], 1),
                       positions=torch.cat([state.positions, pos], 1), last_hidden=out.last_hidden,
                       logits=out.logits, last_tapped=None if out.tapped is None else out.tapped[:, -1])

    def emit(self, state: WorkingState, kind: str = "kv", scope: str = "all") -> LatentMessage:
        """A message of `kind` from the working state; what it holds follows the kind's role:
        the memory (kv), soft-token vectors (hidden, embeds) or decoded text."""
        spec = get_kind(kind)  # UnknownKindError naming the known kinds
        start = state.own_start if scope == "own" else 0
        latent = len(state.latents)
        common = dict(sender=self.config.name, fingerprint=self.fingerprint, latent_steps=latent,
                      latent_slots=latent, seq_lens=tuple(int(n) for n in state.mask[:, start:].sum(-1)),
                      extra={"prompt_tokens": list(state.prompt_tokens or [])})
        if spec.role == MEMORY:
            mask = state.mask[:, start:]
            state.cache.zero_pads(start, mask)  # so a message depends only on its real content
            # Views of the cache: no copy here. In the slots layout they are blocks of memory
            # the object store takes as they are; in the heads layout the store gathers them.
            keys, values = state.cache.memory(start)
            tensors = {"keys": keys, "values": values, "mask": mask.clone(),
                       "positions": state.positions[:, start:].clone()}
            return LatentMessage.build(kind, tensors=tensors, layers=tuple(range(keys.shape[0])), **common)
        if spec.role == SOFT_TOKENS:
            vecs, mask = self._soft_vectors(state, spec, scope)
            if spec.takes_codec and state.tap is not None:
                common["extra"]["hidden_layer"] = state.tap  # what the encoding codec part must have been trained on
            return LatentMessage.build(kind, tensors={spec.vectors: vecs, "mask": mask},
                                       **{**common, "seq_lens": tuple(int(n) for n in mask.sum(-1))})
        if spec.role == TEXT:
            result = self.decode(state)
            common["extra"]["tokens"] = result.tokens
            return LatentMessage.build(kind, tensors={}, texts=tuple(result.texts), **common)
        raise ValueError(f"an agent cannot emit {kind} messages: the kind has no role an agent makes "
                         "(memory, soft tokens or text)")

    def _soft_vectors(self, state: WorkingState, kind, scope: str) -> tuple:
        """([B, S, D] vectors, [B, S] mask) of a soft-token message (`kind`, a SoftTokenKind):
        last-layer states for a kind a codec maps (hidden), the fed-back input-space
        latents otherwise (embeds); scope "prompt" (or "role": its slots prefill chose) puts
        the prompt's states first."""
        last_layer = kind.takes_codec
        with_prompt = last_layer and scope in ("prompt", "role")
        if not state.latents and not with_prompt:
            raise ValueError(f"agent {self.config.name!r} has latent_steps 0 and cannot emit {kind.name}; "
                             "set latent_steps > 0, send the prompt's states (hidden_states: prompt) or use kind kv")
        rows = state.last_hidden.shape[0]
        steps = state.thoughts if last_layer else state.latents
        vecs = torch.stack(steps, dim=1) if steps else state.last_hidden.new_zeros((rows, 0, state.last_hidden.shape[-1]))
        mask = torch.ones(vecs.shape[:2], dtype=torch.long, device=vecs.device)
        if with_prompt and scope != state.sent_rows:
            raise ValueError(f"the working state marks its {state.sent_rows} rows, not {scope}; prefill with "
                             f"sent_rows={scope!r}")
        if with_prompt:
            vecs = torch.cat([state.prompt_hidden.to(vecs.dtype), vecs], dim=1)
            mask = torch.cat([state.prompt_mask.long(), mask], dim=1)
            vecs, mask = _packed(vecs, mask)
        return vecs, mask

    @torch.inference_mode()
    def decode(self, state: WorkingState, max_new_tokens: int | None = None,
               sampling: SamplingConfig | None = None) -> DecodeResult:
        """Text per row until a stop id, a stop string or max_new_tokens. Rows that stopped
        leave the batch (their cache rows are dropped), so a long answer does not keep short
        ones running; picked tokens reach the host once per step for the whole batch."""
        max_new = max_new_tokens or self.config.max_new_tokens
        cfg = sampling or self.config.sampling
        gens = row_generators([question_fields(q)[0] for q in state.questions], cfg.seed, state.logits.device)
        generated = [[] for _ in range(state.logits.shape[0])]
        cut = {}  # row -> where a stop string cut its text
        first_logits, prompt_tokens, embed = state.logits, state.prompt_tokens, self.model.get_input_embeddings()
        active = list(range(len(generated)))  # original row of each row still decoding
        for i in range(max_new):
            self._check_time()
            tokens = pick_tokens(state.logits, cfg, [gens[b] for b in active])
            keep = []
            for j, (b, t) in enumerate(zip(active, tokens.tolist())):
                if t not in self.stop_ids:
                    generated[b].append(t)
                    if not self._stopped_by_string(b, generated[b], cut):
                        keep.append(j)
            if not keep or i == max_new - 1:
                break
            if len(keep) < len(active):
                state = _select_rows(state, keep)
                active, tokens = [active[j] for j in keep], tokens[keep]
            state = self._append_slot(state, embed(tokens))
        texts = [self.tokenizer.decode(g, skip_special_tokens=True) for g in generated]
        for b, at in cut.items():
            texts[b] = at
        return DecodeResult(texts, generated, first_logits, prompt_tokens)

    def _stopped_by_string(self, row: int, ids: list, cut: dict) -> bool:
        """Whether the token just appended to `ids` completes one of the stop strings: then
        the row's text is cut where that string begins (into `cut`) and the token is dropped
        from `ids`, as a stop id would be."""
        if not self.config.stop:
            return False
        text = self.tokenizer.decode(ids, skip_special_tokens=True)
        at = first_stop(text, self.config.stop)
        if at is None:
            return False
        cut[row] = text[:at]
        ids.pop()
        return True

    def step(self, questions: list, inbox=(), *, action: str = "latent", emit: str = "kv",
             scope: str = "all", kv_merge: str = "join", limits: StepLimits | None = None,
             layer: int | None = None):
        """prefill + think, then emit a message (action "latent") or decode (action "text"),
        within `limits` (none by default); a hidden message carries decoder layer `layer`'s
        states (None: the last layer's)."""
        self.limits = limits or StepLimits()
        kind = get_kind(emit)
        role = kind.role
        reserve = self.config.latent_steps + (self.config.max_new_tokens if action == "text" or role == TEXT else 0)
        layout = "slots" if action == "latent" and role == MEMORY else "heads"  # a sent memory is a view
        tap = layer if action == "latent" and kind.takes_codec else None
        sent_rows = "role" if action == "latent" and kind.takes_codec and scope == "role" else "prompt"
        state = self.think(self.prefill(questions, inbox, reserve=reserve, kv_merge=kv_merge, layout=layout,
                                        tap=tap, sent_rows=sent_rows))
        if action == "text":
            return self.decode(state)
        return self.emit(state, emit, scope)


def _packed(vecs: torch.Tensor, mask: torch.Tensor) -> tuple:
    """(vecs, mask) with each problem's real rows, in order, left-padded to the most any
    problem has: the rows a message leaves out (pads, special tokens, with role the chat
    template's words) do not travel."""
    counts = mask.sum(-1)
    width = int(counts.max()) if counts.numel() else 0
    if width == mask.shape[1]:
        return vecs, mask
    out = vecs.new_zeros((vecs.shape[0], width, vecs.shape[2]))
    kept = mask.new_zeros((mask.shape[0], width))
    for b in range(vecs.shape[0]):
        n = int(counts[b])
        out[b, width - n:] = vecs[b][mask[b].bool()]
        kept[b, width - n:] = 1
    return out, kept
