"""What makes two runs the same run, so a rerun may resume the other's output directory.

The spec counts as it was validated, minus the fields that change how problems are
scheduled but not what an answer is (batch size, batches in flight, replicas, placement,
where the output and inputs live) and the limits (they decide whether a problem may run,
and one that failed on a limit runs again on resume, so a rerun may raise them); the
question set counts in order, ids included. A difference is described
by its first few changed fields or questions, so the refusal says exactly what changed.
"""
from __future__ import annotations

import hashlib
import json

SCHEDULING_FIELDS = ("batch_size", "max_in_flight", "output", "inputs", "replicas")
AGENT_SCHEDULING_FIELDS = ("replicas",)  # how many copies run an agent, not what it answers


def spec_identity(spec) -> dict:
    data = spec.model_dump(mode="json")
    data["run"] = {k: v for k, v in data["run"].items() if k not in SCHEDULING_FIELDS}
    data["agents"] = {name: {k: v for k, v in a.items() if k not in AGENT_SCHEDULING_FIELDS}
                      for name, a in data["agents"].items()}
    data.pop("placement", None)  # where actors run, not what they answer
    data.pop("limits", None)  # whether a problem may run, not what it answers
    return data


def questions_identity(questions: list, ids: list) -> list:
    return [{"id": i, "question": q} for i, q in zip(ids, questions)]


def digest(value) -> str:
    return hashlib.sha256(json.dumps(value, sort_keys=True, ensure_ascii=False).encode()).hexdigest()


def _flatten(value, prefix: str = "") -> dict:
    if isinstance(value, dict):
        out = {}
        for k, v in value.items():
            out.update(_flatten(v, f"{prefix}.{k}" if prefix else str(k)))
        return out or {prefix: {}}
    return {prefix: value}


def _short(value, width: int = 60) -> str:
    text = json.dumps(value, ensure_ascii=False)
    return text if len(text) <= width else text[:width - 3] + "..."


def spec_changes(old: dict, new: dict, limit: int = 3) -> list:
    """['agents.planner.latent_steps: 8 -> 4', ...] for the first `limit` changed fields."""
    a, b = _flatten(old), _flatten(new)
    changed = [k for k in sorted(set(a) | set(b)) if a.get(k, "<absent>") != b.get(k, "<absent>")]
    return [f"{k}: {_short(a.get(k, '<absent>'))} -> {_short(b.get(k, '<absent>'))}" for k in changed[:limit]] + (
        [f"and {len(changed) - limit} more"] if len(changed) > limit else [])


def question_changes(old: list, new: list) -> str:
    """One sentence on how two question sets differ ('' if they do not)."""
    if len(old) != len(new):
        return f"{len(old)} questions then, {len(new)} now"
    for i, (a, b) in enumerate(zip(old, new)):
        if a != b:
            return (f"question {i} (id {_short(a['id'], 20)}) was {_short(a['question'])}, "
                    f"now {_short(b['question'])} (id {_short(b['id'], 20)})")
    return ""
