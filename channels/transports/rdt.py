"""rdt transport: Ray Direct Transport moves a message's tensors straight from the producing
actor to the receiving one (NCCL or CUDA IPC between GPUs, NIXL, gloo on CPU), outside the
object store. Only the header and the tensor metadata go through Ray's normal path.

What it needs, and what goes wrong otherwise:
- The producer returns the message from a method declared with a tensor transport: inherit
  `RdtMethods` (which wraps the actor's `produce`) and call `producer_method(handle, backend)`, which picks `run_step_<backend>`.
- Every actor that sends or receives is declared `@ray.remote(enable_tensor_transport=True)`;
  a receiver without it waits about a minute and then both actors are killed, so
  `create_group` refuses such actors up front.
- nccl and gloo are two-sided: the actors need a collective group (`create_group`), and the
  driver cannot `ray.get` such an object; hand the ObjectRef to a receiving actor.
- The tensors live in the producer until received and are lost if it dies.
"""
from __future__ import annotations

import importlib.util

import ray
import torch

from ..errors import TransportError, TransportUnavailable
from ..message import LatentMessage
from .base import Transport, check_message
from .memory_order import from_transit, to_transit

BACKENDS = ("gloo", "nccl", "cuda_ipc", "nixl")
COLLECTIVE_BACKENDS = ("gloo", "nccl")  # two-sided: need a collective group
DEVICE_OF = {"gloo": "cpu", "nccl": "cuda", "cuda_ipc": "cuda"}  # nixl carries either


def backend_problem(backend: str) -> str | None:
    """Why `backend` cannot run in this process, or None when it can."""
    if backend not in BACKENDS:
        return f"unknown rdt backend {backend!r}; use one of {BACKENDS}"
    try:
        from ray.experimental.collective import create_collective_group  # noqa: F401
        from ray.experimental.rdt.util import normalize_and_validate_tensor_transport

        normalize_and_validate_tensor_transport(backend)
    except (ImportError, ValueError) as exc:
        return (f"Ray {ray.__version__} has no tensor transport {backend!r} ({exc}); "
                "upgrade Ray or use transport object_store")
    if DEVICE_OF.get(backend) == "cuda" and not torch.cuda.is_available():
        return f"{backend} moves CUDA tensors but this process sees no GPU; use gloo or object_store on CPU"
    if backend == "gloo" and not torch.distributed.is_gloo_available():
        return "this torch build has no gloo support; use transport object_store"
    if backend == "nixl" and importlib.util.find_spec("nixl") is None:
        return "the nixl package is not installed in this process; install it or pick another backend"
    return None


def require_backend(backend: str) -> str:
    problem = backend_problem(backend)
    if problem:
        raise TransportUnavailable(problem, transport=f"rdt/{backend}")
    return backend


def _check_backend_in_actor(self, backend: str):
    return backend_problem(backend)


def create_group(actors: list, backend: str, name: str | None = None):
    """Ready `actors` to exchange messages over `backend`; returns the group handle (or None
    for one-sided backends, which need no group). Checks, before anything can hang, that each
    actor enables tensor transport and can run the backend in its own process."""
    if backend not in BACKENDS:
        require_backend(backend)
    for actor in actors:
        if not getattr(actor, "_ray_enable_tensor_transport", False):
            raise TransportError(
                f"actor {actor} was declared without enable_tensor_transport=True; declare its "
                "class with @ray.remote(enable_tensor_transport=True)", transport=f"rdt/{backend}")
    problems = ray.get([a.__ray_call__.remote(_check_backend_in_actor, backend) for a in actors])
    for actor, problem in zip(actors, problems):
        if problem:
            raise TransportUnavailable(f"{problem} (in actor {actor})", transport=f"rdt/{backend}")
    if backend not in COLLECTIVE_BACKENDS:
        return None
    from ray.experimental.collective import create_collective_group

    return create_collective_group(actors, backend=backend, name=name)


def destroy_group(group) -> None:
    if group is not None:
        from ray.experimental.collective import destroy_collective_group

        destroy_collective_group(group)


def _producer(backend: str):
    """A method that runs `self.produce` and ships the tensors of its message over `backend`."""

    def run_step(self, *args, **kwargs):
        return RdtTransport(backend).pack(self.produce(*args, **kwargs))

    run_step.__name__ = f"run_step_{backend}"
    try:
        return ray.method(tensor_transport=backend)(run_step)
    except (TypeError, ValueError):
        def unavailable(self, *args, **kwargs):
            raise TransportUnavailable(backend_problem(backend) or "not supported by this Ray",
                                       transport=f"rdt/{backend}")

        unavailable.__name__ = run_step.__name__
        return unavailable


class RdtMethods:
    """Mixin for an actor class with a `produce(*args, **kwargs) -> LatentMessage` method:
    one producer method per backend, each returning that message over Ray Direct Transport."""

    run_step_gloo = _producer("gloo")
    run_step_nccl = _producer("nccl")
    run_step_cuda_ipc = _producer("cuda_ipc")
    run_step_nixl = _producer("nixl")


def producer_method(actor, backend: str):
    """The remote method of `actor` that produces a message over `backend`."""
    if backend not in BACKENDS:
        require_backend(backend)
    return getattr(actor, f"run_step_{backend}")


class RdtTransport(Transport):
    name = "rdt"

    def __init__(self, backend: str = "gloo"):
        if backend not in BACKENDS:
            require_backend(backend)
        self.backend = backend

    def pack(self, msg: LatentMessage) -> object:
        msg = check_message(msg, f"rdt/{self.backend}")
        device = DEVICE_OF.get(self.backend)
        for name, t in msg.tensors.items():
            if device is not None and t.device.type != device:
                raise TransportError(
                    f"tensor {name!r} is on {t.device} but {self.backend} moves {device} tensors; "
                    f"move the model to {device} or pick another backend", transport=f"rdt/{self.backend}")
        return to_transit(msg, lambda t: t.detach())

    def unpack(self, obj: object) -> LatentMessage:
        name = f"rdt/{self.backend}"
        return check_message(from_transit(check_message(obj, name), name), name)
