"""`latentray run SPEC`: run questions through a spec, streaming results into --output.

With an output directory the run resumes: problems an earlier, interrupted run of the same
spec and questions finished are kept, and only the rest run (runtime/engine/results.py).
"""
from __future__ import annotations

import sys
import uuid
from pathlib import Path

from latentray.topologies.errors import SpecError

from latentray.runtime.commands.spec_options import add_verbose, in_flight, load_spec_and_plan, replica_count
from latentray.runtime.engine.errors import RunError


def add_parser(sub) -> None:
    p = sub.add_parser("run", help="run questions through a graph spec")
    p.add_argument("spec", help="YAML graph spec")
    p.add_argument("--question", "-q", action="append", default=[], help="a question (repeatable)")
    p.add_argument("--input", "-i", help="JSONL file, one {\"question\": ...} per line")
    p.add_argument("--output", "-o", help="directory for answers/ and trace/ (Parquet, written as batches "
                   "finish), answers.jsonl, summary.json; rerun with the same directory to resume")
    p.add_argument("--method", choices=["latent", "text", "single"], help="override run.method")
    p.add_argument("--batch-size", type=int, help="override run.batch_size")
    p.add_argument("--address", help="Ray cluster address (default: RAY_ADDRESS or a local Ray)")
    p.add_argument("--name", help="run name; actors are named <name>/<agent>")
    p.add_argument("--codecs", help="directory of fitted codec parts (overrides channels.codecs)")
    p.add_argument("--max-in-flight", type=in_flight, help="batches submitted ahead: N, auto or all "
                   "(overrides run.max_in_flight)")
    p.add_argument("--replicas", type=replica_count, help="replicas of each agent that sets none: N or auto "
                   "(overrides run.replicas)")
    p.add_argument("--quiet", action="store_true", help="no progress bar or progress lines")
    p.add_argument("--restart", action="store_true", help="discard the results already in --output and "
                   "run every question again (default: resume)")
    add_verbose(p)


def _questions(args, spec) -> tuple:
    """(questions, ids, rejected): the -q questions, then the --input file's (or run.inputs');
    rejected: {index: reason} of those that cannot be read (they fail, the others run)."""
    from latentray.runtime.engine.questions import read_jsonl_questions, safe_text

    questions, ids, rejected = [], list(range(len(args.question))), {}
    for i, q in enumerate(args.question):
        questions.append(safe_text(q))
        if questions[-1] != q:  # the shell passed bytes that are not UTF-8
            rejected[i] = f"--question {i + 1} is not UTF-8 text; give the question in UTF-8"
    source = args.input or (None if questions else spec.run.inputs)
    if source:
        if spec.run.inputs and not args.input:
            source = str((Path(args.spec).parent / source).resolve())
        file_q, file_ids, file_bad = read_jsonl_questions(source, spec.limits.max_question_chars)
        rejected.update({len(questions) + i: why for i, why in file_bad.items()})
        questions += file_q
        ids += file_ids
    return questions, ids, rejected


def _summary(result, spec, plan, questions: list, answers: dict, failed: dict, resumed: int) -> dict:
    """The run's summary: this invocation's counts, plus how many problems an earlier,
    interrupted run of the same output had finished."""
    base = result.summary(spec, plan) if result else {"model_loads": [], "latent_steps": {}}
    base.update(questions=len(questions), resumed_finished=resumed, problems_failed=len(failed),
                tokens_decoded=sum(t for _, t in answers.values()))
    return base


def _execute(args, spec, plan, questions: list, output, rejected: dict) -> tuple:
    """Run the problems the output does not hold yet; (result or None, {index: (answer, tokens)},
    {index: reason} of the problems that failed, how many problems were finished before)."""
    from latentray.runtime.engine.run import run_spec
    from latentray.runtime.engine.progress import Progress

    todo = output.todo() if output else list(range(len(questions)))
    if output and output.done:
        print(f"[latentray] resuming {output.dir}: {len(output.done)} of {len(questions)} problems already "
              f"finished; running the other {len(todo)}", file=sys.stderr)
    run_name = args.name or f"{spec.name}-{uuid.uuid4().hex[:6]}"

    def on_batch(done):
        if output:
            output.write_done(done, run_name)

    result = None
    if todo:
        progress = Progress(len(questions), desc=spec.name, quiet=args.quiet, done=len(questions) - len(todo))
        try:
            result = run_spec(spec, plan, questions, run_name=run_name, progress=progress, on_batch=on_batch,
                              address=args.address, rejected=rejected, todo=todo,
                              verbose=getattr(args, "verbose", False))
        finally:
            progress.close()
    resumed = len(questions) - len(todo)
    if output:
        return (result, {r["index"]: (r["answer"], r["tokens"]) for r in output.answers()}, output.failures(),
                resumed)
    answers = {i: (result.answers[i], result.tokens[i]) for i in todo if i not in result.failed}
    return result, answers, dict(result.failed), resumed


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
          f"{summary.get('problems_failed', 0)} failed, {summary.get('problems_retried', 0)} retried; "
          f"wall {summary['wall_s']:.2f} s ({summary['run_s']:.2f} s after the models loaded)")


def run(args) -> int:
    from latentray.runtime.engine.results import RunOutput

    spec, plan = load_spec_and_plan(args)
    questions, ids, rejected = _questions(args, spec)
    if not questions:
        raise RunError("no questions to run; give --question, --input FILE.jsonl, or run.inputs in the spec")
    out_dir = args.output or spec.run.output
    if args.restart and not out_dir:
        raise SpecError("needs an output directory", file="--restart", fix="give --output DIR (or run.output)")
    output = RunOutput(out_dir, spec, questions, ids).open(restart=args.restart) if out_dir else None
    try:
        result, answers, failed, resumed = _execute(args, spec, plan, questions, output, rejected)
        for i, q in enumerate(questions):
            shown = q if len(str(q)) <= 2000 else f"{str(q)[:2000]}... ({len(str(q))} characters)"
            outcome = f"A: {answers[i][0]!r}" if i in answers else f"FAILED: {failed.get(i, 'not run')}"
            print(f"[{ids[i]}] Q: {shown}\n    {outcome}")
        summary = _summary(result, spec, plan, questions, answers, failed, resumed)
        if output:
            output.finish(summary if result is not None else None)
            print(f"wrote {out_dir}/answers/ and trace/ (Parquet, one part per batch), answers.jsonl, summary.json")
    finally:
        if output:
            output.close()
    _print_summary(summary, out_dir)
    if failed:
        print(f"[latentray] {len(failed)} of {len(questions)} problems failed (reasons above"
              f"{', and in failed/ of ' + str(out_dir) if out_dir else ''}); the others were answered",
              file=sys.stderr)
        return 1
    return 0
