"""The running OpenFlow framework (Ryu or os-ken) under one set of names.

Boundary: the only module in apps/ that imports ryu or os_ken by name. Whichever manager
is running has imported its own `base.app_manager` before loading apps, so that one wins;
otherwise env DYNCAST_FRAMEWORK ("ryu" or "os-ken"); otherwise Ryu if installed.
Apps subclass `App` (Ryu's `RyuApp`, os-ken's `OSKenApp`) and define events on
`event.EventBase`. os-ken has no `app.wsgi`, so its REST pieces come from `apps.osken_wsgi`.
"""

from __future__ import annotations

import importlib.util
import os
import sys

from apps import compat

FRAMEWORKS = ("ryu", "os-ken")


def _choose() -> str:
    """Name the framework to import (see the module docstring for the order)."""
    if "os_ken.base.app_manager" in sys.modules:
        return "os-ken"
    if "ryu.base.app_manager" in sys.modules:
        return "ryu"
    wanted = os.environ.get("DYNCAST_FRAMEWORK", "").strip()
    if wanted:
        if wanted not in FRAMEWORKS:
            raise ImportError(f"DYNCAST_FRAMEWORK={wanted!r}: expected one of {FRAMEWORKS}")
        return wanted
    return "ryu" if importlib.util.find_spec("ryu") is not None else "os-ken"


FRAMEWORK = _choose()


def _gate_ryu_server() -> None:
    """Make Ryu's manager serve its WSGI context behind `apps.security.Gate`, the one gate in
    front of every route (os-ken's server is ours: `apps.osken_wsgi` does the same).
    Ryu's `start_service` finds the context by exact class and serves it bare; ours wraps it."""
    from ryu import cfg as ryu_cfg
    from ryu.app import wsgi as ryu_wsgi

    from apps import restserver
    from apps.security import Gate

    def start_service(app_mgr: object) -> object:
        for instance in getattr(app_mgr, "contexts", {}).values():
            if isinstance(instance, ryu_wsgi.WSGIApplication):  # the hardened server
                return restserver.configured(Gate(instance), ryu_cfg.CONF.wsapi_host,
                                             ryu_cfg.CONF.wsapi_port)
        return None

    ryu_wsgi.start_service = start_service


if FRAMEWORK == "ryu":
    compat.patch_eventlet_wsgi()  # ryu.app.wsgi needs eventlet.wsgi.ALREADY_HANDLED
    from ryu.app.wsgi import ControllerBase, Response, WSGIApplication, route
    from ryu.base import app_manager
    from ryu.controller import event, ofp_event
    from ryu.controller.controller import Datapath
    from ryu.controller.handler import (
        CONFIG_DISPATCHER,
        DEAD_DISPATCHER,
        MAIN_DISPATCHER,
        set_ev_cls,
    )
    from ryu.lib import hub
    from ryu.ofproto import ofproto_v1_3, ofproto_v1_3_parser

    App = app_manager.RyuApp
    _gate_ryu_server()
else:
    compat.quiet_eventlet_warning()
    from os_ken.base import app_manager
    from os_ken.controller import event, ofp_event
    from os_ken.controller.controller import Datapath
    from os_ken.controller.handler import (
        CONFIG_DISPATCHER,
        DEAD_DISPATCHER,
        MAIN_DISPATCHER,
        set_ev_cls,
    )
    from os_ken.lib import hub
    from os_ken.ofproto import ofproto_v1_3, ofproto_v1_3_parser

    from apps.osken_wsgi import ControllerBase, Response, WSGIApplication, route

    App = app_manager.OSKenApp

__all__ = [
    "CONFIG_DISPATCHER",
    "DEAD_DISPATCHER",
    "FRAMEWORK",
    "MAIN_DISPATCHER",
    "App",
    "ControllerBase",
    "Datapath",
    "Response",
    "WSGIApplication",
    "app_manager",
    "event",
    "hub",
    "ofp_event",
    "ofproto_v1_3",
    "ofproto_v1_3_parser",
    "route",
    "set_ev_cls",
]
