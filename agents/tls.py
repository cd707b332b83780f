"""HTTPS for the clients of the controller's REST API (`dyncast-dma`, `dyncastctl`).

Boundary: reads certificate files, builds an `ssl.SSLContext` and the urllib handler that
uses it; sends nothing. The controller's certificate is always verified (name and chain):
against the system's CAs, or against the CA file given (`--ca-file`, else env
DYNCAST_CA_FILE), e.g. the private CA that signed the controller's `rest_cert`. A client
certificate (`--client-cert`, `--client-key`) is presented when given, for a controller
that sets `rest_client_ca` (docs/channels.md). There is no option to skip verification.
"""

from __future__ import annotations

import argparse
import os
import ssl
import urllib.request
from typing import Any

ENV_CA_FILE = "DYNCAST_CA_FILE"


class TlsError(Exception):
    """A certificate, key or CA file that cannot be used; the message names the file."""


def client_context(ca_file: str | None = None, cert_file: str | None = None,
                   key_file: str | None = None) -> ssl.SSLContext:
    """A verifying client context (TLS 1.2 at least): the CA file's CAs if given, else the
    system's; with a client certificate if `cert_file` is given (its key in `key_file`, or
    in the same file)."""
    if key_file and not cert_file:
        raise TlsError(f"{key_file}: a client key needs its certificate (--client-cert)")
    try:
        ctx = ssl.create_default_context(cafile=ca_file or None)
    except (OSError, ssl.SSLError) as exc:
        raise TlsError(f"{ca_file}: not a readable CA file: {_why(exc)}") from None
    ctx.minimum_version = ssl.TLSVersion.TLSv1_2
    if cert_file:
        try:
            ctx.load_cert_chain(cert_file, key_file or None)
        except (OSError, ssl.SSLError) as exc:
            raise TlsError(f"{cert_file}: not a usable client certificate and key: "
                           f"{_why(exc)}") from None
    return ctx


def _why(exc: BaseException) -> str:
    return str(getattr(exc, "strerror", None) or getattr(exc, "reason", None) or exc)


def https_handler(ctx: ssl.SSLContext) -> urllib.request.HTTPSHandler:
    """The urllib handler that opens https:// URLs with `ctx`."""
    return urllib.request.HTTPSHandler(context=ctx)


def add_arguments(parser: argparse.ArgumentParser | Any, suppress: bool = False) -> None:
    """--ca-file, --client-cert, --client-key (`suppress`: defaults are argparse.SUPPRESS,
    for subcommand copies that must not undo the top-level values)."""
    def default(value: object) -> object:
        return argparse.SUPPRESS if suppress else value
    parser.add_argument("--ca-file", metavar="FILE",
                        default=default(os.environ.get(ENV_CA_FILE) or None),
                        help="CA certificate(s) that verify an https:// controller "
                             f"(default ${ENV_CA_FILE}, else the system's CAs)")
    parser.add_argument("--client-cert", metavar="FILE", default=default(None),
                        help="client certificate for a controller that requires one")
    parser.add_argument("--client-key", metavar="FILE", default=default(None),
                        help="the client certificate's key (if not in --client-cert)")


def context_from_args(args: argparse.Namespace) -> ssl.SSLContext:
    """The client context of parsed `add_arguments` options; TlsError if unusable."""
    return client_context(getattr(args, "ca_file", None), getattr(args, "client_cert", None),
                          getattr(args, "client_key", None))
