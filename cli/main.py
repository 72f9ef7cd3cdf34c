"""Entry point of the `sentinel` console script.

Each sub-command lives in its own module with a `register(subparsers)` function
that adds its parser and sets `func` to a callable taking the parsed arguments
and returning an exit status. Expected errors (`SentinelError`) become one line
on stderr and exit status 1; only bugs produce a traceback.
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Callable, Sequence

import grpc

from sentinel import __version__
from sentinel.errors import SentinelError
from sentinel.rpc_errors import describe

Handler = Callable[[argparse.Namespace], int]


def build_parser() -> argparse.ArgumentParser:
    from cli import agent, audit, certs, commands, dev, fleet, hub, keys, policy

    parser = argparse.ArgumentParser(
        prog="sentinel", description="Autonomous controller for AI/ML GPU fleets."
    )
    parser.add_argument("--version", action="version", version=f"sentinel {__version__}")
    subparsers = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    for module in (dev, hub, agent, certs, fleet, commands, keys, policy, audit):
        module.register(subparsers)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    handler: Handler = args.func
    try:
        return handler(args)
    except SentinelError as exc:
        print(f"sentinel: error: {exc}", file=sys.stderr)
        return 1
    except grpc.RpcError as exc:
        print(f"sentinel: error: {describe(exc)}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        return 130


if __name__ == "__main__":
    sys.exit(main())
