"""Helper of scripts/gpu_check.sh (standard library only, so it runs even when the set-up failed).

    python scripts/gpu_check.py probe            # with .venv's python: torch, CUDA and GPUs as JSON
    python scripts/gpu_check.py report WORK OUT  # WORK/steps.tsv and the steps' outputs -> OUT (JSON)

report exits 1 when a step failed, 0 otherwise.
"""
from __future__ import annotations

import json
import re
import sys
from pathlib import Path

COUNT = re.compile(r"(\d+) (passed|failed|skipped|deselected|errors?|xfailed|xpassed)\b")
SKIPPED = re.compile(r"^SKIPPED \[\d+\] [^:]+:\d+: (.*)$", re.M)
EQUIV = re.compile(r"max \|logits diff\| = ([-+0-9.eE]+) \(bf16 vs float32 one conversation: ([-+0-9.eE]+)\)")


def probe() -> int:
    import importlib.util

    facts = {"python": sys.version.split()[0]}
    try:
        import torch

        facts.update(torch=torch.__version__, cuda=torch.version.cuda, cuda_available=torch.cuda.is_available(),
                     gpus=torch.cuda.device_count() if torch.cuda.is_available() else 0)
        facts["gpu_names"] = [torch.cuda.get_device_name(i) for i in range(facts["gpus"])]
        import ray

        facts["ray"] = ray.__version__
    except Exception as exc:  # reported, and the GPU steps are skipped
        facts["error"] = f"{type(exc).__name__}: {exc}"
    facts["nixl_installed"] = importlib.util.find_spec("nixl") is not None
    print(json.dumps(facts))
    if "error" in facts:
        print(facts["error"], file=sys.stderr)
        return 1
    if not facts["cuda_available"]:
        print(f"torch {facts['torch']} in .venv sees no CUDA GPU", file=sys.stderr)
        return 1
    return 0


def tail(path: Path, lines: int = 40) -> str:
    try:
        return "\n".join(path.read_text(errors="replace").splitlines()[-lines:])
    except OSError:
        return ""


def pytest_counts(log: str) -> dict:
    """Counts from pytest's closing line ('2 passed, 1 skipped, 300 deselected in 9.1s')."""
    closing = [ln for ln in log.splitlines() if re.search(r"\bin [0-9.]+s\b", ln) and COUNT.search(ln)]
    counts = {"passed": 0, "failed": 0, "skipped": 0}
    for n, what in COUNT.findall(closing[-1] if closing else ""):
        counts["errors" if what.startswith("error") else what] = int(n)
    return counts


def read_json(path: Path):
    try:
        return json.loads(path.read_text())
    except (OSError, ValueError):
        return None


def figures(name: str, work: Path, step: dict) -> None:
    """Add the step's key figures to `step`; a test that only skipped makes the step skipped."""
    log = (work / f"{name}.log").read_text(errors="replace") if (work / f"{name}.log").exists() else ""
    if name == "setup":
        env = step["environment"] = read_json(work / "env.json")
        if step["status"] == "failed" and env:
            step["reason"] = env.get("error") or f"torch {env.get('torch')} in .venv sees no CUDA GPU"
    elif name in ("gpu_tests", "kv_equivalence_bf16"):
        step["tests"] = pytest_counts(log)
        reasons = SKIPPED.findall(log)
        if reasons:
            step["skip_reasons"] = reasons
        if step["status"] == "passed" and not step["tests"]["passed"] and step["tests"]["skipped"]:
            step.update(status="skipped", reason="; ".join(reasons) or "skipped by pytest")
        if name == "kv_equivalence_bf16":
            found = EQUIV.findall(log)
            if found:
                step["max_abs_diff"] = float(found[-1][0])
                step["bf16_vs_float32_reference_max_abs_diff"] = float(found[-1][1])
    elif name == "transport_rdt":
        step["benchmark"] = read_json(work / "transport.json")
    elif name == "chain_2gpu":
        answers = work / "chain" / "answers.jsonl"
        if answers.exists():
            step["answers"] = [json.loads(ln) for ln in answers.read_text().splitlines() if ln.strip()]
        summary = read_json(work / "chain" / "summary.json") or {}
        keep = ("questions", "agents", "messages", "message_bytes", "tokens_decoded", "wall_s", "run_s",
                "problems_failed", "model_loads")
        step["summary"] = {k: summary[k] for k in keep if k in summary}


def report(work: Path, out: Path) -> int:
    steps = {}
    for line in (work / "steps.tsv").read_text().splitlines():
        name, status, seconds, reason = (line.split("\t") + [""] * 4)[:4]
        step = {"status": status, "seconds": round(float(seconds), 1)}
        if reason:
            step["reason"] = reason
        if status != "skipped":
            figures(name, work, step)
        if step["status"] == "failed":
            step["log_tail"] = tail(work / f"{name}.log")
        steps[name] = step
    failed = [n for n, s in steps.items() if s["status"] == "failed"]
    result = {"ok": not failed, "failed_steps": failed, "steps": steps, "logs": str(work)}
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(result, indent=2) + "\n")
    for name, s in steps.items():
        print(f"[gpu_check] {name}: {s['status']} ({s['seconds']} s){': ' + s['reason'] if 'reason' in s else ''}")
    print(f"[gpu_check] wrote {out}")
    return 1 if failed else 0


def main(argv: list) -> int:
    if argv[:1] == ["probe"]:
        return probe()
    if argv[:1] == ["report"] and len(argv) == 3:
        return report(Path(argv[1]), Path(argv[2]))
    print(__doc__, file=sys.stderr)
    return 2


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
