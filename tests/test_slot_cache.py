"""The slot cache against plain concatenation: building from parts, growing past its
reserve, dropping rows, cropping slots, repeating rows."""
import torch

from agents.slot_cache import SlotCache


def parts(lengths, layers=2, batch=3, heads=2, dim=4, seed=0):
    g = torch.Generator().manual_seed(seed)
    return [(torch.randn(layers, batch, heads, n, dim, generator=g), torch.randn(layers, batch, heads, n, dim, generator=g))
            for n in lengths]


def test_from_parts_and_growth_equal_concatenation():
    ps = parts([3, 5, 2])
    cache = SlotCache.from_parts(ps, reserve=1)
    new = parts([4], seed=1)[0]  # more than the reserve: the buffers grow
    for i, layer in enumerate(cache.layers):
        k, v = layer.update(new[0][i], new[1][i])
        want_k = torch.cat([p[0][i] for p in ps] + [new[0][i]], dim=2)
        want_v = torch.cat([p[1][i] for p in ps] + [new[1][i]], dim=2)
        assert torch.equal(k, want_k) and torch.equal(v, want_v)
    assert cache.get_seq_length() == 14
    keys, values = cache.stacked(3)
    assert torch.equal(keys, torch.cat([p[0] for p in ps[1:]] + [new[0]], dim=3))


def test_rows_selected_cropped_and_repeated():
    (k, v), = parts([6])
    cache = SlotCache.from_parts([(k, v)], reserve=0)
    layer = cache.layers[0]
    layer.batch_select_indices(torch.tensor([2, 0]))
    assert torch.equal(layer.keys, k[0][[2, 0]])
    layer.crop(-2)
    assert layer.get_seq_length() == 4 and torch.equal(layer.values, v[0][[2, 0]][:, :, :4])
    layer.batch_repeat_interleave(2)
    assert torch.equal(layer.keys, k[0][[2, 2, 0, 0]][:, :, :4])
