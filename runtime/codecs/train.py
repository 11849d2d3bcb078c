"""`latentray train-codec`: train the resampler codec on split-context examples.

For each hidden edge of the spec (sender agent -> receiver agent), an example's passage
fills the sender's {context} and its question both agents' {question}. The sender runs as
it does in a run (prefill, latent steps, its hidden message: prompt states with
hidden_states: prompt or role, then the latent steps' states), frozen and without gradients. The
sender's encoder and the receiver's decoder turn that message into K soft tokens, placed
where a run places them (the start of the receiver's user turn); the receiver, frozen,
reads them and its prompt, and the loss is its own cross-entropy on the answer's tokens
and its end of turn. Only the parts learn (Adam). The receiver's latent steps, if it has
any, are not run in training: it answers straight after its prompt.

With one soft token per message row (tokens: rows), a second term (weight token_loss)
asks each soft token of a prompt row to name the token that row was, among the
receiver's whole vocabulary: a cross-entropy over its cosines with every embedding
(times TOKEN_SCALE; a plain cosine to the one target let near digits pass for each
other). The target is the sender's own token within one model; across tokenizers, the
receiver's tokens that end within the sender's token in the same text (by their last
character that is not a space: the sender is causal). With per_row P, slot k of a row
aims at its k-th such token and a presence term (a binary cross-entropy) teaches which
slots are sent: as many as the row has targets, one for a latent-step row; without it,
slot 0 aims at the first.
The answer loss alone must find that map through the frozen receiver; this term shows it
the way, and latent-step rows (no token) are left to the answer loss. With word_drill N,
each token step also reads N lists of proper nouns the two tokenizers hold
(runtime/codecs/word_drill.py): names are rare in passages and are what a codec across
tokenizers misspells.

Every `checkpoint_every` steps the parts and the optimizer's state are written to
DIR/.train-checkpoint (safetensors + JSON, renamed into place, the JSON last); a rerun of
the same command resumes from there, and its result equals an uninterrupted run's (the
example order is a function of the seed, nothing else is random). A step whose loss or
gradients are not finite stops the training: the last good checkpoint is kept and named.
The finished parts are written to DIR like fitted ones, with a wire space hashed from
their tensors, and the checkpoint is removed.
"""
from __future__ import annotations

import json
import math
import random
import shutil
import time
from dataclasses import dataclass
from pathlib import Path

import torch

from latentray.agents.agent import Agent
from latentray.agents.fingerprint import model_fingerprint
from latentray.agents.models import load_model
from latentray.agents.realign import embedding_statistics
from latentray.channels.codecs import make_codec
from latentray.channels.codecs.resampler import (FROZEN, ROWS, encode_rows, output_tokens, presence, read_message,
                                                  slot_vectors, state_statistics)
from latentray.channels.codecs.storage import save_part
from latentray.channels.codecs.vocabulary import DEFAULT_SHARPNESS, Vocabulary
from latentray.channels.errors import CodecError
from latentray.channels.kinds import get_kind

from latentray.runtime.codecs.checkpoint import CHECKPOINT, read_checkpoint, write_checkpoint
from latentray.runtime.codecs.fit import model_kwargs, progress_bar
from latentray.runtime.codecs.row_targets import presence_targets, row_targets, token_loss
from latentray.runtime.codecs.train_data import DEFAULT_SENTENCES, load_examples
from latentray.runtime.codecs.word_drill import drill_example, drill_words
from latentray.runtime.engine.agent_configs import agent_configs_for
from latentray.runtime.engine.steps import hidden_layer

CODEC = "resampler"
HELD_OUT = 32  # examples split off before training, never trained on: the held-out loss
TOKEN_SCALE = 20.0  # cosine -> logit in the token loss
GRAD_CLIP = 1.0  # the gradients' total norm is clipped to this before each step
STATISTICS_EXAMPLES = 64  # training examples whose sent states set an encoder's fixed standardisation
HELD_OUT_DRILLS = 8  # drill lists the held-out drill token loss is measured on (with word_drill)


@dataclass(frozen=True)
class Edge:
    sender: str  # agent names
    receiver: str
    src: str  # model refs
    dst: str


def _decoding_steps(plan, step_id: str) -> list:
    """The steps that decode what is sent to step_id: itself, or past an aggregation step
    (a hub), the steps its combined message goes on to."""
    step = plan.step(step_id)
    if step.action != "aggregate":
        return [step]
    return [s for e in plan.edges if e.src == step_id for s in _decoding_steps(plan, e.dst)]


def training_edges(spec, plan) -> list:
    """The spec's hidden edges as (sender agent, receiver agent), each once; an edge into a
    hub's aggregation step counts as edges to the steps that decode the hub's message (in a
    run they read the spokes' messages combined, in training one spoke's at a time)."""
    edges = []
    ref = lambda agent: spec.models[spec.agents[agent].model].ref  # noqa: E731
    for e in plan.edges:
        if not get_kind(e.kind).takes_codec or plan.step(e.src).action == "aggregate":
            continue
        sender = plan.step(e.src).agent
        for r in _decoding_steps(plan, e.dst):
            edge = Edge(sender, r.agent, ref(sender), ref(r.agent))
            if edge not in edges:
                edges.append(edge)
    if not edges:
        raise CodecError("train-codec needs a hidden edge (between two models, or within one): this spec's edges "
                         "carry no hidden message; set channels.kind: hidden")
    return edges


class _Parts(torch.nn.Module):
    """Every part's tensors as parameters (read_norm fixed), addressed by part name."""

    def __init__(self, parts: list):
        super().__init__()
        self.meta = {p.name: p.meta for p in parts}
        self.keys = {p.name: list(p.tensors) for p in parts}
        for p in parts:
            for k, t in p.tensors.items():
                name = self._name(p.name, k)
                if k in FROZEN:
                    self.register_buffer(name, t.clone().float())
                else:
                    self.register_parameter(name, torch.nn.Parameter(t.clone().float()))

    @staticmethod
    def _name(part: str, key: str) -> str:
        return f"{part}.{key}".replace("-", "_").replace(".", "__")

    def tensors(self, part: str) -> dict:
        return {k: getattr(self, self._name(part, k)) for k in self.keys[part]}

    def flat(self) -> dict:
        return {f"{p}/{k}": v for p in self.keys for k, v in self.tensors(p).items()}


class _Model:
    """One frozen model and the agents of the spec that use it."""

    def __init__(self, spec, ref: str, agents: list):
        self.model, self.tokenizer, _ = load_model(**model_kwargs(spec, ref))
        self.model.requires_grad_(False)
        self.fingerprint = model_fingerprint(self.model, self.tokenizer)
        configs = agent_configs_for(agents, spec)
        self.agents = {a: Agent(configs[a], self.model, self.tokenizer, self.fingerprint) for a in agents}
        # What the embedding module outputs, not its weight: Gemma scales by sqrt(d) inside it.
        self.embed_norm = float(embedding_statistics(self.model)[0])
        self.stop = next(iter(self.agents.values())).stop_ids
        self.vocabulary = Vocabulary(self.model.get_input_embeddings())


def _answer_ids(m: _Model, answer: str) -> list:
    eot = sorted(m.stop)[0] if m.stop else m.tokenizer.eos_token_id
    return m.tokenizer(answer, add_special_tokens=False)["input_ids"] + [eot]


def sender_messages(models: dict, edge: Edge, examples: list, hidden_scope: str, layer: int | None = None) -> list:
    """[(states [1, S, D], mask [1, S])] of the sender's hidden message for each example
    (decoder layer `layer`'s states; None: the last layer's), computed in one batch
    (left-padded: a row computes what it computes alone), no gradients."""
    problems = [{"question": x.question, "context": x.context} for x in examples]
    with torch.no_grad():
        msg = models[edge.src].agents[edge.sender].step(problems, action="latent", emit="hidden", scope=hidden_scope,
                                                        layer=layer)
        states, mask = msg.tensors["hidden"].float(), msg.tensors["mask"]
        return [(states[b:b + 1].clone(), mask[b:b + 1].clone()) for b in range(len(examples))]


def _messages_in_chunks(models: dict, edge: Edge, examples: list, hidden_scope: str, layer, size: int = 8) -> list:
    """sender_messages for many examples, `size` at a time (a bounded batch)."""
    return [m for i in range(0, len(examples), size)
            for m in sender_messages(models, edge, examples[i:i + size], hidden_scope, layer)]


def example_loss(parts: _Parts, models: dict, edge: Edge, example, sent: tuple, names: tuple,
                 targets: list | None = None, weight: float = 0.0, answer_loss: bool = True) -> torch.Tensor:
    """The receiver's mean cross-entropy on the answer (and its end of turn) given the
    soft tokens the codec makes of the sender's message `sent` for this example; plus
    `weight` times the token loss against `targets` (row_targets) where given. Without
    answer_loss, the token loss alone (the receiver does not run)."""
    enc_name, dec_name = names
    rcv = models[edge.dst]
    states, mask = sent
    options, t = parts.meta[dec_name]["options"], parts.tensors(dec_name)
    vocabulary = options.get("output") == "vocabulary"
    reading = (rcv.vocabulary.reading(float(options.get("sharpness", DEFAULT_SHARPNESS)), options.get("top_k"))
               if vocabulary else rcv.vocabulary.reading(TOKEN_SCALE))
    h, soft_mask = read_message(encode_rows(states, parts.tensors(enc_name)), mask, t, int(options["heads"]))
    h = h[0][soft_mask[0].bool()]  # the real ones, as a run places them
    y = slot_vectors(h[None], t)[0]  # [S, P, D]
    sent_slots = presence(h[None], t)
    wanted = (presence_targets(targets, y.shape[1]).to(y.device)  # [S, P]
              if targets is not None and sent_slots is not None else None)
    if sent_slots is None:
        keep = torch.zeros(y.shape[:2], dtype=torch.bool, device=y.device)
        keep[:, 0] = True
    elif wanted is not None:  # in training the slots the row targets call for are read
        keep = wanted.bool()
    else:  # as a run reads them (the held-out loss): the slots predicted present
        keep = sent_slots[0] > 0
    loss = y.sum() * 0.0  # a zero that still reaches the parts before the output
    if weight and targets is not None:
        if len(targets) != y.shape[0]:
            raise CodecError(f"train-codec: {y.shape[0]} message rows but {len(targets)} row targets for "
                             f"{edge.sender} -> {edge.receiver}")
        extra = token_loss(y, targets, reading)
        if extra is not None:
            loss = loss + weight * extra
        if sent_slots is not None:
            loss = loss + weight * torch.nn.functional.binary_cross_entropy_with_logits(sent_slots[0], wanted)
    if not answer_loss:  # the soft tokens are not made: with a 262K vocabulary that is half a step's time
        return loss
    soft = output_tokens(y[keep][None], t, reading if vocabulary else None)[0]
    with torch.no_grad():
        before, after = rcv.agents[edge.receiver].render({"question": example.question}, soft_slot=True)
        answer = _answer_ids(rcv, example.answer)
        embed = rcv.model.get_input_embeddings()
        device = rcv.model.device
        e_before = embed(torch.tensor([before], dtype=torch.long, device=device))
        e_after = embed(torch.tensor([after + answer], dtype=torch.long, device=device))
    inputs = torch.cat([e_before, soft[None].to(device, e_before.dtype), e_after], dim=1)
    return loss + _answer_loss(rcv, answer, inputs_embeds=inputs)


def _answer_loss(rcv: _Model, answer: list, **inputs) -> torch.Tensor:
    """The receiver's mean cross-entropy on `answer`, the last tokens of `inputs` (ids or embeddings)."""
    logits = rcv.model(**inputs, use_cache=False, logits_to_keep=len(answer) + 1).logits[0, :-1].float()
    return torch.nn.functional.cross_entropy(logits, torch.tensor(answer, device=logits.device))


def reference_loss(models: dict, edge: Edge, example, team_text: str | None) -> float:
    """The receiver's loss on the answer with no message (team_text None) or reading
    `team_text` as a text message: the two ends a trained message is measured between."""
    rcv = models[edge.dst]
    before, after = rcv.agents[edge.receiver].render({"question": example.question}, team_text)
    answer = _answer_ids(rcv, example.answer)
    ids = torch.tensor([before + after + answer], device=rcv.model.device)
    with torch.no_grad():
        return float(_answer_loss(rcv, answer, input_ids=ids))


def _options_key(edges, options, seed, data, batch, lr, steps) -> dict:
    return {"edges": [e.__dict__ for e in edges], "options": options, "seed": seed, "data": data, "batch": batch,
            "lr": lr, "steps": steps}


def _mean(xs) -> float:
    return sum(xs) / max(len(xs), 1)


def train_codec(spec, plan, out_dir: str, *, steps: int = 2000, data: list | None = None, seed: int = 0,
                sentences: int = DEFAULT_SENTENCES, batch: int = 4, lr: float = 1e-3, options: dict | None = None,
                checkpoint_every: int = 25, token_weight: float | None = None, token_steps: int = 0,
                answer_lr: float | None = None, word_drill: int = 0, restart: bool = False, quiet: bool = False,
                log=print) -> dict:
    """Train the resampler parts the spec's hidden edges need; returns the figures.
    token_weight: the token loss's weight (None: 1 with tokens: rows, 0 otherwise);
    token_steps: the first steps train on the token loss alone (the receivers do not run);
    answer_lr: the learning rate of the steps after them (None: lr / 10 after token steps, else
    lr). A new loss joining with the full rate tore up what the token steps had learnt: Adam's
    second moments, fit to the token loss's gradients, let the answer loss's take steps too
    large: the training loss rose from 5 to 15-20 within 50 steps. word_drill: drill lists
    added to each token step's examples."""
    if answer_lr is None:
        answer_lr = lr / 10 if token_steps else lr
    if steps < 1 or batch < 1 or checkpoint_every < 1 or not lr > 0 or not answer_lr > 0:
        raise CodecError("train-codec: --steps, --batch and --checkpoint-every must be positive, --lr and "
                         "--answer-lr above 0")
    rows = str((options or {}).get("tokens")) == ROWS
    if token_weight is None:
        token_weight = 1.0 if rows else 0.0
    if token_weight < 0 or (token_weight and not rows):
        raise CodecError(f"train-codec: --token-loss {token_weight:g}: the token loss needs one soft token per row "
                         "(--tokens rows) and a weight of 0 or more")
    if (options or {}).get("per_row") is not None and not token_weight:
        raise CodecError("train-codec: --per-row learns which slots to send from the row targets: it needs the "
                         "token loss (--tokens rows, --token-loss above 0)")
    if token_steps and not (token_weight and 0 <= token_steps <= steps):
        raise CodecError(f"train-codec: --token-steps {token_steps}: the steps on the token loss alone need the token "
                         f"loss (--tokens rows, --token-loss above 0) and cannot be more than --steps ({steps})")
    if word_drill < 0 or (word_drill and not token_steps):
        raise CodecError(f"train-codec: --word-drill {word_drill}: the drill lists train the token loss alone, in "
                         "the first --token-steps: give --token-steps and a drill of 0 or more lists a step")
    if word_drill and spec.channels.hidden_states not in ("prompt", "role"):
        raise CodecError(f"train-codec: --word-drill {word_drill} trains the soft tokens of the rows a sender read, "
                         f"and channels.hidden_states: {spec.channels.hidden_states} sends none; set hidden_states: "
                         "prompt or role, or leave out --word-drill")
    edges = training_edges(spec, plan)
    examples = load_examples(data, sentences)
    if len(examples) <= HELD_OUT:
        raise CodecError(f"train-codec: {len(examples)} examples; it needs more than {HELD_OUT} "
                         f"({HELD_OUT} are held out to measure the loss)")
    order = list(range(len(examples)))
    random.Random(seed).shuffle(order)
    held, train = [examples[i] for i in order[:HELD_OUT]], [examples[i] for i in order[HELD_OUT:]]
    refs = list(dict.fromkeys(r for e in edges for r in (e.src, e.dst)))
    t_load = time.perf_counter()
    models = {ref: _Model(spec, ref, sorted({a for e in edges for a, r in ((e.sender, e.src), (e.receiver, e.dst))
                                              if r == ref})) for ref in refs}
    log(f"train-codec: {len(edges)} edge(s), models {', '.join(refs)} loaded in {time.perf_counter() - t_load:.1f} s; "
        f"{len(train)} training examples, {len(held)} held out")
    words = drill_words([models[r].tokenizer for r in refs]) if word_drill else []
    if word_drill and not words:
        raise CodecError(f"train-codec: --word-drill {word_drill}: the tokenizers of {', '.join(refs)} hold no "
                         "capitalised word as one token (byte-level ones hold none): there is nothing to drill; "
                         "leave out --word-drill")
    codec = make_codec(CODEC, **(options or {}))
    layer = hidden_layer(spec)
    scope = spec.channels.hidden_states
    stats = {}
    for e in edges:
        if e.src not in stats:
            sent = _messages_in_chunks(models, e, train[:STATISTICS_EXAMPLES], scope, layer)
            stats[e.src] = state_statistics(torch.cat([s[0][m[0].bool()] for s, m in sent]))
    init = codec.init_parts({r: models[r].fingerprint for r in refs}, {r: models[r].embed_norm for r in refs}, seed,
                            layer=spec.channels.hidden_layer, statistics=stats)
    wanted = {codec.encode_part(e.src, e.dst) for e in edges} | {codec.decode_part(e.src, e.dst) for e in edges}
    parts = _Parts([p for p in init if p.name in wanted])
    names = {e: (codec.encode_part(e.src, e.dst), codec.decode_part(e.src, e.dst)) for e in edges}
    opt = torch.optim.Adam(parts.parameters(), lr=lr)
    directory = Path(out_dir)
    key = _options_key(edges, parts.meta[next(iter(parts.meta))]["options"], seed, data, batch, lr, steps)
    key.update(sentences=sentences, layer=spec.channels.hidden_layer, rows=scope, token_weight=token_weight,
               token_steps=token_steps, answer_lr=answer_lr, word_drill=word_drill)
    if restart and (directory / CHECKPOINT).exists():
        shutil.rmtree(directory / CHECKPOINT)

    held_drills = [drill_example(words, random.Random(f"{seed}:held-out drill {i}"))
                   for i in range(HELD_OUT_DRILLS if word_drill else 0)]

    def token_losses(e: Edge, xs: list, sent: list) -> list:
        return [float(example_loss(parts, models, e, x, m, names[e], row_targets(models, e, x, scope), 1.0,
                                   answer_loss=False)) for x, m in zip(xs, sent)]

    def held_loss() -> list:
        """[the answer loss, the token loss (None without one), the drill token loss (None
        without a drill)] on the held-out examples and drill lists."""
        losses, tokens, drills = [], [], []
        with torch.no_grad():
            for e in edges:
                sent = _messages_in_chunks(models, e, held, scope, layer)
                losses += [float(example_loss(parts, models, e, x, m, names[e])) for x, m in zip(held, sent)]
                tokens += token_losses(e, held, sent) if token_weight else []
                if word_drill:
                    drills += token_losses(e, held_drills, _messages_in_chunks(models, e, held_drills, scope, layer))
        return [_mean(losses), _mean(tokens) if tokens else None, _mean(drills) if drills else None]

    start, losses, held_before = read_checkpoint(directory, parts, opt, key, log)
    if held_before is None:
        held_before = held_loss()
    before, token_before, drill_before = held_before
    t0 = time.perf_counter()
    good = start
    with progress_bar(steps, "train-codec", quiet) as bar:
        bar.unit = "step"
        bar.update(start)
        for step in range(start, steps):
            edge = edges[step % len(edges)]
            opt.zero_grad()
            total = 0.0
            chunk = [train[(step * batch + j) % len(train)] for j in range(batch)]
            if step < token_steps:  # a function of the seed and the step: a resumed run draws the same
                rng = random.Random(f"{seed}:drill {step}")
                chunk += [drill_example(words, rng) for _ in range(word_drill)]
            for x, sent in zip(chunk, sender_messages(models, edge, chunk, scope, layer)):
                targets = row_targets(models, edge, x, scope) if token_weight else None
                loss = example_loss(parts, models, edge, x, sent, names[edge], targets, token_weight,
                                    answer_loss=step >= token_steps) / len(chunk)
                loss.backward()
                total += float(loss.detach())
            finite = math.isfinite(total) and all(bool(torch.isfinite(p.grad).all())
                                                  for p in parts.parameters() if p.grad is not None)
            if not finite:
                kept = (f"the checkpoint of step {good} is kept in {directory / CHECKPOINT}" if good
                        else "no checkpoint was written yet")
                raise CodecError(f"train-codec: the loss diverged at step {step + 1} (loss {total}); {kept}; "
                                 f"lower --lr (now {lr:g}) and rerun to resume")
            torch.nn.utils.clip_grad_norm_(parts.parameters(), GRAD_CLIP)
            for group in opt.param_groups:
                group["lr"] = lr if step < token_steps else answer_lr
            opt.step()
            losses.append(total)
            bar.update(1)
            if (step + 1) % checkpoint_every == 0 or step + 1 == steps:
                write_checkpoint(directory, parts, opt, step + 1, losses, key, held_before)
                good = step + 1
    after, token_after, drill_after = held_loss()
    seconds = time.perf_counter() - t0
    alone = _mean([reference_loss(models, e, x, None) for e in edges for x in held])
    reading = _mean([reference_loss(models, e, x, x.context) for e in edges for x in held])
    tenth = max(1, len(losses) // 10)
    figures = {"steps": steps, "seed": seed, "batch": batch, "lr": lr, "data": list(data or []) or "default",
               "context_sentences": sentences, "hidden_layer": spec.channels.hidden_layer, "hidden_states": scope,
               "token_loss": token_weight,
               "token_steps": token_steps, "answer_lr": answer_lr, "word_drill": word_drill,
               "loss_first": _mean(losses[:tenth]), "loss_last": _mean(losses[-tenth:]), "held_out_before": before,
               "held_out_after": after, "held_out_no_message": alone, "held_out_reading_text": reading,
               "held_out_token_before": token_before, "held_out_token_after": token_after,
               **({"drill_words": len(words), "held_out_drill_before": drill_before,
                   "held_out_drill_after": drill_after} if word_drill else {}), "train_s": seconds}
    out = _save(codec, parts, directory, figures)
    shutil.rmtree(directory / CHECKPOINT, ignore_errors=True)
    log(f"  {steps} steps in {seconds:.1f} s; loss {figures['loss_first']:.3f} (first tenth) -> "
        f"{figures['loss_last']:.3f} (last tenth); held-out loss {before:.3f} untrained -> {after:.3f} "
        f"(no message {alone:.3f}, the passage as text {reading:.3f}); "
        + (f"held-out token loss {token_before:.3f} -> {token_after:.3f}; " if token_weight else "")
        + (f"on drill lists {drill_before:.3f} -> {drill_after:.3f}; " if word_drill else "")
        + f"{out['size_mb']:.2f} MB of parts")
    return {**figures, **out}


def _save(codec, parts: _Parts, directory: Path, figures: dict) -> dict:
    from latentray.channels.codecs.base import Part

    finished = [Part(name, {k: v.detach().clone() for k, v in parts.tensors(name).items()}, dict(meta))
                for name, meta in parts.meta.items()]
    timeless = {k: v for k, v in figures.items() if k != "train_s"}  # a resumed training names the same space
    space = codec.space_of(finished, json.dumps(timeless, sort_keys=True, default=str))
    size = sum(t.numel() * 4 for p in finished for t in p.tensors.values()) / 1e6
    for p in finished:
        p.meta.update(space=space, fit={**figures, "size_mb": size})
        save_part(directory, p)
    return {"parts": [p.name for p in finished], "space": space, "size_mb": size}
