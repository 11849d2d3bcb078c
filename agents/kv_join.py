"""Join kv messages from several senders of one model into one working memory, recomputing nothing.

RoPE makes attention depend only on the distance between positions, and a key cached at
position p is R(p)·k. Rotating it by R(d) gives R(p + d)·k: the key it would have been
at p + d. So a later message is moved to continue after the earlier ones by rotating its
keys by a per-row offset d (Hogwild!-style), values unchanged, positions shifted by d.

Messages are laid out along the slot axis in inbox order. Each row moves by its own
offset (rows of a left-padded batch end at different positions). A sender's slots were
computed without seeing the other senders, and stay that way: the join places caches
side by side, it does not make them attend to each other. Every fresh sender's cache
starts with the conversation's head (BOS, system header): given its length, the join
keeps the first message's head and masks out the others', so the memory has one
attention sink.

Supported: full-width rotate-half RoPE with static frequencies (rope types default,
linear, llama3, yarn; yarn's attention scaling is already inside the cached keys and
survives the rotation) on the architectures listed in ROTATE_HALF_ARCHS. Each layer is
rotated with its own frequencies (Gemma 3's local and global layers use different RoPE
bases) and layers without RoPE (SmolLM3's no_rope_layers) are left as they are.
Refused with a MessageError: models without RoPE (GPT-2's absolute positions are added
to the input, not to the keys, so a cache cannot be moved; send kind hidden instead),
partial rotary dims, length-dependent frequencies (dynamic, longrope), and
architectures not known to use rotate-half RoPE.
"""
from __future__ import annotations

import torch

from latentray.channels.errors import MessageError
from latentray.channels.message import LatentMessage

from .forward import next_positions
from .model_config import text_config

STATIC_ROPE_TYPES = ("default", "linear", "llama3", "yarn")
ROTATE_HALF_ARCHS = ("llama", "mistral", "mixtral", "qwen2", "qwen2_moe", "qwen3", "qwen3_moe",
                     "gemma", "gemma2", "gemma3_text", "olmo", "olmo2", "granite", "smollm3")


def _freq_buffers(module) -> dict:
    """{layer type or None: inv_freq} a rotary module holds (Gemma 3 keeps one per layer type)."""
    out = {}
    for name, buf in module.named_buffers(recurse=False):
        if name == "inv_freq":
            out[None] = buf
        elif name.endswith("_inv_freq") and not name.endswith("original_inv_freq"):
            out[name[: -len("_inv_freq")]] = buf
    return out


def layer_inv_freqs(model, receiver: str = "?") -> list:
    """Per layer, the RoPE inverse frequencies [head_dim / 2] its keys were rotated with, or
    None for a layer without RoPE (SmolLM3's no_rope_layers); a MessageError saying why a
    cache of this model cannot be moved."""
    cfg = text_config(model)
    arch = getattr(cfg, "model_type", "?")

    def refuse(why: str) -> MessageError:
        return MessageError(f"cannot join kv from several senders on {arch}: {why}", receiver=receiver,
                            field="kind")

    rotaries = [m for m in model.modules() if _freq_buffers(m)]
    if not rotaries:
        raise refuse("no rotary position embedding (absolute positions are not in the cached keys, "
                     "so a cache cannot be moved); send kind hidden instead")
    if arch not in ROTATE_HALF_ARCHS:
        raise refuse(f"not known to use rotate-half RoPE (supported: {', '.join(ROTATE_HALF_ARCHS)})")
    if len(rotaries) > 1:
        raise refuse("it has several rotary embedding modules")
    rotary = rotaries[0]
    buffers = _freq_buffers(rotary)
    head_dim = getattr(cfg, "head_dim", None) or cfg.hidden_size // cfg.num_attention_heads

    def freq(layer_type):
        key = layer_type if layer_type in buffers else None
        if key not in buffers:
            raise refuse(f"no RoPE frequencies for layer type {layer_type!r}")
        rope_type = getattr(rotary, "rope_type", "default")
        rope_type = rope_type.get(layer_type, "default") if isinstance(rope_type, dict) else rope_type
        if rope_type not in STATIC_ROPE_TYPES:
            raise refuse(f"rope type {rope_type!r} has length-dependent frequencies "
                         f"(supported: {', '.join(STATIC_ROPE_TYPES)})")
        inv = buffers[key].detach().reshape(-1)
        if 2 * inv.numel() != head_dim:
            raise refuse(f"partial rotary dims ({2 * inv.numel()} of head dim {head_dim})")
        return inv

    types = getattr(cfg, "layer_types", None) or [None] * cfg.num_hidden_layers
    uses_rope = getattr(cfg, "no_rope_layers", None) or [1] * cfg.num_hidden_layers
    return [freq(t) if uses_rope[i] else None for i, t in enumerate(types)]


def rope_inv_freq(model, receiver: str = "?") -> torch.Tensor:
    """The RoPE inverse frequencies shared by every RoPE layer; refuses per-layer differences."""
    freqs = [f for f in layer_inv_freqs(model, receiver) if f is not None]
    if any(not torch.equal(f, freqs[0]) for f in freqs[1:]):
        raise MessageError("layers use different RoPE frequencies; use layer_inv_freqs", receiver=receiver,
                           field="kind")
    return freqs[0]


def rotate_keys(keys: torch.Tensor, offset: torch.Tensor, inv_freq: torch.Tensor) -> torch.Tensor:
    """keys [..., B, H, T, D] rotated by offset[b] positions (rotate-half layout); a new tensor."""
    angles = offset.to(torch.float64)[:, None] * inv_freq.to(torch.float64)[None, :]  # [B, D/2]
    angles = torch.cat([angles, angles], dim=-1)[:, None, None, :]
    cos, sin = angles.cos().float(), angles.sin().float()
    k = keys.float()
    half = k.shape[-1] // 2
    rotated_half = torch.cat([-k[..., half:], k[..., :half]], dim=-1)
    return (k * cos.to(k.device) + rotated_half * sin.to(k.device)).to(keys.dtype)


def move_keys(keys: torch.Tensor, offset: torch.Tensor, layers: tuple, freqs: list) -> torch.Tensor:
    """keys [L, B, H, T, D] of the message's layers, each rotated with its own layer's
    frequencies; layers without RoPE keep their keys."""
    out = []
    for i, layer in enumerate(layers):
        f = freqs[layer]
        out.append(keys[i] if f is None else rotate_keys(keys[i], offset, f))
    return torch.stack(out)


def _check(messages: list, receiver: str) -> None:
    from latentray.channels.kinds import find_kind, kinds_with

    first = messages[0]
    for m in messages:
        kind = find_kind(m.kind)
        if kind is None or not kind.rope_joined:
            raise MessageError(f"only {' or '.join(kinds_with('rope_joined'))} messages can be joined, got {m.kind}",
                               sender=m.sender, receiver=receiver, field="kind")
        if m.header.fingerprint.get("weights_hash") != first.header.fingerprint.get("weights_hash"):
            raise MessageError(f"kv from {first.sender} and {m.sender} come from different models",
                               sender=m.sender, receiver=receiver, field="fingerprint")
        if tuple(m.header.layers) != tuple(first.header.layers):
            raise MessageError(f"layers {m.header.layers} differ from {first.sender}'s {first.header.layers}",
                               sender=m.sender, receiver=receiver, field="layers")
        k, k0 = m.tensors["keys"], first.tensors["keys"]
        if k.shape[:3] != k0.shape[:3] or k.shape[4] != k0.shape[4]:
            raise MessageError(f"keys shape {tuple(k.shape)} does not fit {first.sender}'s {tuple(k0.shape)}",
                               sender=m.sender, receiver=receiver, field="keys")


def without_head(mask: torch.Tensor, positions: torch.Tensor, head_slots: int) -> torch.Tensor:
    """mask [B, T] with the conversation's head (real slots at positions below head_slots in
    rows that start at position 0) masked out: a joined memory keeps one head."""
    starts = (mask.bool() & (positions == 0)).any(-1, keepdim=True)
    return mask * ~(starts & (positions < head_slots))


def join_kv(messages: list, model, receiver: str = "?", head_slots: int = 0) -> LatentMessage:
    """One kv message holding every message's slots in order, later ones moved to follow.
    head_slots: the length of the conversation's head; a later message that starts with it
    has it masked out (its slots stay, as pads), so only the first message's head is kept."""
    if len(messages) == 1:
        return messages[0]
    _check(messages, receiver)
    freqs = layer_inv_freqs(model, receiver)
    first = messages[0]
    keys, values = [first.tensors["keys"]], [first.tensors["values"]]
    mask, positions = [first.tensors["mask"].long()], [first.tensors["positions"].long()]
    for m in messages[1:]:
        acc_mask, acc_pos = torch.cat(mask, 1), torch.cat(positions, 1)
        m_pos = m.tensors["positions"].long()
        m_mask = without_head(m.tensors["mask"].long(), m_pos, head_slots)
        start = torch.where(m_mask.bool(), m_pos, torch.full_like(m_pos, torch.iinfo(torch.long).max)).min(-1).values
        offset = torch.where(m_mask.any(-1), next_positions(acc_mask, acc_pos) - start, torch.zeros_like(start))
        keys.append(move_keys(m.tensors["keys"], offset, tuple(m.header.layers), freqs)
                    if bool(offset.any()) else m.tensors["keys"])
        values.append(m.tensors["values"])
        mask.append(m_mask)
        positions.append(m_pos + offset[:, None])
    joined_mask = torch.cat(mask, 1)
    tensors = {"keys": torch.cat(keys, 3), "values": torch.cat(values, 3), "mask": joined_mask,
               "positions": torch.cat(positions, 1)}
    return LatentMessage.build(
        "kv", sender="+".join(m.sender for m in messages), fingerprint=first.header.fingerprint,
        tensors=tensors, layers=tuple(first.header.layers),
        seq_lens=tuple(int(n) for n in joined_mask.sum(-1)),
        latent_steps=sum(m.header.latent_steps for m in messages),
        latent_slots=messages[-1].header.latent_slots,
        extra={"joined": [m.header.trace_id for m in messages]},
    )
