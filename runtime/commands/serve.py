"""`latentray serve SPEC`: keep a spec's actors warm behind the gRPC gateway and, with
--openai-port, an OpenAI-compatible HTTP endpoint on the same actors.

    latentray serve SPEC [--host 127.0.0.1] [--port 50051] [--openai-port 8000 [--no-grpc]]
                         [--token-file PATH]

Both front ends share the token and limits.max_concurrent_requests. It serves until
SIGINT or SIGTERM, then stops taking calls, lets those in flight finish (up to --grace-s)
and kills the actors.
"""
from __future__ import annotations

import signal
import sys
import threading

from latentray.runtime.commands.spec_options import add_verbose, load_spec_and_plan
from latentray.runtime.engine.errors import RunError
from latentray.runtime.gateway.wire import DEFAULT_PORT

LOOPBACK = ("127.0.0.1", "localhost", "::1")


def add_parser(sub) -> None:
    p = sub.add_parser("serve", help="serve a spec over gRPC with its actors kept warm")
    p.add_argument("spec", help="YAML graph spec")
    p.add_argument("--host", default="127.0.0.1", help="interface to listen on (default 127.0.0.1: this "
                   "machine only; 0.0.0.0 for every interface, with a token)")
    p.add_argument("--port", type=int, default=DEFAULT_PORT, help=f"port (default {DEFAULT_PORT}; 0: any free one, "
                   "printed at start)")
    p.add_argument("--openai-port", type=int, help="also serve the OpenAI-compatible HTTP API (POST "
                   "/v1/chat/completions, GET /v1/models) on this port (0: any free one, printed at start)")
    p.add_argument("--no-grpc", action="store_true", help="serve only the OpenAI-compatible API (needs --openai-port)")
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
    add_verbose(p)


def _wait_for_signal() -> None:
    stop = threading.Event()
    for sig in (signal.SIGINT, signal.SIGTERM):
        signal.signal(sig, lambda *_: stop.set())
    while not stop.wait(0.5):  # a timed wait lets the handler run promptly
        pass


def _servers(args, service, token) -> list:
    """The front ends asked for, each bound now (a taken port fails before any model loads),
    sharing one set of admission slots."""
    from latentray.runtime.gateway.admission import Admission
    from latentray.runtime.gateway.openai_server import OpenAIServer
    from latentray.runtime.gateway.server import GatewayServer

    admission = Admission(service.spec.limits.max_concurrent_requests)
    servers = [] if args.no_grpc else [GatewayServer(service, args.host, args.port, token, admission)]
    if args.openai_port is not None:
        try:
            servers.append(OpenAIServer(service, args.host, args.openai_port, token, admission))
        except BaseException:
            for server in servers:
                server.stop(0)
            raise
    return servers


def _describe(server) -> str:
    return f"http://{server.address}/v1 (OpenAI API)" if hasattr(server, "url") else f"{server.address} (gRPC)"


def run(args) -> int:
    from latentray.runtime.gateway.auth import load_token
    from latentray.runtime.gateway.service import GatewayService

    if args.batch_window_ms < 0 or args.grace_s < 0:
        raise RunError("--batch-window-ms and --grace-s must be >= 0")
    if args.no_grpc and args.openai_port is None:
        raise RunError("--no-grpc leaves nothing to serve; give --openai-port PORT as well")
    for name in ("port", "openai_port"):
        value = getattr(args, name)
        if value is not None and not 0 <= value <= 65535:
            raise RunError(f"--{name.replace('_', '-')} {value} is not a port; give 0-65535 (0: any free one)")
    spec, plan = load_spec_and_plan(args)
    token = load_token(args.token_file)
    service = GatewayService(spec, plan, run_name=args.name, address=args.address,
                             batch_window_s=args.batch_window_ms / 1000, verbose=args.verbose)
    servers = _servers(args, service, token)
    if args.host not in LOOPBACK and token is None:
        print(f"[latentray] warning: serving on {args.host} without a token: anyone who reaches the port can run "
              "questions; give --token-file", file=sys.stderr)
    try:
        service.start()
        for server in servers:
            server.start()
        print(f"serving {spec.name} on {' and '.join(map(_describe, servers))} (actors: {len(service.actor_names)}; "
              f"token: {'required' if token else 'none'}); SIGINT or SIGTERM stops it", flush=True)
        _wait_for_signal()
        print(f"[latentray] stopping: no new calls; {servers[0].admission.in_flight} in flight get up to "
              f"{args.grace_s:g} s", file=sys.stderr, flush=True)
        for stopped in [server.stop(args.grace_s, wait=False) for server in servers]:
            stopped.wait()
    finally:
        for server in servers:
            server.stop(0)
        service.close()
    print(f"[latentray] stopped; requests served: {service.served}", file=sys.stderr)
    return 0


