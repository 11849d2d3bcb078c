"""fit-codec, codec-eval and hub distillation from the command line, on tiny models."""
from __future__ import annotations

import json
from pathlib import Path

import torch
from safetensors.torch import load_file

from latentray.runtime.cli import main

SPEC = str(Path(__file__).resolve().parents[1] / "topologies" / "examples" / "hub_mixed_tiny.yaml")


def test_fit_then_eval_then_distill(tmp_path, capsys):
    out = tmp_path / "codecs"
    assert main(["fit-codec", SPEC, "--out", str(out), "--quiet", "--hub-dim", "32"]) == 0
    parts = sorted(p.stem for p in out.glob("*.json"))
    assert parts == sorted(f"hub--tiny-{m}" for m in ("gpt2-64-caf10756", "llama-128-32d09da9", "qwen3-64-06564e9b"))
    meta = json.loads((out / f"{parts[0]}.json").read_text())
    assert meta["options"]["hub_dim"] == 32 and meta["models"]["reference"]["ref"] == "tiny:qwen3-64"
    before = {p: load_file(str(out / f"{p}.safetensors")) for p in parts}

    report = tmp_path / "eval.json"
    assert main(["codec-eval", SPEC, "--codecs", str(out), "--limit", "4", "--quiet", "--json", str(report)]) == 0
    rows = json.loads(report.read_text())
    pairs = {(r["src"], r["dst"]) for r in rows}
    assert ("tiny:llama-128", "tiny:gpt2-64") in pairs and ("tiny:gpt2-64", "tiny:llama-128") in pairs
    for r in rows:
        assert r["wire_dim"] == 32 and r["codec"] == "hub"
        assert all(torch.isfinite(torch.tensor(r[k])) for k in ("cosine", "cosine_read", "kl_codec", "kl_none"))
        assert r["kl_codec"] >= 0 and r["kl_none"] >= 0
    assert "cos read" in capsys.readouterr().out

    assert main(["fit-codec", SPEC, "--out", str(out), "--quiet", "--hub-dim", "32", "--distill-steps", "6"]) == 0
    for p in parts:
        after = load_file(str(out / f"{p}.safetensors"))
        assert torch.equal(after["encoder_weight"], before[p]["encoder_weight"])  # the hub space stays
        assert torch.equal(after["decoder_weight"], before[p]["decoder_weight"])
        assert not torch.equal(after["decoder_read_weight"], before[p]["decoder_read_weight"])
        m = json.loads((out / f"{p}.json").read_text())
        assert m["fit"]["distill_steps"] == 6 and m["space"] != meta["space"]
    spaces = {json.loads((out / f"{p}.json").read_text())["space"] for p in parts}
    assert len(spaces) == 1  # every part of the distilled fit shares its new space


def test_fit_codec_needs_a_directory_and_says_when_nothing_needs_fitting(tmp_path, capsys):
    import yaml

    data = yaml.safe_load(Path(SPEC).read_text())
    del data["channels"]["codecs"]
    nowhere = tmp_path / "nowhere.yaml"
    nowhere.write_text(yaml.safe_dump(data))
    assert main(["fit-codec", str(nowhere)]) == 2
    assert "channels.codecs: no directory to write to (fix: pass --out DIR" in capsys.readouterr().err
    chain = Path(__file__).resolve().parents[1] / "topologies" / "examples" / "latent_chain.yaml"
    assert main(["fit-codec", str(chain), "--out", str(tmp_path / "parts")]) == 0
    assert "nothing to fit" in capsys.readouterr().err
    assert not (tmp_path / "parts").exists()
