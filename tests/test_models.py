"""Model refs and tiny presets: real architectures, small, deterministic, loadable from disk."""
import pytest
import torch

from latentray.agents.errors import ModelRefError
from latentray.agents.models import ModelRef, load_model
from latentray.agents.models import PRESETS, build_tiny


@pytest.mark.parametrize("preset", sorted(PRESETS))
def test_presets_are_small_and_deterministic(preset):
    a, tok = build_tiny(preset, seed=3)
    b, _ = build_tiny(preset, seed=3)
    c, _ = build_tiny(preset, seed=4)
    assert sum(p.numel() for p in a.parameters()) < 2_000_000
    assert all(torch.equal(x, y) for x, y in zip(a.parameters(), b.parameters()))
    assert not all(torch.equal(x, y) for x, y in zip(a.parameters(), c.parameters()))
    assert a.config.vocab_size == len(tok)


def test_presets_cover_the_architectures_users_run():
    sizes: dict = {}
    for preset in PRESETS:
        model, _ = build_tiny(preset)
        sizes.setdefault(model.config.model_type, set()).add(model.config.hidden_size)
    for arch in ("qwen3", "llama", "gpt2"):
        assert len(sizes[arch]) >= 2, (arch, sizes)
    for arch in ("gemma3_text", "mistral", "qwen2", "granite", "cohere", "smollm3"):
        assert arch in sizes, arch


def test_tokenizer_round_trips_bytes_and_left_pads():
    _, tok = build_tiny("llama-64")
    text = "héllo, 世界! 123"
    assert tok.decode(tok(text)["input_ids"]) == text
    batch = tok(["a", "abcd"], padding=True)
    assert batch["attention_mask"][0] == [0, 0, 0, 1]
    chat = tok.apply_chat_template([{"role": "user", "content": "hi"}], tokenize=False,
                                   add_generation_prompt=True)
    assert chat == "<|im_start|>user\nhi<|im_end|>\n<|im_start|>assistant\n"


def test_model_ref_forms(tmp_path):
    assert ModelRef.parse("tiny:qwen3-64") == ModelRef("tiny", "qwen3-64")
    assert ModelRef.parse("hf:Qwen/Qwen3-4B") == ModelRef("hf", "Qwen/Qwen3-4B")
    assert ModelRef.parse(str(tmp_path)).kind == "local"
    with pytest.raises(ModelRefError, match="unknown tiny model preset 'nope'"):
        ModelRef.parse("tiny:nope")
    with pytest.raises(ModelRefError, match="none of: builtin:<name>, gguf:<file.gguf>"):
        ModelRef.parse("no/such/dir")
    assert ModelRef.parse("builtin:smollm2-135m") == ModelRef("builtin", "smollm2-135m")
    with pytest.raises(ModelRefError, match="unknown built-in model 'gpt5'.*builtin:gemma3-270m, builtin:smollm2-135m"):
        ModelRef.parse("builtin:gpt5")
    with pytest.raises(ModelRefError, match="GGUF file not found"):
        ModelRef.parse(f"gguf:{tmp_path}/missing.gguf")
    gguf = tmp_path / "m.gguf"
    gguf.write_bytes(b"GGUF")
    assert ModelRef.parse(f"gguf:{gguf}") == ModelRef("gguf", str(gguf.resolve()))


def test_local_directory_loads_with_from_pretrained(tmp_path):
    model, tok = build_tiny("llama-64", seed=5)
    model.save_pretrained(tmp_path)
    tok.save_pretrained(tmp_path)
    loaded, ltok, info = load_model(str(tmp_path), dtype="float32")
    assert ltok.padding_side == "left" and info["how"] == "pretrained" and info["load_s"] >= 0
    ids = torch.tensor([tok("check")["input_ids"]])
    with torch.no_grad():
        assert torch.allclose(model(ids).logits, loaded(ids).logits, atol=1e-6)
    half, _, _ = load_model(str(tmp_path), dtype="bfloat16")
    assert half.dtype == torch.bfloat16
