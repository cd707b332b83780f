"""The web view on a live controller: Figure 2 in Mininet, the page in headless Chromium.

The page is read as an operator would see it (tests/browser.py drives Debian's chromium); the
decision it shows must follow a real instance's load, reported by its real D-MA, without a
reload. Screenshots go to the test's artefact folder; a console error fails the test.
"""

from __future__ import annotations

from typing import Any

import pytest

from agents.signing import read_token
from mininet_tests.harness import Lab
from mininet_tests.processes import wait_until
from mininet_tests.test_fig2 import EDGES, R1, SVC1, client, set_load, wait_shares
from tests.browser import Console, browser

OTHER = {"10.0.0.21": "10.0.0.31", "10.0.0.31": "10.0.0.21"}
DECISION = f'.decision[data-service="svc1"][data-ingress="{R1}"]'


def counts(page: Any) -> dict[str, int]:
    """How many elements of each kind the page's graph draws."""
    return page.evaluate("""() => Object.fromEntries(
        ['switch', 'site', 'instance', 'host', 'link'].map(
          k => [k, window.dyncastView.cy.elements('[kind = "' + k + '"]').length]))""")


@pytest.mark.parametrize("fig2", [EDGES], indirect=True)
def test_page_shows_figure2_and_follows_an_instance_load(fig2: Lab) -> None:
    """The page shows Figure 2's switches and links, both sites' instances and svc1's decision
    at D-Router 1; loading the instance it prefers moves the decision on the page, with no
    reload; the browser logs no error but the 401s before it was given the read token."""
    wait_shares(fig2, "svc1", R1, {"10.0.0.21", "10.0.0.31"})
    seen = client(fig2, "c1", SVC1, requests=4)  # some bindings and traffic to show
    assert seen["errors"] == 0, seen
    topo = fig2.rest("GET", "/topology")[1]
    assert fig2.controller is not None
    with browser() as b:
        page = b.new_page(viewport={"width": 1400, "height": 1000})
        console = Console(page, allowed=("status of 401",))  # the refused polls before the token
        page.goto(f"{fig2.controller.url}/dyncast/ui/")
        # authentication is on (the harness's [security]): the page asks for a token on 401
        assert fig2.controller.creds is not None
        page.locator("#token").wait_for(state="visible", timeout=15000)
        page.fill("#token", read_token(fig2.controller.creds.read_token_file))
        page.press("#token", "Enter")
        page.wait_for_function("() => window.dyncastView && window.dyncastView.polls > 0",
                               timeout=15000)
        assert page.locator("#no-switch").is_hidden()
        assert page.locator("#status").get_attribute("data-switches") == \
            str(len(topo["switches"]))
        wait_until(lambda: counts(page)["instance"] == 4, 10,
                   lambda: f"the page draws {counts(page)}")
        drawn = counts(page)
        assert drawn["switch"] == len(topo["switches"]) and drawn["site"] == 2, drawn
        assert drawn["link"] == len(topo["links"]) // 2, drawn  # one edge per link
        decision = page.locator(DECISION)
        assert decision.locator("tr.candidate").count() == 2
        first = decision.get_attribute("data-primary")
        assert first in OTHER, first
        page.screenshot(path=str(fig2.artifacts / "webview-before.png"), full_page=True)
        polls = page.evaluate("window.dyncastView.polls")

        set_load(fig2, first, 10.0)
        page.wait_for_function(
            """([sel, want]) => { const d = document.querySelector(sel);
                return d && d.dataset.primary === want; }""",
            arg=[DECISION, OTHER[first]], timeout=20000)
        loaded = decision.locator(f'tr.candidate[data-dbid="{first}"]')
        wait_until(lambda: float(loaded.get_attribute("data-share") or "nan") == 0.0, 10,
                   lambda: f"{first}'s share on the page: {loaded.get_attribute('data-share')}")
        assert page.evaluate("window.dyncastView.polls") > polls  # the same page, polled on
        page.screenshot(path=str(fig2.artifacts / "webview-after.png"), full_page=True)
        page.locator("#graph").screenshot(path=str(fig2.artifacts / "webview-graph.png"))
        assert console.errors == [], console.errors
