"""The web view as an operator meets it, in headless Chromium: served by the real server with
its real security gate and tokens (tests/test_schema_fuzz.py's `server`, each framework), a
controller that stops answering, and markup in what the API returns (tests/test_web_browser.py's
in-process `site`)."""

from __future__ import annotations

import json
import os
import signal
from typing import Any

import requests

from controller.api import Reply
from tests.browser import Console, browser
from tests.test_app_smoke import DSID
from tests.test_schema_fuzz import Server, server  # the module's fixture
from tests.test_web_browser import Site, site

__all__ = ["server", "site"]
DBID = "10.0.0.51"
REFUSED = ("401",)  # the browser logs each refused request as a console error
EVIL = '<img src=x onerror="window.injected=1">'


def _register(srv: Server) -> None:
    """An instance of svc1, registered and reporting, by the signing agent."""
    for path, body in (("/dyncast/v1/instances", {"dsid": DSID, "dbid": DBID, "dma": "dma-fuzz"}),
                       ("/dyncast/v1/metrics", {"dbid": DBID, "cpu": 0.2, "sessions": 1,
                                                "queue": 0, "capacity": 10})):
        raw = json.dumps(body).encode()
        reply = requests.post(srv.url + path, data=raw, timeout=10, headers={
            **srv.signer.headers("POST", path, raw), "Content-Type": "application/json"})
        assert reply.status_code in (200, 201), reply.text


def _open(b: Any, srv: Server, token: str) -> tuple[Any, Console]:
    """The page, given `token` when it asks for one, showing its first data."""
    page = b.new_page()
    console = Console(page, allowed=REFUSED)
    page.goto(srv.url + "/dyncast/ui/")
    page.locator("#token").wait_for(state="visible", timeout=5000)
    page.fill("#token", token)
    page.press("#token", "Enter")
    page.wait_for_function("() => window.dyncastView.polls > 0", timeout=5000)
    return page, console


def test_the_real_gate_asks_for_the_token_refuses_a_wrong_one_and_shows_the_controller(
        server: Server) -> None:
    """With authentication on (the real gate): the page asks for the token, says a wrong one
    was refused, and with a `read` token shows the services and instances; no console error
    but the refused requests'."""
    _register(server)
    with browser() as b:
        page = b.new_page()
        console = Console(page, allowed=REFUSED)
        page.goto(server.url + "/dyncast/ui/")
        page.locator("#token").wait_for(state="visible", timeout=5000)
        assert "401" in page.locator("#banner").inner_text()
        page.fill("#token", "not-a-token")
        page.press("#token", "Enter")
        page.locator("#token").wait_for(state="visible", timeout=5000)
        page.wait_for_function("() => document.getElementById('token-error').textContent"
                               " === 'that token was refused'", timeout=5000)
        assert page.evaluate("window.dyncastView.polls") == 0
        page.fill("#token", server.reader)
        page.press("#token", "Enter")
        page.wait_for_function("() => window.dyncastView.polls > 0", timeout=5000)
        assert page.locator("#banner").is_hidden() and page.locator("#token-form").is_hidden()
        assert "2 services" in page.locator("#status").inner_text()
        assert page.locator("#no-switch").is_visible()  # this controller has no switch
        row = page.locator(f'#instances tr[data-dbid="{DBID}"]')
        assert row.count() == 1 and "svc1" in row.inner_text()
        assert console.errors == []


def test_a_controller_that_stops_answering_is_shown_as_such(server: Server) -> None:
    """The controller's process stopped (it accepts connections, answers nothing): within a
    few seconds the banner says the API did not answer and the last data stays; when it
    answers again the banner goes. The page's requests had no deadline: it waited for ever,
    showing the old data as current."""
    _register(server)
    with browser() as b:
        page, console = _open(b, server, server.reader)
        os.kill(server.proc.pid, signal.SIGSTOP)
        try:
            page.locator("#banner").wait_for(state="visible", timeout=8000)
            assert "did not answer" in page.locator("#banner").inner_text()
            assert page.locator(f'#instances tr[data-dbid="{DBID}"]').count() == 1
        finally:
            os.kill(server.proc.pid, signal.SIGCONT)
        page.locator("#banner").wait_for(state="hidden", timeout=8000)
        assert console.errors == []


def _tainted(value: Any) -> Any:
    """`value` with markup appended to every string that names something (not states)."""
    if isinstance(value, dict):
        return {k: (v + EVIL if k in ("service", "name", "dma", "reason", "label", "policy")
                    and isinstance(v, str) else _tainted(v)) for k, v in value.items()}
    if isinstance(value, list):
        return [_tainted(v) for v in value]
    return value


def test_markup_in_what_the_api_returns_is_shown_as_text(site: tuple[Site, str]) -> None:
    """Names, D-MA ids and reasons carrying markup (the API refuses such names; a page must
    not trust that): shown as text, no element made of them, no script run."""
    s, base = site
    real = s.app.api_call

    def tainted(method: str, path: str, body: bytes, query: str = "",
                signed: Any = None) -> Reply:
        reply = real(method, path, body, query, signed)
        return Reply(reply.status, _tainted(reply.body))

    s.app.api_call = tainted  # type: ignore[method-assign]
    with browser() as b:
        page = b.new_page(viewport={"width": 1400, "height": 1100})
        console = Console(page)
        page.goto(base + "/dyncast/ui/")
        page.wait_for_function("() => window.dyncastView && window.dyncastView.polls > 1")
        assert page.evaluate("window.injected") is None
        assert page.locator("main img").count() == 0
        assert EVIL in page.locator("#decisions").inner_text()
        assert EVIL in page.locator("#instances").inner_text()
        assert console.errors == []
