"""`dyncast-manager`: ryu-manager (or osken-manager) with the fixes Python 3.11 needs.

Boundary: the process entry point; it parses two options of its own and hands everything
else to the framework's `cmd.manager.main`, so it takes ryu-manager's arguments, e.g.
    dyncast-manager --ofp-tcp-listen-port 6653 --wsapi-port 8080 apps/dyncast_app.py
Own options (removed from argv before the framework sees it):
    --framework ryu|os-ken   default: env DYNCAST_FRAMEWORK, else ryu if installed, else os-ken;
                             exported as DYNCAST_FRAMEWORK so `apps.framework` agrees.
    --dyncast-config FILE    exported (as an absolute path) as env DYNCAST_CONFIG.

Workarounds, each needed to start Ryu 4.34 / os-ken 3.1.1 on Python 3.11 + eventlet 0.41:
  1. `ryu.app.wsgi` (imported by ryu.cmd.manager) does `from eventlet.wsgi import
     ALREADY_HANDLED`, which eventlet removed in 0.30.3: ImportError at startup.
     `compat.patch_eventlet_wsgi()` defines it first. (Plain .venv/bin/ryu-manager fails
     with exactly that ImportError; dyncast-manager is the way to start Ryu here.)
  2. eventlet >= 0.40 prints a 6-line EventletDeprecationWarning on import, and both managers
     monkey-patch after `logging` made its lock ("1 RLock(s) were not greened").
     `compat.monkey_patch()` silences the former and patches once, first, which avoids the latter.
  3. os-ken removed `os_ken.app.wsgi` and the --wsapi-host/--wsapi-port options:
     `apps.osken_wsgi` re-creates them; it is imported here so the options exist before
     os-ken parses argv.
  4. Ryu's StreamServer builds its TLS context inside the first connection's handler and pops
     it from the shared arguments: every later switch then fails the handshake with
     NO_SHARED_CIPHER; and on both frameworks a failed handshake or a TLS socket closed under
     its reader is an uncaught exception. `fix_tls()` builds the context once and ends such
     a connection with a log line.
Safe defaults: the `[channel]` table of the config (controller/channel.py) supplies the
framework's listen options the command line does not give: the OpenFlow port and the REST API
listen on 127.0.0.1 unless configured, and OpenFlow runs over TLS when certificates are named.
The REST API is served by apps/restserver.py (keep-alive with limits, deadlines, connection
caps, body limits, HTTPS), started by apps/framework.py (Ryu) and apps/osken_wsgi.py (os-ken).
(Building Ryu 4.34 at all needs setuptools<68 and --no-build-isolation: requirements/build.txt.)
"""

from __future__ import annotations

import importlib.util
import logging
import os
import signal
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from apps import procsignals
from controller.channel import ChannelConfig
from controller.errors import ConfigError

FRAMEWORKS = ("ryu", "os-ken")
OWN_HELP = """dyncast-manager options (the rest are the framework manager's, below):
  --framework {ryu,os-ken}  OpenFlow framework (default: env DYNCAST_FRAMEWORK, else ryu)
  --dyncast-config FILE     Dyncast TOML configuration (exported as env DYNCAST_CONFIG)
"""


class UsageError(Exception):
    """A bad dyncast-manager option."""


def default_framework() -> str:
    """DYNCAST_FRAMEWORK if set, else ryu if it is installed, else os-ken."""
    wanted = os.environ.get("DYNCAST_FRAMEWORK", "").strip()
    if wanted:
        return wanted
    return "ryu" if importlib.util.find_spec("ryu") is not None else "os-ken"


def split_args(argv: Sequence[str]) -> tuple[str, str | None, list[str]]:
    """Take our options out of argv: (framework, config file or None, the rest in order)."""
    own: dict[str, str] = {}
    rest: list[str] = []
    args = list(argv)
    while args:
        arg = args.pop(0)
        name, eq, value = arg.partition("=")
        if name not in ("--framework", "--dyncast-config"):
            rest.append(arg)
            continue
        if not eq:
            if not args:
                raise UsageError(f"{name} needs a value")
            value = args.pop(0)
        own[name] = value
    framework = own.get("--framework") or default_framework()
    if framework not in FRAMEWORKS:
        raise UsageError(
            f"--framework / DYNCAST_FRAMEWORK: {framework!r} is not one of {FRAMEWORKS}"
        )
    return framework, own.get("--dyncast-config"), rest


def _given(args: Sequence[str], option: str) -> bool:
    """True if `option` is on the command line (as `--opt value` or `--opt=value`)."""
    return any(a == option or a.startswith(option + "=") for a in args)


def _value(args: Sequence[str], option: str) -> str | None:
    """The value of `option` on the command line, if given."""
    for i, arg in enumerate(args):
        if arg.startswith(option + "="):
            return arg.partition("=")[2]
        if arg == option and i + 1 < len(args):
            return args[i + 1]
    return None


def channel_args(channel: ChannelConfig, args: Sequence[str]) -> list[str]:
    """The framework options `[channel]` adds to `args`: whatever the command line leaves out.

    With TLS configured the OpenFlow port serves TLS only (Ryu and os-ken listen on
    --ofp-ssl-listen-port then); a --ofp-tcp-listen-port given names that port.
    """
    extra: list[str] = []

    def add(option: str, value: str) -> None:
        if not _given(args, option):
            extra.extend([option, value])

    add("--ofp-listen-host", channel.openflow_listen.host)
    tls = channel.openflow_tls
    if tls is None:
        if not _given(args, "--ofp-ssl-listen-port"):
            add("--ofp-tcp-listen-port", str(channel.openflow_listen.port))
    else:
        port = _value(args, "--ofp-tcp-listen-port") or str(channel.openflow_listen.port)
        add("--ofp-ssl-listen-port", port)
        add("--ctl-privkey", tls.key)
        add("--ctl-cert", tls.cert)
        if tls.ca is not None:
            add("--ca-certs", tls.ca)
    add("--wsapi-host", channel.rest_listen.host)
    add("--wsapi-port", str(channel.rest_listen.port))
    return extra


def run_ryu(args: list[str], prog: str) -> None:
    """Start Ryu's manager with `args`."""
    from apps import compat

    compat.monkey_patch(thread="--enable-debugger" not in args)
    compat.patch_eventlet_wsgi()
    compat.wsgi_nodelay()
    from ryu.cmd import manager
    from ryu.lib import hub

    fix_tls(hub)

    manager.main(args=args, prog=prog)


def fix_tls(hub: Any) -> None:
    """Make the framework's StreamServer wrap every accepted connection with one TLS context."""
    server = hub.StreamServer
    if getattr(server, "dyncast_tls_fixed", False):
        return
    init = server.__init__

    def __init__(self: Any, listen_info: Any, handle: Any = None, backlog: Any = None,
                 spawn: Any = "default", **ssl_args: Any) -> None:
        ctx = ssl_args.pop("ssl_ctx", None)
        try:
            if ctx is None or handle is None:
                init(self, listen_info, handle, backlog, spawn, **ssl_args)
                return
            init(self, listen_info, handle, backlog, spawn)
        except OSError as exc:  # the OpenFlow port: end the start, not just this thread
            _cannot_listen(listen_info, exc)
        ctx.load_cert_chain(ssl_args.pop("certfile"), ssl_args.pop("keyfile"))
        if "cert_reqs" in ssl_args:
            ctx.verify_mode = ssl_args.pop("cert_reqs")
        if "ca_certs" in ssl_args:
            ctx.load_verify_locations(ssl_args.pop("ca_certs"))

        def wrap_and_handle(sock: Any, addr: Any) -> None:
            # a failed handshake, or a TLS socket Ryu closed under its reader (a refused
            # switch), ends that connection only: logged, not an uncaught exception
            try:
                handle(ctx.wrap_socket(sock, server_side=True, **ssl_args), addr)
            except (OSError, ValueError) as exc:
                logging.getLogger("dyncast").info("OpenFlow TLS connection from %s ended: %s",
                                                  addr, exc)
                sock.close()

        self.handle = wrap_and_handle

    server.__init__ = __init__
    server.dyncast_tls_fixed = True


def run_os_ken(args: list[str], prog: str) -> None:
    """Start os-ken's manager with `args` (plus our --wsapi-host/--wsapi-port)."""
    from apps import compat

    compat.monkey_patch(thread="--enable-debugger" not in args)
    compat.wsgi_nodelay()
    from os_ken.cmd import manager

    from apps import osken_wsgi

    osken_wsgi.register_opts()
    from os_ken.lib import hub

    fix_tls(hub)
    manager.main(args=args, prog=prog)


def main(argv: Sequence[str] | None = None) -> None:
    """Console-script entry point."""
    procsignals.hold_sighup()  # first: a SIGHUP during the start is held, not fatal
    args = sys.argv[1:] if argv is None else argv
    try:
        framework, config, rest = split_args(args)
    except UsageError as err:
        sys.exit(f"dyncast-manager: {err}")
    if config is not None:
        path = Path(config)
        if not path.is_file():
            sys.exit(f"dyncast-manager: --dyncast-config {config}: no such file")
        os.environ["DYNCAST_CONFIG"] = str(path.resolve())
    from apps.configfile import load_config

    try:
        channel = load_config(os.environ.get("DYNCAST_CONFIG")).channel
    except ConfigError as err:
        sys.exit(f"dyncast-manager: {err}")
    if not ("-h" in rest or "--help" in rest):
        rest = [*channel_args(channel, rest), *rest]
    os.environ["DYNCAST_FRAMEWORK"] = framework
    if "-h" in rest or "--help" in rest:
        print(OWN_HELP)
    signal.signal(signal.SIGTERM, _terminate)
    signal.signal(signal.SIGINT, _terminate)
    run = run_ryu if framework == "ryu" else run_os_ken
    try:
        run(rest, "dyncast-manager")
    except ConfigError as err:  # found by the app as it starts: the store, a key table
        sys.exit(f"dyncast-manager: {err}")


def _cannot_listen(listen_info: Any, exc: OSError) -> None:
    """The framework's OpenFlow server cannot listen: end the manager with one line naming
    the key (its thread's traceback left the process running under Ryu, and under os-ken
    exiting with status 0); this server's own thread then ends quietly."""
    import greenlet

    where = f"{listen_info[0] or '0.0.0.0'}:{listen_info[1]}"
    _to_main(ConfigError(os.environ.get("DYNCAST_CONFIG") or "(defaults)",
                         "channel.openflow_listen", f"cannot listen on {where} (or "
                         f"--ofp-listen-host/--ofp-tcp-listen-port): {exc.strerror}"))
    raise greenlet.GreenletExit from None  # the hubs' TaskExit: ends the thread unlogged


def _to_main(exc: BaseException) -> None:
    """Raise `exc` in the main greenlet (the manager's loop), from whichever one runs."""
    import greenlet  # eventlet's dependency, imported here to keep the module light

    current = greenlet.getcurrent()
    main = current
    while main.parent is not None:
        main = main.parent
    if current is main:
        raise exc
    from eventlet import hubs

    hubs.get_hub().schedule_call_global(0, main.throw, exc)


def _terminate(signum: int, frame: object) -> None:
    """The first SIGTERM or SIGINT ends the manager, so apps are closed (and flush their state).

    The interrupt must reach the main greenlet (the manager's loop): raised in whichever green
    thread the signal happened to interrupt (a switch connection's, say), it would end only
    that thread and the manager would never exit. It is sent once: the ones after it are noted
    and ignored (apps/procsignals.py), since a second interrupt ended the stop's last store
    flush half way and lost writes already acknowledged.
    """
    procsignals.ignore_stop_signals()
    _to_main(KeyboardInterrupt(f"signal {signum}"))


if __name__ == "__main__":
    main()
