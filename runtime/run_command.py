"""`latentray run SPEC`: run questions through a spec, streaming results into --output.

With an output directory the run resumes: problems an earlier, interrupted run of the same
spec and questions finished are kept, and only the rest run (runtime/results.py).
"""
from __future__ import annotations

import sys
import uuid
from pathlib import Path

from topologies.errors import SpecError

from .errors import RunError


def _questions(args, spec) -> tuple:
    """(questions, ids): the -q questions, then the --input file's (or run.inputs')."""
    from runtime.questions import read_jsonl_questions

    questions, ids = list(args.question), list(range(len(args.question)))
    source = args.input or (None if questions else spec.run.inputs)
    if source:
        if spec.run.inputs and not args.input:
            source = str((Path(args.spec).parent / source).resolve())
        file_q, file_ids = read_jsonl_questions(source)
        questions += file_q
        ids += file_ids
    return questions, ids


def _summary(result, spec, plan, questions: list, answers: dict, resumed: int) -> dict:
    """The run's summary: this invocation's counts, plus how many problems an earlier,
    interrupted run of the same output had finished."""
    base = result.summary(spec, plan) if result else {"model_loads": [], "latent_steps": {}}
    base.update(questions=len(questions), resumed_finished=resumed,
                tokens_decoded=sum(t for _, t in answers.values()))
    return base


def _execute(args, spec, plan, questions: list, output) -> tuple:
    """Run the problems the output does not hold yet; (result or None, {index: (answer, tokens)},
    how many problems were finished before)."""
    from runtime.engine import run_spec
    from runtime.progress import Progress

    todo = output.todo() if output else list(range(len(questions)))
    if output and output.done:
        print(f"[latentray] resuming {output.dir}: {len(output.done)} of {len(questions)} problems already "
              f"finished; running the other {len(todo)}", file=sys.stderr)
    run_name = args.name or f"{spec.name}-{uuid.uuid4().hex[:6]}"

    def on_batch(done):
        if output:
            output.write_done(done, todo[done.first:done.first + len(done.answers)], run_name)

    result = None
    if todo:
        progress = Progress(len(questions), desc=spec.name, quiet=args.quiet, done=len(questions) - len(todo))
        try:
            result = run_spec(spec, plan, [questions[i] for i in todo], run_name=run_name, progress=progress,
                              on_batch=on_batch, address=args.address)
        finally:
            progress.close()
    resumed = len(questions) - len(todo)
    if output:
        return result, {r["index"]: (r["answer"], r["tokens"]) for r in output.answers()}, resumed
    return result, {todo[i]: (a, t) for i, (a, t) in enumerate(zip(result.answers, result.tokens))}, resumed


def _print_summary(summary: dict, out_dir) -> None:
    for load in summary["model_loads"]:
        how = {"converted": f"converted from GGUF in {load['convert_s']:.1f} s", "cache": "from the cache",
               "built": "built in code", "pretrained": "from_pretrained"}[load["how"]]
        print(f"model {load['ref']} in {load['actor']}: {load['load_s']:.1f} s ({how})", file=sys.stderr)
    if "run_s" not in summary:
        print(f"summary: all {summary['questions']} questions were already finished in {out_dir}")
        return
    steps = ", ".join(f"{a}={n}" for a, n in summary["latent_steps"].items())
    store = summary.get("peak_object_store_bytes")
    store = f"; peak object store {store / 2**20:.1f} MiB" if store is not None else ""
    print(f"summary: {summary['questions']} questions, agents {', '.join(summary['agents'])}; "
          f"latent steps {steps}; tokens decoded {summary['tokens_decoded']}; "
          f"{summary['messages']} messages, {summary['message_bytes'] / 2**20:.2f} MiB{store}; "
          f"wall {summary['wall_s']:.2f} s ({summary['run_s']:.2f} s after the models loaded)")


def run_command(args, with_overrides) -> int:
    from runtime.results import RunOutput
    from topologies import build_plan, load_spec

    spec = load_spec(args.spec)
    if args.batch_size is not None and args.batch_size < 1:
        raise SpecError("must be >= 1", file="--batch-size", fix="give a positive batch size")
    spec = with_overrides(spec, args)
    plan = build_plan(spec, args.spec)
    questions, ids = _questions(args, spec)
    if not questions:
        raise RunError("no questions to run; give --question, --input FILE.jsonl, or run.inputs in the spec")
    out_dir = args.output or spec.run.output
    if args.restart and not out_dir:
        raise SpecError("needs an output directory", file="--restart", fix="give --output DIR (or run.output)")
    output = RunOutput(out_dir, spec, questions, ids).open(restart=args.restart) if out_dir else None
    try:
        result, answers, resumed = _execute(args, spec, plan, questions, output)
        for i, q in enumerate(questions):
            print(f"[{ids[i]}] Q: {q}\n    A: {answers[i][0]!r}")
        summary = _summary(result, spec, plan, questions, answers, resumed)
        if output:
            output.finish(summary if result is not None else None)
            print(f"wrote {out_dir}/answers/ and trace/ (Parquet, one part per batch), answers.jsonl, summary.json")
    finally:
        if output:
            output.close()
    _print_summary(summary, out_dir)
    return 0
