"""WSGI glue: every request under /dyncast/v1/ goes to `controller.api` through the app;
GET /metrics is the Prometheus exposition (apps/metrics.py); GET /healthz and /readyz the
health checks (apps/cluster.py)."""

from __future__ import annotations

from typing import Any

from apps.fastpath import METHODS, SIGNED_KEY
from apps.framework import ControllerBase, Response, route
from apps.metrics import CONTENT_TYPE

APP_KEY = "dyncast_app"


class RestController(ControllerBase):  # type: ignore[misc]
    """Hands each request's method, path and body to the app and returns its JSON reply."""

    def __init__(self, req: Any, link: Any, data: dict[str, Any], **config: Any) -> None:
        super().__init__(req, link, data, **config)
        self.app = data[APP_KEY]

    def _serve(self, req: Any) -> Any:
        """Serve one request."""
        reply = self.app.api_call(req.method, req.path, req.body or b"", req.query_string,
                                  req.environ.get(SIGNED_KEY))
        response = Response(status=reply.status, content_type="application/json",
                            body=self.app.encode(reply.body))
        if reply.allow:
            response.headers["Allow"] = ", ".join(reply.allow)
        return response

    @route("dyncast", "/metrics", methods=["GET"])
    def metrics(self, req: Any, **_: Any) -> Any:
        """Every metric, read from the app at scrape time."""
        resp = Response(status=200, body=self.app.metrics_text())
        resp.headers["Content-Type"] = CONTENT_TYPE
        return resp

    @route("dyncast", "/healthz", methods=["GET"])
    def healthz(self, req: Any, **_: Any) -> Any:
        """Alive: the event loop serves requests."""
        return self._health(False)

    @route("dyncast", "/readyz", methods=["GET"])
    def readyz(self, req: Any, **_: Any) -> Any:
        """Ready: the store answers and, in a cluster, this member holds its lease."""
        return self._health(True)

    def _health(self, ready: bool) -> Any:
        """A health reply (200, or 503 when not ready)."""
        status, body = self.app.health(ready)
        return Response(status=status, content_type="application/json",
                        body=self.app.encode(body))

    @route("dyncast", "/dyncast/v1", methods=METHODS)
    def root(self, req: Any, **_: Any) -> Any:
        """The resource list."""
        return self._serve(req)

    @route("dyncast", "/dyncast/v1/", methods=METHODS)
    def root_slash(self, req: Any, **_: Any) -> Any:
        """The resource list as the document names it (`/` under the `/dyncast/v1` server):
        Routes matches neither route above for it, and the framework answered an HTML 404."""
        return self._serve(req)

    @route("dyncast", "/dyncast/v1/{resource}", methods=METHODS)
    def resource(self, req: Any, **_: Any) -> Any:
        """A collection."""
        return self._serve(req)

    @route("dyncast", "/dyncast/v1/{resource}/{item}", methods=METHODS)
    def item(self, req: Any, **_: Any) -> Any:
        """One member of a collection."""
        return self._serve(req)

    @route("dyncast", "/dyncast/v1/{resource}/{item}/{verb}", methods=METHODS)
    def verb(self, req: Any, **_: Any) -> Any:
        """An action on a member, e.g. drain/undrain ("action" is a reserved name in Routes)."""
        return self._serve(req)

    @route("dyncast", "/dyncast/v1/{rest:.*}")
    def anything(self, req: Any, **_: Any) -> Any:
        """Any other method or depth under /dyncast/v1/: the API answers it (405 for a method
        a resource does not take, 400 for a path too deep, 404 for no such resource), as JSON
        naming the path, where the framework answered an HTML 404."""
        return self._serve(req)
