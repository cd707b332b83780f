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
(Building Ryu 4.34 at all needs setuptools<68 and --no-build-isolation: requirements/build.txt.)
"""

from __future__ import annotations

import importlib.util
import os
import signal
import sys
from collections.abc import Sequence
from pathlib import Path

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


def run_ryu(args: list[str], prog: str) -> None:
    """Start Ryu's manager with `args`."""
    from apps import compat

    compat.monkey_patch(thread="--enable-debugger" not in args)
    compat.patch_eventlet_wsgi()
    compat.wsgi_nodelay()
    from ryu.cmd import manager

    manager.main(args=args, prog=prog)


def run_os_ken(args: list[str], prog: str) -> None:
    """Start os-ken's manager with `args` (plus our --wsapi-host/--wsapi-port)."""
    from apps import compat

    compat.monkey_patch(thread="--enable-debugger" not in args)
    compat.wsgi_nodelay()
    from os_ken.cmd import manager

    from apps import osken_wsgi

    osken_wsgi.register_opts()
    manager.main(args=args, prog=prog)


def main(argv: Sequence[str] | None = None) -> None:
    """Console-script entry point."""
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
    os.environ["DYNCAST_FRAMEWORK"] = framework
    if "-h" in rest or "--help" in rest:
        print(OWN_HELP)
    signal.signal(signal.SIGTERM, _terminate)
    run = run_ryu if framework == "ryu" else run_os_ken
    run(rest, "dyncast-manager")


def _terminate(signum: int, frame: object) -> None:
    """SIGTERM ends the manager as Ctrl-C does, so apps are closed (and flush their state).

    The interrupt must reach the main greenlet (the manager's loop): raised in whichever green
    thread the signal happened to interrupt (a switch connection's, say), it would end only
    that thread and the manager would never exit.
    """
    import greenlet  # eventlet's dependency, imported here to keep the module light

    current = greenlet.getcurrent()
    main = current
    while main.parent is not None:
        main = main.parent
    if current is main:
        raise KeyboardInterrupt(f"signal {signum}")
    from eventlet import hubs

    hubs.get_hub().schedule_call_global(0, main.throw, KeyboardInterrupt(f"signal {signum}"))


if __name__ == "__main__":
    main()
