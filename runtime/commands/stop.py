"""`latentray stop JOB`: stop a Ray job and wait for it to end."""
from __future__ import annotations

from latentray.runtime.jobs import client as jobs
from latentray.runtime.jobs.client import ADDRESS_HELP


def add_parser(sub) -> None:
    p = sub.add_parser("stop", help="stop a job")
    p.add_argument("job_id", metavar="JOB")
    p.add_argument("--address", help=ADDRESS_HELP)


def run(args) -> int:
    c = jobs.client(args.address)
    if jobs.stop(args.address, args.job_id, conn=c):
        state = jobs.wait_until_done(args.address, args.job_id, timeout_s=60, conn=c)
        print(f"{args.job_id}: {state}")
    else:
        print(f"{args.job_id}: already finished ({jobs.status(args.address, args.job_id, conn=c).status})")
    return 0
