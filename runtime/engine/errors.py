"""Errors of the runtime layer that a user can cause or fix."""
from latentray.agents.errors import LatentrayError
from latentray.channels.errors import CodecError, MessageError
from latentray.topologies.errors import SpecError


class RunError(LatentrayError):
    """A run that cannot start or finish (no questions, a model that failed to load...)."""


# What a user can cause and fix: the CLI prints these as one line (exit 2), validate lists them.
USER_ERRORS = (LatentrayError, SpecError, MessageError, CodecError)
