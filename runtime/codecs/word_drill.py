"""Word drill for train-codec's token loss: lists of proper nouns the models' tokenizers
hold, read by the sender like any note.

Passages teach the codec the spelling of the words they hold, and a rare name in them is
seen once or never: across tokenizers the codec then spells names it has not met from the
pieces of names it has (Gemma 3's ' Tomas' arrived in SmolLM2 as ' Alan' + 'om', ' Seoul',
a whole token in both, as ' Denver' + 'ern'). A drill list is made of capitalised words
that are one whole token in the sender's or the receiver's vocabulary (3 letters or more,
ASCII), so it reaches every name a tokenizer learnt, not those of any data set: the
held-out tasks stay unseen. A drill example has no question and no answer: it only ever
trains the token loss (train-codec's --token-steps).
"""
from __future__ import annotations

import random
import re

from latentray.runtime.codecs.train_data import Example

DRILL_WORDS = 32  # words in one drill list
_WORD = re.compile(r" [A-Z][a-z]{2,}")  # a capitalised word with its leading space, as a whole token decodes


def drill_words(tokenizers: list) -> list:
    """The sorted capitalised words each of which is a single token of one of `tokenizers`
    (decoded in context, after another token, so that a SentencePiece word keeps its space)."""
    words = set()
    for tok in tokenizers:
        probe = tok("a", add_special_tokens=False)["input_ids"]  # decodes a token after a word: spaces kept
        lead = len(tok.decode(probe))
        for i in range(len(tok)):
            text = tok.decode(probe + [i])[lead:]
            if _WORD.fullmatch(text):
                words.add(text[1:])
    return sorted(words)


def drill_example(words: list, rng: random.Random, count: int = DRILL_WORDS) -> Example:
    """A note of `count` distinct words drawn by `rng`, separated by spaces."""
    return Example(" ".join(rng.sample(words, min(count, len(words)))) + ".", "", "", "drill")
