"""WSGI glue: every request under /dyncast/v1/ goes to `controller.api` through the app;
GET /metrics is the Prometheus exposition (apps/metrics.py)."""

from __future__ import annotations

from typing import Any

from apps.framework import ControllerBase, Response, route
from apps.metrics import CONTENT_TYPE

APP_KEY = "dyncast_app"
METHODS = ["GET", "POST", "PUT", "DELETE"]


class RestController(ControllerBase):  # type: ignore[misc]
    """Hands each request's method, path and body to the app and returns its JSON reply."""

    def __init__(self, req: Any, link: Any, data: dict[str, Any], **config: Any) -> None:
        super().__init__(req, link, data, **config)
        self.app = data[APP_KEY]

    def _serve(self, req: Any) -> Any:
        """Serve one request."""
        reply = self.app.api_call(req.method, req.path, req.body or b"")
        return Response(status=reply.status, content_type="application/json",
                        body=self.app.encode(reply.body))

    @route("dyncast", "/metrics", methods=["GET"])
    def metrics(self, req: Any, **_: Any) -> Any:
        """Every metric, read from the app at scrape time."""
        resp = Response(status=200, body=self.app.metrics_text())
        resp.headers["Content-Type"] = CONTENT_TYPE
        return resp

    @route("dyncast", "/dyncast/v1", methods=METHODS)
    def root(self, req: Any, **_: Any) -> Any:
        """The resource list."""
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
