"""The question text an agent sees: `format_question(problem)` replaces `{question}` in
the role templates. Wordings live in one table and stay short: the smallest model we run
is a 135M-parameter chat model that follows one plain instruction at best."""
from __future__ import annotations

from latentray.runtime.eval.problem import Problem

INSTRUCTIONS = {
    "choice": "Answer with the letter of the correct option.",
    "math": "Give the final answer as a number on the last line, in the form: #### <number>",
    "exact": "",
    "code": "Complete the function. Return the full function in a ```python code block.",
}


def format_question(problem: Problem) -> str:
    """The question with its options (multiple choice) and the answer-format instruction."""
    if problem.task == "choice":
        options = "\n".join(f"{label}. {text}" for label, text in zip(problem.labels, problem.choices))
        body = f"{problem.question.rstrip()}\n{options}"
    elif problem.task == "code":
        # Fenced, so the instruction is not read as part of the function's docstring.
        body = "```python\n" + str(problem.meta.get("prompt") or problem.question).rstrip() + "\n```"
    else:
        body = problem.question.rstrip()
    instruction = INSTRUCTIONS[problem.task]
    return f"{body}\n{instruction}" if instruction else body
