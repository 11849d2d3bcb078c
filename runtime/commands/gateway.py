"""`latentray serve SPEC` and `latentray ask QUESTION...`: the gateway's commands.

    latentray serve SPEC [--host 127.0.0.1] [--port 50051] [--token-file PATH]
    latentray ask [--address HOST:PORT] [--token-file PATH] [--stream] QUESTION [QUESTION ...]

serve keeps the spec's actors warm until SIGINT or SIGTERM, then stops taking calls,
lets those in flight finish (up to --grace-s) and kills the actors. ask exits 0 when every
question was answered, 1 when some failed, 2 when the gateway could not be used.
"""
from __future__ import annotations

import signal
import sys
import threading

from runtime.engine.errors import RunError

DEFAULT_PORT = 50051
LOOPBACK = ("127.0.0.1", "localhost", "::1")


def add_gateway_parsers(sub) -> None:
    p = sub.add_parser("serve", help="serve a spec over gRPC with its actors kept warm")
    p.add_argument("spec", help="YAML graph spec")
    p.add_argument("--host", default="127.0.0.1", help="interface to listen on (default 127.0.0.1: this "
                   "machine only; 0.0.0.0 for every interface, with a token)")
    p.add_argument("--port", type=int, default=DEFAULT_PORT, help=f"port (default {DEFAULT_PORT}; 0: any free one, "
                   "printed at start)")
    p.add_argument("--token-file", help="file holding a shared secret that callers must send "
                   "(default: $LATENTRAY_GATEWAY_TOKEN; neither: no token)")
    p.add_argument("--address", help="Ray cluster address (default: RAY_ADDRESS or a local Ray)")
    p.add_argument("--name", help="actors are named <name>/<agent> (default <spec name>-gw-<random>)")
    p.add_argument("--batch-size", type=int, help="most questions run as one batch (overrides run.batch_size)")
    p.add_argument("--batch-window-ms", type=float, default=10.0, help="how long a request waits for others to "
                   "share its batch (default 10; 0: no waiting)")
    p.add_argument("--grace-s", type=float, default=30.0, help="on SIGINT/SIGTERM, how long requests in flight "
                   "may still run (default 30)")
    p.add_argument("--codecs", help="directory of fitted codec parts (overrides channels.codecs)")
    a = sub.add_parser("ask", help="ask a running `latentray serve` questions")
    a.add_argument("questions", nargs="+", metavar="QUESTION")
    a.add_argument("--address", default=f"127.0.0.1:{DEFAULT_PORT}",
                   help=f"the gateway's HOST:PORT (default 127.0.0.1:{DEFAULT_PORT})")
    a.add_argument("--token-file", help="file holding the gateway's token (default: $LATENTRAY_GATEWAY_TOKEN)")
    a.add_argument("--timeout", type=float, default=600.0, help="seconds to wait for the answers (default 600)")
    a.add_argument("--stream", action="store_true", help="print progress events as the steps finish")


def _load(args):
    from runtime.cli import with_overrides
    from topologies import build_plan, load_spec

    spec = with_overrides(load_spec(args.spec), args)
    return spec, build_plan(spec, args.spec)


def _wait_for_signal() -> None:
    stop = threading.Event()
    for sig in (signal.SIGINT, signal.SIGTERM):
        signal.signal(sig, lambda *_: stop.set())
    while not stop.wait(0.5):  # a timed wait lets the handler run promptly
        pass


def cmd_serve(args) -> int:
    from runtime.gateway.auth import load_token
    from runtime.gateway.server import GatewayServer
    from runtime.gateway.service import GatewayService

    if args.batch_window_ms < 0 or args.grace_s < 0:
        raise RunError("--batch-window-ms and --grace-s must be >= 0")
    spec, plan = _load(args)
    token = load_token(args.token_file)
    service = GatewayService(spec, plan, run_name=args.name, address=args.address,
                             batch_window_s=args.batch_window_ms / 1000)
    server = GatewayServer(service, args.host, args.port, token)  # binds now: a taken port fails before loading
    if args.host not in LOOPBACK and token is None:
        print(f"[latentray] warning: serving on {args.host} without a token: anyone who reaches the port can run "
              "questions; give --token-file", file=sys.stderr)
    service.start()
    try:
        server.start()
        print(f"serving {spec.name} on {server.address} (actors: {len(service.actor_names)}; token: "
              f"{'required' if token else 'none'}); SIGINT or SIGTERM stops it", flush=True)
        _wait_for_signal()
        print(f"[latentray] stopping: no new calls; {server.in_flight} in flight get up to {args.grace_s:g} s",
              file=sys.stderr, flush=True)
        server.stop(args.grace_s)
    finally:
        service.close()
    print(f"[latentray] stopped; requests served: {service.served}", file=sys.stderr)
    return 0


def _print_reply(questions: list, reply: dict) -> None:
    answers = {a["index"]: a for a in reply["answers"]}
    failed = {f["index"]: f["reason"] for f in reply["failed"]}
    for i, q in enumerate(questions):
        outcome = (f"A: {answers[i]['answer']!r} ({answers[i]['tokens']} tokens)" if i in answers
                   else f"FAILED: {failed.get(i, 'no reply')}")
        print(f"[{i}] Q: {q}\n    {outcome}")
    t = reply["time"]
    print(f"time: queued {t['queue_s']:.3f} s, ran {t['run_s']:.3f} s, total {t['total_s']:.3f} s")


def cmd_ask(args) -> int:
    from runtime.gateway.auth import load_token
    from runtime.gateway.client import GatewayClient

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
