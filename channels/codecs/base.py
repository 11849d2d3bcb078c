"""The codec interface: map a `hidden` message from its sender's space into its receiver's.

A codec works in two halves so that what travels can be smaller and shared:
  encode  on the sender's actor: last-layer hidden states [N, D_s] -> wire vectors [N, d]
  decode  on the receiver's actor, by what each state is:
          a latent step's state (what the sender is about to think) -> the receiver's
            last-layer space [N, D_r]; the receiving agent's realignment
            (agents/realign.py) then puts it in its input space, as its own latent steps
            are (`__call__`);
          a prompt state (what the sender has read there) -> the receiver's input
            embedding of the token at the same place (`read`): a last-layer state mostly
            predicts the next token, so realigning it would lose what was read.
Fitted state lives in *parts* (one safetensors file plus JSON metadata each, see
storage.py). A pairwise codec has one part per (sender model, receiver model); a
shared-space codec (`shared_space = True`: relative, hub) has one part per model, so N
models need N parts, and messages can be combined in the shared space (the hub topology
aggregates there) before each receiver decodes them.
"""
from __future__ import annotations

import hashlib
import re
from abc import ABC, abstractmethod
from dataclasses import dataclass, field

import torch

from latentray.channels.errors import CodecError, CodecMismatchError

FORMAT = "latentray-codec"
VERSION = 1


def model_slug(ref: str) -> str:
    """A file-name-safe, collision-free name for a model ref."""
    readable = re.sub(r"[^A-Za-z0-9._-]+", "-", ref).strip("-")[:60]
    return f"{readable}-{hashlib.sha1(ref.encode()).hexdigest()[:8]}"


def raw_space(fingerprint: dict) -> str:
    """The wire space of an un-encoded hidden message: its sender's weights."""
    return f"hidden:{fingerprint.get('weights_hash', '?')}"


@dataclass(frozen=True)
class AnchorStates:
    """One model's last-layer hidden states at the anchor points (see agents/anchor_states.py)."""
    ref: str  # the spec's model ref
    fingerprint: dict
    keys: tuple  # (anchor text index, character offset) per point, sorted
    hidden: torch.Tensor  # [P, D] float32
    anchor_hash: str  # of the anchor texts used
    embeds: torch.Tensor = None  # [P, D] what the embedding module outputs for the token there

    def rows(self, keys, which: str = "hidden") -> torch.Tensor:
        index = {k: i for i, k in enumerate(self.keys)}
        return getattr(self, which)[[index[k] for k in keys]]


def common_keys(states) -> tuple:
    """The anchor points every model in `states` has (sorted)."""
    keys = set(states[0].keys)
    for s in states[1:]:
        keys &= set(s.keys)
    if not keys:
        raise CodecError("the models share no anchor point; use anchor texts of whole words in plain prose")
    return tuple(sorted(keys))


@dataclass
class Part:
    """Fitted tensors plus plain-data metadata; saved as <name>.safetensors + <name>.json."""
    name: str
    tensors: dict
    meta: dict = field(default_factory=dict)


@dataclass(frozen=True)
class Receiver:
    """What a decoder may know about the receiving actor: embeddings is its model's input
    embedding module (None where the caller holds no model), for a decoder that reads the
    receiver's own vocabulary."""
    fingerprint: dict
    hidden_size: int
    embeddings: object = field(default=None, compare=False)


class Encoder(ABC):
    """Sender side: [N, D_s] float32 -> [N, d]. `space` names what the output lives in;
    `layer` the sender states it reads: "last" (after the final norm) or a decoder layer."""
    space = ""
    layer = "last"

    @abstractmethod
    def __call__(self, x: torch.Tensor) -> torch.Tensor:
        """The wire vectors of x."""


class Decoder(ABC):
    """Receiver side: [N, d] float32 in `space` -> [N, D_r] in the receiver's hidden space
    (`__call__`, for latent-step states) or in its input space (`read`, for prompt states;
    None: prompt states take the `__call__` path too)."""
    space = ""
    in_dim: int | None = None  # wire vector size it reads (None: any)
    realign_after = True  # the receiving agent realigns the `__call__` output into its input space
    read = None
    decode_set = None  # (wire [B, S, d], mask [B, S]) -> (vectors [B, K, D_r], mask [B, K]): the whole message

    def check_space(self, space: str, sender: str = "?") -> None:
        if self.space and space != self.space:
            raise CodecMismatchError(
                f"a message from {sender} arrives in space {space!r} but this decoder reads {self.space!r}; "
                "both ends must use codec parts of one fit (rerun latentray fit-codec for the spec)")

    @abstractmethod
    def __call__(self, x: torch.Tensor) -> torch.Tensor:
        """x in the receiver's last-layer space."""


def affine(x: torch.Tensor, weight: torch.Tensor, bias: torch.Tensor) -> torch.Tensor:
    return x.float() @ weight.to(x.device) + bias.to(x.device)


def to_norm(x: torch.Tensor, norm: torch.Tensor) -> torch.Tensor:
    """Rows rescaled to `norm` (a regression shrinks toward the mean; real embeddings do not)."""
    return x * (norm.to(x.device) / x.norm(dim=-1, keepdim=True).clamp_min(1e-6))


class Linear(Encoder, Decoder):
    """x -> x @ weight + bias, in float32 on the message's device. With read maps, prompt
    states take x -> (x @ read_weight + read_bias) at the receiver's mean embedding norm."""

    def __init__(self, weight: torch.Tensor, bias: torch.Tensor, space: str, in_dim: int | None = None,
                 read: tuple | None = None):
        self.weight, self.bias, self.space = weight.float(), bias.float(), space
        self.in_dim = weight.shape[0] if in_dim is None else in_dim
        if read is not None:
            rw, rb, norm = read
            self.read = lambda x: to_norm(affine(x, rw, rb), norm)

    def __call__(self, x: torch.Tensor) -> torch.Tensor:
        return affine(x, self.weight, self.bias)


class Codec(ABC):
    """Base class. Subclasses set `key`, say whether they need fitted parts, and build
    their encoder (optional) and decoder (required) from those parts."""
    key = ""
    shared_space = False  # encodes into a space several models share
    needs_fit = True
    readings = ("mixture",)  # the channels.codec_read values its decoder honours (option `read`)

    def __init__(self, **options):
        self.options = options

    # -- which parts an edge needs ---------------------------------------------------
    def encode_part(self, src: str, dst: str) -> str | None:
        """Part name the sender loads to encode along src -> dst (None: encodes nothing)."""
        return None

    def decode_part(self, src: str, dst: str) -> str | None:
        """Part name the receiver loads to decode along src -> dst (None: nothing fitted)."""
        return None

    # -- fitting ---------------------------------------------------------------------
    def fit(self, states: dict, edges: list) -> list:
        """Parts for every (src ref, dst ref) in `edges`, from {ref: AnchorStates}."""
        return []

    # -- the two halves --------------------------------------------------------------
    def encoder(self, part: Part | None, fingerprint: dict) -> Encoder | None:
        """None: the message travels as the sender's raw hidden states."""
        return None

    @abstractmethod
    def decoder(self, part: Part | None, receiver: Receiver) -> Decoder:
        """The receiver's half for this part."""


class SharedSpaceCodec(Codec):
    """A codec whose wire space all models share: one part per model, named after it."""
    shared_space = True

    def encode_part(self, src: str, dst: str) -> str:
        return f"{self.key}--{model_slug(src)}"

    def decode_part(self, src: str, dst: str) -> str:
        return f"{self.key}--{model_slug(dst)}"


def ridge_fit(x: torch.Tensor, y: torch.Tensor, lam: float) -> tuple:
    """Affine ridge regression y ~ x @ W + b in closed form (float64), with the penalty
    relative to the mean eigenvalue of the centred x, so lam does not depend on scale."""
    x64, y64 = x.double(), y.double()
    mx, my = x64.mean(0), y64.mean(0)
    xc, yc = x64 - mx, y64 - my
    gram = xc.T @ xc
    penalty = lam * gram.diagonal().mean().clamp_min(1e-12)
    w = torch.linalg.solve(gram + penalty * torch.eye(gram.shape[0], dtype=gram.dtype), xc.T @ yc)
    return w.float(), (my - mx @ w).float()


def read_targets(states: AnchorStates, keys) -> tuple:
    """(embeddings at the points [P, D], their mean norm [1]): what a prompt state decodes to."""
    if states.embeds is None:
        raise CodecError(f"anchor states of {states.ref} carry no embeddings; recompute them")
    e = states.rows(keys, "embeds")
    return e, e.norm(dim=-1).mean().reshape(1)


def mean_cosine(a: torch.Tensor, b: torch.Tensor) -> float:
    return float(torch.nn.functional.cosine_similarity(a.float(), b.float(), dim=-1).mean())
