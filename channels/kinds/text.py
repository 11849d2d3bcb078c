"""text: no tensors; header.texts holds one string per row, joined into the reader's prompt."""
from __future__ import annotations

from .base import TEXT, Arrival, MessageKind


class TextKind(MessageKind):
    name = "text"
    role = TEXT

    def validate(self, msg, arrival: Arrival) -> None:
        texts, seq_lens = msg.header.texts, msg.header.seq_lens
        if not texts or not all(isinstance(s, str) for s in texts):
            arrival.fail("texts", "a text message needs one string per row")
        if seq_lens and len(seq_lens) != len(texts):
            arrival.fail("seq_lens", f"{len(seq_lens)} entries for {len(texts)} rows of text")

    def nbytes(self, msg) -> int:
        """The UTF-8 bytes of its texts (and of any tensors, which a text message lacks)."""
        return super().nbytes(msg) + sum(len(t.encode()) for t in (msg.header.texts or ()))

    def texts(self, msg) -> list:
        """One string per row."""
        return list(msg.header.texts)
