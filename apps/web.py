"""The web view's files (apps/static/) over the app's own HTTP server, at /dyncast/ui/.

Boundary: static files only; the page reads the REST API under /dyncast/v1/ like any client.
Only the files shipped in the package can be named: the table of servable paths is built once
from the package directory, so no request path (`..`, `%2e%2e`, an absolute path) can reach
anything else. The files are open even when the API needs a token: they hold no data.
"""

from __future__ import annotations

from importlib import resources
from typing import Any

from apps.framework import ControllerBase, Response, route

PREFIX = "/dyncast/ui/"
TYPES = {
    ".html": "text/html",
    ".js": "text/javascript",
    ".css": "text/css",
    ".svg": "image/svg+xml",
    ".png": "image/png",
    ".ico": "image/x-icon",
}
TEXT = {".html", ".js", ".css", ".svg"}
# the page's own files may change with every release: revalidate; the vendored library is
# named by its version in apps/static/vendor/README.md and changes only with it
CACHE_PAGE = "no-cache"
CACHE_VENDOR = "public, max-age=86400"
SECURITY_HEADERS = {
    "X-Content-Type-Options": "nosniff",
    "Content-Security-Policy": ("default-src 'self'; style-src 'self' 'unsafe-inline'; "
                                "img-src 'self' data:; connect-src 'self'; "
                                "frame-ancestors 'none'"),
    "Referrer-Policy": "no-referrer",
}


def static_files() -> dict[str, Any]:
    """Every servable file of apps/static/ by its path under /dyncast/ui/ (e.g. "app.js",
    "vendor/cytoscape.min.js"); only files with a known content type."""
    found: dict[str, Any] = {}

    def walk(node: Any, prefix: str) -> None:
        for child in node.iterdir():
            if child.is_dir():
                walk(child, f"{prefix}{child.name}/")
            elif _suffix(child.name) in TYPES:
                found[prefix + child.name] = child

    walk(resources.files("apps") / "static", "")
    return found


def _suffix(name: str) -> str:
    """A file name's extension with its dot ("" if none)."""
    dot = name.rfind(".")
    return name[dot:].lower() if dot > 0 else ""


FILES = static_files()


def serve(path: str) -> tuple[int, dict[str, str], bytes]:
    """The status, headers and body for a request path under /dyncast/ui/."""
    if path in ("/dyncast/ui", PREFIX.rstrip("/")):
        return 301, {"Location": PREFIX, "Cache-Control": CACHE_PAGE}, b""
    name = (path[len(PREFIX):] or "index.html") if path.startswith(PREFIX) else ""
    item = FILES.get(name)
    if item is None:
        return 404, {"Content-Type": "text/plain; charset=utf-8",
                     "Cache-Control": "no-store"}, b"no such file\n"
    suffix = _suffix(name)
    ctype = TYPES[suffix] + ("; charset=utf-8" if suffix in TEXT else "")
    cache = CACHE_VENDOR if name.startswith("vendor/") else CACHE_PAGE
    return 200, {"Content-Type": ctype, "Cache-Control": cache}, item.read_bytes()


class WebController(ControllerBase):  # type: ignore[misc]
    """Serves the web view's files (GET and HEAD)."""

    def _reply(self, req: Any) -> Any:
        """Answer one request for a file."""
        status, headers, body = serve(req.path)
        res = Response(status=status, body=body if req.method != "HEAD" else b"")
        for key, value in {**SECURITY_HEADERS, **headers}.items():
            res.headers[key] = value
        if req.method == "HEAD":
            res.content_length = len(body)
        return res

    # the framework's route decorator is untyped (Ryu and os-ken ship no types)
    @route("dyncast_ui", "/dyncast/ui", methods=["GET", "HEAD"])  # type: ignore[untyped-decorator]
    def bare(self, req: Any, **_: Any) -> Any:
        """Redirect to the page's folder (its relative links need the slash)."""
        return self._reply(req)

    @route("dyncast_ui", "/dyncast/ui/", methods=["GET", "HEAD"])  # type: ignore[untyped-decorator]
    def index(self, req: Any, **_: Any) -> Any:
        """The page."""
        return self._reply(req)

    @route("dyncast_ui", "/dyncast/ui/{name:.+}",  # type: ignore[untyped-decorator]
           methods=["GET", "HEAD"])
    def file(self, req: Any, **_: Any) -> Any:
        """One of its files."""
        return self._reply(req)
