"""A run's output directory, written as the run goes, so a killed run keeps what it finished.

    DIR/run.json          what run this is: the spec (as validated) and the question set
    DIR/answers/part-*.parquet   one row per finished problem, one part per batch
    DIR/trace/part-*.parquet     one row per message delivered, the same part names
    DIR/steps/part-*.parquet     one row per step call: agent, compute seconds, latent steps,
                                 tokens and prompt tokens per problem
    DIR/failed/part-*.parquet    one row per problem that failed: its reason and retries
    DIR/answers.jsonl, DIR/summary.json   written when the run completes

Each part is written under a dot-name and renamed, so a reader (pyarrow.dataset, which
skips dot-files) never sees half a file; the answers part is renamed last, so a problem
is finished exactly when its answers row exists. A rerun with the same directory reads
which problems are finished, removes what a killed run left half-done (temporary files,
trace and steps parts without their answers part), and runs only the rest, failed problems
included (their old failure rows are dropped, so each problem is reported once); a rerun with another spec
or question set is refused with what changed. A lock file keeps two runs out of one
directory at once.
"""
from __future__ import annotations

import json
import os
import uuid
from pathlib import Path

from latentray.runtime.engine.errors import RunError
from latentray.runtime.engine.run_identity import (digest, question_changes, questions_identity, spec_changes,
                                                    spec_identity)

MANIFEST = "run.json"
TRACE_COLUMNS = ["run", "batch", "problems", "src", "dst", "round", "kind", "bytes", "latency_s", "src_node",
                 "dst_node", "cross_node"]
STEP_COLUMNS = ["run", "batch", "problems", "step", "agent", "round", "pid", "compute_s", "latent_steps", "tokens",
                "prompt_tokens", "actor", "node"]
DATASETS = ("answers", "trace", "steps", "failed")


class ResumeError(RunError):
    """The output directory holds another run."""


def atomic_write(path: Path, write) -> None:
    """write(tmp) to a dot-named temporary beside `path`, then rename it into place."""
    tmp = path.with_name(f".{path.name}.{uuid.uuid4().hex[:8]}.tmp")
    try:
        write(tmp)
        os.replace(tmp, path)
    finally:
        if tmp.exists():
            tmp.unlink()


def _answers_schema():
    import pyarrow as pa

    return pa.schema([("index", pa.int64()), ("id", pa.string()), ("question", pa.string()), ("answer", pa.string()),
                      ("tokens", pa.int64()), ("run", pa.string()), ("batch", pa.int64()), ("retries", pa.int64())])


def _trace_schema():
    import pyarrow as pa

    s, i = pa.string(), pa.int64()
    return pa.schema([("run", s), ("batch", i), ("problems", pa.list_(i)), ("src", s), ("dst", s), ("round", i),
                      ("kind", s), ("bytes", i), ("latency_s", pa.float64()), ("src_node", s), ("dst_node", s),
                      ("cross_node", pa.bool_())])


def _steps_schema():
    import pyarrow as pa

    s, i = pa.string(), pa.int64()
    return pa.schema([("run", s), ("batch", i), ("problems", pa.list_(i)), ("step", s), ("agent", s), ("round", i),
                      ("pid", i), ("compute_s", pa.float64()), ("latent_steps", i), ("tokens", pa.list_(i)),
                      ("prompt_tokens", pa.list_(i)), ("actor", s), ("node", s)])


def _failed_schema():
    import pyarrow as pa

    s, i = pa.string(), pa.int64()
    return pa.schema([("index", i), ("id", s), ("question", s), ("reason", s), ("run", s), ("batch", i),
                      ("retries", i)])


SCHEMAS = {"answers": _answers_schema, "trace": _trace_schema, "steps": _steps_schema, "failed": _failed_schema}


def trace_rows(run_name: str, stats: dict, first_question: int) -> list:
    """One row per message a step received, from its stats; cross_node: whether its bytes
    came from another node's object store (False: read in place)."""
    return [{"run": run_name, "batch": stats["batch"], "first_problem": first_question,
             "src": e["src"], "dst": stats["step"], "round": stats["round"], "kind": e["kind"],
             "bytes": e["bytes"], "latency_s": e["latency_s"], "src_node": e.get("src_node") or None,
             "dst_node": stats.get("node") or None, "cross_node": bool(e.get("cross_node"))}
            for e in stats["inbox"]]


def _question_text(q) -> str:
    return q if isinstance(q, str) else json.dumps(q, ensure_ascii=False)


class RunOutput:
    def __init__(self, out_dir, spec, questions: list, ids: list | None = None):
        self.dir = Path(out_dir)
        self.questions = list(questions)
        self.ids = list(ids) if ids is not None else list(range(len(self.questions)))
        self.manifest = {"spec": spec_identity(spec), "spec_name": spec.name,
                         "questions": questions_identity([_question_text(q) for q in self.questions], self.ids)}
        self.manifest["digest"] = digest([self.manifest["spec"], self.manifest["questions"]])
        self.done: set = set()
        self._lock = None
        self._seq = 0
        self._session = uuid.uuid4().hex[:8]

    # -- opening: identity, lock, clean-up, what is finished --------------------------------
    def open(self, restart: bool = False) -> "RunOutput":
        """restart: discard an earlier run's results in the directory (only the files this
        class writes) and start over, whatever that run was."""
        self.dir.mkdir(parents=True, exist_ok=True)
        self._take_lock()
        if restart:
            self._discard()
        path = self.dir / MANIFEST
        if path.exists():
            self._check_same_run(json.loads(path.read_text()))
        else:
            atomic_write(path, lambda tmp: tmp.write_text(json.dumps(self.manifest, ensure_ascii=False, indent=1)))
        for sub in DATASETS:
            (self.dir / sub).mkdir(exist_ok=True)
            for tmp in (self.dir / sub).glob(".*.tmp"):
                tmp.unlink()
        answered = {p.name for p in (self.dir / "answers").glob("part-*.parquet")}
        for sub in ("trace", "steps"):
            for part in (self.dir / sub).glob("part-*.parquet"):
                if part.name not in answered:  # its batch died before its answers part was renamed
                    part.unlink()
        for part in (self.dir / "failed").glob("part-*.parquet"):
            part.unlink()  # failed problems run again
        self.done = {r["index"] for r in self._read("answers", ["index"])}
        return self

    def _discard(self) -> None:
        import shutil

        for sub in DATASETS:
            shutil.rmtree(self.dir / sub, ignore_errors=True)
        for name in (MANIFEST, "answers.jsonl", "summary.json"):
            (self.dir / name).unlink(missing_ok=True)

    def _take_lock(self) -> None:
        import fcntl

        self._lock = open(self.dir / ".lock", "w")
        try:
            fcntl.flock(self._lock, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            self._lock.close()
            raise ResumeError(f"{self.dir}: another latentray run is writing this directory; wait for it "
                              "or give another --output") from None

    def _check_same_run(self, old: dict) -> None:
        if old.get("digest") == self.manifest["digest"]:
            return
        fix = (f"run the same spec and questions to resume, add --restart to discard its results, or give "
               f"another --output than {self.dir}")
        if old.get("spec") != self.manifest["spec"]:
            changes = "; ".join(spec_changes(old.get("spec", {}), self.manifest["spec"]))
            raise ResumeError(f"{self.dir} holds a run of another spec ({changes}); {fix}")
        changed = question_changes(old.get("questions", []), self.manifest["questions"])
        raise ResumeError(f"{self.dir} holds a run of other questions ({changed}); {fix}")

    def close(self) -> None:
        if self._lock is not None:
            self._lock.close()
            self._lock = None

    def __enter__(self) -> "RunOutput":
        return self if self._lock is not None else self.open()

    def __exit__(self, *exc) -> None:
        self.close()

    # -- writing ------------------------------------------------------------------------------
    def todo(self) -> list:
        """Indices of the problems not finished yet, in order."""
        return [i for i in range(len(self.questions)) if i not in self.done]

    def write_batch(self, indices: list, answers: list, tokens: list, trace: list, run: str, batch: int,
                    retries: int = 0, steps: list = ()) -> None:
        """One finished batch: its trace and step rows, then (the commit) its answers rows.
        trace: trace rows (trace_rows); steps: the batch's step stats."""
        import pyarrow as pa
        import pyarrow.parquet as pq

        self._seq += 1
        name = f"part-{self._session}-{self._seq:06d}.parquet"
        for sub, rows, columns in (("trace", trace, TRACE_COLUMNS), ("steps", steps, STEP_COLUMNS)):
            data = {c: [r.get(c) for r in rows] for c in columns}
            data["run"], data["problems"] = [run] * len(rows), [list(indices)] * len(rows)
            table = pa.table(data, schema=SCHEMAS[sub]())
            atomic_write(self.dir / sub / name, lambda tmp, t=table: pq.write_table(t, tmp))
        answers_table = pa.table({
            "index": list(indices), "id": [str(self.ids[i]) for i in indices],
            "question": [_question_text(self.questions[i]) for i in indices], "answer": list(answers),
            "tokens": list(tokens), "run": [run] * len(indices), "batch": [batch] * len(indices),
            "retries": [retries] * len(indices)}, schema=_answers_schema())
        atomic_write(self.dir / "answers" / name, lambda tmp: pq.write_table(answers_table, tmp))
        self.done.update(indices)

    def write_failed(self, reasons: dict, run: str, batch: int, retries: int = 0) -> None:
        """Problems that failed, {index: reason}: one part, so a resumed run knows to run them again."""
        import pyarrow as pa
        import pyarrow.parquet as pq

        self._seq += 1
        indices = sorted(reasons)
        table = pa.table({
            "index": indices, "id": [str(self.ids[i]) for i in indices],
            "question": [_question_text(self.questions[i]) for i in indices],
            "reason": [reasons[i] for i in indices], "run": [run] * len(indices), "batch": [batch] * len(indices),
            "retries": [retries] * len(indices)}, schema=_failed_schema())
        name = f"part-{self._session}-{self._seq:06d}.parquet"
        atomic_write(self.dir / "failed" / name, lambda tmp: pq.write_table(table, tmp))

    def write_done(self, done, run: str) -> None:
        """A runtime.engine.scheduler.BatchDone of a run of this output's questions (the same
        numbering): its answered rows and its failures."""
        if done.indices:
            trace = [row for s in done.step_stats for row in trace_rows(run, s, done.indices[0])]
            self.write_batch(done.indices, done.answers, done.tokens, trace, run, done.batch, done.retries,
                             done.step_stats)
        if done.failed:
            self.write_failed(done.failed, run, done.batch, done.retries)

    # -- reading and finishing ----------------------------------------------------------------
    def _read(self, sub: str, columns=None) -> list:
        import pyarrow.dataset as ds

        folder = self.dir / sub
        if not folder.is_dir() or not any(folder.glob("part-*.parquet")):
            return []
        return ds.dataset(folder, format="parquet", schema=SCHEMAS[sub]()).to_table(columns=columns).to_pylist()

    def answers(self) -> list:
        """Every finished problem's row, in question order."""
        return sorted(self._read("answers"), key=lambda r: r["index"])

    def trace(self) -> list:
        return self._read("trace")

    def failures(self) -> dict:
        """{index: reason} of the problems that failed in this run."""
        return {r["index"]: r["reason"] for r in self._read("failed", ["index", "reason"])}

    def steps(self) -> list:
        return self._read("steps")

    def finish(self, summary: dict | None) -> None:
        """answers.jsonl (every problem, with its original id) and summary.json, atomically;
        summary None (nothing ran this time) keeps a summary.json already there."""
        rows = self.answers()
        failed = self._read("failed")
        lines = sorted([(r["index"], {"answer": r["answer"], "tokens": r["tokens"], "retries": r["retries"]})
                        for r in rows] +
                       [(r["index"], {"answer": None, "error": r["reason"], "retries": r["retries"]})
                        for r in failed], key=lambda x: x[0])

        def write(tmp):
            with open(tmp, "w") as f:
                for i, fields in lines:
                    line = {"id": self.ids[i], "question": self.questions[i], **fields}
                    f.write(json.dumps(line, ensure_ascii=False) + "\n")

        atomic_write(self.dir / "answers.jsonl", write)
        if summary is not None or not (self.dir / "summary.json").exists():
            atomic_write(self.dir / "summary.json",
                    lambda tmp: tmp.write_text(json.dumps(summary or {}, indent=2) + "\n"))
