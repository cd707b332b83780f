"""GET /decisions' encoded bodies (controller/views.py `DecisionViews.row` and `body`): exactly
the bytes encoding the rows gives, reused while nothing changed, and made again for what did."""

from __future__ import annotations

import dataclasses
import json
from typing import Any

from apps.restside import RestSide
from controller.api import Api
from controller.views import Rows
from tests.helpers import FAILURES_CFG, figure2_core, report

BUSY = {"reports": [{"dbid": "10.0.0.21", "cpu": 0.95, "sessions": 4, "queue": 40,
                     "capacity": 10}]}


def _get(api: Api, path: str) -> Rows:
    reply = api.handle("GET", "/dyncast/v1/" + path, b"", 5.0)
    assert reply.status == 200 and isinstance(reply.body, Rows)
    return reply.body


def _encoded(rows: list[dict[str, Any]]) -> bytes:
    """What the shell sent before the bodies were kept: the rows encoded, five a step."""
    if len(rows) <= 5:
        return json.dumps(rows, sort_keys=True).encode() + b"\n"
    parts = [json.dumps(rows[i:i + 5], sort_keys=True)[1:-1] for i in range(0, len(rows), 5)]
    return ("[" + ", ".join(parts) + "]\n").encode()


def _check(api: Api, path: str) -> Rows:
    """The body is exactly the rows encoded, and the shell sends it as it is."""
    rows = _get(api, path)
    assert rows.body == _encoded(list(rows)) == json.dumps(list(rows), sort_keys=True).encode() \
        + b"\n"
    assert RestSide.encode(RestSide(), rows) is rows.body
    return rows


def test_bodies_are_exactly_the_rows_encoded_before_and_after_changes() -> None:
    """Every service's and one service's bodies equal the encoded rows, when first built,
    after a report moves shares, with a forwarder relying on a router, and after a delete."""
    core = figure2_core(dataclasses.replace(FAILURES_CFG, forwarders=((2, 1),)))
    api = Api(core)
    for dbid in ("10.0.0.21", "10.0.0.22", "10.0.0.31", "10.0.0.32"):
        report(core, dbid, 1.0)
    first = _check(api, "decisions")
    assert len(first) > 5 and any(r["forwarders"] == [2] for r in first)
    _check(api, "decisions/svc1")
    assert api.handle("POST", "/dyncast/v1/metrics", json.dumps(BUSY).encode(), 6.0).status == 200
    moved = _check(api, "decisions")
    assert moved.body != first.body
    _check(api, "decisions/svc1")
    core.decisions.router_of[3] = 1  # r3 relies on r1 too (as a reload would say)
    assert any(r["forwarders"] == [2, 3] for r in _check(api, "decisions"))
    assert api.handle("DELETE", "/dyncast/v1/services/svc2", b"", 7.0).status == 200
    assert {r["service"] for r in _check(api, "decisions")} == {"svc1"}
    gone = api.handle("GET", "/dyncast/v1/decisions/svc2", b"", 8.0)  # no such service now
    assert (gone.status, gone.body["field"]) == (404, "service")


def test_repeated_gets_reuse_the_body_and_a_change_reencodes_only_its_rows() -> None:
    """Between changes the same body object is sent again; after a report on svc1 only svc1's
    rows are encoded again (svc2's texts are the very same objects)."""
    core = figure2_core(FAILURES_CFG)
    api = Api(core)
    for dbid in ("10.0.0.21", "10.0.0.22", "10.0.0.31", "10.0.0.32"):
        report(core, dbid, 1.0)
    one = _get(api, "decisions")
    assert _get(api, "decisions").body is one.body
    svc2_before = {k: v[3] for k, v in api.views._rows.items() if k[1] == "svc2"}
    svc1_before = {k: v[3] for k, v in api.views._rows.items() if k[1] == "svc1"}
    assert api.handle("POST", "/dyncast/v1/metrics", json.dumps(BUSY).encode(), 6.0).status == 200
    two = _check(api, "decisions")
    assert two.body is not one.body
    assert all(api.views._rows[k][3] is t for k, t in svc2_before.items())
    assert any(api.views._rows[k][3] is not t for k, t in svc1_before.items())


def test_a_caller_changing_a_row_does_not_change_the_next_reply() -> None:
    """Rows handed out are copies: the next reply and its body are what the decisions say."""
    core = figure2_core(FAILURES_CFG)
    api = Api(core)
    first = _get(api, "decisions")
    first[0]["primary"] = "changed by a caller"
    again = _check(api, "decisions")
    assert again[0]["primary"] != "changed by a caller"
    assert b"changed by a caller" not in again.body
