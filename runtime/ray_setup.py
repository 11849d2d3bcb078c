"""Start (or join) Ray with the settings latent messages need.

Ray pickles torch tensors with a copy on put and on get unless
RAY_ENABLE_ZERO_COPY_TORCH_TENSORS=1 is set before `import ray`, in the driver and in
every worker. We set it here (before importing ray) and in the job's runtime_env.
"""
from __future__ import annotations

import os

ZERO_COPY_ENV = {"RAY_ENABLE_ZERO_COPY_TORCH_TENSORS": "1"}
os.environ.update({k: os.environ.get(k, v) for k, v in ZERO_COPY_ENV.items()})


def runtime_env(extra: dict | None = None) -> dict:
    env = {"env_vars": dict(ZERO_COPY_ENV)}
    if extra:
        env.update(extra)
    return env


def ensure_ray(address: str | None = None, num_cpus: int | None = None, dashboard: bool = False):
    """Initialise Ray once per process; join `address` (or RAY_ADDRESS) if given."""
    import ray

    if not ray.is_initialized():
        kwargs = dict(runtime_env=runtime_env(), include_dashboard=dashboard,
                      log_to_driver=True, configure_logging=False)
        if address or os.environ.get("RAY_ADDRESS"):
            ray.init(address=address or os.environ["RAY_ADDRESS"], runtime_env=runtime_env())
        else:
            ray.init(num_cpus=num_cpus, **kwargs)
    return ray
