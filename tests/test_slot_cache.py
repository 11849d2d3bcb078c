"""The slot cache against plain concatenation, in both layouts: building from parts, growing
past its reserve, selecting and repeating rows, cropping slots, sending a span as a view,
zeroing pads in place."""
import pytest
import torch

from latentray.agents.slot_cache import SlotCache

LAYOUTS = ("heads", "slots")


def parts(lengths, layers=2, batch=3, heads=2, dim=4, seed=0):
    g = torch.Generator().manual_seed(seed)
    return [(torch.randn(layers, batch, heads, n, dim, generator=g), torch.randn(layers, batch, heads, n, dim, generator=g))
            for n in lengths]


@pytest.mark.parametrize("layout", LAYOUTS)
def test_from_parts_and_growth_equal_concatenation(layout):
    ps = parts([3, 5, 2])
    cache = SlotCache.from_parts(ps, reserve=1, layout=layout)
    new = parts([4], seed=1)[0]  # more than the reserve: the buffers grow
    for i, layer in enumerate(cache.layers):
        k, v = layer.update(new[0][i], new[1][i])
        want_k = torch.cat([p[0][i] for p in ps] + [new[0][i]], dim=2)
        want_v = torch.cat([p[1][i] for p in ps] + [new[1][i]], dim=2)
        assert torch.equal(k, want_k) and torch.equal(v, want_v)
    assert cache.get_seq_length() == 14
    keys, values = cache.memory(3)
    assert torch.equal(keys, torch.cat([p[0] for p in ps[1:]] + [new[0]], dim=3))
    assert torch.equal(values, torch.cat([p[1] for p in ps[1:]] + [new[1]], dim=3))


@pytest.mark.parametrize("layout", LAYOUTS)
def test_rows_selected_cropped_and_repeated(layout):
    (k, v), = parts([6])
    cache = SlotCache.from_parts([(k, v)], reserve=0, layout=layout)
    layer = cache.layers[1]
    cache.batch_select_indices(torch.tensor([2, 0]))
    assert torch.equal(layer.keys, k[1][[2, 0]])
    layer.crop(-2)
    assert layer.get_seq_length() == 4 and torch.equal(layer.values, v[1][[2, 0]][:, :, :4])
    cache.batch_repeat_interleave(2)
    assert torch.equal(layer.keys, k[1][[2, 2, 0, 0]][:, :, :4])


def test_a_span_of_the_slots_layout_is_one_block_of_the_buffer():
    """What lets a message go into the store without a gather: the span from any slot on
    is dense in memory, inside the cache's own buffer."""
    (k, v), = parts([7])
    cache = SlotCache.from_parts([(k, v)], reserve=5, layout="slots")
    keys, _ = cache.memory(2)
    assert keys.permute(3, 0, 1, 2, 4).is_contiguous()
    assert keys.untyped_storage().data_ptr() == cache.k.untyped_storage().data_ptr()
    heads = SlotCache.from_parts([(k, v)], reserve=5, layout="heads").memory(2)[0]
    assert torch.equal(heads, keys) and not heads.is_contiguous()


@pytest.mark.parametrize("layout", LAYOUTS)
def test_zero_pads_writes_only_pad_slots(layout):
    (k, v), = parts([5])
    cache = SlotCache.from_parts([(k, v)], reserve=0, layout=layout)
    mask = torch.tensor([[0, 1, 1], [1, 1, 1], [0, 0, 1]])  # slots 2.. of 5
    cache.zero_pads(2, mask)
    keys, values = cache.memory(0)
    keep = torch.cat([torch.ones(3, 2, dtype=torch.long), mask], 1)[None, :, None, :, None]
    assert torch.equal(keys, k * keep) and torch.equal(values, v * keep)
