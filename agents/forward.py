"""One forward pass over new slots after an optional cache, with explicit masks and positions.

Left padding means pads can sit in the middle of a row (a padded prompt after a cached
prefix). We build the attention mask ourselves, per layer type, from each slot's RoPE
position rather than its index in the cache:
  a query sees a key  iff  the key is a real slot, comes no later in the cache, and (on a
  sliding-window layer) lies within the window counted in real positions;
  every slot also sees itself, so a pad query never attends to nothing (no NaN).
So every real slot sees exactly what it would see with no padding at all, sliding
windows included. The cache keeps every slot of every layer (no sliding-window cache
that drops old slots): the mask, not the cache, applies the window.

Logits come from the model's own forward (its head, logit scaling, soft-capping); the
final-norm hidden state that feeds the head is read with a hook on the decoder, and, when
asked (`tap`), the residual stream after one decoder layer with a hook on that layer.
"""
from __future__ import annotations

import inspect
from dataclasses import dataclass

import torch
from .errors import ModelRefError
from .model_config import text_config
from .slot_cache import SlotCache

KNOWN_LAYER_TYPES = ("full_attention", "sliding_attention")


@dataclass
class ForwardOut:
    cache: object  # transformers cache holding every slot so far
    last_hidden: torch.Tensor  # [B, D] final-norm hidden state at the last slot
    logits: torch.Tensor  # [B, V] next-token logits at the last slot (float32)
    hidden: torch.Tensor = None  # [B, S, D] final-norm hidden state at every new slot
    tapped: torch.Tensor = None  # [B, S, D] the residual stream after decoder layer `tap` (None: no tap)


def new_positions(next_pos: torch.Tensor, new_mask: torch.Tensor) -> torch.Tensor:
    """Positions for new slots: real slots continue from next_pos[b]; pads repeat a neighbour."""
    steps = new_mask.long().cumsum(-1) - 1
    return (next_pos[:, None] + steps.clamp_min(0)).long()


def next_positions(mask: torch.Tensor, positions: torch.Tensor) -> torch.Tensor:
    """[B] one past the largest position of a real slot in each row (0 for an empty row)."""
    if mask.shape[1] == 0:
        return torch.zeros(mask.shape[0], dtype=torch.long, device=mask.device)
    real = torch.where(mask.bool(), positions, torch.full_like(positions, -1))
    return real.max(dim=-1).values + 1


def attention_layout(model):
    """How the model takes a prepared mask: ("dict", {layer type: window or None}) for
    models with per-layer attention types, ("tensor", window or None) otherwise."""
    cached = getattr(model, "_latentray_layout", None)
    if cached is not None:
        return cached
    cfg = text_config(model)
    window = getattr(cfg, "sliding_window", None)
    types = getattr(cfg, "layer_types", None)
    if types:
        unknown = sorted(set(types) - set(KNOWN_LAYER_TYPES))
        if unknown:
            raise ModelRefError(f"{cfg.model_type}: layer types {unknown} are not supported "
                                f"(supported: {', '.join(KNOWN_LAYER_TYPES)})")
        layout = ("dict", {t: (window if t == "sliding_attention" else None) for t in set(types)})
    else:
        slides = window is not None and getattr(cfg, "use_sliding_window", True)
        layout = ("tensor", window if slides else None)
    model._latentray_layout = layout
    return layout


def slot_mask(mask: torch.Tensor, positions: torch.Tensor, n_new: int, window, dtype) -> torch.Tensor:
    """Additive attention mask [B, 1, n_new, T] for the last n_new of T slots."""
    total = mask.shape[1]
    q_slot = torch.arange(total - n_new, total, device=mask.device)
    k_slot = torch.arange(total, device=mask.device)
    allowed = (k_slot[None, :] <= q_slot[:, None])[None] & mask.bool()[:, None, :]  # [B, S, T]
    if window is not None:
        distance = positions[:, -n_new:, None] - positions[:, None, :]
        allowed &= distance < window
    allowed |= (k_slot[None, :] == q_slot[:, None])[None]
    out = torch.zeros(allowed.shape, dtype=dtype, device=mask.device)
    return out.masked_fill_(~allowed, torch.finfo(dtype).min)[:, None]


def attention_masks(model, mask, positions, n_new: int, dtype):
    kind, spec = attention_layout(model)
    if kind == "dict":
        return {t: slot_mask(mask, positions, n_new, w, dtype) for t, w in spec.items()}
    return slot_mask(mask, positions, n_new, spec, dtype)


def empty_cache(model, capacity: int = 0, layout: str = "heads") -> SlotCache:
    """An empty working memory for `model`: every slot of every layer kept (no sliding-window
    layers), with room for `capacity` slots before its buffers grow, in `layout` (slot_cache.py)."""
    return SlotCache(int(text_config(model).num_hidden_layers), capacity, layout)


def decoder_layers(model) -> torch.nn.ModuleList:
    """The model's stack of decoder layers (`layers` in most families, `h` in GPT-2)."""
    base = model.base_model
    for name in ("layers", "h"):
        stack = getattr(base, name, None)
        if isinstance(stack, torch.nn.ModuleList):
            return stack
    raise ModelRefError(f"{type(base).__name__} has no list of decoder layers (layers or h) to read a layer's "
                        "states from; leave channels.hidden_layer at last")


def check_tap(model, tap) -> None:
    """ValueError naming channels.hidden_layer unless `tap` (None: the last layer's final-norm
    states) is a decoder layer of this model, counted from 1."""
    depth = int(text_config(model).num_hidden_layers)
    if tap is not None and not (isinstance(tap, int) and 1 <= tap <= depth):
        raise ValueError(f"channels.hidden_layer: {tap!r} is not a layer of this model; use 1 to {depth} "
                         "(or last)")


def _takes_logits_to_keep(model) -> bool:
    flag = getattr(model, "_latentray_ltk", None)
    if flag is None:
        flag = "logits_to_keep" in inspect.signature(model.forward).parameters
        model._latentray_ltk = flag
    return flag


def cache_argument(model) -> str:
    """The name model.forward takes its KV cache by: `cache` from transformers 5.24 on
    (`past_key_values` is deprecated there and goes in 5.40), `past_key_values` before."""
    name = getattr(model, "_latentray_cache_arg", None)
    if name is None:
        name = "cache" if "cache" in inspect.signature(model.forward).parameters else "past_key_values"
        model._latentray_cache_arg = name
    return name


@torch.inference_mode()
def forward_slots(model, *, cache, past_mask, past_positions, inputs_embeds, new_mask, positions,
                  tap: int | None = None) -> ForwardOut:
    """Run the model over new slots. past_mask/past_positions [B, T0]; inputs_embeds [B, S, D];
    tap: also return the states after this decoder layer (1 = the first)."""
    full_mask = torch.cat([past_mask, new_mask], dim=1).long()
    full_pos = torch.cat([past_positions, positions], dim=1).long()
    masks = attention_masks(model, full_mask, full_pos, inputs_embeds.shape[1], inputs_embeds.dtype)
    captured = {}
    hooks = [model.base_model.register_forward_hook(
        lambda _m, _a, out: captured.__setitem__("h", out.last_hidden_state))]
    if tap is not None:  # a decoder layer returns its states, or a tuple that starts with them
        hooks.append(decoder_layers(model)[tap - 1].register_forward_hook(
            lambda _m, _a, out: captured.__setitem__("tap", out[0] if isinstance(out, tuple) else out)))
    memory = cache if cache is not None else empty_cache(model)
    kwargs = {"logits_to_keep": 1} if _takes_logits_to_keep(model) else {}
    kwargs[cache_argument(model)] = memory
    try:
        out = model(inputs_embeds=inputs_embeds, attention_mask=masks, position_ids=positions, use_cache=True,
                    **kwargs)
    finally:
        for h in hooks:
            h.remove()
    hidden = captured["h"]
    # the model appends the new slots to the cache it was given, in place, so that object is the
    # cache after the call (reading it back from the output would need the version's name again)
    return ForwardOut(memory, hidden[:, -1], out.logits[:, -1].float(), hidden, captured.get("tap"))
