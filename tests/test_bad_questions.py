"""Bad questions and input files, read without running anything: a file that cannot be
questions is refused whole with a typed error; a line or question that cannot run is
rejected alone, with its file, line and reason."""
import json

import pytest

from latentray.runtime.engine.errors import RunError
from latentray.runtime.engine.question_checks import question_problem
from latentray.runtime.engine.questions import read_jsonl_questions, safe_text


def write(path, data: bytes):
    path.write_bytes(data)
    return str(path)


def test_binary_file_is_refused_whole(tmp_path):
    png = write(tmp_path / "image.jsonl", b"\x89PNG\r\n\x1a\n\x00\x00\x00\rIHDR" + bytes(range(256)))
    with pytest.raises(RunError, match=r"image.jsonl: binary content \(a NUL byte at offset 8\), not JSONL"):
        read_jsonl_questions(png)


def test_file_without_any_question_is_refused(tmp_path):
    with pytest.raises(RunError, match=r"no line is a question .*:1: not valid JSON"):
        read_jsonl_questions(write(tmp_path / "a.jsonl", b"hello\nworld\n"))
    with pytest.raises(RunError, match="no questions in the file"):
        read_jsonl_questions(write(tmp_path / "b.jsonl", b"\n  \n"))
    with pytest.raises(RunError, match="input file not found"):
        read_jsonl_questions(str(tmp_path / "missing.jsonl"))


def test_bad_lines_are_rejected_alone_with_their_line(tmp_path):
    lines = [json.dumps({"question": "ok one", "id": "a"}).encode(), b'{"question": "\xff\xfe"}', b"[1, 2]",
             json.dumps({"question": 7}).encode(), json.dumps({"question": "ok two"}).encode()]
    path = write(tmp_path / "q.jsonl", b"\n".join(lines) + b"\n")
    questions, ids, rejected = read_jsonl_questions(path)
    assert questions[0] == "ok one" and questions[4] == "ok two" and ids[0] == "a" and ids[4] == 4
    assert rejected == {1: f"{path}:2: not UTF-8 (byte 0xff at offset 14); save the file as UTF-8",
                        2: f"{path}:3: each line needs a string field 'question'",
                        3: f"{path}:4: each line needs a string field 'question'"}
    assert questions[1] == '{"question": "\\xff\\xfe"}'  # shown escaped, never as broken text


def test_an_over_long_line_is_rejected_without_holding_it(tmp_path):
    huge = json.dumps({"question": "y" * 5_000_000}).encode()
    path = write(tmp_path / "q.jsonl", huge + b"\n" + json.dumps({"question": "after"}).encode() + b"\n")
    questions, _, rejected = read_jsonl_questions(path, max_question_chars=1000)
    assert questions[1] == "after" and list(rejected) == [0]
    assert rejected[0] == (f"{path}:1: the line is longer than 12096 bytes, more than limits.max_question_chars "
                           "allows; shorten the question or raise the limit")
    assert len(questions[0]) < 100  # a placeholder, not the 5 MB line


@pytest.mark.parametrize("question, reason", [
    ("", "the question is empty; give some text"),
    (" \n\t", "the question is empty; give some text"),
    ("a\x00b", "the question holds binary content (control character U+0000 at offset 1); give text"),
    ("ok\x1b[2J", "the question holds binary content (control character U+001B at offset 2); give text"),
    ("bad \udcff", "the question is not valid Unicode (lone surrogate U+DCFF at offset 4); give UTF-8 text"),
    (12, "the question must be a string, not int"),
    (None, "the question must be a string, not NoneType"),
    ("z" * 11, "the question has 11 characters, more than limits.max_question_chars = 10; shorten it or raise "
               "the limit"),
    ({"context": "c"}, "the problem has no 'question' field"),
    ({"question": "q", "context": "\x07"}, "the context holds binary content (control character U+0007 at offset 0); "
                                           "give text"),
])
def test_question_problems_name_what_is_wrong(question, reason):
    assert question_problem(question, 10) == reason


def test_good_questions_pass():
    assert question_problem("What is 2 + 2?\nShow\twork.", 100) is None
    assert question_problem({"question": "q", "context": "some context"}, 100) is None
    assert question_problem("é" * 10, 10) is None


def test_command_line_bytes_that_are_not_utf8_are_escaped():
    assert safe_text("caf\udce9") == "caf\\xe9" and safe_text("plain") == "plain"
    assert safe_text("x\ud800") == "x\\ud800"
