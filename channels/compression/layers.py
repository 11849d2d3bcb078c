"""layers:<i,j,...>: send full K/V for a subset of layers only (KVComm-style selection).

For every unselected layer only the attention-sink slot travels: each row's first real
slot, as `sink_keys` / `sink_values` [L_unselected, B, H, 1, D].

Receiving side. A transformers attention mask is shared by all layers, so every layer's
cache must have the same slots and the same mask. `decompress` therefore restores all
layers at full width: selected layers exactly as sent; each unselected layer holds its
sink K/V at the row's first real slot and zero K and V at every other slot. A zero key
scores 0 against any query and a zero value adds nothing, so in an unselected layer the
sender's non-sink slots only take a little softmax mass (as extra weak sinks would); the
model runs unchanged and selected layers see the sender's full context.
"""
from __future__ import annotations

import torch

from latentray.channels.errors import CompressionError, MessageError
from latentray.channels.kinds import MessageKind
from latentray.channels.message import LatentMessage

from .base import Compression

SINKS = ("sink_keys", "sink_values")


def parse_layers(name: str) -> tuple:
    """"layers:2,0" -> (0, 2); a clear error for anything else."""
    body = name.removeprefix("layers:")
    try:
        idx = [int(x) for x in body.split(",") if x.strip()]
    except ValueError:
        idx = []
    if not name.startswith("layers:") or not idx or min(idx) < 0 or len(set(idx)) != len(idx):
        raise ValueError(f"bad layer selection {name!r}; write layers:<i,j,...> with distinct layer "
                         "indices >= 0, e.g. layers:0,2")
    return tuple(sorted(idx))


def first_real_slot(mask: torch.Tensor) -> torch.Tensor:
    """[B] index of each row's first real slot (argmax returns the first maximum)."""
    return mask.long().argmax(dim=1)


class LayerSelection(Compression):
    stage = 1

    def applies_to(self, kind: MessageKind) -> bool:
        """Kinds whose keys and values are stacked per model layer (header.layers)."""
        return kind.layered

    def __init__(self, layers: tuple):
        self.layers = tuple(layers)
        self.name = "layers:" + ",".join(str(i) for i in self.layers)

    def compress(self, msg: LatentMessage, receiver: str = "?") -> LatentMessage:
        self.begin(msg, receiver)
        have = tuple(msg.header.layers)
        missing = [i for i in self.layers if i not in have]
        if missing:
            raise CompressionError(f"layers {missing} are not in the message (it has {list(have)})",
                                   sender=msg.sender, receiver=receiver, field=f"compression.{self.name}")
        keep = torch.tensor([have.index(i) for i in self.layers])
        drop = torch.tensor([j for j, i in enumerate(have) if i not in self.layers], dtype=torch.long)
        first = first_real_slot(msg.tensors["mask"])
        rows = torch.arange(first.shape[0])
        out = dict(msg.tensors)
        for key, sink in zip(("keys", "values"), SINKS):
            t = msg.tensors[key]
            out[key] = t.index_select(0, keep)
            # [Lu, B, H, T, D] -> [Lu, B, H, 1, D]: row b keeps slot first[b]
            gathered = t.index_select(0, drop)[:, rows, :, first, :]  # [B, Lu, H, D]
            out[sink] = gathered.permute(1, 0, 2, 3).unsqueeze(3)
        return self.finish(msg, out, layers=self.layers, extra={"layers_all": list(have)})

    def decompress(self, msg: LatentMessage, dtype: torch.dtype) -> LatentMessage:
        all_layers = tuple(msg.header.extra.get("layers_all", ()))
        if not set(msg.header.layers) <= set(all_layers):
            raise MessageError(f"extra.layers_all {list(all_layers)} does not contain the sent layers "
                               f"{list(msg.header.layers)}", sender=msg.sender, field="extra.layers_all")
        first = first_real_slot(msg.tensors["mask"])
        rows = torch.arange(first.shape[0])
        out = {k: t for k, t in msg.tensors.items() if k not in SINKS}
        for key, sink_key in zip(("keys", "values"), SINKS):
            part, sink = msg.tensors[key], msg.tensors[sink_key]
            full, u = [], 0
            for layer in all_layers:
                if layer in msg.header.layers:
                    full.append(part[msg.header.layers.index(layer)])
                    continue
                slab = part.new_zeros(part.shape[1:])  # [B, H, T, D]
                slab[rows, :, first, :] = sink[u, :, :, 0, :].to(part.dtype)
                full.append(slab)
                u += 1
            out[key] = torch.stack(full)
        return self.undo(msg, out, drop_extra=("layers_all",), layers=all_layers)

    def added_tensors(self, msg: LatentMessage) -> tuple:
        return SINKS

    def check(self, msg: LatentMessage, fail) -> None:
        all_layers = msg.header.extra.get("layers_all")
        model_layers = list(range(msg.header.fingerprint.get("num_layers") or 0))
        if all_layers != model_layers or not set(msg.header.layers) <= set(all_layers):
            fail("extra.layers_all", f"must list every layer of the model {model_layers} and include the "
                                     f"sent layers {list(msg.header.layers)}; got {all_layers!r}")
        if tuple(msg.header.layers) != self.layers:
            fail("layers", f"header layers {list(msg.header.layers)} differ from the recorded {self.name!r}")
        _, B, H, _, D = msg.tensors["keys"].shape
        want = [len(all_layers) - len(self.layers), B, H, 1, D]
        for key in SINKS:
            if list(msg.tensors[key].shape) != want:
                fail(key, f"shape {list(msg.tensors[key].shape)}, expected {want} (one sink slot per "
                          "unselected layer and row)")
