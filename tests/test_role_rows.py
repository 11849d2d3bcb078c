"""channels.hidden_states: role: a hidden message carries the states of the turn's own text
only, not the chat template's words around it (system prompt, role names, generation
prompt). Checked against the prompt message (itself checked against the model's own
forward in test_hidden_layer.py) at the rows where the turn's text, tokenized alone, sits;
on SmolLM2's real chat template, a padded batch, the soft-slot and continuing layouts,
a template that trims; and the refusals."""
from __future__ import annotations

import copy

import pytest
import torch

from latentray.agents.agent import Agent, AgentConfig
from latentray.agents.errors import ModelRefError
from latentray.agents.fingerprint import model_fingerprint
from latentray.agents.models import load_model
from latentray.agents.prompt import PromptLayout
from test_replicas import load_spec_text

ROLE = "Here is a note: {context}\nRepeat the note in one short sentence."
PROBLEMS = [{"question": "Who?", "context": "The new coach is called Tomas."},
            {"question": "What is the code?", "context": "The code is 4812. Pens: 17, pencils: 9, erasers: 3."}]


def _agent(model, tokenizer, latent_steps: int = 1) -> Agent:
    return Agent(AgentConfig(name="reader", role=ROLE, latent_steps=latent_steps), model, tokenizer,
                 model_fingerprint(model, tokenizer))


def _turn(problem: dict) -> str:
    return ROLE.replace("{context}", problem["context"])


def _find(run: list, ids: list) -> int:
    """Where `run` first appears in `ids` as a contiguous piece."""
    return next(i for i in range(len(ids) - len(run) + 1) if ids[i:i + len(run)] == run)


def test_a_role_message_is_the_prompt_message_at_the_rows_of_the_turns_text(smollm2):
    model, tokenizer = smollm2
    agent = _agent(model, tokenizer)
    prompt = agent.step(PROBLEMS, action="latent", emit="hidden", scope="prompt", layer=2)
    role = agent.step(PROBLEMS, action="latent", emit="hidden", scope="role", layer=2)
    assert role.header.extra["hidden_layer"] == 2
    for b, problem in enumerate(PROBLEMS):
        full = agent.content_ids(problem, "prompt")
        assert "assistant" in tokenizer.decode(full) and "system" in tokenizer.decode(full)
        alone = tokenizer(_turn(problem), add_special_tokens=False)["input_ids"]
        at = _find(alone, full)
        assert agent.content_ids(problem, "role") == alone
        got = role.tensors["hidden"][b][role.tensors["mask"][b].bool()]
        sent = prompt.tensors["hidden"][b][prompt.tensors["mask"][b].bool()]
        assert got.shape[0] == len(alone) + 1  # the turn's rows, then the one thought
        torch.testing.assert_close(got[:-1], sent[at:at + len(alone)], rtol=1e-4, atol=1e-5)
        torch.testing.assert_close(got[-1], sent[-1], rtol=1e-4, atol=1e-5)
    assert int(role.tensors["mask"][0].sum()) < int(role.tensors["mask"][1].sum())  # a padded batch
    for msg in (prompt, role):  # only real rows travel: the longest problem's are all real
        assert bool(msg.tensors["mask"][1].all()) and msg.tensors["hidden"].shape[1] == msg.tensors["mask"].shape[1]
    assert role.tensors["hidden"].shape[1] < prompt.tensors["hidden"].shape[1] - 10  # the template's rows stay home


@pytest.mark.parametrize("layout", [{}, {"soft_slot": True}, {"continuing": True},
                                    {"continuing": True, "soft_slot": True}])
def test_render_turn_marks_exactly_the_turns_text_in_every_layout(smollm2, layout):
    model, tokenizer = smollm2
    agent = _agent(model, tokenizer)
    before, after = agent.render(PROBLEMS[1], **layout)
    rendered, flags = PromptLayout(tokenizer).render_turn(_turn(PROBLEMS[1]), **{"continuing": False, **layout})
    assert rendered == (before, after) and [len(f) for f in flags] == [len(before), len(after)]
    ids, marked = before + after, flags[0] + flags[1]
    kept = [t for t, f in zip(ids, marked) if f]
    assert tokenizer.decode(kept) == _turn(PROBLEMS[1])
    first, last = marked.index(True), len(marked) - marked[::-1].index(True)
    assert all(marked[first:last])  # one run
    assert "<|im_start|>" in tokenizer.decode(ids[:first]) and "<|im_end|>" in tokenizer.decode(ids[last:])


def test_a_turn_whose_text_the_template_also_holds_is_found_where_the_turn_is(smollm2):
    """'assistant' is also the generation prompt's role name, after the turn: the turn's
    own token is marked, not the template's."""
    _, tokenizer = smollm2
    (before, _), (flags, _) = PromptLayout(tokenizer).render_turn("assistant", continuing=False)
    assert before == PromptLayout(tokenizer).render("assistant", continuing=False)[0]
    marked = [i for i, f in enumerate(flags) if f]
    assert tokenizer.decode([before[i] for i in marked]) == "assistant"
    assert tokenizer.decode(before[marked[-1] + 1:]) == "<|im_end|>\n<|im_start|>assistant\n"


def test_a_template_that_trims_the_turn_is_followed_and_one_that_rewrites_it_is_refused():
    _, tokenizer, _ = load_model("tiny:llama-128")
    trims = copy.deepcopy(tokenizer)
    trims.chat_template = ("{% for m in messages %}<|im_start|>{{ m['role'] }}\n{{ m['content'] | trim }}<|im_end|>\n"
                           "{% endfor %}<|im_start|>assistant\n")
    (ids, _), (flags, _) = PromptLayout(trims).render_turn("  Note: 42.  ", continuing=False)
    assert ids == PromptLayout(trims).render("  Note: 42.  ", continuing=False)[0]
    assert trims.decode([t for t, f in zip(ids, flags) if f]) == "Note: 42."
    upper = copy.deepcopy(tokenizer)
    upper.chat_template = "{% for m in messages %}{{ m['content'] | upper }}\n{% endfor %}"
    with pytest.raises(ModelRefError, match="rewrites the turn.s text, so its rows .*channels.hidden_states: prompt"):
        PromptLayout(upper).render_turn("Note: 42.", continuing=False)


def test_a_state_prefilled_for_prompt_rows_refuses_to_send_role_rows():
    model, tokenizer, _ = load_model("tiny:llama-128")
    agent = _agent(model, tokenizer)
    state = agent.think(agent.prefill(PROBLEMS))
    with pytest.raises(ValueError, match="marks its prompt rows, not role; prefill with sent_rows='role'"):
        agent.emit(state, "hidden", "role")
    sent = agent.emit(agent.think(agent.prefill(PROBLEMS, sent_rows="role")), "hidden", "role")
    assert int(sent.tensors["mask"][1].sum()) == len(agent.content_ids(PROBLEMS[1], "role")) + 1


ROLE_SPEC = """\
version: 1
name: role_rows
models:
  base: {ref: "tiny:qwen3-64"}
agents:
  reader: {model: base, role: "Note: {context}\\nRepeat it.", latent_steps: 2}
  answerer: {model: base, role: "{question}", output: text, max_new_tokens: 4}
topology: {type: chain, order: [reader, answerer]}
channels: {kind: hidden, hidden_states: role, codec: resampler}
"""


def test_row_targets_of_role_rows_are_the_turns_tokens_then_the_thoughts():
    from latentray.runtime.codecs.row_targets import row_targets
    from latentray.runtime.codecs.train import Edge, _Model
    from latentray.runtime.codecs.train_data import Example

    spec = load_spec_text(ROLE_SPEC)
    assert spec.channels.hidden_states == "role"
    ref = "tiny:qwen3-64"
    models = {ref: _Model(spec, ref, ["reader", "answerer"])}
    example = Example(context="The new coach is called Tomas.", question="Who?", answer="Tomas", source="test")
    targets = row_targets(models, Edge("reader", "answerer", ref, ref), example, "role")
    turn = models[ref].tokenizer("Note: The new coach is called Tomas.\nRepeat it.", add_special_tokens=False)
    assert targets == [[i] for i in turn["input_ids"]] + [None, None]


def test_training_on_role_rows_lowers_the_held_out_loss_and_records_the_rows(tmp_path):
    from codec_hand import CHAIN, OPTIONS, facts
    from latentray.channels.codecs.storage import load_part
    from latentray.runtime.codecs.train import train_codec
    from latentray.topologies import build_plan

    spec = load_spec_text(CHAIN, channels={"kind": "hidden", "hidden_states": "role", "codec": "resampler"})
    out = tmp_path / "parts"
    figures = train_codec(spec, build_plan(spec), str(out), steps=12, data=[str(facts(tmp_path / "f.jsonl"))],
                          seed=3, batch=2, lr=3e-3, options={**OPTIONS, "tokens": "rows"}, quiet=True,
                          log=lambda _text: None)
    assert figures["held_out_after"] < figures["held_out_before"]
    assert figures["hidden_states"] == "role"
    assert load_part(out, next(p.stem for p in out.glob("resampler-dec*.json"))).meta["fit"]["hidden_states"] == "role"
