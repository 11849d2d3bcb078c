"""Train the hub's read heads further by distillation, every model frozen.

For a sender s, a receiver r and an anchor text cut at a word end:
  teacher  r reads the text itself
  student  r reads s's last-layer states for that text (prompt states), encoded by s's hub
           encoder and decoded by r's read head into soft tokens in r's input space
  loss     MSE of the student's final last-layer state against the teacher's (scaled by
           the teacher state's mean square) + KL(teacher || student) of the next token.
Only the read heads learn (Adam); gradients pass through the frozen receiver. Encoders
and the think heads stay as fitted, so the hub space itself does not move and latent-step
states decode as before. Every pair of different models in the fit takes turns. The
parts are rewritten with the trained heads and a new wire space, so parts from before
the training are refused beside them.
"""
from __future__ import annotations

import hashlib
import random
import time

import torch

from latentray.agents.anchor_states import token_spans
from latentray.agents.models import load_model
from latentray.channels.codecs import make_codec
from latentray.channels.codecs.anchors import load_anchor_texts, split_anchors
from latentray.channels.codecs.base import affine, to_norm
from latentray.channels.codecs.storage import load_part, save_part
from latentray.channels.errors import CodecError

from latentray.runtime.codecs.evaluate import _start_ids, prefix_of
from latentray.runtime.codecs.fit import model_kwargs, progress_bar
from latentray.runtime.codecs.plan import required_fits

LEARNING_RATE = 1e-4


def _final_grad(model, embeds: torch.Tensor) -> tuple:
    """(last-layer states [S, D], next-token log-probs [V]) of one sequence, with autograd."""
    captured = {}
    hook = model.base_model.register_forward_hook(lambda _m, _a, out: captured.__setitem__("h", out.last_hidden_state))
    try:
        out = model(inputs_embeds=embeds[None], use_cache=False)
    finally:
        hook.remove()
    return captured["h"][0].float(), torch.log_softmax(out.logits[0, -1].float(), -1)


TRAINED = ("decoder_read_weight", "decoder_read_bias")


class _Maps(torch.nn.Module):
    """Every model's hub tensors; the read heads as trainable parameters, the rest fixed."""

    def __init__(self, parts: dict):
        super().__init__()
        self.names = {ref: f"m{i}" for i, ref in enumerate(parts)}
        for ref, part in parts.items():
            for key, t in part.tensors.items():
                name = f"{self.names[ref]}_{key}"
                if key in TRAINED:
                    self.register_parameter(name, torch.nn.Parameter(t.clone().float()))
                else:
                    self.register_buffer(name, t.clone().float())

    def get(self, ref: str, key: str) -> torch.Tensor:
        return getattr(self, f"{self.names[ref]}_{key}")

    def read(self, x: torch.Tensor, src: str, dst: str) -> torch.Tensor:
        """What the hub codec's Linear encoder and read head compute, differentiably."""
        u = affine(x, self.get(src, "encoder_weight"), self.get(src, "encoder_bias"))
        return to_norm(affine(u, self.get(dst, "decoder_read_weight"), self.get(dst, "decoder_read_bias")),
                       self.get(dst, "read_norm"))


def distill_hub(spec, plan, directory: str, anchors: str | None, steps: int, *, quiet: bool = False, log=print,
                codecs: list | None = None, seed: int = 0) -> dict:
    fits = required_fits(spec, plan, codecs)
    if "hub" not in fits:
        raise CodecError("--distill-steps trains the hub codec, and no edge of this spec uses it; "
                         "add --codec hub or set codec hub on the edges")
    pairs = [(s, d) for s, d in fits["hub"] if s != d]
    if not pairs:
        log("distillation: every hub edge joins a model to itself; nothing to train")
        return {}
    hub = make_codec("hub")
    refs = list(dict.fromkeys(r for p in fits["hub"] for r in p))
    parts = {ref: load_part(directory, hub.encode_part(ref, ref)) for ref in refs}
    loaded = {ref: load_model(**model_kwargs(spec, ref)) for ref in refs}
    for m in loaded.values():
        m.model.requires_grad_(False)
    maps = _Maps(parts)
    opt = torch.optim.Adam(maps.parameters(), lr=LEARNING_RATE)
    fit_texts, _ = split_anchors(load_anchor_texts(anchors))
    rng = random.Random(seed)
    t0, losses = time.perf_counter(), []
    with progress_bar(steps, "distill hub", quiet) as bar:
        for step in range(steps):
            src, dst = pairs[step % len(pairs)]
            prefix = prefix_of(rng.choice(fit_texts)[1])
            loss = _pair_loss(maps, loaded[src], loaded[dst], src, dst, prefix)
            opt.zero_grad()
            loss.backward()
            opt.step()
            losses.append(loss.item())
            bar.update(1)
    head, tail = _mean(losses[:max(1, steps // 10)]), _mean(losses[-max(1, steps // 10):])
    log(f"  distillation: {steps} steps over {len(pairs)} pair(s) in {time.perf_counter() - t0:.1f} s; "
        f"loss {head:.3f} (first tenth) -> {tail:.3f} (last tenth)")
    space = "hub:" + hashlib.sha1(f"{parts[refs[0]].meta['space']}|distill|{steps}|{seed}|{tail}"
                                  .encode()).hexdigest()[:16]
    for ref, part in parts.items():
        tensors = {k: maps.get(ref, k).detach().clone() for k in part.tensors}
        fit = {**part.meta.get("fit", {}), "distill_steps": steps, "distill_loss_first": head, "distill_loss_last": tail}
        part.meta.update(space=space, fit=fit)
        part.tensors = tensors
        save_part(directory, part)
    return {"steps": steps, "loss_first": head, "loss_last": tail}


def _pair_loss(maps: _Maps, src, dst, src_ref: str, dst_ref: str, prefix: str) -> torch.Tensor:
    (sm, stok, _), (dm, dtok, _) = src, dst
    embed = dm.get_input_embeddings()
    with torch.no_grad():
        ids, _ = token_spans(dtok, prefix)
        teacher, t_log = _final_grad(dm, embed(torch.tensor(ids, device=dm.device)))
        t_h = teacher[-1]
        sids, spans = token_spans(stok, prefix)
        states, _ = _final_grad(sm, sm.get_input_embeddings()(torch.tensor(sids, device=sm.device)))
        real = [i for i, (a, b) in enumerate(spans) if b > a]
        states = states[real]
        start = embed(torch.tensor(_start_ids(dtok), device=dm.device))
    soft = maps.read(states.float().cpu(), src_ref, dst_ref).to(dm.device, start.dtype)
    student, s_log = _final_grad(dm, torch.cat([start, soft], 0))
    s_h = student[-1]
    mse = ((s_h - t_h) ** 2).mean() / (t_h ** 2).mean().clamp_min(1e-6)
    kl = (t_log.exp() * (t_log - s_log)).sum()
    return mse + kl


def _mean(xs: list) -> float:
    return sum(xs) / max(len(xs), 1)
