"""Per-method figures of an evaluation: accuracy with a 95% Wilson interval, decoded tokens
and seconds per problem, and ratios against the text method."""
from __future__ import annotations

import math

Z95 = 1.959963984540054


def wilson(correct: int, n: int, z: float = Z95) -> tuple:
    """95% Wilson score interval of a proportion (well behaved at 0%, 100% and small n)."""
    if n == 0:
        return 0.0, 0.0
    p = correct / n
    centre = (p + z * z / (2 * n)) / (1 + z * z / n)
    half = z * math.sqrt(p * (1 - p) / n + z * z / (4 * n * n)) / (1 + z * z / n)
    return max(0.0, centre - half), min(1.0, centre + half)


def chance(rows: list):
    """Accuracy of guessing uniformly among the options, averaged over the problems; None
    unless every problem is multiple choice (an answer there can be right by luck alone)."""
    options = [r.get("options") or 0 for r in rows]
    if not options or not all(options):
        return None
    return sum(1.0 / n for n in options) / len(options)


def method_figures(rows: list, summaries: dict) -> list:
    """One dict per method, in the order methods first appear in rows."""
    order = list(dict.fromkeys(r["method"] for r in rows))
    out = []
    for m in order:
        mine = [r for r in rows if r["method"] == m]
        n, correct = len(mine), sum(r["correct"] for r in mine)
        lo, hi = wilson(correct, n)
        # a resumed method's run time covers the problems run in its last session only
        summary = summaries.get(m, {})
        timed = summary.get("problems_run", n) if summary.get("run_s") else n
        run_s = summary.get("run_s") or sum(r["seconds"] for r in mine)
        out.append({"method": m, "problems": n, "correct": correct, "accuracy": correct / n if n else 0.0,
                    "ci_low": lo, "ci_high": hi, "chance": chance(mine),
                    "tokens_per_problem": sum(r["decoded_tokens"] for r in mine) / max(n, 1),
                    "prompt_tokens_per_problem": sum(r["prompt_tokens"] for r in mine) / max(n, 1),
                    "seconds_per_problem": run_s / max(timed, 1),
                    "message_bytes_per_problem": sum(r["message_bytes"] for r in mine) / max(n, 1)})
    text = next((f for f in out if f["method"] == "text"), None)
    for f in out:
        f["tokens_vs_text"] = f["tokens_per_problem"] / text["tokens_per_problem"] if text and \
            text["tokens_per_problem"] else None
        f["speedup_vs_text"] = text["seconds_per_problem"] / f["seconds_per_problem"] if text and \
            f["seconds_per_problem"] else None
    return out


def format_table(figures: list) -> str:
    head = (f"{'method':<8} {'n':>5} {'accuracy (95% CI)':>22} {'chance':>7} {'tokens/problem':>15} {'s/problem':>10} "
            f"{'tokens vs text':>15} {'speed vs text':>14}")
    lines = [head, "-" * len(head)]
    for f in figures:
        acc = f"{f['accuracy']:6.1%} ({f['ci_low']:.1%}-{f['ci_high']:.1%})"
        tok = f"{f['tokens_vs_text']:.2f}x" if f["tokens_vs_text"] is not None else "-"
        spd = f"{f['speedup_vs_text']:.2f}x" if f["speedup_vs_text"] is not None else "-"
        odds = f"{f['chance']:.1%}" if f.get("chance") is not None else "-"
        lines.append(f"{f['method']:<8} {f['problems']:>5} {acc:>22} {odds:>7} {f['tokens_per_problem']:>15.1f} "
                     f"{f['seconds_per_problem']:>10.2f} {tok:>15} {spd:>14}")
    return "\n".join(lines)
