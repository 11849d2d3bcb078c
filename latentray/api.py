"""latentray as a library: load a spec, run questions through it, evaluate it on a data
set, or keep its actors warm in a Session for many calls, sync or async.

    import latentray

    spec = latentray.load_spec("topologies/examples/latent_chain.yaml", batch_size=4)
    result = latentray.run(spec, ["What is 17 + 25?"])
    result.answers, result.tokens, result.trace     # the trace: the rows of trace/ in Parquet

    with latentray.Session(spec) as session:        # actors started once, for every call
        session.run(["What is 2 + 3?"])

Errors are the ones the command line prints as one line, each naming the field and the
fix: latentray.SpecError, latentray.RunError, latentray.DataError, ... (docs/python.md).
"""
from __future__ import annotations

import argparse
import asyncio
from collections.abc import Mapping
from pathlib import Path
from types import SimpleNamespace

from latentray.runtime.eval.runner import METHODS

# the overrides of `latentray run` / `eval`, as keyword arguments
OVERRIDES = ("method", "batch_size", "max_in_flight", "replicas", "codecs")


def load_spec(source, **overrides):
    """A validated spec from a YAML file's path, a mapping (as the YAML parses), or a spec
    already loaded, with `overrides` applied: method, batch_size, max_in_flight, replicas
    (as `latentray run` takes them) and codecs (the fitted parts' directory)."""
    from latentray.topologies import load_spec as load_file
    from latentray.topologies import parse_spec
    from latentray.topologies.errors import SpecError
    from latentray.topologies.spec import GraphSpec

    if isinstance(source, GraphSpec):
        spec = source
    elif isinstance(source, Mapping):
        spec = parse_spec(dict(source))
    elif isinstance(source, (str, Path)):
        spec = load_file(source)
    else:
        raise SpecError(f"a spec is a YAML file's path or a mapping, not a {type(source).__name__}", file="<spec>",
                        fix="pass a path, a dict, or what latentray.load_spec returned")
    return _with_overrides(spec, overrides) if overrides else spec


def run(spec, questions, *, run_name: str | None = None, address: str | None = None, **overrides):
    """Run the questions (strings, or {"question": ..., "context": ...}) through the spec on
    a Ray this process starts (or joins: `address`, RAY_ADDRESS), start to finish; the
    actors stop at the end. Returns the RunResult: answers (None where a problem failed,
    with its reason in .failed), tokens, steps, trace, summary(spec, plan)."""
    from latentray.runtime.engine.run import run_spec
    from latentray.topologies import build_plan

    spec = load_spec(spec, **overrides)
    return run_spec(spec, build_plan(spec), _questions(questions), run_name=run_name, address=address)


def evaluate(spec, dataset: str, output, *, methods=METHODS, limit: int | None = None, split: str | None = None,
             fields: dict | None = None, task: str | None = None, batch_size: int | None = None,
             max_new_tokens: int | None = None, address: str | None = None, restart: bool = False,
             quiet: bool = True) -> dict:
    """`latentray eval` from Python: the spec as each method over the data set's problems
    (a built-in name, a file, a save_to_disk folder, hf:<id>), scored, written to `output`
    (results/<method>.parquet and .json; a rerun resumes there unless `restart`).
    Returns {method: its figures}, the row `latentray report` prints: accuracy with its 95%
    interval (ci_low, ci_high), chance, and tokens, seconds and message bytes per problem.
    `fields`: the field mapping of a file ({"question": "prompt", "answer": "target"})."""
    from latentray.runtime.commands.eval import run as eval_command
    from latentray.runtime.eval.results import read_results
    from latentray.runtime.eval.stats import method_figures

    methods = [methods] if isinstance(methods, str) else list(methods)
    args = argparse.Namespace(
        spec=load_spec(spec), dataset=str(dataset), output=str(output), limit=limit, methods=",".join(methods),
        field=[f"{k}={v}" for k, v in (fields or {}).items()], task=task, split=split, batch_size=batch_size,
        max_new_tokens=max_new_tokens, address=address, quiet=quiet, restart=restart, unsafe_code=False,
        verbose=False)
    eval_command(args, report=False)
    rows, summaries = read_results(Path(output))
    figures = method_figures([r for r in rows if r["method"] in methods], summaries)
    return {f["method"]: f for f in figures}


class Session:
    """A spec's actors, started once and kept for every call until close(): each run()
    (or `await arun()`) answers as latentray.run would, without starting a process or
    loading a model. Calls may overlap (threads, or tasks awaiting arun): Ray queues
    their steps on each actor. A context manager, `with` or `async with`."""

    def __init__(self, spec, *, run_name: str | None = None, address: str | None = None, **overrides):
        from latentray.runtime.engine.session import RunSession
        from latentray.topologies import build_plan

        self.spec = load_spec(spec, **overrides)
        self.plan = build_plan(self.spec)
        self._session = RunSession(self.spec, self.plan, run_name, address)

    @property
    def run_name(self) -> str:
        return self._session.run_name

    def start(self) -> "Session":
        """Pre-flight, Ray and the actors with their models (the first run() does it too)."""
        self._session.start()
        return self

    def run(self, questions):
        """The RunResult of these questions, on this session's actors."""
        from latentray.runtime.engine.run import run_spec

        return run_spec(self.spec, self.plan, _questions(questions), session=self._session)

    async def arun(self, questions):
        """run(), awaited: the steps run in Ray while the event loop goes on."""
        return await asyncio.to_thread(self.run, questions)

    def close(self) -> None:
        """Stop the actors (idempotent)."""
        self._session.close()

    def __enter__(self) -> "Session":
        return self.start()

    def __exit__(self, *exc) -> None:
        self.close()

    async def __aenter__(self) -> "Session":
        await asyncio.to_thread(self.start)
        return self

    async def __aexit__(self, *exc) -> None:
        await asyncio.to_thread(self.close)


def _questions(questions) -> list:
    from latentray.runtime.engine.errors import RunError

    if isinstance(questions, (str, Mapping)):
        return [questions]  # one question
    out = list(questions)
    for i, q in enumerate(out):
        if not isinstance(q, (str, Mapping)) or (isinstance(q, Mapping) and "question" not in q):
            raise RunError(f"question {i} is a {type(q).__name__}: give a string, or a mapping with a 'question' "
                           "(and optionally a 'context')")
    return out


def _with_overrides(spec, overrides: dict):
    from latentray.runtime.commands.spec_options import in_flight, replica_count, with_overrides
    from latentray.topologies.errors import SpecError

    unknown = sorted(set(overrides) - set(OVERRIDES))
    if unknown:
        raise SpecError(f"unknown override(s) {', '.join(unknown)}", file="latentray.load_spec",
                        fix=f"use {', '.join(OVERRIDES)}, or change the spec itself")
    checks = {"max_in_flight": in_flight, "replicas": replica_count}
    for key, check in checks.items():
        if overrides.get(key) is not None:
            try:
                check(str(overrides[key]))
            except argparse.ArgumentTypeError as exc:
                raise SpecError(str(exc), file="latentray.load_spec", field=key, fix="see docs/python.md") from None
    size = overrides.get("batch_size")
    if size is not None and (not isinstance(size, int) or isinstance(size, bool) or size < 1):
        raise SpecError(f"must be a whole number >= 1, got {size!r}", file="latentray.load_spec", field="batch_size",
                        fix="give a positive batch size")
    method = overrides.get("method")
    if method is not None and method not in METHODS:
        raise SpecError(f"unknown method {method!r}", file="latentray.load_spec", field="method",
                        fix=f"use one of {', '.join(METHODS)}")
    return with_overrides(spec, SimpleNamespace(**overrides))
