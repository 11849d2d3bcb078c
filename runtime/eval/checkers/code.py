"""Code answers (HumanEval style): run the candidate against the problem's tests in the
sandbox. Correct means the problem's `check` ran to its end: the sandbox's harness calls
it after the candidate's module has run and only then reports a pass, so a candidate
that exits, kills itself, times out or replaces `check` or the builtins is wrong."""
from __future__ import annotations

import re

from latentray.runtime.eval.problem import Problem
from latentray.runtime.eval.sandbox import run_python
from latentray.runtime.eval.checkers.base import Checker, CheckResult

_FENCE = re.compile(r"```[ \t]*(?:python3?|py)?[ \t]*\n(.*?)(?:```|\Z)", re.DOTALL | re.IGNORECASE)


def extract_code(answer: str, entry_point: str) -> str:
    """The fenced block that defines the entry point, else the last fenced block, else
    the whole answer."""
    blocks = _FENCE.findall(answer or "")
    for block in blocks:
        if _defines(block, entry_point):
            return block
    return blocks[-1] if blocks else (answer or "")


def build_program(code: str, problem: Problem) -> str:
    """The candidate's module: a body-only completion goes under the prompt's signature; a
    full function still gets the prompt first (its imports and helper functions), unless
    that combination does not compile. The problem's test runs apart from it."""
    prompt = str(problem.meta.get("prompt") or problem.question).rstrip("\n") + "\n"
    if _defines(code, problem.meta["entry_point"]):
        return _first_compiling(prompt + "\n" + code, code)
    return _first_compiling(prompt + code, prompt + _indent(code))  # chat models drop a body's indentation


class CodeChecker(Checker):
    name = "code"

    def __init__(self, timeout_s: float = 10.0, memory_mb: int = 512):
        self.timeout_s = timeout_s
        self.memory_mb = memory_mb

    def check(self, answer: str, problem: Problem, cut_off: bool = False) -> CheckResult:
        missing = [k for k in ("entry_point", "test") if not problem.meta.get(k)]
        if missing:
            return CheckResult(None, False, f"problem {problem.id!r} has no {' or '.join(missing)} in its meta")
        code = extract_code(answer, problem.meta["entry_point"])
        result = run_python(build_program(code, problem), timeout_s=self.timeout_s, memory_mb=self.memory_mb,
                            test=problem.meta["test"], entry_point=problem.meta["entry_point"])
        if result.timed_out:
            detail = "timeout"
        elif result.passed:
            detail = "passed"
        elif result.killed_by:
            detail = f"killed: {result.killed_by}"
        else:
            lines = [line for line in result.stderr.splitlines() if line.strip()]
            detail = "failed: " + (lines[-1].strip() if lines else
                                   f"exit code {result.returncode} before the test finished")
        return CheckResult(code, bool(result.passed), detail)


def _defines(code: str, name: str) -> bool:
    return re.search(rf"^\s*(?:async\s+)?def\s+{re.escape(name)}\s*\(", code, re.MULTILINE) is not None


def _indent(code: str) -> str:
    return "".join("    " + line if line.strip() else line for line in code.splitlines(keepends=True))


def _first_compiling(*sources: str) -> str:
    for source in sources:
        try:
            compile(source, "candidate.py", "exec")
            return source
        except Exception:  # SyntaxError, or RecursionError on absurd nesting: try the next
            continue
    return sources[-1]
