"""What the real path costs, in one run on one model: bytes a chain writes per problem
(the whole working memory re-sent at every hop vs each agent's own part once), copies of
the memory per KV hop, the receive-side finiteness check against one copy, decode speed
against `model.generate`, and the chain on Ray against the same agents in one process.

  python benchmarks/chain_cost.py [--spec SPEC] [--input Q.jsonl] [--batch-size 2]
                                  [--decode-batch 4] [--decode-tokens 64] [--json PATH]

Defaults: the main job's chain (builtin:smollm2-135m) on the example questions.
"""
from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "benchmarks"))

from overhead import in_process  # noqa: E402  (imports runtime first: sets the zero-copy flag)
from latentray.runtime.engine.run import run_spec  # noqa: E402
from latentray.runtime.engine.questions import read_jsonl_questions  # noqa: E402
from latentray.topologies import build_plan, load_spec  # noqa: E402


def with_transfer(spec, transfer: str):
    topology = spec.topology.model_copy(update={"transfer": transfer})
    return spec.model_copy(update={"topology": topology})


def bytes_per_problem(spec, questions: list) -> dict:
    """Each transfer mode through the engine on Ray: bytes written into the store (every
    message once) and delivered (every read), per problem; answers must agree."""
    out = {}
    for transfer in ("full", "delta"):
        s = with_transfer(spec, transfer)
        r = run_spec(s, build_plan(s), questions, run_name=f"chain-cost-{transfer}")
        written = sum(sum(st.get("out_bytes", [])) for st in r.steps)
        read = sum(row["bytes"] for row in r.trace)
        out[transfer] = {"written_per_problem": written / len(questions), "read_per_problem": read / len(questions),
                         "run_s": r.run_s, "answers": r.answers}
    return out


def copies_per_hop(spec, questions: list) -> dict:
    """Full copies of the memory made on one hop besides the object store's own write: the
    sender's message and pack, the receiver's validation and cache build, then its latent
    steps and decoding."""
    import torch

    from latentray.agents.agent import Agent
    from latentray.agents.fingerprint import model_fingerprint
    from latentray.agents.models import load_model
    from latentray.channels.transports import get_transport
    from latentray.channels.validate import validate_message
    from latentray.runtime.engine.agent_configs import agent_configs_for
    from latentray.runtime.engine.copy_counter import MovedBytes, kv_bytes

    m = next(iter(spec.models.values()))
    model, tok, _ = load_model(m.ref, dtype=m.dtype)
    fp = model_fingerprint(model, tok)
    names = list(spec.agents)
    cfgs = agent_configs_for(names, spec)
    first, second, last = (Agent(cfgs[n], model, tok, fp) for n in (names[0], names[1], names[-1]))
    batch = questions[:2]
    with torch.inference_mode():
        msg0 = first.step(batch)
        # a sending agent's memory, in the layout its step uses (agents/slot_cache.py)
        state = second.think(second.prefill(batch, [msg0], reserve=second.config.latent_steps, layout="slots"))
        slots = int(state.mask.shape[1])
        with MovedBytes(slots) as send:
            msg = second.emit(state, "kv", "all")
            packed = get_transport("object_store").pack(msg)
        received = get_transport("object_store").unpack(packed)
        with MovedBytes(slots) as receive:
            validate_message(received, receiver=last.config.name, receiver_fingerprint=fp, edge_kind="kv",
                             model_dtype=model.dtype)
            st = last.prefill(batch, [received], reserve=last.config.max_new_tokens + 8)
        with MovedBytes(slots) as after:
            last.decode(last.think(st, 8), max_new_tokens=16)
        size = kv_bytes(msg)
        t_check = _timed(lambda: validate_message(received, receiver=last.config.name, receiver_fingerprint=fp,
                                                  edge_kind="kv", model_dtype=model.dtype))
        t_copy = _timed(lambda: [received.tensors[k].clone() for k in ("keys", "values")])
    return {"memory_bytes": size, "sender_copies": send.bytes / size, "receiver_copies": receive.bytes / size,
            "copies_after_receipt": after.bytes / size, "validate_s": t_check, "one_copy_s": t_copy}


def _timed(fn, n: int = 10) -> float:
    fn()
    t0 = time.perf_counter()
    for _ in range(n):
        fn()
    return (time.perf_counter() - t0) / n


def decode_speed(spec, questions: list, batch: int, tokens: int, repeats: int = 3) -> dict:
    """Greedy tokens/s of the answering agent's decode (prefill included) and of
    model.generate on the same model and prompts (the agent's own rendered prompt), same
    batch and length: generate on the model as transformers builds it, and on the model as
    latentray loads it (its CPU linears, agents/models/cpu_linear.py); the best of `repeats`
    alternating runs of each."""
    import torch

    from latentray.agents.agent import Agent
    from latentray.agents.models import cpu_linear
    from latentray.agents.fingerprint import model_fingerprint
    from latentray.agents.models import load_model
    from latentray.runtime.engine.agent_configs import agent_configs_for

    m = next(iter(spec.models.values()))
    model, tok, _ = load_model(m.ref, dtype=m.dtype)
    name = list(spec.agents)[-1]
    agent = Agent(agent_configs_for([name], spec)[name], model, tok, model_fingerprint(model, tok))
    prompts = [questions[i % len(questions)] for i in range(batch)]
    rows = [agent.render(q) for q in prompts]
    ids = [before + after for before, after in rows]
    width = max(map(len, ids))
    pad = tok.pad_token_id if tok.pad_token_id is not None else 0
    input_ids = torch.tensor([[pad] * (width - len(r)) + r for r in ids])
    mask = torch.tensor([[0] * (width - len(r)) + [1] * len(r) for r in ids])
    with torch.inference_mode():
        def ours():
            state = agent.prefill(prompts, reserve=tokens)
            return agent.decode(state, max_new_tokens=tokens).token_ids

        def theirs(ours_linears: bool = False):
            (cpu_linear.install if ours_linears else cpu_linear.uninstall)(model)
            try:
                out = model.generate(input_ids=input_ids, attention_mask=mask, max_new_tokens=tokens, do_sample=False,
                                     pad_token_id=pad)
            finally:
                cpu_linear.install(model)
            return [[t for t in row.tolist()] for row in out[:, width:]]

        ours()
        theirs()  # warm both
        runs = {"ours": [], "generate": [], "generate_cpu_linear": []}
        for _ in range(repeats):  # alternate, keep each one's best: a shared 2-core machine is noisy
            t0 = time.perf_counter()
            our_ids = ours()
            runs["ours"].append(time.perf_counter() - t0)
            t0 = time.perf_counter()
            gen_ids = theirs()
            runs["generate"].append(time.perf_counter() - t0)
            t0 = time.perf_counter()
            same_ids = theirs(ours_linears=True)
            runs["generate_cpu_linear"].append(time.perf_counter() - t0)
        t_ours, t_gen, t_same = min(runs["ours"]), min(runs["generate"]), min(runs["generate_cpu_linear"])
    stops = agent.stop_ids

    def before_stop(rows):  # generate keeps a finished row going; our answers end at the stop id
        return [row[:next((i for i, t in enumerate(row) if t in stops), len(row))] for row in rows]

    cut, cut_same = before_stop(gen_ids), before_stop(same_ids)
    n = sum(map(len, our_ids))
    return {"batch": batch, "max_new_tokens": tokens, "tokens": n, "identical": our_ids == cut == cut_same,
            "ours_tok_s": n / t_ours, "generate_tok_s": n / t_gen, "ratio": t_gen / t_ours,
            "generate_cpu_linear_tok_s": n / t_same, "ratio_same_linears": t_same / t_ours, "runs_s": runs}


def main(argv=None) -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--spec", default=str(ROOT / "topologies/examples/latent_chain.yaml"))
    p.add_argument("--input", default=str(ROOT / "topologies/examples/questions.jsonl"))
    p.add_argument("--batch-size", type=int, default=2)
    p.add_argument("--decode-batch", type=int, default=4)
    p.add_argument("--decode-tokens", type=int, default=64)
    p.add_argument("--json", type=Path)
    args = p.parse_args(argv)
    spec = load_spec(args.spec)
    spec = spec.model_copy(update={"run": spec.run.model_copy(update={"batch_size": args.batch_size})})
    questions, _, _ = read_jsonl_questions(args.input)
    ref = spec.models[next(iter(spec.models))].ref

    transfer = bytes_per_problem(spec, questions)
    delta_plan = build_plan(with_transfer(spec, "delta"))
    one_answers, one_s = in_process(with_transfer(spec, "delta"), delta_plan, questions)
    copies = copies_per_hop(spec, questions)
    decode = decode_speed(spec, questions, args.decode_batch, args.decode_tokens)

    full, delta = transfer["full"], transfer["delta"]
    print(f"{len(questions)} questions, batch {args.batch_size}, {ref}, chain of {len(spec.agents)}")
    print(f"bytes written per problem: full re-send {full['written_per_problem'] / 2**20:.2f} MiB, delta "
          f"{delta['written_per_problem'] / 2**20:.2f} MiB ({full['written_per_problem'] / delta['written_per_problem']:.2f}x "
          f"less); answers identical: {full['answers'] == delta['answers']}")
    print(f"copies of the memory per KV hop: sender {copies['sender_copies']:.2f} (its message), receiver "
          f"{copies['receiver_copies']:.2f} (its cache), after receipt {copies['copies_after_receipt']:.2f}; "
          f"plus the store write")
    print(f"finiteness + validation {copies['validate_s'] * 1e3:.2f} ms vs one copy of the memory "
          f"{copies['one_copy_s'] * 1e3:.2f} ms ({copies['validate_s'] / copies['one_copy_s']:.2f}x)")
    print(f"decode: {decode['ours_tok_s']:.1f} tok/s vs model.generate {decode['generate_tok_s']:.1f} tok/s "
          f"({decode['ratio']:.2f}x; batch {decode['batch']}, {decode['max_new_tokens']} new tokens, greedy); "
          f"vs model.generate with latentray's CPU linears {decode['generate_cpu_linear_tok_s']:.1f} tok/s "
          f"({decode['ratio_same_linears']:.2f}x); identical tokens: {decode['identical']}")
    print(f"chain on Ray {delta['run_s']:.2f} s vs one process {one_s:.2f} s ({one_s / delta['run_s']:.2f}x); "
          f"answers identical: {one_answers == delta['answers']}")
    if args.json:
        same_in_process = one_answers == delta["answers"]
        for t in transfer.values():
            t.pop("answers")
        args.json.write_text(json.dumps({"model": ref, "questions": len(questions), "batch_size": args.batch_size,
                                         "transfer": transfer, "copies": copies, "decode": decode,
                                         "in_process_s": one_s, "ray_s": delta["run_s"],
                                         "in_process_identical": same_in_process}, indent=2) + "\n")


if __name__ == "__main__":
    main()
