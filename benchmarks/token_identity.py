"""Which layer of a model still says which token it is reading: the ceiling on what a
codec that reads those states can deliver.

A codec that turns a sender's states into soft tokens can pass on a fact (a number, a
name) only if the states it reads still identify the tokens that spell it. For each layer
(0 = the embedding module's outputs, the last = what `hidden` messages carry), a ridge map
is fit from the RMS-normalised states to the model's own embeddings of the token at the
same position, on 80% of the tokens of real passages (the training passages of
`latentray train-codec`), and scored on the other 20%: the share of held-out tokens whose
mapped state is nearest (by cosine) to their own embedding, over all tokens and over digit
tokens alone.

  python benchmarks/token_identity.py [--model builtin:smollm2-135m] [--passages 400]
"""
from __future__ import annotations

import argparse
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

import torch  # noqa: E402

from latentray.agents.models import load_model  # noqa: E402
from latentray.channels.codecs.resampler import rms_rows  # noqa: E402
from latentray.runtime.codecs.train_data import load_examples  # noqa: E402

TOKENS_PER_PASSAGE = 128
RIDGE = 0.1


def layer_states(model, tokenizer, passages: list) -> tuple:
    """({layer: [N, D] states}, [N] token ids) over every passage's first tokens."""
    per_layer, ids_all = {}, []
    with torch.no_grad():
        for text in passages:
            ids = tokenizer(text, return_tensors="pt")["input_ids"][:, :TOKENS_PER_PASSAGE]
            out = model(input_ids=ids.to(model.device), output_hidden_states=True)
            for layer, h in enumerate(out.hidden_states):
                per_layer.setdefault(layer, []).append(h[0].float().cpu())
            ids_all.append(ids[0])
    return {k: torch.cat(v) for k, v in per_layer.items()}, torch.cat(ids_all)


def recovery(states: torch.Tensor, ids: torch.Tensor, table: torch.Tensor, unit_table: torch.Tensor,
             split: int) -> torch.Tensor:
    """[held-out] booleans: is the ridge-mapped state nearest (by cosine: `unit_table` is
    `table` with unit rows) to its own token's embedding."""
    x = torch.cat([rms_rows(states), torch.ones(len(states), 1)], 1)
    a = x[:split]
    w = torch.linalg.solve(a.T @ a + RIDGE * torch.eye(a.shape[1]), a.T @ table[ids[:split]])
    mapped = torch.nn.functional.normalize(x[split:] @ w, dim=-1)
    return (mapped @ unit_table.T).argmax(-1) == ids[split:]


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--model", default="builtin:smollm2-135m")
    ap.add_argument("--passages", type=int, default=400)
    args = ap.parse_args()
    model, tokenizer, _ = load_model(args.model)
    passages = [e.context for e in load_examples(None, 3)[:args.passages]]
    states, ids = layer_states(model, tokenizer, passages)
    with torch.no_grad():
        embed = model.get_input_embeddings()
        table = embed(torch.arange(embed.weight.shape[0], device=embed.weight.device)).float().cpu()
    unit_table = torch.nn.functional.normalize(table, dim=-1)  # once, not per layer
    split = int(len(ids) * 0.8)
    digits = torch.tensor([tokenizer.decode([int(i)]).strip().isdigit() for i in ids[split:]])
    print(f"{args.model}: {len(ids)} tokens of {len(passages)} passages; {len(ids) - split} held out "
          f"({int(digits.sum())} digits)")
    print(f"{'layer':>5}  {'tokens':>7}  {'digits':>7}")
    for layer, h in sorted(states.items()):
        hit = recovery(h, ids, table, unit_table, split)
        print(f"{layer:>5}  {float(hit.float().mean()):>7.1%}  {float(hit[digits].float().mean()):>7.1%}")


if __name__ == "__main__":
    main()
