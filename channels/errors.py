"""Typed errors raised when a latent message is malformed or does not fit its receiver."""


class MessageError(ValueError):
    """A message that cannot be used by its receiver; says sender, receiver and field."""

    def __init__(self, message: str, *, sender: str = "?", receiver: str = "?", field: str = "?"):
        self.sender, self.receiver, self.field = sender, receiver, field
        super().__init__(f"message {sender} -> {receiver}, field {field}: {message}")


class TransportError(RuntimeError):
    """A message could not be moved between actors: says which transport and what to do."""

    def __init__(self, message: str, *, transport: str = "?", field: str = ""):
        self.transport, self.field = transport, field  # field: the part of a message at fault, if one is
        super().__init__(f"transport {transport}: {message}")


class TransportUnavailable(TransportError):
    """The transport a channel asks for cannot run here (no CUDA, Ray too old, missing library)."""


class MessageTooLargeError(MessageError):
    """A message larger than limits.max_message_bytes. Its text says the step, the size and
    what to do, so it is not prefixed like other message errors."""

    def __init__(self, message: str, *, sender: str = "?", field: str = "limits.max_message_bytes"):
        self.sender, self.receiver, self.field = sender, "?", field
        ValueError.__init__(self, message)


class FingerprintMismatchError(MessageError):
    """A kv message from a model other than the receiver's (weights, tokenizer or geometry)."""


class CompressionError(MessageError):
    """A compression that cannot apply to this message (wrong kind, bad order, overflow...)."""


class CodecError(ValueError):
    """A codec that cannot be fitted, loaded or applied: says which codec or file, and what to do."""


class CodecMismatchError(CodecError):
    """A fitted codec (or an encoded message) that belongs to other models or another fit."""


class UnknownKindError(ValueError):
    """A message kind no module registered: says which kinds exist and how to add one."""

    def __init__(self, name, known):
        self.kind, self.known = name, tuple(known)
        super().__init__(f"unknown message kind {name!r}; use one of {', '.join(self.known)} "
                         "(a new kind is a MessageKind subclass registered with channels.kinds.register_kind)")
