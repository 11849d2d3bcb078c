"""Errors a user can cause in the agent layer: each says what to do about it."""


class LatentrayError(Exception):
    """Base of every error latentray raises for bad input; the CLI prints it as one line."""


class ModelRefError(LatentrayError, ValueError):
    """A model reference that cannot be resolved (unknown preset, missing directory...)."""
