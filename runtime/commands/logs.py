"""`latentray logs JOB [--follow]`: a Ray job's logs."""
from __future__ import annotations

from latentray.runtime.jobs import client as jobs
from latentray.runtime.jobs.client import ADDRESS_HELP


def add_parser(sub) -> None:
    p = sub.add_parser("logs", help="a job's logs")
    p.add_argument("job_id", metavar="JOB")
    p.add_argument("--follow", "-f", action="store_true", help="keep streaming until the job ends")
    p.add_argument("--address", help=ADDRESS_HELP)


def run(args) -> int:
    jobs.logs(args.address, args.job_id, follow=args.follow)
    return 0
