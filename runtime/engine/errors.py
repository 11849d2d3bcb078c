"""Errors of the runtime layer that a user can cause or fix."""
from agents.errors import LatentrayError


class RunError(LatentrayError):
    """A run that cannot start or finish (no questions, a model that failed to load...)."""
