"""Actor-to-actor message hand-off: our object_store transport against Ray's default handling
of a torch tensor and against one memcpy of the same size, all measured in one run.

    python benchmarks/transport.py [--sizes 1KiB,1MiB,64MiB,256MiB] [--json PATH]

handoff: driver asks the producer for a message and hands the ObjectRef to the receiver,
         until the receiver has unpacked it (two actor calls plus the data movement).
receive: inside the receiver, from ray.get of an already-produced message to a usable tensor.
memcpy:  torch.clone of the same tensor in one process; "copy_" copies into a buffer that
         already exists. The "Ray default" actors run with RAY_ENABLE_ZERO_COPY_TORCH_TENSORS=0,
         which Ray reads once per process when it is imported, so they are separate actors.
--rdt nccl,cuda_ipc,...: also the same hand-off over Ray Direct Transport with each backend,
         GPU tensor to GPU tensor (gloo: CPU), against one copy_ on the producer's device; a
         backend that cannot run here is skipped with the reason.
"""
from __future__ import annotations

import argparse
import json
import os
import statistics
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
os.environ["RAY_ENABLE_ZERO_COPY_TORCH_TENSORS"] = "1"  # must precede `import ray`

import ray  # noqa: E402
import torch  # noqa: E402

from latentray.channels.message import LatentMessage  # noqa: E402
from latentray.channels.transports import get_transport  # noqa: E402
from sizes import parse_size, size_name  # noqa: E402

DEFAULT_SIZES = "1KiB,1MiB,64MiB,256MiB"


def reps_for(nbytes: int) -> int:
    return 60 if nbytes <= 1 << 20 else 7 if nbytes <= 64 << 20 else 3


def message_of(nbytes: int) -> LatentMessage:
    hidden = torch.rand(max(nbytes // 4, 1))  # float32: 4 bytes each
    return LatentMessage.build("hidden", "producer", {}, {"hidden": hidden.view(1, 1, -1)})


@ray.remote
class Endpoint:
    def __init__(self):
        self.transport = get_transport("object_store")
        self.msg = self.raw = None

    def zero_copy_flag(self) -> bool:
        from latentray.channels.transports.object_store import ray_zero_copy_enabled
        return ray_zero_copy_enabled()

    def prepare(self, nbytes: int):
        self.msg = message_of(nbytes)
        self.raw = self.msg.tensors["hidden"]

    def emit(self):
        return self.transport.pack(self.msg)

    def emit_raw(self):
        return self.raw

    def emit_empty(self):
        return None

    def noop(self):
        return None

    def take(self, obj):
        if obj is None:
            return 0
        t = self.transport.unpack(obj).tensors["hidden"] if isinstance(obj, LatentMessage) \
            or not isinstance(obj, torch.Tensor) else obj
        return int(t.numel())

    def timed_take(self, ref_in_list):
        t0 = time.perf_counter()
        n = self.take(ray.get(ref_in_list[0]))
        assert n > 0
        return time.perf_counter() - t0


def median_time(fn, reps: int, warmup: int = 1) -> float:
    for _ in range(warmup):
        fn()
    times = []
    for _ in range(reps):
        t0 = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t0)
    return statistics.median(times)


def memcpy_times(nbytes: int, reps: int) -> tuple[float, float]:
    src = torch.rand(max(nbytes // 4, 1))
    dst = torch.empty_like(src)
    clone = median_time(lambda: src.clone(), reps)
    copy = median_time(lambda: dst.copy_(src), reps)
    return clone, copy


def handoff(producer, receiver, emit: str, reps: int) -> float:
    method = getattr(producer, emit)
    return median_time(lambda: ray.get(receiver.take.remote(method.remote())), reps)


def warm_up(producer, receiver, emit: str, hops: int) -> None:
    """Untimed hand-offs. A process's first write into each region of the store's shared
    mapping page-faults (page tables are per process); a long-running agent pays that once,
    so steady-state figures come after the allocator has cycled through its regions."""
    for _ in range(hops):
        ray.get(receiver.take.remote(getattr(producer, emit).remote()))


def paired_handoff(producer, receiver, reps: int) -> tuple[float, float]:
    """Message hop and empty hop measured alternately, so load from elsewhere hits both alike."""
    full, empty = [], []
    for _ in range(reps):
        full.append(handoff(producer, receiver, "emit", 1))
        empty.append(handoff(producer, receiver, "emit_empty", 1))
    return statistics.median(full), statistics.median(empty)


def receive(producer, receiver, emit: str, reps: int) -> float:
    times = []
    for _ in range(reps + 1):
        ref = getattr(producer, emit).remote()
        ray.wait([ref], fetch_local=False)
        times.append(ray.get(receiver.timed_take.remote([ref])))
        del ref
    return statistics.median(times[1:])


def measure(sizes: list[int], store_mib: int = 0, prefault: bool = False, warmup: int = 0) -> dict:
    env = {"PYTHONPATH": str(ROOT)}
    store = {"object_store_memory": store_mib << 20} if store_mib else {}
    system = {"_system_config": {"preallocate_plasma_memory": True}} if prefault else {}
    ray.init(num_cpus=4, include_dashboard=False, configure_logging=False, log_to_driver=False,
             runtime_env={"env_vars": {**env, "RAY_ENABLE_ZERO_COPY_TORCH_TENSORS": "1"}}, **store, **system)
    off = {"env_vars": {**env, "RAY_ENABLE_ZERO_COPY_TORCH_TENSORS": "0"}}
    ours = Endpoint.remote(), Endpoint.remote()
    plain = Endpoint.options(runtime_env=off).remote(), Endpoint.options(runtime_env=off).remote()
    flags = ray.get([a.zero_copy_flag.remote() for a in ours + plain])
    assert flags == [True, True, False, False], f"zero-copy flags in actors: {flags}"

    floor_reps = 50
    results = {
        "empty_call_s": median_time(lambda: ray.get(ours[1].noop.remote()), floor_reps, warmup=5),
        "empty_hop_s": handoff(*ours, "emit_empty", floor_reps),
        "sizes": [],
    }
    for nbytes in sizes:
        reps = reps_for(nbytes)
        ray.get([a.prepare.remote(nbytes) for a in ours + plain])
        warm_up(*ours, "emit", warmup)
        warm_up(*plain, "emit_raw", warmup)
        clone, copy = memcpy_times(nbytes, reps)
        ours_handoff, empty_hop = paired_handoff(*ours, reps)
        row = {
            "size": size_name(nbytes), "bytes": nbytes, "reps": reps,
            "memcpy_clone_s": clone, "memcpy_prealloc_s": copy,
            "ours_handoff_s": ours_handoff, "empty_hop_s": empty_hop,
            "ours_receive_s": receive(*ours, "emit", reps),
            "ray_default_handoff_s": handoff(*plain, "emit_raw", reps),
            "ray_default_receive_s": receive(*plain, "emit_raw", reps),
        }
        results["sizes"].append(row)
        print(f"measured {row['size']}", file=sys.stderr, flush=True)
    ray.shutdown()
    results["targets"] = check_targets(results)
    return results


def check_targets(results: dict) -> list[dict]:
    rows = {r["bytes"]: r for r in results["sizes"]}
    targets = []
    for nbytes, r in rows.items():
        if nbytes >= 64 << 20:
            ratio = r["ours_handoff_s"] / r["memcpy_prealloc_s"]
            targets.append({"target": f"handoff {r['size']} <= 1.5x memcpy into a preallocated buffer",
                            "ratio": ratio, "met": ratio <= 1.5})
    if (256 << 20) in rows and (1 << 20) in rows:
        ratio = rows[256 << 20]["ours_receive_s"] / rows[1 << 20]["ours_receive_s"]
        targets.append({"target": "receive 256MiB <= 2x receive 1MiB", "ratio": ratio, "met": ratio <= 2})
    if 1024 in rows:
        ratio = rows[1024]["ours_handoff_s"] / rows[1024]["empty_hop_s"]
        targets.append({"target": "1KiB hop <= 1.3x the same hop with no payload",
                        "ratio": ratio, "met": ratio <= 1.3})
    return targets


def print_table(results: dict):
    ms = lambda s: f"{s * 1e3:9.3f}"  # noqa: E731
    print(f"empty actor call {ms(results['empty_call_s'])} ms; "
          f"empty hop (producer -> receiver, no payload) {ms(results['empty_hop_s'])} ms")
    head = ("size", "clone ms", "copy_ ms", "ours ms", "x clone", "ray dflt ms", "x clone",
            "ours recv ms", "dflt recv ms")
    print("".join(f"{h:>13}" for h in head))
    for r in results["sizes"]:
        clone = r["memcpy_clone_s"]
        cells = (r["size"], ms(clone), ms(r["memcpy_prealloc_s"]), ms(r["ours_handoff_s"]),
                 f"{r['ours_handoff_s'] / clone:.2f}", ms(r["ray_default_handoff_s"]),
                 f"{r['ray_default_handoff_s'] / clone:.2f}", ms(r["ours_receive_s"]),
                 ms(r["ray_default_receive_s"]))
        print("".join(f"{c:>13}" for c in cells))
    for t in results["targets"]:
        print(f"{'met ' if t['met'] else 'MISSED'} {t['target']}: {t['ratio']:.2f}x")


def rdt_endpoint_class():
    """The remote class of both ends of an rdt hand-off (declared here: it needs Ray's
    tensor transport, which only --rdt asks for)."""
    from latentray.channels.transports.rdt import DEVICE_OF, RdtMethods, RdtTransport

    class RdtEndpoint(RdtMethods):
        def __init__(self, backend: str):
            self.backend, self.device = backend, DEVICE_OF.get(backend, "cuda")
            self.hidden = None

        def prepare(self, nbytes: int):
            self.hidden = torch.rand(max(nbytes // 4, 1), device=self.device)

        def produce(self):
            # a fresh view per hop, as an agent sends a view of its cache
            return LatentMessage.build("hidden", "producer", {}, {"hidden": self.hidden.view(1, 1, -1)})

        def take(self, msg):
            t = RdtTransport(self.backend).unpack(msg).tensors["hidden"]
            if t.is_cuda:
                torch.cuda.synchronize(t.device)  # the bytes have landed, not just been queued
            return int(t.numel())

        def copy_time(self, nbytes: int, reps: int) -> float:
            src = torch.rand(max(nbytes // 4, 1), device=self.device)
            dst = torch.empty_like(src)

            def once():
                dst.copy_(src)
                if src.is_cuda:
                    torch.cuda.synchronize(src.device)
            return median_time(once, reps)

    return ray.remote(enable_tensor_transport=True)(RdtEndpoint)


def rdt_skip_reason(backend: str, gpus: int) -> str | None:
    from latentray.channels.transports.rdt import backend_problem

    problem = backend_problem(backend)
    if problem:
        return problem
    if backend == "nccl" and gpus < 2:
        return f"nccl needs one GPU per actor; Ray sees {gpus}"
    return None


def rdt_rows(Endpoint, backend: str, sizes: list[int], gpus: int, warmup: int) -> list[dict]:
    from latentray.channels.transports import create_group, destroy_group, producer_method

    # nccl: a GPU each; cuda_ipc maps the producer's memory, so both ends share one GPU
    share = {"gloo": 0, "nccl": 1, "cuda_ipc": 0.5}.get(backend, 1 if gpus >= 2 else 0.5)
    ends = [Endpoint.options(num_gpus=share).remote(backend) for _ in range(2)]
    group = None
    try:
        group = create_group(ends, backend)
        producer, receiver = ends
        emit = producer_method(producer, backend)

        def hop():
            return ray.get(receiver.take.remote(emit.remote()))

        rows = []
        for nbytes in sizes:
            reps = reps_for(nbytes)
            ray.get(producer.prepare.remote(nbytes))
            for _ in range(max(warmup, 2)):  # the first hops also open the backend's connection
                hop()
            rows.append({"size": size_name(nbytes), "bytes": nbytes, "reps": reps,
                         "handoff_s": median_time(hop, reps),
                         "device_copy_s": ray.get(producer.copy_time.remote(nbytes, reps))})
            print(f"measured rdt {backend} {size_name(nbytes)}", file=sys.stderr, flush=True)
        return rows
    finally:
        destroy_group(group)
        for actor in ends:
            ray.kill(actor)


def measure_rdt(sizes: list[int], backends: list[str], warmup: int = 0) -> dict:
    """backend -> {"sizes": rows}, {"skipped": reason} or {"error": what went wrong}."""
    from latentray.channels.errors import TransportUnavailable

    ray.init(include_dashboard=False, configure_logging=False, log_to_driver=False,
             runtime_env={"env_vars": {"PYTHONPATH": str(ROOT), "RAY_ENABLE_ZERO_COPY_TORCH_TENSORS": "1"}})
    out = {}
    try:
        gpus = int(ray.cluster_resources().get("GPU", 0))
        Endpoint = None
        for backend in backends:
            reason = rdt_skip_reason(backend, gpus)
            try:
                if reason is None:
                    Endpoint = Endpoint or rdt_endpoint_class()
                    out[backend] = {"sizes": rdt_rows(Endpoint, backend, sizes, gpus, warmup)}
            except TransportUnavailable as exc:  # found inside an actor: not runnable there
                reason = str(exc)
            except Exception as exc:  # one backend failing leaves the others measured
                out[backend] = {"error": f"{type(exc).__name__}: {exc}"}
                print(f"rdt {backend}: failed: {out[backend]['error']}", file=sys.stderr, flush=True)
            if reason is not None:
                out[backend] = {"skipped": reason}
                print(f"rdt {backend}: skipped: {reason}", file=sys.stderr, flush=True)
    finally:
        ray.shutdown()
    return out


def print_rdt(results: dict):
    ms = lambda s: f"{s * 1e3:9.3f}"  # noqa: E731
    ours = {r["bytes"]: r["ours_handoff_s"] for r in results["sizes"]}
    head = ("backend", "size", "rdt ms", "copy_ ms", "x copy_", "obj store ms")
    print("".join(f"{h:>13}" for h in head))
    for backend, r in results["rdt"].items():
        if "sizes" not in r:
            print(f"{backend:>13}  {'skipped: ' + r['skipped'] if 'skipped' in r else 'FAILED: ' + r['error']}")
            continue
        for row in r["sizes"]:
            cells = (backend, row["size"], ms(row["handoff_s"]), ms(row["device_copy_s"]),
                     f"{row['handoff_s'] / row['device_copy_s']:.2f}", ms(ours[row["bytes"]]))
            print("".join(f"{c:>13}" for c in cells))


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sizes", default=DEFAULT_SIZES, help=f"comma-separated, default {DEFAULT_SIZES}")
    parser.add_argument("--json", type=Path, help="also write the results to this file")
    parser.add_argument("--store-mib", type=int, default=0, help="object store size (default: Ray's)")
    parser.add_argument("--prefault", action="store_true",
                        help="have Ray pre-fault the object store's pages at start")
    parser.add_argument("--warmup", type=int, default=0,
                        help="untimed hand-offs per size first, for steady-state figures (e.g. 40)")
    parser.add_argument("--rdt", metavar="BACKENDS",
                        help="also over Ray Direct Transport with these backends, comma-separated "
                             "(nccl, cuda_ipc, nixl; gloo on CPU)")
    args = parser.parse_args(argv)
    sizes = [parse_size(s) for s in args.sizes.split(",")]
    results = measure(sizes, args.store_mib, args.prefault, args.warmup)
    results["options"] = {"store_mib": args.store_mib, "prefault": args.prefault, "warmup": args.warmup}
    if args.rdt:
        backends = [b.strip() for b in args.rdt.split(",") if b.strip()]
        results["options"]["rdt"] = backends
        results["rdt"] = measure_rdt(sizes, backends, args.warmup)
    print_table(results)
    if args.rdt:
        print_rdt(results)
    if args.json:
        args.json.write_text(json.dumps(results, indent=2))
    if args.rdt and any("error" in r for r in results["rdt"].values()):
        sys.exit(1)


if __name__ == "__main__":
    main()
