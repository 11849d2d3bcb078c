"""Typed errors raised when a latent message is malformed or does not fit its receiver."""


class MessageError(ValueError):
    """A message that cannot be used by its receiver; says sender, receiver and field."""

    def __init__(self, message: str, *, sender: str = "?", receiver: str = "?", field: str = "?"):
        self.sender, self.receiver, self.field = sender, receiver, field
        super().__init__(f"message {sender} -> {receiver}, field {field}: {message}")
