"""Errors a user can cause in the agent layer: each says what to do about it."""


def first_line(exc: BaseException) -> str:
    """The first line of an exception's message (its type's name if it has none): what a
    one-line error or a failed problem's reason quotes of it."""
    text = str(exc).strip()
    return text.splitlines()[0] if text else type(exc).__name__


class LatentrayError(Exception):
    """Base of every error latentray raises for bad input; the CLI prints it as one line."""


class ModelRefError(LatentrayError, ValueError):
    """A model reference that cannot be resolved (unknown preset, missing directory...)."""


class StepTimeoutError(LatentrayError):
    """A step ran past limits.step_timeout_s; checked between forward passes."""


class ProblemInputError(LatentrayError):
    """Some problems of a batch cannot run (their prompt is too long...): `rows` maps each
    row of the batch to its reason, so the others can run without them."""

    def __init__(self, message: str, rows: dict):
        super().__init__(message)
        self.rows = dict(rows)

    def __reduce__(self):  # Ray pickles it from the actor to the driver
        return type(self), (str(self), self.rows)
