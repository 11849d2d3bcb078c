"""Linear layers of a float32 model on a CPU, for the few rows a decoding step has: every
weight read once per forward, whatever the number of rows.

A small model's weights (SmolLM2-135M: about 540 MB in float32) are far bigger than any
CPU cache, so a decoding step is a pass over memory. torch's CPU linear (x @ W^T through
MKL) reads each weight slowly for one row (a matrix-vector product at about 11 GB/s) and
once per row for 2-3 rows. The same product computed as W @ x^T, with one row padded to
two, goes through a matrix-matrix kernel that streams each weight once at about 26 GB/s.
Measured on a 2-core AVX-512 machine, 420 MB of 1536 x 576 weights: x @ W^T 1 row 37 ms,
2 rows 57 ms, 4 rows 45 ms; W @ x^T 16 ms for 1, 2 or 4 rows. Same math, float sums in
another order (outputs agree to about 1e-6 relative).

Installed on every nn.Linear of a loaded model (the class of each module is swapped; its
weights, tied or not, stay the same Parameters). It changes nothing on a GPU, for other
dtypes, or above MAX_ROWS rows (a prefill), where torch's own kernel is the right one.
"""
from __future__ import annotations

import torch
from torch import nn

MAX_ROWS = 64  # the largest row count measured faster this way


class WeightOnceLinear(nn.Linear):
    def forward(self, x: torch.Tensor) -> torch.Tensor:
        w = self.weight
        rows = x.numel() // max(x.shape[-1], 1)
        if w.device.type != "cpu" or w.dtype != torch.float32 or x.dtype != w.dtype or not 1 <= rows <= MAX_ROWS:
            return super().forward(x)
        flat = x.reshape(rows, x.shape[-1])
        if rows == 1:  # one row would take the slow matrix-vector kernel
            flat = torch.cat([flat, flat.new_zeros(1, flat.shape[1])])
        out = torch.mm(w, flat.T).T[:rows].contiguous()
        if self.bias is not None:
            out = out + self.bias
        return out.reshape(*x.shape[:-1], w.shape[0])


def install(model) -> int:
    """Use WeightOnceLinear for every plain nn.Linear of `model`; how many there are now."""
    n = 0
    for module in model.modules():
        if type(module) is nn.Linear:
            module.__class__ = WeightOnceLinear
        n += isinstance(module, WeightOnceLinear)
    return n


def uninstall(model) -> None:
    """Give `model` back the linear modules transformers built (for comparisons against them)."""
    for module in model.modules():
        if type(module) is WeightOnceLinear:
            module.__class__ = nn.Linear
