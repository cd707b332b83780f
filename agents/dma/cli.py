"""`dyncast-dma`'s command line: options parsed and cross-checked, signals, the exit code."""

from __future__ import annotations

import argparse
import logging
import os
import sys
import threading
from collections.abc import Sequence
from urllib.parse import urlsplit

from agents.dma.agent import Options, run
from agents.dma.metrics import Binding, parse_binding, parse_command_spec
from agents.signing import ENV_KEY_FILE, CredentialError, Signer
from agents.stopping import stop_on_signals
from agents.tls import TlsError, add_arguments, context_from_args


def _positive(text: str) -> float:
    """An argparse type: a number > 0."""
    value = _non_negative(text)
    if value == 0:
        raise argparse.ArgumentTypeError(f"must be > 0, got {text}")
    return value


def _non_negative(text: str) -> float:
    """An argparse type: a finite number >= 0."""
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"not a number: {text!r}") from None
    if not 0 <= value < float("inf"):
        raise argparse.ArgumentTypeError(f"must be a finite number >= 0, got {text}")
    return value


def _binding(text: str) -> Binding:
    """An argparse type: one `DSID=DBID@STATS_URL`."""
    try:
        return parse_binding(text)
    except ValueError as exc:
        raise argparse.ArgumentTypeError(str(exc)) from None


def _command_spec(text: str) -> tuple[str, str]:
    """An argparse type: one `DBID=COMMAND`."""
    try:
        return parse_command_spec(text)
    except ValueError as exc:
        raise argparse.ArgumentTypeError(str(exc)) from None


def _controller(text: str) -> str:
    """An argparse type: the controller's base URL, without a trailing slash."""
    parts = urlsplit(text)
    if parts.scheme not in ("http", "https") or not parts.netloc:
        raise argparse.ArgumentTypeError(f"not an http URL: {text!r}")
    return text.rstrip("/")


def parse_args(argv: Sequence[str] | None) -> Options:
    """Parse and cross-check the command line."""
    parser = argparse.ArgumentParser(prog="dyncast-dma", description="Dyncast metric agent.")
    parser.add_argument("--controller", required=True, type=_controller,
                        help="controller REST base URL, e.g. http://10.254.2.1:8080")
    parser.add_argument("--name", required=True, help="this D-MA's name")
    parser.add_argument("--instance", required=True, action="append", type=_binding,
                        metavar="DSID=DBID@STATS_URL", help="a binding to register (repeatable)")
    parser.add_argument("--key-file", default=os.environ.get(ENV_KEY_FILE) or None,
                        metavar="FILE", help="this agent's key file; every call is signed "
                        f"with it (default ${ENV_KEY_FILE}; docs/security.md)")
    add_arguments(parser)
    parser.add_argument("--interval", type=_positive, default=2.0,
                        help="seconds between periodic reports (default 2.0)")
    parser.add_argument("--min-interval", type=_non_negative, default=0.5,
                        help="least seconds between two reports of one instance (default 0.5)")
    parser.add_argument("--threshold", type=_non_negative, default=0.2,
                        help="relative change that triggers an early report (default 0.2)")
    parser.add_argument("--register-timeout", type=_positive, default=None,
                        help="give up (exit 1) if no binding is registered by then: the "
                             "controller has not answered, or refused every binding for good "
                             "(default: retry forever)")
    parser.add_argument("--cpu-source", choices=("host", "instance"), default="host",
                        help="CPU utilisation from the host's /proc/stat (default), or the "
                             "instance's own busy fraction (sessions/capacity): use 'instance' "
                             "where hosts share one kernel, as in Mininet")
    parser.add_argument("--inactive", action="append", default=[], metavar="DBID",
                        help="register this instance as inactive (not serving) until the "
                             "controller sends `reactivate` (repeatable)")
    parser.add_argument("--start", action="append", default=[], type=_command_spec,
                        metavar="DBID=COMMAND", help="command that starts the instance on "
                        "`reactivate` (repeatable)")
    parser.add_argument("--stop", action="append", default=[], type=_command_spec,
                        metavar="DBID=COMMAND", help="command that stops the instance on "
                        "`deactivate` (default: terminate what --start started)")
    args = parser.parse_args(argv)
    dbids = [b.dbid for b in args.instance]
    for option, values in (("--inactive", args.inactive),
                           ("--start", [d for d, _ in args.start]),
                           ("--stop", [d for d, _ in args.stop])):
        for dbid in values:
            if dbid not in dbids:
                parser.error(f"{option} {dbid}: not the D-BID of any --instance")
    if args.key_file is not None:
        try:
            signer = Signer.from_file(args.key_file)
        except CredentialError as exc:
            parser.error(f"--key-file: {exc}")
        if signer.agent != args.name:
            parser.error(f"--key-file is agent {signer.agent!r}'s, not --name {args.name!r}")
    try:
        tls = context_from_args(args) if args.controller.startswith("https:") else None
    except TlsError as exc:
        parser.error(str(exc))
    if args.min_interval > args.interval:
        parser.error("--min-interval must not exceed --interval")
    if len(set(dbids)) != len(dbids):
        parser.error("--instance: each D-BID may appear only once")
    return Options(controller=args.controller, name=args.name, bindings=tuple(args.instance),
                   interval=args.interval, min_interval=args.min_interval,
                   threshold=args.threshold, register_timeout=args.register_timeout,
                   cpu_source=args.cpu_source, inactive=frozenset(args.inactive),
                   start=dict(args.start), stop=dict(args.stop), key_file=args.key_file,
                   tls=tls)


def main(argv: Sequence[str] | None = None) -> int:
    """Run the D-MA until SIGTERM or SIGINT, then withdraw its bindings and exit 0."""
    options = parse_args(argv)
    logging.basicConfig(level=logging.INFO, stream=sys.stderr,
                        format="dyncast-dma %(levelname)s: %(message)s")
    stop = threading.Event()
    stop_on_signals(stop)  # (not Event.set in the handler: agents/stopping.py)
    return run(options, stop)
