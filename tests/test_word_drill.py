"""train-codec's word drill (runtime/codecs/word_drill.py): the drill words are exactly a
real tokenizer's capitalised whole-word tokens, a drill list is a function of its random
generator, and a training with drill lists lowers the token loss on held-out lists."""
from __future__ import annotations

import random
import re

import pytest

from codec_hand import CHAIN, OPTIONS, facts
from latentray.channels.errors import CodecError
from latentray.topologies import build_plan
from test_replicas import load_spec_text

SMOLLM2 = "builtin:smollm2-135m"


def test_drill_words_are_the_capitalised_whole_word_tokens_of_smollm2():
    """Against the tokenizer's own token strings (byte-level BPE marks a leading space 'Ġ'):
    every drill word is one token after a space, and every such token is a drill word."""
    from latentray.agents.models import load_model
    from latentray.runtime.codecs.word_drill import drill_words

    _, tok, _ = load_model(SMOLLM2)
    words = drill_words([tok])
    assert words == sorted(words) and len(words) > 8000
    by_strings = {t[1:] for t in tok.convert_ids_to_tokens(list(range(len(tok))))
                  if re.fullmatch(r"Ġ[A-Z][a-z]{2,}", t)}
    assert set(words) == by_strings
    assert all(len(tok(" " + w, add_special_tokens=False)["input_ids"]) == 1 for w in words[::97])
    assert {"Denver", "Seoul", "Mei"} <= set(words) and "Tomas" not in words  # ' T' + 'omas' in SmolLM2


def test_a_drill_list_is_distinct_words_drawn_by_its_generator():
    from latentray.runtime.codecs.word_drill import DRILL_WORDS, drill_example

    words = [f"Word{chr(97 + i)}{chr(97 + j)}" for i in range(26) for j in range(26)]
    one, again = drill_example(words, random.Random("s:1")), drill_example(words, random.Random("s:1"))
    other = drill_example(words, random.Random("s:2"))
    assert one == again and one.context != other.context
    drawn = one.context.rstrip(".").split(" ")
    assert len(drawn) == len(set(drawn)) == DRILL_WORDS and set(drawn) <= set(words)
    assert one.question == one.answer == "" and one.source == "drill"
    assert drill_example(words[:3], random.Random(0)).context.count(" ") == 2  # a short vocabulary: all of it


def test_training_with_drill_lists_lowers_their_held_out_token_loss(tmp_path):
    """SmolLM2 reading, a byte-level answerer: the drill words are SmolLM2's; the token loss
    on held-out drill lists falls; the figures record the drill. Refused: a drill outside
    the token steps, on a message without the rows a sender read, and where the tokenizers
    hold no whole word to drill."""
    from latentray.agents.models import load_model
    from latentray.runtime.codecs.train import train_codec
    from latentray.runtime.codecs.word_drill import drill_words

    spec = load_spec_text(CHAIN.replace("tiny:qwen3-64", SMOLLM2),
                          channels={"kind": "hidden", "hidden_states": "prompt", "codec": "resampler",
                                    "hidden_layer": 1})
    options = {**OPTIONS, "tokens": "rows", "output": "vocabulary", "top_k": 32}
    data = [str(facts(tmp_path / "f.jsonl"))]
    figures = train_codec(spec, build_plan(spec), str(tmp_path / "parts"), steps=10, token_steps=10, word_drill=2,
                          data=data, seed=3, batch=2, lr=3e-3, options=options, quiet=True, log=lambda _text: None)
    assert figures["word_drill"] == 2 and figures["drill_words"] == len(drill_words([load_model(SMOLLM2)[1]]))
    assert figures["held_out_drill_after"] < figures["held_out_drill_before"]
    assert figures["held_out_token_after"] < figures["held_out_token_before"]

    with pytest.raises(CodecError, match="--word-drill 2: the drill lists train the token loss alone"):
        train_codec(spec, build_plan(spec), str(tmp_path / "o"), steps=4, word_drill=2, data=data, options=options,
                    quiet=True, log=lambda _text: None)
    latent = load_spec_text(CHAIN, channels={"kind": "hidden", "codec": "resampler"})
    with pytest.raises(CodecError, match="hidden_states: latent sends none; set hidden_states: prompt or role"):
        train_codec(latent, build_plan(latent), str(tmp_path / "o"), steps=4, token_steps=4, word_drill=2, data=data,
                    options=options, quiet=True, log=lambda _text: None)
    tiny = load_spec_text(CHAIN, channels={"kind": "hidden", "hidden_states": "prompt", "codec": "resampler"})
    with pytest.raises(CodecError, match="hold no capitalised word as one token .*leave out --word-drill"):
        train_codec(tiny, build_plan(tiny), str(tmp_path / "o"), steps=4, token_steps=4, word_drill=2, data=data,
                    options={**OPTIONS, "tokens": "rows"}, quiet=True, log=lambda _text: None)
