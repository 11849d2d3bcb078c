"""A latent message moved between processes three ways, the same bytes each way, in one run:

    python benchmarks/cross_node.py [--sizes 1MiB,16MiB,64MiB,256MiB] [--repeats 5] [--json out.json]

same-node:  a producer actor packs a kv message (float32 keys and values [L, 1, H, T, D] of the
            given size, plus the small mask and positions a kv message carries) through the
            object_store transport; once it is sealed in the store, the driver hands its
            ObjectRef to a consumer actor on the producer's node, which unpacks it and touches
            one element per memory page of every tensor. Timed from the driver's call to the
            consumer's return; the producer's work is not in it.
cross-node: the same with the consumer on the other node, so Ray's object manager pulls the
            bytes into that node's store before the consumer reads them.
socket:     two plain processes (no Ray) over a loopback TCP connection: the receiver asks,
            the sender writes the bytes, the receiver reads them into a preallocated buffer
            and touches one element per page. Timed in the receiver, request included.

Everything runs on this one host. The script starts a real two-node Ray here
(tests/local_cluster.py: a head and one worker, each a `ray start` with its own raylet and
object store, all bound to 127.0.0.1, each store sized for two messages of the largest size
plus headroom), runs the driver in a process of its own joined to it, and stops every node
it started. "Cross-node" therefore crosses two raylets and two object stores over loopback,
not a physical network; the socket row is what one loopback hop of these bytes costs here.

Per size: the median of --repeats hops of each way (after one untimed warm-up hop each; the
three ways alternate, so load from elsewhere hits them alike), its throughput, and the
ratios cross/same and cross/socket.
"""
from __future__ import annotations

import argparse
import json
import math
import multiprocessing as mp
import os
import platform
import resource
import shutil
import socket
import statistics
import struct
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "tests"))

import torch  # noqa: E402

from sizes import parse_size, size_name  # noqa: E402

DEFAULT_SIZES = "1MiB,16MiB,64MiB,256MiB"
LAYERS, HEADS, HEAD_DIM = 8, 4, 64  # kv geometry; one slot of keys + values = 16 KiB
SLOT_BYTES = 2 * LAYERS * HEADS * HEAD_DIM * 4
STORE_HEADROOM = 256 << 20
PAGE = resource.getpagesize()
WORKER = "node_b"


def slots_for(nbytes: int) -> int:
    return max(1, math.ceil(nbytes / SLOT_BYTES))


def message_bytes(nbytes: int) -> int:
    """Bytes of every tensor of the message for `nbytes`: what the socket moves too."""
    slots = slots_for(nbytes)
    return slots * SLOT_BYTES + slots * (1 + 8)  # bool mask, int64 positions


def kv_message(nbytes: int):
    from latentray.channels.message import LatentMessage

    slots = slots_for(nbytes)
    shape = (LAYERS, 1, HEADS, slots, HEAD_DIM)
    return LatentMessage.build("kv", "producer", {"model": "bench"}, {
        "keys": torch.rand(shape), "values": torch.rand(shape),
        "mask": torch.ones(1, slots, dtype=torch.bool), "positions": torch.arange(slots).unsqueeze(0),
    }, layers=tuple(range(LAYERS)), seq_lens=(slots,))


def touch(t: torch.Tensor) -> float:
    """Read one element per memory page: every page is mapped and readable, none read in full."""
    flat = t.reshape(-1)
    return float(flat[:: max(1, PAGE // flat.element_size())].double().sum())


class Endpoint:
    """Producer or consumer; wrapped with ray.remote in the driver (this module runs without Ray too)."""

    def __init__(self):
        from latentray.channels.transports import get_transport

        self.transport = get_transport("object_store")
        self.msg = None

    def where(self) -> tuple:
        import ray
        from latentray.channels.transports.object_store import ray_zero_copy_enabled

        return ray.get_runtime_context().get_node_id(), ray_zero_copy_enabled()

    def prepare(self, nbytes: int) -> int:
        self.msg = kv_message(nbytes)
        return sum(t.nbytes for t in self.msg.tensors.values())

    def emit(self):
        return self.transport.pack(self.msg)

    def take(self, obj) -> float:
        return sum(touch(t) for t in self.transport.unpack(obj).tensors.values())


def recv_exact(sock: socket.socket, n: int) -> bytes:
    buf = bytearray(n)
    view, got = memoryview(buf), 0
    while got < n:
        k = sock.recv_into(view[got:])
        if not k:
            raise ConnectionError("the peer closed the connection")
        got += k
    return bytes(buf)


HEAD = struct.Struct("!BQ")  # op, nbytes
STOP, PREPARE, SEND = 0, 1, 2


def socket_sender(port: int) -> None:
    sock = socket.create_connection(("127.0.0.1", port))
    sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
    data = None
    while True:
        op, n = HEAD.unpack(recv_exact(sock, HEAD.size))
        if op == STOP:
            break
        if op == PREPARE:
            data = torch.rand(math.ceil(n / 4)).view(torch.uint8)[:n].numpy()
            sock.sendall(b"k")
        else:
            sock.sendall(data)
    sock.close()


def socket_receiver(ctrl, sender_port) -> None:
    """Serves the driver's commands over `ctrl`: ("prepare", n), ("hop",) -> seconds, ("stop",)."""
    listener = socket.create_server(("127.0.0.1", 0))
    sender_port.send(listener.getsockname()[1])
    sock, _ = listener.accept()
    listener.close()
    sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
    buf, view, n = None, None, 0
    while True:
        cmd = ctrl.recv()
        if cmd[0] == "stop":
            sock.sendall(HEAD.pack(STOP, 0))
            break
        if cmd[0] == "prepare":
            n = cmd[1]
            buf = torch.empty(math.ceil(n / 4))  # float32, so touch() strides as over the message
            view = memoryview(buf.view(torch.uint8)[:n].numpy())
            buf.zero_()  # preallocated: its pages exist before the first hop
            sock.sendall(HEAD.pack(PREPARE, n))
            recv_exact(sock, 1)
            ctrl.send(None)
            continue
        t0 = time.perf_counter()
        sock.sendall(HEAD.pack(SEND, n))
        got = 0
        while got < n:
            k = sock.recv_into(view[got:])
            if not k:
                raise ConnectionError("the sender closed the connection")
            got += k
        touch(buf)
        ctrl.send(time.perf_counter() - t0)
    sock.close()


class SocketPair:
    def __init__(self):
        ctx = mp.get_context("spawn")  # the driver runs Ray's threads: no fork
        self.ctrl, child = ctx.Pipe()
        port_r, port_w = ctx.Pipe(duplex=False)
        self.receiver = ctx.Process(target=socket_receiver, args=(child, port_w), daemon=True)
        self.receiver.start()
        self.sender = ctx.Process(target=socket_sender, args=(port_r.recv(),), daemon=True)
        self.sender.start()

    def prepare(self, nbytes: int) -> None:
        self.ctrl.send(("prepare", nbytes))
        self.ctrl.recv()

    def hop(self) -> float:
        self.ctrl.send(("hop",))
        return self.ctrl.recv()

    def close(self) -> None:
        self.ctrl.send(("stop",))
        for p in (self.receiver, self.sender):
            p.join(timeout=30)
            if p.is_alive():
                p.kill()


def ray_hop(producer, consumer) -> float:
    import ray

    ref = producer.emit.remote()
    ray.wait([ref], fetch_local=False)  # sealed in the producer's store; not pulled here
    t0 = time.perf_counter()
    ray.get(consumer.take.remote(ref))
    return time.perf_counter() - t0


def drive(address: str, sizes: list[int], repeats: int) -> dict:
    """The driver, in a process joined to the cluster."""
    import ray

    from latentray.runtime.engine.ray_setup import ensure_ray

    ensure_ray(address=address)
    Actor = ray.remote(num_cpus=0)(Endpoint)
    producer = Actor.options(resources={"head": 0.01}).remote()
    same = Actor.options(resources={"head": 0.01}).remote()
    cross = Actor.options(resources={WORKER: 0.01}).remote()
    (p_node, p_flag), (s_node, s_flag), (c_node, c_flag) = ray.get(
        [a.where.remote() for a in (producer, same, cross)])
    assert p_node == s_node != c_node, "producer and same-node consumer must share a node, the other not"
    assert p_flag and s_flag and c_flag, "the actors must run with RAY_ENABLE_ZERO_COPY_TORCH_TENSORS=1"
    pair = SocketPair()
    rows = []
    try:
        for nbytes in sizes:
            moved = ray.get(producer.prepare.remote(nbytes))
            assert moved == message_bytes(nbytes)
            pair.prepare(moved)
            ways = {"same_node": lambda: ray_hop(producer, same), "cross_node": lambda: ray_hop(producer, cross),
                    "socket": pair.hop}
            for hop in ways.values():
                hop()  # warm-up
            times = {w: [] for w in ways}
            for _ in range(repeats):
                for way, hop in ways.items():
                    times[way].append(hop())
            row = {"size": size_name(nbytes), "bytes": moved, "repeats": repeats}
            for way, ts in times.items():
                row[f"{way}_s"] = statistics.median(ts)
                row[f"{way}_gbps"] = moved / row[f"{way}_s"] / 1e9
                row[f"{way}_all_s"] = ts
            row["cross_over_same"] = row["cross_node_s"] / row["same_node_s"]
            row["cross_over_socket"] = row["cross_node_s"] / row["socket_s"]
            rows.append(row)
            print(f"measured {row['size']}", file=sys.stderr, flush=True)
    finally:
        pair.close()
        ray.shutdown()
    return {"sizes": rows, "nodes": {"producer": p_node, "same_node": s_node, "cross_node": c_node}}


def print_table(results: dict) -> None:
    head = ("size", "same ms", "GB/s", "cross ms", "GB/s", "socket ms", "GB/s", "cross/same", "cross/sock")
    print("".join(f"{h:>11}" for h in head))
    for r in results["sizes"]:
        cells = [r["size"]]
        for way in ("same_node", "cross_node", "socket"):
            cells += [f"{r[f'{way}_s'] * 1e3:.3f}", f"{r[f'{way}_gbps']:.2f}"]
        cells += [f"{r['cross_over_same']:.2f}", f"{r['cross_over_socket']:.2f}"]
        print("".join(f"{c:>11}" for c in cells))


def run(sizes: list[int], repeats: int) -> dict:
    from local_cluster import LocalCluster

    store = 2 * max(message_bytes(n) for n in sizes) + STORE_HEADROOM
    work = Path(tempfile.mkdtemp(prefix="lrbench"))
    cluster = LocalCluster(work, object_store_bytes=store)
    ok = False
    try:
        cluster.start_head(num_cpus=1)
        cluster.add_node(WORKER, num_cpus=1)
        cluster.wait_ready()
        result = work / "result.json"
        cmd = [sys.executable, str(Path(__file__).resolve()), "--sizes", ",".join(map(str, sizes)),
               "--repeats", str(repeats), "--drive", cluster.address, "--result", str(result)]
        done = subprocess.run(cmd, env=cluster.env(), cwd=ROOT)
        if done.returncode != 0:
            raise SystemExit(f"the driver failed (exit {done.returncode}); node logs in {work}")
        results = json.loads(result.read_text())
        ok = True
    finally:
        leftovers = cluster.stop()
        if ok:
            shutil.rmtree(work, ignore_errors=True)
    if leftovers:
        print(f"processes outlived their node and were killed: {leftovers}", file=sys.stderr)
    results.update(repeats=repeats, object_store_bytes_per_node=store, page_bytes=PAGE,
                   cpus=os.cpu_count(), host=platform.node(), torch=torch.__version__)
    return results


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sizes", default=DEFAULT_SIZES, help=f"comma-separated, default {DEFAULT_SIZES}")
    parser.add_argument("--repeats", type=int, default=5, help="timed hops per way and size (default 5)")
    parser.add_argument("--json", type=Path, help="also write the results to this file")
    parser.add_argument("--drive", metavar="ADDRESS", help=argparse.SUPPRESS)  # the driver process
    parser.add_argument("--result", type=Path, help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    sizes = [parse_size(s) for s in args.sizes.split(",")]
    if args.drive:
        args.result.write_text(json.dumps(drive(args.drive, sizes, args.repeats)))
        return
    results = run(sizes, args.repeats)
    print_table(results)
    if args.json:
        args.json.write_text(json.dumps(results, indent=2))


if __name__ == "__main__":
    main()
