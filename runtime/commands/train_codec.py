"""`latentray train-codec SPEC --out DIR`: train the resampler codec for a spec's hidden edges."""
from __future__ import annotations

import sys

from latentray.runtime.commands.spec_options import load_for_parts


def add_parser(sub) -> None:
    p = sub.add_parser("train-codec", help="train the resampler codec for a spec's hidden edges (models frozen)")
    p.add_argument("spec")
    p.add_argument("--out", help="directory for the parts (default: the spec's channels.codecs)")
    p.add_argument("--steps", type=int, default=2000, help="optimizer steps (default 2000)")
    p.add_argument("--data", action="append",
                   help="training examples: coqa, drop, boolq (the default: all three) or a .jsonl/.json file "
                        "with fields context, question, answer; repeat to combine")
    p.add_argument("--context-sentences", type=int, default=3,
                   help="cut each passage to this many sentences around its answer (default 3; 0: whole passages)")
    p.add_argument("--seed", type=int, default=0, help="the parts' initial values and the example order (0)")
    p.add_argument("--batch", type=int, default=4, help="examples per step (default 4)")
    p.add_argument("--lr", type=float, default=1e-3, help="Adam's learning rate (default 1e-3)")
    p.add_argument("--tokens", help="soft tokens each receiver reads: a number of learned queries (default 8), or "
                                    "rows: one per row of the message")
    p.add_argument("--output", choices=["free", "vocabulary"],
                   help="each soft token: free (a vector at the receiver's embedding norm, gated; the default) or "
                        "vocabulary (a softmax-weighted mixture of the receiver's own token embeddings)")
    p.add_argument("--sharpness", type=float,
                   help="cosine -> logit scale of the vocabulary output (default 50; --output vocabulary only)")
    p.add_argument("--top-k", type=int, dest="top_k",
                   help="--output vocabulary over each soft token's k nearest embeddings only (default: the whole "
                        "vocabulary); makes training on a large receiver vocabulary (Gemma's 262K) several times faster")
    p.add_argument("--per-row", type=int, dest="per_row",
                   help="with --tokens rows: up to this many soft tokens per row, each sent where the codec predicts "
                        "it (across tokenizers one sender token may be several receiver tokens, or none)")
    p.add_argument("--token-loss", type=float, dest="token_loss",
                   help="weight of the term that has each row's soft token name, among the receiver's embeddings, the "
                        "token it was (default 1 with --tokens rows; rows only)")
    p.add_argument("--token-steps", type=int, default=0, dest="token_steps",
                   help="the first steps of --steps train on the token loss alone, without running the receiver "
                        "(fast; default 0)")
    p.add_argument("--word-drill", type=int, default=0, dest="word_drill",
                   help="lists of proper nouns the tokenizers hold added to each token step's examples, so that the "
                        "codec learns to spell names passages seldom hold (default 0)")
    p.add_argument("--answer-lr", type=float, dest="answer_lr",
                   help="learning rate once the answer loss trains (default: --lr / 10 after --token-steps, else --lr)")
    p.add_argument("--dim", type=int, help="hub space dimension (default 256)")
    p.add_argument("--heads", type=int, help="cross-attention heads (default 4)")
    p.add_argument("--checkpoint-every", type=int, default=25, help="steps between checkpoints (default 25)")
    p.add_argument("--restart", action="store_true", help="discard a checkpoint of an earlier training in --out")
    p.add_argument("--quiet", action="store_true", help="no progress bar")


def run(args) -> int:
    from latentray.runtime.codecs.train import train_codec

    spec, plan, out = load_for_parts(args)
    given = {"tokens": args.tokens, "dim": args.dim, "heads": args.heads, "output": args.output,
             "sharpness": args.sharpness, "top_k": args.top_k,
             "per_row": args.per_row}
    options = {k: v for k, v in given.items() if v is not None}
    log = lambda text: print(text, file=sys.stderr, flush=True)  # noqa: E731
    figures = train_codec(spec, plan, out, steps=args.steps, data=args.data, seed=args.seed,
                          sentences=args.context_sentences, batch=args.batch,
                          lr=args.lr, options=options, checkpoint_every=args.checkpoint_every,
                          token_weight=args.token_loss, token_steps=args.token_steps, answer_lr=args.answer_lr,
                          word_drill=args.word_drill,
                          restart=args.restart, quiet=args.quiet, log=log)
    print(f"trained {len(figures['parts'])} codec part(s) in {out} ({figures['size_mb']:.2f} MB); held-out loss "
          f"{figures['held_out_before']:.3f} -> {figures['held_out_after']:.3f}")
    return 0
