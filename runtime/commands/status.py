"""`latentray status JOB`: a Ray job's status and entrypoint."""
from __future__ import annotations

from latentray.runtime.jobs import client as jobs
from latentray.runtime.jobs.client import ADDRESS_HELP


def add_parser(sub) -> None:
    p = sub.add_parser("status", help="a job's status")
    p.add_argument("job_id", metavar="JOB")
    p.add_argument("--address", help=ADDRESS_HELP)


def run(args) -> int:
    info = jobs.status(args.address, args.job_id)
    message = f" ({info.message})" if info.message else ""
    print(f"{args.job_id}: {info.status}{message}")
    print(f"  entrypoint: {info.entrypoint}")
    return 0
