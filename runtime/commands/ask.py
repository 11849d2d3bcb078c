"""`latentray ask QUESTION...`: ask a running `latentray serve`.

    latentray ask [--address HOST:PORT] [--token-file PATH] [--stream] QUESTION [QUESTION ...]

Exits 0 when every question was answered, 1 when some failed, 2 when the gateway could not
be used.
"""
from __future__ import annotations

import sys

from latentray.runtime.engine.errors import RunError
from latentray.runtime.gateway.wire import DEFAULT_PORT


def add_parser(sub) -> None:
    p = sub.add_parser("ask", help="ask a running `latentray serve` questions")
    p.add_argument("questions", nargs="+", metavar="QUESTION")
    p.add_argument("--address", default=f"127.0.0.1:{DEFAULT_PORT}",
                   help=f"the gateway's HOST:PORT (default 127.0.0.1:{DEFAULT_PORT})")
    p.add_argument("--token-file", help="file holding the gateway's token (default: $LATENTRAY_GATEWAY_TOKEN)")
    p.add_argument("--timeout", type=float, default=600.0, help="seconds to wait for the answers (default 600)")
    p.add_argument("--stream", action="store_true", help="print progress events as the steps finish")


def _print_reply(questions: list, reply: dict) -> None:
    answers = {a["index"]: a for a in reply["answers"]}
    failed = {f["index"]: f["reason"] for f in reply["failed"]}
    for i, q in enumerate(questions):
        outcome = (f"A: {answers[i]['answer']!r} ({answers[i]['tokens']} tokens)" if i in answers
                   else f"FAILED: {failed.get(i, 'no reply')}")
        print(f"[{i}] Q: {q}\n    {outcome}")
    t = reply["time"]
    print(f"time: queued {t['queue_s']:.3f} s, ran {t['run_s']:.3f} s, total {t['total_s']:.3f} s")


def run(args) -> int:
    from latentray.runtime.gateway.auth import load_token
    from latentray.runtime.gateway.client import GatewayClient

    for n, q in enumerate(args.questions, 1):
        try:
            q.encode("utf-8")
        except UnicodeEncodeError:
            raise RunError(f"question {n} is not UTF-8 text; give the question in UTF-8") from None
    with GatewayClient(args.address, token=load_token(args.token_file), timeout=args.timeout) as client:
        if args.stream:
            reply = None
            for event in client.solve_stream(args.questions):
                if event["event"] == "answer":
                    reply = event
                elif event["event"] == "step":
                    print(f"  step {event['step']} ({event['agent']}): {event['seconds']:.3f} s", file=sys.stderr)
        else:
            reply = client.solve(args.questions)
    _print_reply(args.questions, reply)
    if reply["failed"]:
        print(f"[latentray] {len(reply['failed'])} of {len(args.questions)} questions failed", file=sys.stderr)
        return 1
    return 0
