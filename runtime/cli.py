"""The `latentray` command: the list of its commands. Each lives in runtime/commands/ as one
module with add_parser(sub) and run(args).

Errors a user can cause print one line on stderr and exit 2; no traceback.
"""
from __future__ import annotations

import argparse
import importlib
import sys

from latentray.runtime.engine.errors import USER_ERRORS

# command name -> module under runtime/commands/, in the order `latentray --help` lists them
COMMANDS = {
    "run": "run", "validate": "validate", "graph": "graph", "eval": "eval", "report": "report",
    "fit-codec": "fit_codec", "train-codec": "train_codec", "codec-eval": "codec_eval", "submit": "submit",
    "status": "status", "logs": "logs", "stop": "stop", "serve": "serve", "ask": "ask", "grafana": "grafana",
}


def command_module(name: str):
    return importlib.import_module(f"latentray.runtime.commands.{COMMANDS[name]}")


def parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="latentray", description="Latent multi-agent graphs on Ray")
    sub = p.add_subparsers(dest="command", required=True)
    for name in COMMANDS:
        command_module(name).add_parser(sub)
    return p


def main(argv=None) -> int:
    args = parser().parse_args(argv)
    try:
        return command_module(args.command).run(args)
    except USER_ERRORS as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("interrupted", file=sys.stderr)
        return 130


if __name__ == "__main__":
    sys.exit(main())
