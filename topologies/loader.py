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
    return SpecError(msg, file=file, field=path, fix="see the field reference in docs/spec_reference.md")


def parse_spec(data, file: str = "<spec>") -> GraphSpec:
    if not isinstance(data, dict):
        raise SpecError("the spec must be a YAML mapping", file=file, fix="start from topologies/examples/")
    try:
        spec = GraphSpec.model_validate(data)
    except ValidationError as exc:
        raise _from_pydantic(exc, file) from None
    validate_spec(spec, file)
    return spec


def _duplicate_key(node, path: str = ""):
    """(field path, key) of the first key given twice in one mapping, or None.

    yaml.safe_load silently keeps the last of two equal keys (two agents named alike).
    """
    if isinstance(node, yaml.MappingNode):
        seen = set()
        for key, value in node.value:
            name = key.value if isinstance(key, yaml.ScalarNode) else str(key)
            if name in seen:
                return path, name
            seen.add(name)
            found = _duplicate_key(value, f"{path}.{name}" if path else name)
            if found:
                return found
    elif isinstance(node, yaml.SequenceNode):
        for i, item in enumerate(node.value):
            found = _duplicate_key(item, f"{path}.{i}" if path else str(i))
            if found:
                return found
    return None


def load_spec(path: str | Path) -> GraphSpec:
    path = Path(path)
    if not path.is_file():
        raise SpecError("spec file not found", file=str(path), fix="check the path")
    text = path.read_text()
    try:
        duplicate = _duplicate_key(yaml.compose(text, Loader=yaml.SafeLoader))
        data = yaml.safe_load(text)
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        where = f" at line {mark.line + 1}, column {mark.column + 1}" if mark else ""
        problem = getattr(exc, "problem", None) or str(exc).replace("\n", " ")
        if isinstance(exc, yaml.constructor.ConstructorError):  # safe_load refused a tag (never ran it)
            raise SpecError(f"YAML tag not allowed{where}: {problem}", file=str(path),
                            fix="remove the tag; a spec is plain data (mappings, lists, strings, numbers)") from None
        raise SpecError(f"not valid YAML{where}: {problem}", file=str(path),
                        fix="check the indentation and brackets just before that point") from None
    if duplicate:
        where, key = duplicate
        raise SpecError(f"duplicate key {key!r}", file=str(path), field=where or key,
                        fix="ids must be unique; rename or remove one")
    return with_codec_dir(parse_spec(data, str(path)), path.parent)


def with_codec_dir(spec: GraphSpec, base: Path, override: str | None = None) -> GraphSpec:
    """channels.codecs made absolute: `override` (relative to the working directory) or
    the spec's own value (relative to the spec file's directory)."""
    codecs = str(Path(override).expanduser().resolve()) if override else spec.channels.codecs
    if codecs and not override and not Path(codecs).expanduser().is_absolute():
        codecs = str((base / codecs).resolve())
    if codecs == spec.channels.codecs:
        return spec
    return spec.model_copy(update={"channels": spec.channels.model_copy(update={"codecs": codecs})})


def load_plan(path: str | Path) -> tuple:
    """(spec, plan) for a YAML file: everything that can be checked before actors start."""
    spec = load_spec(path)
    return spec, build_plan(spec, str(path))


def build_plan(spec: GraphSpec, file: str = "<spec>") -> Plan:
    try:
        params_model, plan_fn = resolve_topology(spec.topology.type)
    except KeyError as exc:
        fix = ("make the module importable (on PYTHONPATH) with that class" if ":" in spec.topology.type
               else "pick a built-in topology")
        raise SpecError(str(exc.args[0]), file=file, field="topology.type", fix=fix) from None
    try:
        params = params_model.model_validate(spec.topology.model_dump())
    except ValidationError as exc:
        raise _from_pydantic(exc, file, prefix="topology") from None
    try:
        plan = plan_fn(spec, params)
    except SpecError as exc:  # topologies know the field, not the file
        raise SpecError(exc.reason, file=file, field=exc.field, fix=exc.fix) from None
    validate_plan(spec, plan, file)
    # The baseline is checked as the full graph, so it fails exactly when the graph would.
    return single_agent_plan(plan) if spec.run.method == "single" else plan


def single_agent_plan(plan: Plan) -> Plan:
    """Baseline: the answering agent alone, reading no messages."""
    from dataclasses import replace

    answer = plan.step(plan.answer_steps[0])
    return Plan(topology=f"{plan.topology}/single", steps=(replace(answer, inputs=()),),
                answer_steps=(answer.id,))
