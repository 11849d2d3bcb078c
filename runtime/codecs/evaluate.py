"""`latentray codec-eval SPEC`: how faithfully each fitted codec carries one model's
states into another, on held-out anchor texts (never seen by the fit).

Per codec and (sender, receiver) pair:
  cosine           the think path: decode(encode(sender states)) against the receiver's
                   own last-layer states at the same anchor points
  cosine_read      the read path (prompt states): against the receiver's input
                   embeddings of the tokens at those points
  *_shuffled       the same with the sender's points shuffled: the floor that the
                   anisotropy of LLM spaces alone gives
  kl_codec         next-token KL(teacher || student) in nats: the teacher is the receiver
                   reading a held-out prefix as text; the student reads, instead, the
                   sender's states for that prefix, decoded as prompt states into soft tokens
  kl_none          KL(teacher || the receiver reading nothing): the no-message floor
  top1             how often the student's most likely next token is the teacher's
"""
from __future__ import annotations

import torch

from latentray.agents.anchor_states import token_spans, word_ends
from latentray.agents.fingerprint import model_fingerprint
from latentray.agents.forward import forward_slots, new_positions
from latentray.agents.models import load_model
from latentray.agents.realign import Realigner
from latentray.agents.codec_bank import CodecBank
from latentray.agents.step_call import CodecUse
from latentray.channels.codecs import make_codec
from latentray.channels.codecs.anchors import anchor_hash, load_anchor_texts, split_anchors
from latentray.channels.codecs.base import common_keys, mean_cosine

from latentray.runtime.codecs.fit import model_kwargs, states_for
from latentray.runtime.codecs.plan import codec_dir, required_fits


def _halves(name: str, src: str, dst: str, directory: str, fps: dict, embeddings=None) -> tuple:
    """(encode, decoder) of one edge, loaded and checked as the actors load them
    (embeddings: the receiver's input embedding module)."""
    codec = make_codec(name)
    enc_part, dec_part = codec.encode_part(src, dst), codec.decode_part(src, dst)
    enc = CodecBank(fps[src]).encoder(CodecUse(name, enc_part), directory) if enc_part else None
    dec = CodecBank(fps[dst], embeddings=embeddings).decoder(CodecUse(name, dec_part or ""), directory)
    return (lambda x: enc(x) if enc is not None else x.float()), dec


def read_path(dec, realign):
    """How a prompt state reaches the receiver's input space (as decode_message does)."""
    if dec.read is not None:
        return dec.read
    return (lambda u: realign(dec(u))) if dec.realign_after else dec


@torch.inference_mode()
def _final(model, embeds: torch.Tensor) -> tuple:
    """(last-layer states [S, D], next-token log-probs [V]) of one unpadded sequence."""
    mask = torch.ones((1, embeds.shape[0]), dtype=torch.long, device=model.device)
    empty = mask[:, :0]
    out = forward_slots(model, cache=None, past_mask=empty, past_positions=empty, inputs_embeds=embeds[None],
                        new_mask=mask, positions=new_positions(torch.zeros(1, dtype=torch.long, device=model.device), mask))
    return out.hidden[0], torch.log_softmax(out.logits[0].float(), -1)


def _start_ids(tokenizer) -> list:
    """The token a sequence opens with: the tokenizer's BOS if it adds one, else BOS/EOS."""
    ids = tokenizer("x")["input_ids"]
    if tokenizer.bos_token_id is not None and ids and ids[0] == tokenizer.bos_token_id:
        return [tokenizer.bos_token_id]
    return [tokenizer.bos_token_id if tokenizer.bos_token_id is not None else tokenizer.eos_token_id]


def prefix_of(text: str) -> str:
    ends = word_ends(text)
    return text[:ends[max(2, len(ends) // 2) - 1]] if len(ends) >= 3 else text


def kl(p_log: torch.Tensor, q_log: torch.Tensor) -> float:
    return float((p_log.exp() * (p_log - q_log)).sum())


def next_token_fidelity(read_fn, src, dst, texts: list) -> dict:
    """src/dst: (model, tokenizer). Mean KL(teacher || student), KL(teacher || none), top-1."""
    (sm, stok), (dm, dtok) = src, dst
    embed = dm.get_input_embeddings()
    start = embed(torch.tensor(_start_ids(dtok), device=dm.device))
    _, none_log = _final(dm, start)
    kls, floors, top1 = [], [], []
    for _, text in texts:
        prefix = prefix_of(text)
        ids, _ = token_spans(dtok, prefix)
        _, teacher = _final(dm, embed(torch.tensor(ids, device=dm.device)))
        sids, spans = token_spans(stok, prefix)
        states, _ = _final(sm, sm.get_input_embeddings()(torch.tensor(sids, device=sm.device)))
        real = [i for i, (a, b) in enumerate(spans) if b > a]
        soft = read_fn(states[real].float().cpu()).to(dm.device, start.dtype)
        _, student = _final(dm, torch.cat([start, soft], 0))
        kls.append(kl(teacher, student))
        floors.append(kl(teacher, none_log))
        top1.append(int(teacher.argmax()) == int(student.argmax()))
    n = max(len(kls), 1)
    return {"kl_codec": sum(kls) / n, "kl_none": sum(floors) / n, "top1": sum(top1) / n}


def evaluate_codecs(spec, plan, anchors: str | None = None, codecs: list | None = None, limit: int | None = None,
                    quiet: bool = False, log=print) -> list:
    fits = required_fits(spec, plan, codecs)
    directory = codec_dir(spec)
    texts = load_anchor_texts(anchors)
    _, held = split_anchors(texts)
    held = held[:limit] if limit else held
    refs = list(dict.fromkeys(r for pairs in fits.values() for pair in pairs for r in pair))
    states = states_for(spec, refs, held, anchor_hash(texts), quiet, log)
    loaded = {ref: load_model(**model_kwargs(spec, ref)) for ref in refs}
    fps = {ref: model_fingerprint(m.model, m.tokenizer) for ref, m in loaded.items()}
    rows = []
    for name, pairs in fits.items():
        for src, dst in pairs:
            encode, dec = _halves(name, src, dst, directory, fps, loaded[dst].model.get_input_embeddings())
            read = read_path(dec, Realigner.for_model(loaded[dst].model))
            keys = common_keys([states[src], states[dst]])
            hs, hd, ed = states[src].rows(keys), states[dst].rows(keys), states[dst].rows(keys, "embeds")
            wire = encode(hs)
            shuffled = wire[torch.randperm(len(keys), generator=torch.Generator().manual_seed(0))]
            row = {"codec": name, "src": src, "dst": dst, "points": len(keys), "wire_dim": int(wire.shape[1]),
                   "cosine": mean_cosine(dec(wire), hd), "cosine_shuffled": mean_cosine(dec(shuffled), hd),
                   "cosine_read": mean_cosine(read(wire), ed), "cosine_read_shuffled": mean_cosine(read(shuffled), ed)}
            row.update(next_token_fidelity(lambda x: read(encode(x)), loaded[src][:2], loaded[dst][:2], held))
            rows.append(row)
            log(f"  {name} {src} -> {dst}: cosine {row['cosine']:.3f} (shuffled {row['cosine_shuffled']:.3f}), "
                f"read {row['cosine_read']:.3f} (shuffled {row['cosine_read_shuffled']:.3f}), "
                f"KL {row['kl_codec']:.3f} nats (none {row['kl_none']:.3f}), top-1 {row['top1']:.1%}")
    return rows


def format_rows(rows: list) -> str:
    head = (f"{'codec':<9} {'sender -> receiver':<44} {'wire d':>6} {'cos think':>9} {'shuffled':>8} "
            f"{'cos read':>8} {'shuffled':>8} {'KL codec':>9} {'KL none':>8} {'top-1':>6}")
    lines = [head, "-" * len(head)]
    for r in rows:
        pair = f"{r['src']} -> {r['dst']}"
        lines.append(f"{r['codec']:<9} {pair:<44} {r['wire_dim']:>6} {r['cosine']:>9.3f} {r['cosine_shuffled']:>8.3f} "
                     f"{r['cosine_read']:>8.3f} {r['cosine_read_shuffled']:>8.3f} "
                     f"{r['kl_codec']:>9.3f} {r['kl_none']:>8.3f} {r['top1']:>6.1%}")
    return "\n".join(lines)
