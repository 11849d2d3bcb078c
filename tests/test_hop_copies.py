"""Copies of the working memory on a KV hop, counted by the bytes that data-movement
operators write (a torch dispatch mode sees every aten op): the sender's message is a view
of its cache and packing it copies nothing (the object store's own write is then the only
copy on the sending side), the receiver builds its cache from the message once, and latent
steps and decoding then write only their new slots."""
import pytest
import torch

from latentray.channels.transports import get_transport
from latentray.channels.validate import validate_message
from helpers import QUESTIONS, make_agents
from latentray.runtime.engine.copy_counter import MovedBytes, kv_bytes, memory_slots

@pytest.mark.parametrize("scope", ["all", "own"])
def test_no_copy_on_send_one_build_on_receipt_none_after(scope):
    _, _, agents = make_agents("qwen3-64", roles=("planner", "critic", "judger"), latent_steps=4)
    sender, receiver, judger = agents
    first = sender.step(QUESTIONS)
    state = receiver.think(receiver.prefill(QUESTIONS, [first], reserve=4, layout="slots"))
    start = 0 if scope == "all" else state.own_start
    slots = int(state.mask.shape[1]) - start  # what the critic sends: all its memory, or its own part

    with MovedBytes(slots) as send:
        msg = receiver.emit(state, "kv", scope)
        packed = get_transport("object_store").pack(msg)
    assert send.bytes == 0, send.ops  # pads zeroed in place, the message a view of the cache
    stored = packed.tensors["keys"]
    assert stored.is_contiguous() and stored.data_ptr() == state.cache.k[start:].data_ptr()
    assert msg.tensors["keys"].shape[3] == slots and any(state.mask[:, start:].flatten() == 0)  # pads were there

    unpacked = get_transport("object_store").unpack(packed)
    with MovedBytes(slots) as receive:
        validate_message(unpacked, receiver="judger", receiver_fingerprint=judger.fingerprint, edge_kind="kv",
                         model_dtype=torch.float32)
        prefilled = judger.prefill(QUESTIONS, [unpacked], reserve=8)
    assert kv_bytes(msg) <= receive.bytes <= kv_bytes(msg) * 1.01, receive.ops  # the cache's build, nothing else

    with MovedBytes(slots) as later:
        judger.decode(judger.think(prefilled, 3), max_new_tokens=5)
    assert later.bytes == 0, later.ops  # latent steps and tokens grow the cache in place


def test_the_old_concatenating_cache_would_fail_this_count():
    """The counter itself: transformers' DynamicCache copies the memory at every step."""
    from transformers import DynamicCache

    model, _, agents = make_agents("qwen3-64", roles=("planner", "judger"), latent_steps=2)
    msg = agents[0].step(QUESTIONS)
    keys, values = msg.tensors["keys"], msg.tensors["values"]
    cache = DynamicCache(ddp_cache_data=[(keys[i], values[i]) for i in range(keys.shape[0])])
    new = torch.zeros(keys.shape[1], keys.shape[2], 1, keys.shape[4])
    with MovedBytes(memory_slots(msg)) as counter:
        for i in range(keys.shape[0]):
            cache.update(new, new, i)
    assert counter.bytes >= kv_bytes(msg)
