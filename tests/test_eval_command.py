"""`latentray eval` and `latentray report`: methods through the same engine, token
accounting on a known input, the results table, the split-information task family."""
from __future__ import annotations

import contextlib
import io
import json

import pytest

from latentray.runtime.cli import main
from latentray.runtime.eval.datasets import load_problems
from latentray.runtime.eval.prompts import format_question
from latentray.runtime.eval.results import read_results
from latentray.runtime.eval.runner import run_method
from latentray.runtime.eval.stats import method_figures, wilson
from latentray.topologies import load_spec

TINY_CHAIN = """\
version: 1
name: tinyeval
models:
  m: {ref: "tiny:qwen3-64"}
agents:  # one actor hosts both: one process to start per method run
  planner: {model: m, role: "Plan: {question}", latent_steps: 3, max_new_tokens: 5, actor: team}
  judger: {model: m, role: "Answer: {question}", output: text, max_new_tokens: 7, actor: team}
topology: {type: chain, order: [planner, judger], memory: accumulate}
run: {batch_size: 2}
"""


@pytest.fixture(scope="module")
def tiny_spec(tmp_path_factory):
    path = tmp_path_factory.mktemp("spec") / "tiny.yaml"
    path.write_text(TINY_CHAIN)
    return path


@pytest.fixture(scope="module")
def qa_file(tmp_path_factory):
    path = tmp_path_factory.mktemp("data") / "qa.jsonl"
    rows = [{"qid": f"q{i}", "prompt": f"What is {i} + {i}?", "target": str(2 * i)} for i in range(3)]
    path.write_text("".join(json.dumps(r) + "\n" for r in rows))
    return path


def eval_args(tiny_spec, qa_file) -> list:
    return ["eval", str(tiny_spec), "--dataset", str(qa_file), "--field", "question=prompt",
            "--field", "answer=target", "--field", "id=qid"]


@pytest.fixture(scope="module")
def evaluated(ray_session, tiny_spec, qa_file, tmp_path_factory):
    """`latentray eval` of single and latent on the qa file, run once for the tests that read
    its results: (output directory, the table it printed)."""
    out = tmp_path_factory.mktemp("eval") / "ev"
    printed = io.StringIO()
    with contextlib.redirect_stdout(printed):
        code = main(eval_args(tiny_spec, qa_file) + ["--methods", "single,latent", "-o", str(out)])
    assert code == 0
    return out, printed.getvalue()


def test_wilson_interval_known_values():
    assert wilson(0, 10) == pytest.approx((0.0, 0.2775), abs=1e-4)
    assert wilson(5, 10) == pytest.approx((0.2366, 0.7634), abs=1e-4)
    assert wilson(10, 10) == pytest.approx((0.7225, 1.0), abs=1e-4)


def test_figures_compare_against_text():
    rows = ([{"method": "text", "correct": c, "decoded_tokens": 100, "prompt_tokens": 10, "seconds": 1.0,
              "message_bytes": 0} for c in (1, 0, 1, 1)]
            + [{"method": "latent", "correct": c, "decoded_tokens": 25, "prompt_tokens": 10, "seconds": 0.5,
                "message_bytes": 1024} for c in (1, 1, 0, 0)])
    figs = {f["method"]: f for f in method_figures(rows, {"text": {"run_s": 8.0}, "latent": {"run_s": 2.0}})}
    assert figs["text"]["accuracy"] == 0.75 and figs["latent"]["accuracy"] == 0.5
    assert figs["latent"]["tokens_vs_text"] == pytest.approx(0.25)
    assert figs["latent"]["speedup_vs_text"] == pytest.approx(4.0)
    assert figs["latent"]["message_bytes_per_problem"] == 1024


@pytest.mark.ray
def test_token_accounting_on_a_known_input(ray_session, tiny_spec, qa_file):
    """Random tiny models never emit EOS, so every text agent decodes exactly its
    max_new_tokens; prompt tokens are counted here from the chat template directly."""
    from latentray.agents.models import build_tiny

    spec = load_spec(tiny_spec)
    problems = load_problems(str(qa_file), mapping={"question": "prompt", "answer": "target", "id": "qid"})
    _, tok = build_tiny("qwen3-64")

    def template_len(text, first=True):
        msgs = [{"role": "user", "content": text}]
        full = tok.apply_chat_template(msgs, add_generation_prompt=True, tokenize=False)
        if first:
            return len(tok(full, add_special_tokens=False)["input_ids"])
        return len(tok("<|im_end|>\n" + full, add_special_tokens=False)["input_ids"])

    rows = {m: run_method(spec, problems, m, dataset="qa")[0] for m in ("single", "text", "latent")}
    for m, rs in rows.items():
        for r, p in zip(rs, problems):
            q = format_question(p)
            judge = template_len(f"Answer: {q}", first=(m == "single"))
            if m == "single":
                assert r["tokens_by_agent"] == {"judger": 7} and r["prompt_tokens"] == judge
                assert r["latent_steps"] == 0 and r["message_bytes"] == 0
            elif m == "text":
                assert r["tokens_by_agent"] == {"planner": 5, "judger": 7} and r["latent_steps"] == 0
                assert r["decoded_tokens"] == 12 and r["message_bytes"] > 0  # the planner's text
                assert r["prompt_tokens"] > template_len(f"Plan: {q}") + template_len(f"Answer: {q}")
            else:
                assert r["tokens_by_agent"] == {"planner": 0, "judger": 7} and r["latent_steps"] == 3
                assert r["prompt_tokens"] == template_len(f"Plan: {q}") + judge
                assert r["message_bytes"] > 0
            assert r["gold"] == str(2 * int(p.id[1:])) and r["question"] == p.question
            assert r["seconds"] > 0 and set(r["seconds_by_agent"]) == set(r["tokens_by_agent"])


@pytest.mark.ray
def test_eval_and_report_commands(evaluated, capsys):
    out, table = evaluated
    assert "single" in table and "latent" in table and "accuracy (95% CI)" in table
    rows, summaries = read_results(out)
    assert sorted({r["method"] for r in rows}) == ["latent", "single"] and len(rows) == 6
    assert set(summaries) == {"latent", "single"} and summaries["latent"]["problems"] == 3
    assert all(r["correct"] in (True, False) and r["task"] == "math" for r in rows)
    code = main(["report", str(out)])
    assert code == 0
    printed = capsys.readouterr().out
    for name in ("accuracy.png", "tokens.png", "time.png"):
        assert (out / name).stat().st_size > 1000 and name in printed
    assert json.loads((out / "figures.json").read_text())[0]["method"] == "single"


def test_eval_errors_are_one_line(tiny_spec, tmp_path, capsys):
    assert main(["eval", str(tiny_spec), "-d", "arc-easy", "--methods", "latent,vote", "-o", str(tmp_path)]) == 2
    assert "--methods: unknown method(s) vote" in capsys.readouterr().err
    assert main(["eval", str(tiny_spec), "-d", "no-such-set", "-o", str(tmp_path)]) == 2
    assert "unknown data set 'no-such-set'" in capsys.readouterr().err
    assert main(["report", str(tmp_path / "empty")]) == 2
    assert "no evaluation results" in capsys.readouterr().err


def test_split_info_problems_hide_the_fact_from_the_question():
    problems = load_problems("split-info")
    assert len(problems) == 200 and problems == load_problems("split-info")
    assert problems != load_problems("split-info:1")
    assert {p.meta["kind"] for p in problems} == {"code", "name", "count", "place", "table"}
    for p in problems:
        assert p.context and p.gold in p.context and p.gold not in p.question
    spec_roles = load_spec("topologies/examples/split_info.yaml").agents
    assert "{context}" in spec_roles["reader"].role and "{context}" not in spec_roles["answerer"].role


def test_squad_keeps_the_passage_private_and_accepts_any_crowd_answer():
    from latentray.runtime.eval.checkers import checker_for

    problems = load_problems("squad")
    assert len(problems) == 1000 and len({p.id for p in problems}) == 1000
    for p in problems:  # extractive: every accepted answer is a span of the passage the receiver never sees
        assert p.gold in p.context and all(a in p.context for a in p.meta["alternatives"])
        assert "Background:" not in p.context and "Question:" not in p.question
    regatta = next(p for p in problems if p.gold == "23 years")
    check = checker_for(regatta.task, regatta.meta["checker"])
    assert regatta.meta["alternatives"] == ("23",)
    assert check.check("It is older by 23.", regatta).correct  # an alternative answer
    assert not check.check("It is older by 123 years.", regatta).correct
    assert load_problems("squad", limit=200) == problems[:200]


@pytest.mark.ray
def test_eval_streams_each_method_and_a_rerun_resumes_it(evaluated, tiny_spec, qa_file, tmp_path, capsys):
    """A method cut short keeps its finished problems in runs/<method>/; the rerun runs
    only the rest and scores every problem once, as an uninterrupted evaluation does."""
    import pyarrow.dataset as ds

    from latentray.runtime.eval.runner import with_method
    from latentray.runtime.eval.runner import problem_inputs
    from latentray.runtime.engine.results import RunOutput

    args = eval_args(tiny_spec, qa_file) + ["--methods", "latent", "--quiet"]
    full, cut = evaluated[0], tmp_path / "cut"  # full: the uninterrupted evaluation
    problems = load_problems(str(qa_file), mapping={"question": "prompt", "answer": "target", "id": "qid"})
    # what an interrupted evaluation leaves: the first problem's batch, in the same store
    spec = with_method(load_spec(tiny_spec), "latent")
    first = ds.dataset(full / "runs" / "latent" / "answers").to_table().to_pylist()
    row = next(r for r in first if r["index"] == 0)
    steps = [s for s in ds.dataset(full / "runs" / "latent" / "steps").to_table().to_pylist()
             if s["run"] == row["run"] and s["batch"] == row["batch"]]
    with RunOutput(cut / "runs" / "latent", spec, problem_inputs(problems), [p.id for p in problems]) as out:
        # an earlier session of the same evaluation: its batch 0, with its step costs, under the
        # name that session ran as (a later session's batch numbers start at 0 again)
        out.write_batch([0], [row["answer"]], [row["tokens"]], [], row["run"], row["batch"],
                        steps=[{**s, "problems": [0]} for s in steps])
    capsys.readouterr()
    assert main(args + ["-o", str(cut)]) == 0
    assert "resuming" in capsys.readouterr().err
    rows_full, _ = read_results(full)
    rows_cut, summaries = read_results(cut)
    assert [r["id"] for r in rows_cut] == ["q0", "q1", "q2"]
    assert [r["answer"] for r in rows_cut] == [r["answer"] for r in rows_full if r["method"] == "latent"]
    assert summaries["latent"]["problems_run"] == 2 and summaries["latent"]["resumed_finished"] == 1
    answered = ds.dataset(cut / "runs" / "latent" / "answers").to_table().column("index").to_pylist()
    assert sorted(answered) == [0, 1, 2]
    # costs per problem are exact after the resume: each problem's batch counted once
    latent_full = [r for r in rows_full if r["method"] == "latent"]
    assert [r["latent_steps"] for r in rows_cut] == [r["latent_steps"] for r in latent_full] == [3, 3, 3]
    assert [r["decoded_tokens"] for r in rows_cut] == [r["decoded_tokens"] for r in latent_full]


def test_eval_restart_discards_another_runs_answers(evaluated, tiny_spec, qa_file, tmp_path, capsys):
    """A rerun with another setting is refused with advice that works for eval: --restart."""
    import shutil

    out = tmp_path / "again"
    shutil.copytree(evaluated[0], out)
    args = eval_args(tiny_spec, qa_file) + ["--methods", "latent", "--quiet", "-o", str(out), "--max-new-tokens", "3"]
    capsys.readouterr()
    assert main(args) == 2
    err = capsys.readouterr().err.strip().splitlines()[-1]
    assert "holds a run of another spec" in err and "add --restart" in err
    assert main(args + ["--restart"]) == 0
    rows, summaries = read_results(out)
    assert summaries["latent"]["problems_run"] == 3 and summaries["latent"]["resumed_finished"] == 0
    assert all(r["tokens_by_agent"]["judger"] <= 3 for r in rows if r["method"] == "latent")
