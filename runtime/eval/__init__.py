"""`latentray eval`: data sets, prompts and answer checkers (the eval command and the
reports build on these)."""
from latentray.runtime.eval.checkers import CHECKERS, CheckResult, checker_for, get_checker
from latentray.runtime.eval.datasets import DATASETS, load_problems, parse_field_mapping
from latentray.runtime.eval.problem import DataError, Problem
from latentray.runtime.eval.prompts import format_question
from latentray.runtime.eval.sandbox import SandboxResult, run_python

__all__ = ["CHECKERS", "DATASETS", "CheckResult", "DataError", "Problem", "SandboxResult", "checker_for",
           "format_question", "get_checker", "load_problems", "parse_field_mapping", "run_python"]
