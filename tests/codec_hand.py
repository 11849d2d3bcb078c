"""Hand computations of the resampler codec (from the part tensors alone, one vector at a
time) and the tiny training set-up that tests/test_codec_training.py and
tests/test_codec_rows.py share."""
from __future__ import annotations

import json
import math
from pathlib import Path

import torch

from latentray.channels.codecs import make_codec
from latentray.channels.codecs.storage import load_part
from latentray.topologies import build_plan

CHAIN = """\
version: 1
name: rs_chain
models:
  a: {ref: "tiny:qwen3-64"}
  b: {ref: "tiny:llama-128"}
agents:
  reader: {model: a, role: "Note: {context}\\nRepeat it.", latent_steps: 2}
  answerer: {model: b, role: "{question}", output: text, max_new_tokens: 4}
topology: {type: chain, order: [reader, answerer]}
channels: {kind: hidden, hidden_states: prompt, codec: resampler}
"""
OPTIONS = {"dim": 32, "tokens": 4, "heads": 2}


def facts(path: Path, n: int = 60) -> Path:
    rows = [{"context": f"The box holds {10 + (7 * i) % 90} pens.", "question": "How many pens does the box hold?",
             "answer": str(10 + (7 * i) % 90)} for i in range(n)]
    path.write_text("\n".join(json.dumps(r) for r in rows))
    return path


def hand_read(z: torch.Tensor, mask: torch.Tensor, t: dict, heads: int) -> list:
    """What each query read, written out one problem, head and query at a time from the
    part's tensors; without queries (tokens: rows) each real row is its own query (a list
    per problem of [d] vectors)."""
    def rms(v):
        return v / torch.sqrt((v * v).mean() + 1e-6)

    out = []
    for b in range(z.shape[0]):
        real = [z[b, s] for s in range(z.shape[1]) if mask[b, s]]
        read_by = []
        for query in (t["queries"] if "queries" in t else real):
            d = query.shape[0]
            hd = d // heads
            read = []
            for h in range(heads):
                cols = slice(h * hd, (h + 1) * hd)
                q = (query @ t["attn_q"])[cols]
                scores = torch.stack([(q * (v @ t["attn_k"])[cols]).sum() / math.sqrt(hd) for v in real])
                w = torch.exp(scores - scores.max())
                w = w / w.sum()
                read.append(sum(w[i] * (v @ t["attn_v"])[cols] for i, v in enumerate(real)))
            h1 = query + torch.cat(read) @ t["attn_o"]
            inner = rms(h1) @ t["mlp_in"] + t["mlp_in_bias"]
            h2 = h1 + (0.5 * inner * (1 + torch.erf(inner / math.sqrt(2)))) @ t["mlp_out"] + t["mlp_out_bias"]
            read_by.append(rms(h2))
        out.append(read_by)
    return out


def hand_resample(z: torch.Tensor, mask: torch.Tensor, t: dict, heads: int) -> torch.Tensor:
    """The decoder by hand (hand_read, then the output projection and, with output free, the
    gate and the receiver's norm); with rows, one soft token per real row (a list of
    [rows, D] per problem)."""
    out = []
    for read_by in hand_read(z, mask, t, heads):
        tokens = []
        for k, r in enumerate(read_by):
            y = r @ t["out_weight"] + t["out_bias"]
            if "gate" in t:  # output free; with output vocabulary y goes on to hand_vocabulary
                y = math.tanh(float(t["gate"][k if "queries" in t else 0])) * y * (t["read_norm"][0] / y.norm())
            tokens.append(y)
        out.append(torch.stack(tokens))
    return torch.stack(out) if "queries" in t else out


def hand_cosines(v: torch.Tensor, weight: torch.Tensor) -> torch.Tensor:
    """v's cosine with every row of weight, one row at a time (a row of zeros has cosine 0)."""
    return torch.stack([(v @ w) / (v.norm() * w.norm()) if w.norm() > 0 else w.sum() * 0 for w in weight])


def hand_vocabulary(y: torch.Tensor, model, sharpness: float, top_k: int | None = None) -> torch.Tensor:
    """The vocabulary output by hand: each [D] vector's softmax over sharpness x its cosine
    with every row of the embedding weight (with top_k, over the k largest only), times what
    the embedding module outputs for every id (the module run on the whole vocabulary, its
    own scale and all)."""
    embed = model.get_input_embeddings()
    with torch.no_grad():
        table = embed(torch.arange(embed.weight.shape[0])).float()
        weight = embed.weight.float()
    out = []
    for v in y.reshape(-1, y.shape[-1]):
        logit = sharpness * hand_cosines(v, weight).detach()
        if top_k is not None:
            order = sorted(range(len(logit)), key=lambda i: -float(logit[i]))
            logit = torch.tensor([float(logit[i]) if i in order[:top_k] else float("-inf") for i in range(len(logit))])
        p = torch.exp(logit - logit.max())
        out.append((p / p.sum()) @ table)
    return torch.stack(out).reshape(*y.shape[:-1], table.shape[-1])


def hand_encode(x: torch.Tensor, t: dict) -> torch.Tensor:
    if "in_mean" in t:  # the sender's fixed per-dimension standardisation
        x = (x - t["in_mean"]) / t["in_scale"]
    return (x / torch.sqrt((x * x).mean(-1, keepdim=True) + 1e-6)) @ t["encoder_weight"] + t["encoder_bias"]


def decode_padded(enc, dec, receiver=None, **options) -> tuple:
    """(x, mask, decoded message) of a two-problem layer-1 message, the first left-padded,
    through the parts as a run decodes it (the codec made with `options`: read nearest)."""
    from latentray.channels.codecs.apply import decode_message, encode_message
    from latentray.channels.message import LatentMessage

    codec = make_codec("resampler", **options)
    x = torch.randn(2, 5, 64, generator=torch.Generator().manual_seed(0)) * 3
    mask = torch.tensor([[0, 0, 1, 1, 1], [1, 1, 1, 1, 1]])
    msg = LatentMessage.build("hidden", sender="reader", fingerprint=enc.meta["models"]["model"]["fingerprint"],
                              tensors={"hidden": x, "mask": mask}, latent_steps=2, latent_slots=2, seq_lens=(3, 5),
                              extra={"hidden_layer": 1})
    wire = encode_message(msg, codec.encoder(enc, {}), "resampler")
    return x, mask, decode_message(wire, codec.decoder(dec, receiver), None, receiver="answerer",
                                   out_dtype=torch.float32)


def trained_rows(tmp_path, spec, options: dict) -> tuple:
    """(encoder part, decoder part) of a 12-step training that lowered both held-out losses."""
    from latentray.runtime.codecs.train import train_codec

    out = tmp_path / "parts"
    figures = train_codec(spec, build_plan(spec), str(out), steps=12, data=[str(facts(tmp_path / "f.jsonl"))],
                          seed=3, batch=2, lr=3e-3, options=options, quiet=True, log=lambda _text: None)
    assert figures["held_out_after"] < figures["held_out_before"]
    assert figures["held_out_token_after"] < figures["held_out_token_before"]
    return (load_part(out, next(p.stem for p in out.glob("resampler-enc*.json"))),
            load_part(out, next(p.stem for p in out.glob("resampler-dec*.json"))))
