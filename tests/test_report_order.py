"""Cluster members agree on the latest metrics: another member's report replaces the one held for
its instance only if it was accepted later (the last accepted wins, not the last applied); this
member's own reports are recorded in arrival order, as without a cluster."""

from __future__ import annotations

import json
from typing import Any

from controller.api import Api, Reply
from controller.cluster.changes import Change, decode, encode
from tests.helpers import all_fresh, figure2_core

BUSY = {"cpu": 1.0, "sessions": 50, "queue": 400, "capacity": 50}
IDLE = {"cpu": 0.0, "sessions": 0, "queue": 0, "capacity": 50}


def _post(api: Api, body: Any, now: float, accepted: float | None = None) -> Reply:
    """POST /metrics as the shell serves it (`accepted`: another member's, accepted then),
    then recompute what it left dirty."""
    steps = api.steps("POST", "/dyncast/v1/metrics", json.dumps(body).encode(), now, accepted)
    step = next(steps)
    while not isinstance(step, Reply):
        step = steps.send(now)
    api.core.flush(now)
    assert step.status == 200, step.body
    return step


def _api() -> Api:
    api = Api(figure2_core())
    all_fresh(api.core, 0.5)
    return api


def _prefers_21(api: Api) -> bool:
    """Whether svc1's decision at switch 2 (next to .21) gives .21 the larger share."""
    shares = api.core.engine.decisions[(2, "svc1")].shares
    return bool(shares.get("10.0.0.21", 0.0) > shares.get("10.0.0.31", 0.0))


def test_an_older_report_applied_after_a_newer_one_does_not_replace_it() -> None:
    """.21 idle, accepted elsewhere at 10, applied here first; then .21 busy accepted at 9
    (an older report, applied later): .21 stays idle and keeps being preferred."""
    api = _api()
    _post(api, {"dbid": "10.0.0.21", **IDLE}, 20.0, accepted=10.0)
    _post(api, {"dbid": "10.0.0.21", **BUSY}, 21.0, accepted=9.0)
    held = api.core.catalogue.instances["10.0.0.21"].metrics
    assert held is not None and held.sessions == 0
    assert _prefers_21(api) and api.core.counters["reports_stale"] == 1


def test_a_newer_report_replaces_the_one_held() -> None:
    """The same two reports the other way round: the busy one (accepted later) wins, and the
    decision moves svc1's new flows at switch 2 away from .21."""
    api = _api()
    _post(api, {"dbid": "10.0.0.21", **IDLE}, 20.0, accepted=9.0)
    assert _prefers_21(api)
    _post(api, {"dbid": "10.0.0.21", **BUSY}, 21.0, accepted=10.0)
    held = api.core.catalogue.instances["10.0.0.21"].metrics
    assert held is not None and held.sessions == 50
    assert not _prefers_21(api) and api.core.counters["reports_stale"] == 0


def test_a_batch_applies_per_instance() -> None:
    """A batch accepted at 10 after .21 was reported at 11 and .31 at 9: only .31's report
    in it is recorded; its reply counts one."""
    api = _api()
    _post(api, {"dbid": "10.0.0.21", **IDLE}, 20.0, accepted=11.0)
    _post(api, {"dbid": "10.0.0.31", **IDLE}, 20.0, accepted=9.0)
    reply = _post(api, {"reports": [{"dbid": "10.0.0.21", **BUSY},
                                    {"dbid": "10.0.0.31", **BUSY}]}, 21.0, accepted=10.0)
    assert reply.body["accepted"] == 1
    inst = api.core.catalogue.instances
    assert inst["10.0.0.21"].metrics.sessions == 0  # type: ignore[union-attr]
    assert inst["10.0.0.31"].metrics.sessions == 50  # type: ignore[union-attr]
    assert _prefers_21(api)


def test_own_reports_keep_arrival_order_and_count_as_accepted() -> None:
    """This member's own reports are recorded in arrival order even if `now` went back (as
    without a cluster); another member's report older than the own one held is not."""
    api = _api()
    _post(api, {"dbid": "10.0.0.21", **BUSY}, 30.0)
    _post(api, {"dbid": "10.0.0.21", **IDLE}, 29.0)  # own: recorded, accepted at 29
    assert api.core.catalogue.instances["10.0.0.21"].metrics.sessions == 0  # type: ignore
    _post(api, {"dbid": "10.0.0.21", **BUSY}, 31.0, accepted=28.5)
    assert api.core.catalogue.instances["10.0.0.21"].metrics.sessions == 0  # type: ignore
    _post(api, {"dbid": "10.0.0.21", **BUSY}, 31.0, accepted=29.5)
    assert api.core.catalogue.instances["10.0.0.21"].metrics.sessions == 50  # type: ignore


def test_a_change_carries_its_acceptance_time() -> None:
    """`at` survives the payload; a payload without it (an older member's) or with a bad one
    still decodes, without it."""
    change = Change("m1", "POST", "/dyncast/v1/metrics", "{}", 1234.5)
    assert decode(encode(change)) == change
    assert decode('{"m":"m1","v":"POST","p":"/x","b":"{}"}') == Change(
        "m1", "POST", "/x", "{}", None)
    for bad in ("1", True, None, [1], "NaN"):
        raw = {"m": "m1", "v": "POST", "p": "/x", "b": "{}", "a": bad}
        got = decode(json.dumps(raw).replace('"NaN"', "NaN"))
        assert got == Change("m1", "POST", "/x", "{}", None)
