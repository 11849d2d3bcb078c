"""How an agent's prompt is laid out in a shared working memory.

The first agent of a memory gets the model's full chat template: BOS, the system header
(the template's default, or the spec's system prompt), its user turn, the assistant
generation prompt. Its latent steps then fill that assistant turn. A later agent reading
the memory continues the same conversation: the assistant turn is closed and its own
user turn and generation prompt follow, with no second BOS or system header. Both come
from the template itself: the continuation is what the template renders after an
assistant turn, cut out of a rendering of [user, assistant, user].

Soft tokens (hidden / embeds messages) go at the start of the user turn, before the role
text. Models without a chat template (base models) get a plain layout: BOS, the system
prompt and a blank line if one is set, then the role text; a later agent adds a blank
line and its role text.

A memory may reach a later agent without its start (memory "previous", a mesh's later
rounds: only the slots the sender added). Real models use the sequence's first token as
an attention sink, so the receiver then writes the head itself (`head()`: BOS and the
system header up to where the first turn's content starts) at positions 0.., before the
memory; a memory has one head, whatever its parts.
"""
from __future__ import annotations

from .errors import ModelRefError

SLOT = "\u2063LATENTRAY_SOFT_SLOT\u2063"  # where soft tokens go (an invisible-separated marker)
TURN = "\u2063LATENTRAY_ASSISTANT_TURN\u2063"  # stands for the memory's earlier assistant turn
TEXT_MARK = "\u2063LATENTRAY_TURN_TEXT\u2063"  # stands for a turn's text, to find where it goes


class PromptLayout:
    def __init__(self, tokenizer, system_prompt: str | None = None, template_kwargs: dict | None = None):
        self.tokenizer = tokenizer
        self.system_prompt = system_prompt
        self.template_kwargs = dict(template_kwargs or {})
        self.chat = bool(getattr(tokenizer, "chat_template", None))
        self._head = None

    def render(self, content: str, *, continuing: bool, soft_slot: bool = False) -> tuple:
        """(ids before the soft tokens, ids after them); all ids are in `before` when
        there is no soft slot."""
        pieces = self._pieces(content, continuing, soft_slot)
        return tuple(self._ids(text, special) for text, special in zip(pieces, self._specials(continuing)))

    def render_turn(self, content: str, *, continuing: bool, soft_slot: bool = False) -> tuple:
        """(render's (before, after), and per id of each whether the token holds a character
        of `content` itself, the turn's text, rather than the template around it: BOS, the
        system header, turn markers and role names, the generation prompt). One tokenization
        with the tokenizer's character offsets gives both."""
        if not getattr(self.tokenizer, "is_fast", False):
            raise ModelRefError("channels.hidden_states: role needs a fast tokenizer (one that reports character "
                                "offsets); use channels.hidden_states: prompt with this model")
        pieces = self._pieces(content, continuing, soft_slot)
        where, start, end = self._turn_span(content, pieces, continuing, soft_slot)
        ids, flags = [], []
        for i, (text, special) in enumerate(zip(pieces, self._specials(continuing))):
            enc = self.tokenizer(text, add_special_tokens=special, return_offsets_mapping=True) \
                if text or special else {"input_ids": [], "offset_mapping": []}
            ids.append(list(enc["input_ids"]))
            flags.append([i == where and b > a and a < end and b > start for a, b in enc["offset_mapping"]])
        return tuple(ids), tuple(flags)

    def _specials(self, continuing: bool) -> tuple:
        """Whether the tokenizer adds its special tokens (BOS) to each piece: only to a first
        render's first piece, and only without a chat template (a template writes its own)."""
        return not continuing and not self.chat, False

    def _turn_span(self, content: str, pieces: tuple, continuing: bool, soft_slot: bool) -> tuple:
        """(piece, start, end): where the turn's text lies in the rendered pieces. Found where
        a render of a marker in its place puts the marker, with the same text before it (a
        template may trim the turn: then its trimmed form)."""
        marked = self._pieces(TEXT_MARK, continuing, soft_slot)
        for i, (m, text) in enumerate(zip(marked, pieces)):
            at = m.find(TEXT_MARK)
            if at < 0:
                continue
            for needle in (content, content.strip()):
                if text[:at] == m[:at] and text.startswith(needle, at):
                    return i, at, at + len(needle)
        raise ModelRefError("the chat template rewrites the turn's text, so its rows cannot be told from the "
                            "template's; use channels.hidden_states: prompt")

    def _pieces(self, content: str, continuing: bool, soft_slot: bool) -> tuple:
        """The rendered prompt's text before and after the soft-token slot."""
        text = self._chat_text(content, continuing, soft_slot) if self.chat else \
            self._plain_text(content, continuing, soft_slot)
        before, _, after = text.partition(SLOT) if soft_slot else (text, "", "")
        return before, after

    def head(self) -> list:
        """Token ids of the conversation's head: what every first render holds before its
        turn's content (BOS, the system header, the first turn's opening). Cut from two
        renders as their common start, so the ids are the ones a full render tokenizes."""
        if self._head is None:
            a, b = (self.render(probe, continuing=False)[0] for probe in ("A", "B"))
            same = next((i for i, (x, y) in enumerate(zip(a, b)) if x != y), min(len(a), len(b)))
            self._head = a[:same]
        return list(self._head)

    def _ids(self, text: str, special: bool) -> list:
        # An empty first piece still gets its BOS: a base model's soft tokens open the prompt,
        # so all of its text is after them, and the BOS must stay before them (render_turn alike).
        return list(self.tokenizer(text, add_special_tokens=special)["input_ids"]) if text or special else []

    def _system(self) -> list:
        return [] if self.system_prompt is None else [{"role": "system", "content": self.system_prompt}]

    def _chat_text(self, content: str, continuing: bool, soft_slot: bool) -> str:
        user = f"{SLOT}\n{content}" if soft_slot else content
        if not continuing:
            return self._apply(self._system() + [{"role": "user", "content": user}])
        turns = self._system() + [{"role": "user", "content": "-"}, {"role": "assistant", "content": TURN},
                                  {"role": "user", "content": user}]
        text = self._apply(turns)
        if TURN not in text:
            raise ModelRefError("the model's chat template does not render an earlier assistant turn, so a "
                                "later agent cannot continue the shared conversation; use a template that "
                                "does, or send text messages")
        return text.split(TURN, 1)[1]

    def _apply(self, messages: list) -> str:
        try:
            return self.tokenizer.apply_chat_template(messages, add_generation_prompt=True, tokenize=False,
                                                      **self.template_kwargs)
        except Exception as exc:  # a template's own error (raise_exception, bad kwargs)
            raise ModelRefError(f"the chat template failed to render ({exc}); check "
                                "models.*.chat_template_kwargs and system_prompt") from None

    def _plain_text(self, content: str, continuing: bool, soft_slot: bool) -> str:
        body = f"{SLOT}\n{content}" if soft_slot else content
        if continuing:
            return f"\n\n{body}"
        return f"{self.system_prompt}\n\n{body}" if self.system_prompt else body
