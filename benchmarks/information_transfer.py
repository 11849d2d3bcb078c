"""What each channel really carries: the split-information task (a private note only the
sender reads, a question only the receiver sees) run once per channel on the same
problems, models and seeds:

  none            the receiver alone (method single): no message
  text            the sender writes the note out, the receiver reads it (method text)
  kv              the sender's whole KV cache: its prompt (with the note) and latent steps
  kv_latent_only  only the sender's latent-step slots of that cache
  hidden          the sender's latent thoughts as soft tokens in the receiver's input
  prompt          the sender's last-layer states over its prompt (with the note) and its
                  latent steps, realigned into soft tokens (hidden_states: prompt)
  ridge, relative, hub
                  across two different models (--reader-model / --answerer-model): the
                  same prompt states, carried by that codec (fit it first with
                  `latentray fit-codec SPEC --codec ridge,relative,hub --out DIR`)
  trained         the same prompt states and latent thoughts through the trained
                  resampler codec, across models or within one (train it first with
                  `latentray train-codec SPEC --out DIR` on a spec of these models), of
                  the layer its parts were trained on (channels.hidden_layer) and the spec's
                  prompt rows (hidden_states prompt, or role: the turn's own text only),
                  each soft token read as a mixture of the receiver's embeddings (codec_read mixture)
  trained_nearest the same, each soft token read as its most likely token (codec_read
                  nearest; parts trained with --output vocabulary)

  python benchmarks/information_transfer.py [--limit 100] [--output DIR] [--json PATH]
  python benchmarks/information_transfer.py --dataset squad --limit 200   # SQuAD passages, same roles
  python benchmarks/information_transfer.py --reader-model builtin:gemma3-270m \
      --answerer-model builtin:smollm2-135m --codecs out/codecs/smollm2_gemma3 \
      --channels none,text,ridge,relative,hub

Prints accuracy with a 95% interval, message bytes, decoded tokens and seconds per
problem per channel, and writes one Parquet part per channel under --output.
"""
from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from latentray.runtime.eval.datasets import load_problems  # noqa: E402  (runtime first: sets the zero-copy flag)
from latentray.runtime.eval.results import write_method  # noqa: E402
from latentray.runtime.eval.runner import run_method  # noqa: E402
from latentray.runtime.eval.stats import method_figures  # noqa: E402
from latentray.topologies import load_spec  # noqa: E402

SPEC = ROOT / "topologies/examples/split_info.yaml"
# channel -> (method, channels overrides)
CHANNELS = {
    "none": ("single", {}),
    "text": ("text", {}),
    "kv": ("latent", {"kind": "kv"}),
    "kv_latent_only": ("latent", {"kind": "kv", "compression": ("latent_only",)}),
    "hidden": ("latent", {"kind": "hidden"}),
    "prompt": ("latent", {"kind": "hidden", "hidden_states": "prompt"}),
    "ridge": ("latent", {"kind": "hidden", "hidden_states": "prompt", "codec": "ridge"}),
    "relative": ("latent", {"kind": "hidden", "hidden_states": "prompt", "codec": "relative"}),
    "hub": ("latent", {"kind": "hidden", "hidden_states": "prompt", "codec": "hub"}),
    "trained": ("latent", {"kind": "hidden", "hidden_states": "prompt", "codec": "resampler"}),
    "trained_nearest": ("latent", {"kind": "hidden", "hidden_states": "prompt", "codec": "resampler",
                                   "codec_read": "nearest"}),
}
TRAINED = ("trained", "trained_nearest")


def with_channels(spec, overrides: dict):
    return spec.model_copy(update={"channels": spec.channels.model_copy(update=overrides)})


def with_models(spec, reader: str | None, answerer: str | None):
    """The reader and the answerer on the given model refs (each its own model entry)."""
    if not reader and not answerer:
        return spec
    base = spec.models[spec.agents["reader"].model]
    models = {"reader_model": base.model_copy(update={"ref": reader or base.ref}),
              "answerer_model": base.model_copy(update={"ref": answerer or base.ref})}
    agents = {name: a.model_copy(update={"model": f"{name}_model"}) for name, a in spec.agents.items()}
    spec = spec.model_copy(update={"models": models, "agents": agents})
    if models["reader_model"].ref != models["answerer_model"].ref:  # kv cannot cross models
        spec = with_channels(spec, {"kind": "hidden", "hidden_states": prompt_rows(spec), "codec": "hub"})
    return spec


def prompt_rows(spec) -> str:
    """The prompt rows the spec's hidden messages carry (prompt unless it says role)."""
    return "role" if spec.channels.hidden_states == "role" else "prompt"


def trained_layer(directory: str | None):
    """The sender layer the resampler parts in `directory` read ("last" if none say)."""
    layers = {json.loads(p.read_text()).get("layers", "last")
              for p in Path(directory or ".").glob("resampler-enc--*.json")} if directory else set()
    if len(layers) > 1:
        raise SystemExit(f"{directory}: resampler encoder parts of different layers {sorted(map(str, layers))}")
    return layers.pop() if layers else "last"


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--spec", default=str(SPEC))
    parser.add_argument("--dataset", default="split-info")
    parser.add_argument("--limit", type=int, default=100)
    parser.add_argument("--channels", default=",".join(CHANNELS))
    parser.add_argument("--output", type=Path, default=ROOT / "out" / "information_transfer")
    parser.add_argument("--json", type=Path)
    parser.add_argument("--reader-model", help="model ref of the reader (the sender)")
    parser.add_argument("--answerer-model", help="model ref of the answerer (the receiver)")
    parser.add_argument("--codecs", help="directory of fitted codec parts for the codec channels")
    args = parser.parse_args(argv)
    spec = with_models(load_spec(args.spec), args.reader_model, args.answerer_model)
    if args.codecs:
        spec = with_channels(spec, {"codecs": str(Path(args.codecs).resolve())})
    problems = load_problems(args.dataset, limit=args.limit)
    rows, summaries = [], {}
    for name in args.channels.split(","):
        method, overrides = CHANNELS[name]
        # a channel that names no codec takes the default (a spec of the trained codec has kv too)
        overrides = {"codec": "auto", "codec_read": "mixture", **overrides,
                     "hidden_layer": trained_layer(spec.channels.codecs) if name in TRAINED else "last"}
        if name in TRAINED:  # the rows its parts were trained on
            overrides["hidden_states"] = prompt_rows(spec)
        r, summary = run_method(with_channels(spec, overrides), problems, method, dataset=args.dataset)
        for row in r:
            row["method"] = name
        summary.update(channel=name, method=method)
        write_method(args.output, name, r, summary)
        rows += r
        summaries[name] = summary
        print(f"[bench] {name}: {sum(x['correct'] for x in r)}/{len(r)} correct", file=sys.stderr, flush=True)
    figures = method_figures(rows, summaries)
    refs = [spec.models[spec.agents[a].model].ref for a in ("reader", "answerer")]
    print(f"{args.dataset}, {len(problems)} problems, reader {refs[0]}, answerer {refs[1]}")
    print(f"{'channel':<15} {'accuracy (95% CI)':>22} {'message bytes':>14} {'tokens':>7} {'s/problem':>10}")
    for f in figures:
        acc = f"{f['accuracy']:6.1%} ({f['ci_low']:.1%}-{f['ci_high']:.1%})"
        print(f"{f['method']:<15} {acc:>22} {f['message_bytes_per_problem']:>14,.0f} "
              f"{f['tokens_per_problem']:>7.1f} {f['seconds_per_problem']:>10.2f}")
    kind_of = {p.id: p.meta.get("kind", args.dataset) for p in problems}  # split-info's fact kinds; one for others
    print("correct per fact kind:")
    for name in summaries:
        mine = [r for r in rows if r["method"] == name]
        counts = {k: [0, 0] for k in sorted(set(kind_of.values()))}
        for r in mine:
            counts[kind_of[r["id"]]][0] += r["correct"]
            counts[kind_of[r["id"]]][1] += 1
        print(f"  {name:<15} " + ", ".join(f"{k} {c}/{n}" for k, (c, n) in counts.items()))
    if args.json:
        args.json.write_text(json.dumps(figures, indent=2) + "\n")


if __name__ == "__main__":
    main()
