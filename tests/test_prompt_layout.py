"""The prompt layout of a shared working memory: one chat, one BOS and one system header,
later agents continuing the conversation. Checked on SmolLM2's real ChatML template."""
from __future__ import annotations

import pytest
import torch

from latentray.agents.agent import Agent, AgentConfig
from latentray.agents.fingerprint import model_fingerprint
from latentray.agents.models import build_tiny
from latentray.agents.prompt import PromptLayout

from helpers import conversation_pieces, run_chain

CONTENTS = ["Plan: what is 2 + 2?", "Critique the plan.", "Answer the question."]


def chained_ids(layout: PromptLayout, contents=CONTENTS) -> list:
    ids = []
    for i, c in enumerate(contents):
        before, after = layout.render(c, continuing=i > 0)
        assert after == []
        ids.append(before)
    return ids


def test_real_template_chain_is_one_conversation(smollm2):
    _, tok = smollm2
    pieces = chained_ids(PromptLayout(tok))
    assert pieces == conversation_pieces(tok, CONTENTS)
    text = tok.decode([t for p in pieces for t in p])
    assert text.count("<|im_start|>system") == 1
    assert text.count("You are a helpful AI assistant named SmolLM") == 1
    assert text.startswith("<|im_start|>system\n")
    # each later agent closes the assistant turn the memory's latent slots filled, then asks
    follow = tok.decode(pieces[1])
    assert follow == "<|im_end|>\n<|im_start|>user\nCritique the plan.<|im_end|>\n<|im_start|>assistant\n"


def test_a_fresh_render_per_agent_would_repeat_the_header(smollm2):
    """What the layout prevents: every agent rendering its own chat."""
    _, tok = smollm2
    layout = PromptLayout(tok)
    fresh = [layout.render(c, continuing=False)[0] for c in CONTENTS]
    assert tok.decode([t for p in fresh for t in p]).count("<|im_start|>system") == 3


def test_system_prompt_replaces_the_default_once(smollm2):
    _, tok = smollm2
    text = tok.decode([t for p in chained_ids(PromptLayout(tok, system_prompt="Be terse.")) for t in p])
    assert text.count("<|im_start|>system\nBe terse.<|im_end|>") == 1
    assert "SmolLM" not in text


def test_soft_tokens_open_the_user_turn(smollm2):
    _, tok = smollm2
    before, after = PromptLayout(tok).render("Solve it.", continuing=True, soft_slot=True)
    assert tok.decode(before) == "<|im_end|>\n<|im_start|>user\n"
    assert tok.decode(after) == "\nSolve it.<|im_end|>\n<|im_start|>assistant\n"


def test_chat_template_kwargs_reach_the_template():
    _, tok = build_tiny("qwen3-64")
    tok.chat_template = (
        "{% for m in messages %}<|im_start|>{{ m['role'] }}\n{{ m['content'] }}<|im_end|>\n{% endfor %}"
        "{% if add_generation_prompt %}<|im_start|>assistant\n"
        "{% if enable_thinking is defined and enable_thinking is false %}<think>\n\n</think>\n\n{% endif %}"
        "{% endif %}")
    plain = tok.decode(PromptLayout(tok).render("hi", continuing=False)[0])
    off = tok.decode(PromptLayout(tok, template_kwargs={"enable_thinking": False}).render("hi", continuing=False)[0])
    assert plain.endswith("<|im_start|>assistant\n") and off.endswith("<think>\n\n</think>\n\n")


def test_base_model_layout_has_one_bos():
    """No chat template: BOS once, blank lines between the agents' texts."""
    _, tok = build_tiny("llama-64")
    tok.chat_template = None
    tok.add_special_tokens({"bos_token": "<|im_start|>"})
    bos = tok.bos_token_id
    from tokenizers.processors import TemplateProcessing
    tok._tokenizer.post_processor = TemplateProcessing(single="<|im_start|> $A", special_tokens=[("<|im_start|>", bos)])
    layout = PromptLayout(tok, system_prompt="Facts follow.")
    pieces = chained_ids(layout)
    flat = [t for p in pieces for t in p]
    assert flat.count(bos) == 1 and flat[0] == bos
    assert tok.decode(flat[1:]) == "Facts follow.\n\n" + "\n\n".join(CONTENTS)


def test_base_model_soft_tokens_come_after_the_bos():
    """No chat template and no system prompt: the soft tokens open the prompt, and the
    BOS a full render starts with still comes before them."""
    _, tok = build_tiny("llama-64")
    tok.chat_template = None
    tok.add_special_tokens({"bos_token": "<|im_start|>"})
    bos = tok.bos_token_id
    from tokenizers.processors import TemplateProcessing
    tok._tokenizer.post_processor = TemplateProcessing(single="<|im_start|> $A", special_tokens=[("<|im_start|>", bos)])
    layout = PromptLayout(tok)
    before, after = layout.render("Answer it.", continuing=False, soft_slot=True)
    assert before == [bos] and tok.decode(after) == "\nAnswer it."
    assert layout.render("Answer it.", continuing=False)[0][0] == bos
    assert layout.render("Answer it.", continuing=True, soft_slot=True)[0] == tok("\n\n", add_special_tokens=False)[
        "input_ids"]


def test_chain_prompts_on_a_real_model_hold_one_header(smollm2):
    """Through the agents: the memory a 3-agent chain hands on has one system header."""
    model, tok = smollm2
    fp = model_fingerprint(model, tok)
    agents = [Agent(AgentConfig(name=f"a{i}", role=c + " {question}", latent_steps=0), model, tok, fp)
              for i, c in enumerate(CONTENTS)]
    rows = [agents[0].render("q", continuing=False)[0]] + [a.render("q", continuing=True)[0] for a in agents[1:]]
    _, messages = run_chain(agents, ["q"])
    assert messages[-1].header.seq_lens[0] == sum(len(r) for r in rows[:2])
    assert tok.decode([t for r in rows for t in r]).count("<|im_start|>system") == 1


@pytest.mark.parametrize("kwargs", [{"enable_thinking": False}])
def test_spec_options_reach_the_agents(kwargs, tmp_path):
    """system_prompt and chat_template_kwargs in the spec become the agents' layout; stop
    becomes their stop strings."""
    from latentray.runtime.engine.agent_configs import agent_configs_for
    from latentray.topologies import load_spec

    spec_file = tmp_path / "s.yaml"
    spec_file.write_text(
        "version: 1\nmodels:\n  m: {ref: 'tiny:qwen3-64', system_prompt: 'Be brief.', "
        "chat_template_kwargs: {enable_thinking: false}}\n"
        "agents:\n  a: {model: m, role: 'Q: {question}', output: text, stop: \"\\n\"}\n"
        "topology: {type: chain, order: [a]}\n")
    cfg = agent_configs_for(["a"], load_spec(spec_file))["a"]
    assert cfg.system_prompt == "Be brief." and dict(cfg.template_kwargs) == kwargs
    assert cfg.stop == ("\n",)  # one string is one stop string
    model, tok = build_tiny("qwen3-64")
    agent = Agent(cfg, model, tok, model_fingerprint(model, tok))
    assert tok.decode(agent.render("x")[0]).startswith("<|im_start|>system\nBe brief.<|im_end|>")
    assert torch.is_tensor(agent.prefill(["x"]).logits)
