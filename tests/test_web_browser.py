"""The web view (apps/web.py, apps/static/) served by the app's own REST controllers, read in
headless Chromium.

The server is the framework's WSGI route table with the app's `RestController` and
`WebController` registered, in front of a real core that has seen Figure 2 (tests/helpers.py);
`FakeApp` stands in for the shell (no switches, no event loop). A small middleware can demand a
bearer token under /dyncast/v1/, as the controller does with authentication on.
"""

from __future__ import annotations

import json
import threading
import time
import urllib.error
import urllib.request
from collections.abc import Iterator
from typing import Any
from wsgiref.simple_server import WSGIRequestHandler, WSGIServer, make_server

import pytest

from apps import framework, web
from apps.rest import APP_KEY, RestController
from controller.api import Api, Reply
from tests.browser import Console, browser
from tests.helpers import PORTS, all_fresh, figure2_core

TOKEN = "s3cret-token"
BUSY = {"dbid": "10.0.0.21", "cpu": 0.9, "sessions": 10, "queue": 20, "capacity": 10,
        "processing_delay_ms": 300}


class FakeApp:
    """The shell's side of `RestController`: the API over a core, with the real clock."""

    def __init__(self) -> None:
        now = time.time()
        self.core = figure2_core(now=now)
        all_fresh(self.core, now)
        self.api = Api(self.core)

    def api_call(self, method: str, path: str, body: bytes, query: str = "",
                 signed: Any = None) -> Reply:
        return self.api.handle(method, path, body, time.time())

    def encode(self, value: Any) -> bytes:
        return json.dumps(value, sort_keys=True).encode() + b"\n"


def route_table(app: FakeApp) -> Any:
    """The framework's WSGI application with our controllers, without its server."""
    if framework.FRAMEWORK == "ryu":
        wsgi = framework.WSGIApplication()
    else:  # os-ken's context starts a server when created: build it without
        from routes import Mapper
        wsgi = framework.WSGIApplication.__new__(framework.WSGIApplication)
        wsgi.config, wsgi.mapper, wsgi.registory = {}, Mapper(), {}
    wsgi.register(RestController, {APP_KEY: app})
    wsgi.register(web.WebController)
    return wsgi


class Site:
    """The served app, its URL, and switches the test can take away and a token it can set."""

    def __init__(self) -> None:
        self.app = FakeApp()
        self.routes = route_table(self.app)
        self.token: str | None = None

    def __call__(self, environ: dict[str, Any], start: Any) -> Any:
        path = environ.get("PATH_INFO", "")
        if path == "/test/switches-left":  # the test's own control: every switch leaves
            for dpid in sorted(PORTS):
                self.app.core.switch_left(dpid, time.time())
            start("200 OK", [("Content-Type", "text/plain")])
            return [b"ok"]
        if (self.token and path.startswith("/dyncast/v1")
                and environ.get("HTTP_AUTHORIZATION") != f"Bearer {self.token}"):
            start("401 Unauthorized", [("Content-Type", "application/json")])
            return [b'{"error": "authorization: a bearer token is required", '
                    b'"field": "authorization"}']
        return self.routes(environ, start)


class Quiet(WSGIRequestHandler):
    def log_message(self, *args: Any) -> None:  # the test output, not the server's
        pass


@pytest.fixture
def site() -> Iterator[tuple[Site, str]]:
    """The app served on a free loopback port; its base URL."""
    s = Site()
    server: WSGIServer = make_server("127.0.0.1", 0, s, handler_class=Quiet)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield s, f"http://127.0.0.1:{server.server_port}"
    finally:
        server.shutdown()
        server.server_close()


def fetch(url: str, body: Any = None) -> tuple[int, dict[str, str], bytes]:
    """GET (or POST a JSON body to) `url`: status, headers, body."""
    data = None if body is None else json.dumps(body).encode()
    try:
        with urllib.request.urlopen(urllib.request.Request(url, data=data), timeout=5) as res:
            return res.status, dict(res.headers), res.read()
    except urllib.error.HTTPError as exc:
        return exc.code, dict(exc.headers), exc.read()


def test_files_are_served_with_their_types_and_nothing_else(site: tuple[Site, str]) -> None:
    """The page's files come with their content type and cache headers; a path outside them
    (traversal, an encoded traversal, a Python file of the package) is a 404."""
    _, base = site
    status, headers, body = fetch(base + "/dyncast/ui/")
    assert status == 200 and headers["Content-Type"].startswith("text/html")
    assert b'src="vendor/cytoscape.min.js"' in body and headers["Cache-Control"] == "no-cache"
    assert headers["X-Content-Type-Options"] == "nosniff"
    status, headers, _ = fetch(base + "/dyncast/ui/vendor/cytoscape.min.js")
    assert status == 200 and headers["Content-Type"].startswith("text/javascript")
    assert "max-age" in headers["Cache-Control"]
    assert fetch(base + "/dyncast/ui/style.css")[1]["Content-Type"].startswith("text/css")
    for bad in ("../web.py", "..%2fweb.py", "%2e%2e/rest.py", "vendor/../../web.py",
                "web.py", "vendor/README.md", "nothing.js", "/etc/passwd"):
        assert fetch(f"{base}/dyncast/ui/{bad}")[0] == 404, bad


def test_bare_path_redirects_to_the_folder(site: tuple[Site, str]) -> None:
    """/dyncast/ui answers with a redirect to /dyncast/ui/ (the page's links are relative)."""
    assert web.serve("/dyncast/ui")[:2] == (301, {"Location": "/dyncast/ui/",
                                                  "Cache-Control": "no-cache"})
    _, base = site
    status, _, body = fetch(base + "/dyncast/ui")  # urllib follows the redirect
    assert status == 200 and b"<title>" in body


def test_every_shipped_file_is_declared_as_package_data() -> None:
    """An installed package carries the page: pyproject's package-data globs match every file
    the web view serves."""
    import fnmatch
    import tomllib
    from pathlib import Path

    globs = tomllib.loads((Path(__file__).parent.parent / "pyproject.toml").read_text())[
        "tool"]["setuptools"]["package-data"]["apps"]
    served = [f"static/{name}" for name in web.FILES]
    assert {"static/index.html", "static/app.js", "static/vendor/cytoscape.min.js"} <= set(served)
    assert [f for f in served if not any(fnmatch.fnmatch(f, g) for g in globs)] == []


def test_page_shows_topology_decisions_and_follows_a_change(site: tuple[Site, str],
                                                            tmp_path: Any) -> None:
    """The page draws the switches, instances by site and the decisions; a load report moves
    svc1's decision at ingress 1 and the page shows it without a reload; no console error."""
    _, base = site
    with browser() as b:
        page = b.new_page(viewport={"width": 1400, "height": 1100})
        console = Console(page)
        page.goto(base + "/dyncast/ui/")
        page.wait_for_function("() => window.dyncastView && window.dyncastView.polls > 0")
        assert page.locator("#status").get_attribute("data-switches") == "4"
        assert page.locator("#no-switch").is_hidden()
        kinds = page.evaluate("""() => { const cy = window.dyncastView.cy;
            return ['switch', 'site', 'instance', 'host', 'link'].map(
              k => cy.elements('[kind = "' + k + '"]').length); }""")
        assert kinds == [4, 2, 4, 2, 3], kinds  # c1, c2 as hosts; e2, e3 as sites
        primary = page.locator('.decision[data-service="svc1"][data-ingress="1"]')
        assert primary.get_attribute("data-primary") in ("10.0.0.21", "10.0.0.31")
        assert primary.locator("tr.candidate").count() == 2
        assert page.locator('#instances tr[data-dbid="10.0.0.21"]').get_attribute(
            "data-state") == "active"
        assert int(page.locator('#stats tr[data-counter="bindings"] td.num').inner_text()) == 0
        page.screenshot(path=str(tmp_path / "before.png"), full_page=True)
        polls = page.evaluate("window.dyncastView.polls")
        assert fetch(base + "/dyncast/v1/metrics", BUSY)[0] == 200
        page.wait_for_function("""() => { const d = document.querySelector(
            '.decision[data-service="svc1"][data-ingress="1"]');
            return d && d.dataset.primary === '10.0.0.31'; }""", timeout=5000)
        share = primary.locator('tr.candidate[data-dbid="10.0.0.21"]').get_attribute("data-share")
        assert float(share or "nan") == 0.0
        assert page.evaluate("window.dyncastView.polls") > polls  # the same page, polled again
        page.screenshot(path=str(tmp_path / "after.png"), full_page=True)
        assert console.errors == []


def test_page_says_so_when_no_switch_is_connected(site: tuple[Site, str]) -> None:
    """With every switch gone the page says so plainly instead of drawing an empty graph."""
    _, base = site
    with browser() as b:
        page = b.new_page()
        console = Console(page)
        page.goto(base + "/dyncast/ui/")
        page.wait_for_function("() => window.dyncastView && window.dyncastView.polls > 0")
        assert page.locator("#no-switch").is_hidden()
        assert fetch(base + "/test/switches-left")[0] == 200
        page.locator("#no-switch").wait_for(state="visible", timeout=5000)
        assert "No switch is connected" in page.locator("#no-switch").inner_text()
        assert page.locator("#status").get_attribute("data-switches") == "0"
        assert console.errors == []


def test_page_asks_for_the_token_on_401_and_sends_it(site: tuple[Site, str]) -> None:
    """With authentication on the page shows a token field on 401; Enter stores the token in
    sessionStorage and the next polls send it as a bearer token and show the data."""
    s, base = site
    s.token = TOKEN
    with browser() as b:
        page = b.new_page()
        console = Console(page, allowed=("401",))  # the browser logs each refused request
        page.goto(base + "/dyncast/ui/")
        page.locator("#token").wait_for(state="visible", timeout=5000)
        assert "401" in page.locator("#banner").inner_text()
        assert page.evaluate("window.dyncastView.polls") == 0
        page.fill("#token", TOKEN)
        page.press("#token", "Enter")
        page.wait_for_function("() => window.dyncastView.polls > 0", timeout=5000)
        assert page.evaluate("sessionStorage.getItem('dyncast-token')") == TOKEN
        assert page.locator("#token-form").is_hidden() and page.locator("#banner").is_hidden()
        assert page.locator("#status").get_attribute("data-switches") == "4"
        assert console.errors == []


def test_page_shows_an_api_error_and_keeps_the_last_data(site: tuple[Site, str]) -> None:
    """An API failure is shown in a banner and the page keeps what it had (never blank)."""
    s, base = site
    with browser() as b:
        page = b.new_page()
        console = Console(page, allowed=("500",))
        page.goto(base + "/dyncast/ui/")
        page.wait_for_function("() => window.dyncastView && window.dyncastView.polls > 0")

        def broken(method: str, path: str, body: bytes, query: str = "",
                   signed: Any = None) -> Reply:
            return Reply(500, {"error": "internal error (see the controller log)"})

        s.app.api_call = broken  # type: ignore[method-assign]
        page.locator("#banner").wait_for(state="visible", timeout=5000)
        assert "500 internal error" in page.locator("#banner").inner_text()
        assert page.locator(".decision").count() > 0  # the last data stays on the page
        assert console.errors == []
