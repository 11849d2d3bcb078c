"""object_store transport: received tensors alias the shared store buffer, read-only, with
no copy whatever the size; bf16 and every tensor of a message survive bit-exact; objects
are freed."""
from __future__ import annotations

import dataclasses
import gc
import sys
import time

import numpy as np
import pytest
import torch

from latentray.channels.errors import TransportError
from latentray.channels.message import LatentMessage
from latentray.channels.transports import get_transport, owned_copy
from latentray.channels.transports.object_store import (INLINE_BYTES, ByteViewMessage, InlineMessage,
                                              ObjectStoreTransport)

from helpers import settled_store_bytes, store_bytes_used

ZERO_COPY_OFF = {"env_vars": {"RAY_ENABLE_ZERO_COPY_TORCH_TENSORS": "0"}}


def kv_message(seed: int, slots: int = 64, sender: str = "planner", slot_major: bool = False) -> LatentMessage:
    """A kv message with bf16 keys, fp32 values, bool mask and int64 positions; slot_major:
    keys and values are views of [T, L, B, H, D] memory, as a sending agent's cache holds them."""
    g = torch.Generator().manual_seed(seed)
    keys = torch.randn(2, 1, 2, slots, 8, generator=g).to(torch.bfloat16)
    values = torch.randn(2, 1, 2, slots, 8, generator=g)
    if slot_major:
        keys = keys.permute(3, 0, 1, 2, 4).contiguous().permute(1, 2, 3, 0, 4)
        values = values.permute(3, 0, 1, 2, 4).contiguous().permute(1, 2, 3, 0, 4)
    return LatentMessage.build("kv", sender, {"model": "tiny"}, {
        "keys": keys,
        "values": values,
        "mask": torch.rand(1, slots, generator=g) > 0.3,
        "positions": torch.arange(slots).unsqueeze(0),
    }, layers=(0, 1), seq_lens=(slots,), trace_id=f"trace{seed}")


def hidden_message(nbytes: int, fill: float = 1.0) -> LatentMessage:
    n = nbytes // 4
    return LatentMessage.build("hidden", "a", {}, {
        "hidden": torch.full((1, n // 256, 256), fill), "mask": torch.ones(1, n // 256, dtype=torch.bool)})


def bits(t: torch.Tensor) -> torch.Tensor:
    return t.contiguous().reshape(-1).view(torch.uint8).clone()


def assert_bit_exact(a: LatentMessage, b: LatentMessage):
    assert a.header == b.header
    assert set(a.tensors) == set(b.tensors)
    for name in a.tensors:
        assert a.tensors[name].dtype == b.tensors[name].dtype, name
        assert torch.equal(bits(a.tensors[name]), bits(b.tensors[name])), name


def odd_message() -> LatentMessage:
    """bf16 after an odd-sized bool tensor, a 0-dim tensor and an empty one."""
    msg = kv_message(0, slots=5)
    return LatentMessage.build("kv", "x", {}, {
        "mask": msg.tensors["mask"], "keys": msg.tensors["keys"], "values": msg.tensors["values"],
        "scalar": torch.tensor(3.5, dtype=torch.bfloat16), "empty": torch.zeros(0, 4, dtype=torch.float16),
        "positions": msg.tensors["positions"]}, trace_id="odd")


def test_byte_views_round_trip_bit_exact_without_ray():
    msg = odd_message()
    packed = ByteViewMessage.of(msg)
    assert all(b.dtype == np.uint8 and b.ndim == 1 for b in packed.buffers.values())
    back = packed.to_message()
    assert_bit_exact(msg, back)
    assert back.tensors["keys"].data_ptr() == msg.tensors["keys"].data_ptr()  # a view, no copy


def test_small_messages_travel_inline_bit_exact():
    transport = ObjectStoreTransport()
    msg = odd_message()
    packed = transport.pack(msg)
    assert isinstance(packed, InlineMessage)
    assert_bit_exact(msg, transport.unpack(packed))
    assert not isinstance(transport.pack(hidden_message(INLINE_BYTES * 2)), InlineMessage)


def test_unpack_rejects_garbage_with_typed_error():
    transport = get_transport("object_store")
    for junk in (b"junk", None, {"keys": torch.zeros(2)}):
        with pytest.raises(TransportError, match="expected a LatentMessage"):
            transport.unpack(junk)
    msg = kv_message(1)
    wrong = LatentMessage(msg.header, {**msg.tensors, "keys": torch.zeros(3)})
    with pytest.raises(TransportError, match="keys"):
        transport.unpack(wrong)
    missing = LatentMessage(msg.header, {"keys": msg.tensors["keys"]})
    with pytest.raises(TransportError, match="do not match"):
        transport.pack(missing)
    with pytest.raises(TransportError, match="known transports"):
        get_transport("carrier_pigeon")


@pytest.mark.parametrize("slots", [16, 8192])  # inline, and through shared memory
@pytest.mark.parametrize("zero_copy", [True, False])
def test_slot_major_views_travel_as_they_lie(slots, zero_copy, monkeypatch):
    """A view that is dense in another dimension order is stored without a copy, its order
    recorded, and comes back in its own shape, bit-exact, with the header as sent."""
    import latentray.channels.transports.object_store as store

    monkeypatch.setattr(store, "ray_zero_copy_enabled", lambda: zero_copy)
    msg = kv_message(5, slots, slot_major=True)
    assert not msg.tensors["keys"].is_contiguous()
    transport = ObjectStoreTransport()
    packed = transport.pack(msg)
    if slots == 8192 and zero_copy:
        assert packed.tensors["keys"].data_ptr() == msg.tensors["keys"].data_ptr()  # not a copy
        assert packed.tensors["keys"].is_contiguous()
    back = transport.unpack(packed)
    assert_bit_exact(msg, back)
    assert back.tensors["keys"].shape == msg.tensors["keys"].shape


def test_a_bad_memory_order_is_refused_with_the_field():
    transport = ObjectStoreTransport()
    packed = transport.pack(kv_message(6, 8192, slot_major=True))
    for order, match in (([0, 1, 2, 3, 3], "not a permutation"), ("0,1", "list of dimension indices"),
                         ({"nope": [0]}, "does not carry")):
        extra = {**packed.header.extra, "memory_order": {"keys": order} if not isinstance(order, dict) else order}
        bad = LatentMessage(dataclasses.replace(packed.header, extra=extra), packed.tensors)
        with pytest.raises(TransportError, match=match) as err:
            transport.unpack(bad)
        assert err.value.field.startswith("extra.memory_order")


def test_pack_makes_tensors_storable_and_owned_copy_is_separate():
    msg = kv_message(2, slots=8192)  # large enough to go through shared memory
    strided = msg.replace(tensors={**msg.tensors, "values": msg.tensors["values"].transpose(0, 3)})
    packed = ObjectStoreTransport().pack(strided)
    assert all(t.is_contiguous() for t in packed.tensors.values())
    own = owned_copy(packed)
    own.tensors["values"].add_(1)
    assert not torch.equal(own.tensors["values"], packed.tensors["values"])


@pytest.fixture(scope="module")
def actors(ray_session):
    ray = ray_session
    # workers cannot import this test module, so its helpers travel with the actor class
    ray.cloudpickle.register_pickle_by_value(sys.modules[__name__])

    @ray.remote
    class Agent:
        def __init__(self):
            self.transport = get_transport("object_store")

        def zero_copy_flag(self):
            from latentray.channels.transports.object_store import ray_zero_copy_enabled
            return ray_zero_copy_enabled()

        def produce(self, seed, slots=64, slot_major=False):
            return self.transport.pack(kv_message(seed, slots, sender="producer", slot_major=slot_major))

        def copy_out(self, msg):
            return owned_copy(self.transport.unpack(msg))

        def relay(self, msg):
            msg = self.transport.unpack(msg)
            return self.transport.pack(msg.replace(tensors={"hidden": msg.tensors["hidden"] + 1,
                                                            "mask": msg.tensors["mask"]}))

        def consume(self, msg):
            return float(self.transport.unpack(msg).tensors["hidden"][0, 0, 0])

        def produce_hidden(self, nbytes, fill):
            return self.transport.pack(hidden_message(nbytes, fill))

        def inspect(self, ref_in_list, mapped="keys"):
            """Where the received tensors live (the memory mapping of tensor `mapped`), and
            whether the buffers Ray hands out are writable."""
            import ray as ray_in_actor

            handed, real_from_numpy = [], torch.from_numpy

            def spy(arr):
                handed.append(arr)
                return real_from_numpy(arr)

            torch.from_numpy = spy  # sees every buffer deserialisation wraps as a tensor
            try:
                msg = self.transport.unpack(ray_in_actor.get(ref_in_list[0]))
                again = self.transport.unpack(ray_in_actor.get(ref_in_list[0]))
            finally:
                torch.from_numpy = real_from_numpy
            writes_refused = []
            for arr in handed:
                try:
                    arr[:1] = 0
                    writes_refused.append(False)
                except ValueError:
                    writes_refused.append(True)
            worker = ray_in_actor._private.worker.global_worker
            store = np.frombuffer(worker.core_worker.get_objects([ref_in_list[0]], -1)[0][0], np.uint8)
            ptrs = {k: t.data_ptr() for k, t in msg.tensors.items()}
            maps = [line for line in open("/proc/self/maps")
                    if int(line.split("-")[0], 16) <= ptrs[mapped] < int(line.split()[0].split("-")[1], 16)]
            return {
                "inside_store": all(store.ctypes.data <= p and
                                    p + msg.tensors[k].nbytes <= store.ctypes.data + store.size
                                    for k, p in ptrs.items()),
                "same_on_second_get": ptrs == {k: t.data_ptr() for k, t in again.tensors.items()},
                "aliases_handed_buffer": {a.ctypes.data for a in handed} >= set(ptrs.values()),
                "writes_refused": writes_refused,
                "mapping": maps[0].split() if maps else [],
                "dtypes": {k: str(t.dtype) for k, t in msg.tensors.items()},
            }


    agent, other = Agent.remote(), Agent.remote()
    plain = Agent.options(runtime_env=ZERO_COPY_OFF).remote()
    assert ray.get([agent.zero_copy_flag.remote(), plain.zero_copy_flag.remote()]) == [True, False]
    return ray, agent, other, plain


def check_zero_copy(out, dtypes=None):
    assert out["inside_store"], out  # tensor bytes lie inside the object's store buffer
    assert out["same_on_second_get"], out  # a second get maps the same memory again
    assert out["aliases_handed_buffer"], out
    assert out["writes_refused"] and all(out["writes_refused"]), out  # the buffers are read-only
    assert out["mapping"][1].endswith("s") and "plasma" in " ".join(out["mapping"]), out  # shared memory
    assert out["dtypes"] == (dtypes or {"keys": "torch.bfloat16", "values": "torch.float32", "mask": "torch.bool",
                                        "positions": "torch.int64"})


@pytest.mark.ray
def test_received_tensors_alias_read_only_store_memory(actors):
    ray, agent, other, _ = actors
    ref = agent.produce.remote(3, slots=32768)  # 2 MiB keys: stored in shared memory, not inline
    check_zero_copy(ray.get(other.inspect.remote([ref])))


@pytest.mark.ray
@pytest.mark.parametrize("producer", ["agent", "plain"])
@pytest.mark.parametrize("slots", [16, 8192])  # inline, and in shared memory
@pytest.mark.parametrize("slot_major", [False, True])
def test_messages_cross_actors_bit_exact(actors, producer, slots, slot_major):
    ray, agent, other, plain = actors
    source = agent if producer == "agent" else plain
    got = ray.get(other.copy_out.remote(source.produce.remote(7, slots=slots, slot_major=slot_major)))
    assert_bit_exact(kv_message(7, slots, sender="producer"), got)
    assert got.tensors["keys"].dtype == torch.bfloat16


@pytest.mark.ray
def test_zero_copy_off_actor_still_shares_store_memory(actors):
    ray, _, other, plain = actors
    ref = plain.produce.remote(4, slots=32768)
    assert isinstance(ray.get(ref), ByteViewMessage)
    check_zero_copy(ray.get(other.inspect.remote([ref])))


@pytest.mark.ray
@pytest.mark.parametrize("nbytes", [1 << 20, 64 << 20])
def test_receive_reads_in_place_whatever_the_size(actors, nbytes):
    """Receive time does not grow with size because receiving copies nothing: a 64 MiB
    message is read in place in the store exactly as a 1 MiB one is. (The times themselves
    are measured by benchmarks/transport.py.)"""
    ray, _, other, _ = actors
    ref = ray.put(ObjectStoreTransport().pack(hidden_message(nbytes)))
    out = ray.get(other.inspect.remote([ref], mapped="hidden"))
    check_zero_copy(out, {"hidden": "torch.float32", "mask": "torch.bool"})


@pytest.mark.ray
def test_hundreds_of_messages_through_a_chain_leave_the_store_as_it_was(actors):
    ray, first, second, third = actors
    start = settled_store_bytes(ray)
    n, nbytes, window, results = 300, 256 << 10, 100, []
    held = first.produce_hidden.remote(nbytes, -1)
    ray.wait([held], fetch_local=False)  # produced and held: it lies in shared memory now
    peak = store_bytes_used(ray)
    del held
    for base in range(0, n, window):
        finals = []
        for i in range(base, base + window):
            finals.append(third.consume.remote(second.relay.remote(first.produce_hidden.remote(nbytes, i))))
        results += ray.get(finals)
    assert results == [float(i + 1) for i in range(n)]
    assert peak > start + nbytes  # the messages really went through shared memory
    deadline = time.monotonic() + 20
    while store_bytes_used(ray) > start + (64 << 10) and time.monotonic() < deadline:
        gc.collect()
        time.sleep(0.2)
    assert store_bytes_used(ray) <= start + (64 << 10), (start, store_bytes_used(ray))
