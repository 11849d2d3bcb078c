"""Load a YAML graph spec, validate it once, and turn it into a Plan.

Every failure is a SpecError naming the file, the field path and the fix.
"""
from __future__ import annotations

from pathlib import Path

import yaml
from pydantic import ValidationError

from .errors import SpecError
from .plan import Plan
from .registry import resolve_topology
from .spec import GraphSpec
from .validate import validate_plan, validate_spec


def _field_path(loc) -> str:
    return ".".join(str(p) for p in loc)


def _from_pydantic(exc: ValidationError, file: str, prefix: str = "") -> SpecError:
    err = exc.errors()[0]
    path = _field_path(err["loc"])
    path = f"{prefix}.{path}" if prefix and path else (prefix or path)
    kind, msg = err["type"], err["msg"].removeprefix("Value error, ")
    if kind == "extra_forbidden":
        return SpecError("unknown key", file=file, field=path, fix="remove it or check its spelling")
    if kind == "missing":
        return SpecError("required field is missing", file=file, field=path, fix="add it")
    return SpecError(msg, file=file, field=path, fix="see the field reference in README.md")


def parse_spec(data, file: str = "<spec>") -> GraphSpec:
    if not isinstance(data, dict):
        raise SpecError("the spec must be a YAML mapping", file=file, fix="start from topologies/examples/")
    try:
        spec = GraphSpec.model_validate(data)
    except ValidationError as exc:
        raise _from_pydantic(exc, file) from None
    validate_spec(spec, file)
    return spec


def load_spec(path: str | Path) -> GraphSpec:
    path = Path(path)
    if not path.is_file():
        raise SpecError("spec file not found", file=str(path), fix="check the path")
    try:
        data = yaml.safe_load(path.read_text())
    except yaml.YAMLError as exc:
        raise SpecError(f"not valid YAML: {exc}".replace("\n", " "), file=str(path)) from None
    return parse_spec(data, str(path))


def build_plan(spec: GraphSpec, file: str = "<spec>") -> Plan:
    try:
        params_model, plan_fn = resolve_topology(spec.topology.type)
    except KeyError as exc:
        raise SpecError(str(exc.args[0]), file=file, field="topology.type") from None
    try:
        params = params_model.model_validate(spec.topology.model_dump())
    except ValidationError as exc:
        raise _from_pydantic(exc, file, prefix="topology") from None
    plan = plan_fn(spec, params)
    if spec.run.method == "single":
        plan = single_agent_plan(plan)
    validate_plan(spec, plan, file)
    return plan


def single_agent_plan(plan: Plan) -> Plan:
    """Baseline: the answering agent alone, reading no messages."""
    from dataclasses import replace

    answer = plan.step(plan.answer_steps[0])
    return Plan(topology=f"{plan.topology}/single", steps=(replace(answer, inputs=()),),
                answer_steps=(answer.id,))
