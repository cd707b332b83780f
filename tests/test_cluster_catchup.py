"""Catching up after a lost listening connection (controller/cluster/catchup.py): the requests
that bring a member's catalogue to the store's, applied through the API as the others' changes
are; a record still waiting for this member's store write, or a configured service, stays."""

from __future__ import annotations

import json

from controller.api import Api
from controller.cluster.catchup import catch_up
from controller.config import ControllerConfig
from controller.core import Core
from controller.model import service_from_dict

V1 = "/dyncast/v1/"
SVC1 = {"name": "svc1", "dsid": "10.0.100.1", "protocol": "tcp", "port": 8000}
SVC2 = {"name": "svc2", "dsid": "10.0.100.2", "protocol": "tcp", "port": 9000}
REPORT = {"cpu": 0.2, "sessions": 1, "queue": 0, "capacity": 10}


def ok(api: Api, method: str, path: str, body: object, now: float) -> None:
    """A request that must be accepted."""
    reply = api.handle(method, V1 + path, json.dumps(body).encode(), now)
    assert reply.status < 400, (method, path, reply.status, reply.body)


def member(configured: bool) -> tuple[Core, Api]:
    """A member holding svc1 (from its configuration file, or created by REST) and the
    instances 10.0.0.21 and 10.0.0.22, both reporting."""
    svc1 = service_from_dict(SVC1)
    core = Core(ControllerConfig(services=(svc1,) if configured else ()))
    api = Api(core)
    if not configured:
        ok(api, "POST", "services", SVC1, 1.0)
    for dbid in ("10.0.0.21", "10.0.0.22"):
        ok(api, "POST", "instances", {"dsid": SVC1["dsid"], "dbid": dbid}, 1.0)
        ok(api, "POST", "metrics", {**REPORT, "dbid": dbid}, 1.0)
    return core, api


def state(core: Core) -> dict[str, tuple[str, bool, int | None]]:
    """Each instance's service, drain state (with stop-when-drained) and sessions reported."""
    return {d: (i.service, i.draining and i.stop_when_drained,
                i.metrics.sessions if i.metrics else None)
            for d, i in core.catalogue.instances.items()}


def test_a_member_that_missed_changes_catches_up_from_the_store() -> None:
    """While B was not listening, A deactivated .21, reported 7 sessions at .22, withdrew
    nothing but B holds .23 (registered at B, not yet stored) and A created svc2 with .31;
    the store holds A's view. B's catch-up makes B's instances A's plus its own .23; a second
    catch-up finds nothing to do."""
    a, api_a = member(configured=False)
    b, api_b = member(configured=False)
    ok(api_a, "POST", "instances/10.0.0.21/deactivate", {"deadline_s": 60}, 2.0)
    ok(api_a, "POST", "metrics", {**REPORT, "sessions": 7, "dbid": "10.0.0.22"}, 2.0)
    ok(api_a, "POST", "services", SVC2, 2.0)
    ok(api_a, "POST", "instances", {"dsid": SVC2["dsid"], "dbid": "10.0.0.31"}, 2.0)
    b.drain_writes()  # B's set-up was stored long ago
    ok(api_b, "POST", "instances", {"dsid": SVC1["dsid"], "dbid": "10.0.0.23"}, 2.0)
    pending = b.writes.keys()
    assert ("instance", "10.0.0.23") in pending and ("instance", "10.0.0.21") not in pending

    def round_() -> int:
        changes = catch_up("b", b.catalogue.services, b.catalogue.instances,
                           a.catalogue.services.values(), a.catalogue.instances.values(),
                           pending, (), 3.0)
        for c in changes:
            reply = api_b.handle(c.method, c.path, c.body.encode(), 3.0)
            assert reply.status < 400, (c, reply.body)
        return len(changes)

    assert round_() == 4  # deactivate, a report, svc2, .31
    assert state(b) == {**state(a), "10.0.0.23": ("svc1", False, None)}
    assert b.catalogue.instances["10.0.0.21"].drain_deadline == 62.0  # the same deadline
    assert round_() == 0


def test_a_record_with_a_write_on_its_way_is_left_as_it_is_here() -> None:
    """B deleted svc2 and changed .21's drain while the store still holds the older records
    (its writes not landed yet): the catch-up neither brings svc2 back nor undoes the drain
    (it brought back deleted services after a PostgreSQL restart)."""
    a, api_a = member(configured=False)
    b, api_b = member(configured=False)
    for api in (api_a, api_b):
        ok(api, "POST", "services", SVC2, 1.0)
    b.drain_writes()
    ok(api_b, "DELETE", "services/svc2", None, 2.0)
    ok(api_b, "POST", "instances/10.0.0.21/drain", {}, 2.0)
    changes = catch_up("b", b.catalogue.services, b.catalogue.instances,
                       a.catalogue.services.values(), a.catalogue.instances.values(),
                       b.writes.keys(), (), 3.0)
    assert changes == []


def test_what_the_store_lost_is_withdrawn_unless_configured() -> None:
    """A withdrew .22 and deleted svc2; B, listening again, withdraws and deletes them too,
    but not its configured svc1, which the store need not hold."""
    a, api_a = member(configured=True)
    b, api_b = member(configured=True)
    for api in (api_a, api_b):
        ok(api, "POST", "services", SVC2, 1.0)
    ok(api_a, "DELETE", "instances/10.0.0.22", None, 2.0)
    ok(api_a, "DELETE", "services/svc2", None, 2.0)
    assert "svc2" not in a.catalogue.services
    changes = catch_up("b", b.catalogue.services, b.catalogue.instances, [],
                       a.catalogue.instances.values(), set(), {"svc1"}, 3.0)
    assert [(c.method, c.path) for c in changes] == [
        ("DELETE", V1 + "instances/10.0.0.22"), ("DELETE", V1 + "services/svc2")]
