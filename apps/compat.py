"""Shims that let Ryu 4.34 and os-ken 3.x run on Python 3.11 with eventlet 0.41.

Boundary: touches eventlet only; imports neither ryu nor os_ken. Used by `apps.manager`
(before the framework's manager is imported) and by `apps.framework` (so an app module
imported outside the manager, e.g. by a unit test, gets the same fixes).
"""

from __future__ import annotations

import os
import warnings

_patched = False


def quiet_eventlet_warning() -> None:
    """Silence eventlet's import-time EventletDeprecationWarning (a 6-line banner on stderr).

    Both frameworks are built on eventlet; the warning is not actionable here and would make
    every controller log start with noise. Must run before eventlet is imported.
    """
    warnings.filterwarnings("ignore", message=r"\s*Eventlet is deprecated")


def monkey_patch(thread: bool) -> None:
    """Green the standard library before the framework (or logging) creates any locks.

    The frameworks patch in two steps (without, then with `thread`) after `logging` has
    already created its module lock, so eventlet prints "1 RLock(s) were not greened".
    Patching once, first, gives the same end state without that message. `thread=False`
    keeps the frameworks' `--enable-debugger` meaning. Nothing happens if the framework's
    hub is not eventlet (RYU_HUB_TYPE / OSKEN_HUB_TYPE).
    """
    global _patched
    if _patched:
        return
    if os.environ.get("RYU_HUB_TYPE", "eventlet") != "eventlet":
        return
    if os.environ.get("OSKEN_HUB_TYPE", "eventlet") != "eventlet":
        return
    quiet_eventlet_warning()
    import eventlet

    eventlet.monkey_patch(thread=thread)
    _patched = True


def patch_eventlet_wsgi() -> None:
    """Define `eventlet.wsgi.ALREADY_HANDLED`, which `ryu.app.wsgi` imports at class level.

    eventlet removed the constant in 0.30.3: a WSGI app that wrote its own response (Ryu's
    websocket routes) now sets `WSGI_LOCAL.already_handled`, and eventlet iterates whatever
    the app returned. An empty tuple is therefore the right stand-in.
    """
    quiet_eventlet_warning()
    import eventlet.wsgi

    if not hasattr(eventlet.wsgi, "ALREADY_HANDLED"):
        eventlet.wsgi.ALREADY_HANDLED = ()


def wsgi_nodelay() -> None:
    """Serve REST replies without Nagle's delay: `eventlet.wsgi.server` gets its listening
    socket with TCP_NODELAY, which the connections it accepts inherit (Linux).

    Without it a reply could wait for the client's delayed ACK: bench/control_plane.py saw
    GET /decisions/{service} at p99 30 ms on an idle controller (13 ms with it).
    """
    import socket

    import eventlet.wsgi

    serve = eventlet.wsgi.server
    if getattr(serve, "nodelay", False):
        return

    def server(sock: socket.socket, *args: object, **kwargs: object) -> object:
        sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        return serve(sock, *args, **kwargs)

    server.nodelay = True  # type: ignore[attr-defined]
    eventlet.wsgi.server = server
