"""The YAML graph spec, its validation, the built-in topologies and example specs."""
from .errors import SpecError
from .loader import build_plan, load_plan, load_spec, parse_spec
from .plan import Edge, Plan, Step
from .spec import GraphSpec

__all__ = ["Edge", "GraphSpec", "Plan", "SpecError", "Step", "build_plan", "load_plan", "load_spec", "parse_spec"]
