"""The part of `ryu.app.wsgi` that os-ken does not ship: REST controllers for OSKenApps.

Boundary: os-ken only (imported by `apps.framework` when os-ken runs). os-ken removed
`os_ken.app.wsgi` and the `--wsapi-*` options; this module brings back the subset our app
uses, with Ryu's behaviour and names: `route`, `Response`, `ControllerBase` and
`WSGIApplication` (a `_CONTEXTS` entry whose `register(controller, data)` maps routes).
Ryu's manager starts the web server after instantiating the apps; os-ken's manager knows
nothing of it, so here the context starts its own server when it is created.
Adapted from ryu/app/wsgi.py (Ryu 4.34, Apache-2.0).
"""

from __future__ import annotations

import inspect
from typing import Any

import webob.dec
import webob.exc
from os_ken import cfg
from os_ken.lib import hub
from oslo_config.cfg import ArgsAlreadyParsedError
from routes import Mapper
from routes.util import URLGenerator
from webob.request import Request as _WebobRequest
from webob.response import Response as _WebobResponse

DEFAULT_WSGI_HOST = "127.0.0.1"  # dyncast-manager passes [channel].rest_listen
DEFAULT_WSGI_PORT = 8080

_OPTS = [
    cfg.StrOpt("wsapi-host", default=DEFAULT_WSGI_HOST, help="webapp listen host"),
    cfg.IntOpt("wsapi-port", default=DEFAULT_WSGI_PORT, help="webapp listen port"),
]


def register_opts() -> None:
    """Add `--wsapi-host` / `--wsapi-port` to os-ken's CONF (as ryu.app.wsgi does for Ryu).

    They are command-line options only if this runs before the manager parses argv
    (dyncast-manager does that); loaded later, e.g. by plain osken-manager, the defaults apply.
    """
    conf = cfg.CONF
    if "wsapi_port" in conf:
        return
    try:
        conf.register_cli_opts(_OPTS)
    except ArgsAlreadyParsedError:
        conf.register_opts(_OPTS)


register_opts()


def route(
    name: str,
    path: str,
    methods: list[str] | None = None,
    requirements: dict[str, str] | None = None,
) -> Any:
    """Mark a controller method as the handler of `path` (Ryu's `ryu.app.wsgi.route`)."""

    def _route(controller_method: Any) -> Any:
        controller_method.routing_info = {
            "name": name,
            "path": path,
            "methods": methods,
            "requirements": requirements,
        }
        return controller_method

    return _route


class Request(_WebobRequest):  # type: ignore[misc]
    """A webob request that defaults to UTF-8."""

    def __init__(self, environ: dict[str, Any], charset: str = "UTF-8", *args: Any, **kwargs: Any):
        super().__init__(environ, charset=charset, *args, **kwargs)  # noqa: B026  # as Ryu


class Response(_WebobResponse):  # type: ignore[misc]
    """A webob response that defaults to UTF-8."""

    def __init__(self, charset: str = "UTF-8", *args: Any, **kwargs: Any):
        super().__init__(charset=charset, *args, **kwargs)  # noqa: B026  # as Ryu


class ControllerBase:
    """One request's controller: `data` is what the app passed to `register`."""

    special_vars = ("action", "controller")

    def __init__(self, req: Any, link: Any, data: Any, **config: Any) -> None:
        self.req = req
        self.link = link
        self.data = data
        self.parent: WSGIApplication | None = None
        for name, value in config.items():
            setattr(self, name, value)

    def __call__(self, req: Any) -> Any:
        """Dispatch to the method the route named, with the URL's variables as keywords."""
        action = self.req.urlvars.get("action", "index")
        kwargs = {k: v for k, v in self.req.urlvars.items() if k not in self.special_vars}
        return getattr(self, action)(req, **kwargs)


class WSGIApplication:
    """The `wsgi` context: a route table, served on --wsapi-host:--wsapi-port once created."""

    def __init__(self, **config: Any) -> None:
        self.config = config
        self.mapper = Mapper()
        self.registory: dict[str, Any] = {}  # Ryu's spelling, kept for compatibility
        if not hasattr(hub, "WSGIServer"):
            raise RuntimeError("the REST API needs os-ken's eventlet hub (OSKEN_HUB_TYPE)")
        from apps import restserver

        conf = cfg.CONF
        from apps.security import Gate  # every request passes the gate (apps/security.py)

        self.server = restserver.configured(Gate(self), conf.wsapi_host, conf.wsapi_port)
        self.thread = hub.spawn(self.server.serve_forever)

    @webob.dec.wsgify(RequestClass=Request)  # type: ignore[untyped-decorator]  # webob is untyped
    def __call__(self, req: Any) -> Any:
        """Route one request to a new controller instance."""
        match = self.mapper.match(environ=req.environ)
        if not match:
            return webob.exc.HTTPNotFound()
        req.urlvars = match
        link = URLGenerator(self.mapper, req.environ)
        controller_cls = match["controller"]
        data = self.registory.get(controller_cls.__name__)
        controller = controller_cls(req, link, data, **self.config)
        controller.parent = self
        return controller(req)

    def register(self, controller: type[ControllerBase], data: Any = None) -> None:
        """Add every `@route` method of `controller`; `data` is handed to each instance."""
        for method_name, method in inspect.getmembers(controller, inspect.isfunction):
            info = getattr(method, "routing_info", None)
            if info is None:
                continue
            conditions = {"method": info["methods"]} if info.get("methods") else {}
            self.mapper.connect(
                info["name"],
                info["path"],
                controller=controller,
                requirements=info.get("requirements") or {},
                action=method_name,
                conditions=conditions,
            )
        # Routes compiles its regular expressions at the first match and never again: a request
        # that arrived before this registration (the server starts before the app's store has
        # loaded) would otherwise leave these routes unreachable, every call a 404
        self.mapper.create_regs()
        if data:
            self.registory[controller.__name__] = data
