"""The REST API: validation names the field, and a rejected request changes nothing."""

from __future__ import annotations

import copy
import json

import pytest

from controller.api import Api
from tests.helpers import figure2_core, report


def _call(api: Api, method: str, path: str, body: object = None, raw: bytes | None = None):
    data = raw if raw is not None else (b"" if body is None else json.dumps(body).encode())
    return api.handle(method, "/dyncast/v1/" + path, data, 5.0)


def _snapshot(api: Api) -> tuple:
    core = api.core
    return (copy.deepcopy(core.catalogue.instances), dict(core.catalogue.services),
            dict(core.engine.decisions), len(core.bindings))


GOOD_REPORT = {"dbid": "10.0.0.21", "cpu": 0.2, "sessions": 1, "queue": 0, "capacity": 4}


@pytest.mark.parametrize(("body", "field"), [
    ({**GOOD_REPORT, "cpu": -0.1}, "cpu"),
    ({**GOOD_REPORT, "cpu": 7}, "cpu"),
    ({**GOOD_REPORT, "sessions": 1e12}, "sessions"),
    ({**GOOD_REPORT, "queue": -3}, "queue"),
    ({**GOOD_REPORT, "capacity": 0}, "capacity"),
    ({**GOOD_REPORT, "dbid": "10.0.0.999"}, "dbid"),
    ({**GOOD_REPORT, "active": "yes"}, "active"),
    ({**GOOD_REPORT, "load": 3}, "load"),
    ({k: v for k, v in GOOD_REPORT.items() if k != "capacity"}, "capacity"),
    ({"reports": [GOOD_REPORT, {**GOOD_REPORT, "cpu": "high"}]}, "reports[1].cpu"),
])
def test_bad_metric_report_is_rejected_and_changes_nothing(body: dict, field: str) -> None:
    """A malformed or absurd D-MA report gets 400 naming the field; state is untouched."""
    api = Api(figure2_core())
    report(api.core, "10.0.0.21", 1.0)
    before = _snapshot(api)
    reply = _call(api, "POST", "metrics", body)
    assert reply.status == 400 and reply.body["field"] == field, reply.body
    assert _snapshot(api) == before


def test_metrics_for_unknown_instance_is_404_and_changes_nothing() -> None:
    """A batch naming one unknown D-BID is rejected whole."""
    api = Api(figure2_core())
    before = _snapshot(api)
    batch = {"reports": [GOOD_REPORT, {**GOOD_REPORT, "dbid": "10.0.0.77"}]}
    assert _call(api, "POST", "metrics", batch).status == 404
    assert _snapshot(api) == before


def test_malformed_json_is_400() -> None:
    """Bytes that are not JSON are rejected with a message about the body."""
    reply = _call(Api(figure2_core()), "POST", "metrics", raw=b"{nope")
    assert reply.status == 400 and reply.body["field"] == "body"


@pytest.mark.parametrize(("path", "raw", "key"), [
    ("services", b'{"name": "svc3", "name": "svc4", "dsid": "10.0.100.3"}', "name"),
    ("metrics", b'{"dbid": "10.0.0.21", "cpu": 0.2, "sessions": 1, "queue": 0, "capacity": 4,'
     b' "active": true, "active": false}', "active"),
    ("metrics", b'{"reports": [{"dbid": "10.0.0.21", "dbid": "10.0.0.31", "cpu": 0.2}]}',
     "dbid"),
])
def test_a_key_given_twice_is_400_and_changes_nothing(path: str, raw: bytes, key: str) -> None:
    """JSON that names a key twice in one object is refused, naming the key: the last one
    silently won (a service created as "svc4"), while a proxy or another reader of the
    same bytes may take the first (RFC 8259 4: such objects are read unpredictably)."""
    api = Api(figure2_core())
    report(api.core, "10.0.0.21", 1.0)
    before = _snapshot(api)
    reply = _call(api, "POST", path, raw=raw)
    assert (reply.status, reply.body["field"]) == (400, "body"), reply.body
    assert f"'{key}'" in reply.body["error"] and "twice" in reply.body["error"]
    assert _snapshot(api) == before


def test_good_report_updates_metrics_and_decisions() -> None:
    """An accepted report is visible in /instances and /decisions with a cost breakdown."""
    api = Api(figure2_core())
    assert _call(api, "POST", "metrics", GOOD_REPORT).status == 200
    inst = _call(api, "GET", "instances/10.0.0.21").body
    assert inst["metrics"]["sessions"] == 1 and inst["state"] == "active"
    rows = _call(api, "GET", "decisions/svc1").body
    assert {r["ingress"] for r in rows} == {1, 2, 3, 4}
    cand = {c["dbid"]: c for c in rows[0]["candidates"]}
    assert {"network_ms", "compute_ms", "cost", "share", "state"} <= cand["10.0.0.21"].keys()


def test_service_life_cycle_through_the_api() -> None:
    """Create, update, list and delete a service; the D-SID entry follows it to every switch."""
    api = Api(figure2_core())
    svc = {"name": "svc3", "dsid": "10.0.100.3", "protocol": "udp", "port": 5000,
           "affinity": {"key": "source", "idle_timeout": 5}}
    created = _call(api, "POST", "services", svc)
    assert created.status == 201 and len(created.intents) == 8  # punt + ARP, 4 switches
    assert _call(api, "POST", "services", svc).status == 409
    updated = _call(api, "PUT", "services/svc3", {**svc, "port": 5001})
    assert updated.status == 200 and updated.body["port"] == 5001
    assert [s["name"] for s in _call(api, "GET", "services").body] == ["svc1", "svc2", "svc3"]
    assert _call(api, "DELETE", "services/svc3").status == 200
    assert _call(api, "GET", "services/svc3").status == 404


def test_learn_service_with_a_short_idle_timeout_is_accepted_with_a_warning() -> None:
    """learn + translation with idle_timeout <= OVS's max-idle: stored, and the reply says why
    it may misbehave; above it, or in overlay mode, no warning."""
    api = Api(figure2_core())
    svc = {"name": "svc3", "dsid": "10.0.100.3", "protocol": "tcp", "port": 80,
           "dataplane": "learn", "affinity": {"idle_timeout": 5}}
    created = _call(api, "POST", "services", svc)
    assert created.status == 201 and "max-idle" in created.body["warnings"][0]
    assert "warnings" not in _call(api, "GET", "services/svc3").body
    for change in ({"affinity": {"idle_timeout": 11}}, {"overlay": True},
                   {"dataplane": "bucket"}, {"affinity": {"idle_timeout": 0, "hard_timeout": 5}}):
        updated = _call(api, "PUT", "services/svc3", {**svc, **change})
        assert updated.status == 200 and "warnings" not in updated.body, change


@pytest.mark.parametrize(("body", "status", "field"), [
    ({"name": "x", "dsid": "not-an-ip"}, 400, "dsid"),
    ({"name": "x", "dsid": "10.0.100.9", "port": 80}, 400, "port"),
    ({"name": "x", "dsid": "10.0.100.9", "affinity": {"key": "bogus"}}, 400, "affinity.key"),
    ({"name": "x", "dsid": "10.0.100.1"}, 409, "dsid"),
    ({"name": "svc1", "dsid": "10.0.100.9"}, 409, "name"),
])
def test_bad_service_is_rejected(body: dict, status: int, field: str) -> None:
    """Invalid or conflicting services are refused and the catalogue is unchanged."""
    api = Api(figure2_core())
    before = _snapshot(api)
    reply = _call(api, "POST", "services", body)
    assert reply.status == status and reply.body.get("field") == field
    assert _snapshot(api) == before


def test_register_and_withdraw_instances() -> None:
    """A D-MA registers by (D-SID, D-BID) and withdraws by D-BID; unknown D-SIDs are 404."""
    api = Api(figure2_core())
    reply = _call(api, "POST", "instances", {"dsid": "10.0.100.1", "dbid": "10.0.0.41"})
    assert reply.status == 201 and reply.body["state"] == "unknown"
    assert _call(api, "POST", "instances", {"dsid": "10.0.100.1", "dbid": "10.0.0.41"}).status \
        == 200
    unknown = _call(api, "POST", "instances", {"dsid": "10.0.100.8", "dbid": "10.0.0.42"})
    assert unknown.status == 404 and unknown.body["field"] == "dsid"  # the body's field
    assert _call(api, "POST", "instances", {"dsid": "10.0.100.2", "dbid": "10.0.0.41"}).status \
        == 409
    assert _call(api, "DELETE", "instances/10.0.0.41").status == 200
    assert _call(api, "DELETE", "instances/10.0.0.41").status == 404


def test_an_instance_path_that_is_no_address_is_a_400_for_get_as_for_delete() -> None:
    """GET and DELETE /instances/{dbid} judge the path alike: not an IPv4 address, a 400
    naming dbid (GET said 404, as for an address not registered); an unknown address, a 404;
    a non-canonical spelling of a registered one, a 400 (no second name for it)."""
    api = Api(figure2_core())
    for method in ("GET", "DELETE"):
        for bad in ("x", "010.0.0.21", "10.0.0.256"):
            reply = _call(api, method, f"instances/{bad}")
            assert (reply.status, reply.body["field"]) == (400, "dbid"), (method, bad, reply)
        assert _call(api, method, "instances/10.0.0.99").status == 404
    assert _call(api, "GET", "instances/10.0.0.21").status == 200


def test_unknown_paths_and_methods() -> None:
    """Unknown resources are 404, known ones with a wrong method 405."""
    api = Api(figure2_core())
    assert _call(api, "GET", "nothing").status == 404
    assert _call(api, "PATCH", "services").status == 405
    assert _call(api, "GET", "").body["resources"]
    assert _call(api, "GET", "topology").body["links"]
    assert "packet_in" in _call(api, "GET", "stats").body


def _limited(**limits: int) -> Api:
    """An API over Figure 2's core with the given [limits]."""
    from controller.config import ControllerConfig
    from controller.limits import Limits
    from tests.helpers import SVC1, SVC2
    return Api(figure2_core(ControllerConfig(services=(SVC1, SVC2), limits=Limits(**limits))))


@pytest.mark.parametrize(("path", "body", "status", "field"), [
    ("services", {"name": "x", "dsid": "224.0.0.251"}, 400, "dsid"),
    ("services", {"name": "x", "dsid": "255.255.255.255"}, 400, "dsid"),
    ("services", {"name": "x", "dsid": "0.0.0.0"}, 400, "dsid"),
    ("services", {"name": "x", "dsid": "127.0.0.1"}, 400, "dsid"),
    ("services", {"name": "x", "dsid": "10.0.0.1"}, 400, "dsid"),  # a learned host
    ("services", {"name": "x", "dsid": "10.0.0.21"}, 400, "dsid"),  # an instance's D-BID
    ("services", {"name": "x y", "dsid": "10.0.100.9"}, 400, "name"),
    ("services", {"name": "x\ud800", "dsid": "10.0.100.9"}, 400, "name"),
    ("services", {"name": "x", "dsid": "10.0.100.9", "protocol": ["tcp"]}, 400, "protocol"),
    ("instances", {"dsid": "10.0.100.1", "dbid": "10.0.100.2"}, 400, "dbid"),
    ("instances", {"dsid": "10.0.100.1", "dbid": "224.0.0.1"}, 400, "dbid"),
    ("instances", {"dsid": "10.0.100.1", "dbid": "10.0.0.41", "dma": "a b"}, 400, "dma"),
    ("metrics", {**GOOD_REPORT, "dsid": "10.0.100.2"}, 400, "dsid"),
    ("metrics", {"reports": [GOOD_REPORT], "extra": 1}, 400, "extra"),
    ("metrics", {**GOOD_REPORT, "cpu": 1e400}, 400, "cpu"),
    ("metrics", {**GOOD_REPORT, "sessions": 10 ** 4000}, 400, "sessions"),
])
def test_hostile_inputs_are_refused_naming_the_field(path: str, body: dict, status: int,
                                                     field: str) -> None:
    """Reserved or taken addresses, unsafe names, lists for strings, a report's wrong dsid,
    keys beside `reports`, and numbers no float holds: 400 naming the field, nothing changes."""
    api = Api(figure2_core())
    before = _snapshot(api)
    raw = json.dumps(body).encode().replace(b"Infinity", b"1e400").replace(b"0" * 4000,
                                                                             b"0" * 5000)
    reply = _call(api, "POST", path, raw=raw)
    assert (reply.status, reply.body.get("field")) == (status, field), reply.body
    assert _snapshot(api) == before


def test_a_report_with_its_own_dsid_is_accepted() -> None:
    """A report whose dsid is its instance's service's D-SID is recorded."""
    api = Api(figure2_core())
    assert _call(api, "POST", "metrics", {**GOOD_REPORT, "dsid": "10.0.100.1"}).status == 200


@pytest.mark.parametrize("path", ["services/a%20b", "services/a b", "services/x?y",
                                  "instances/10.0.0.21/drain/now", "topology/x",
                                  "services/caf\u00e9"])
def test_unsafe_or_extra_path_segments_are_400_on_path(path: str) -> None:
    """Path segments follow the name rules, and a route takes no more of them than it uses."""
    for method in ("GET", "DELETE", "PUT", "POST"):
        reply = _call(Api(figure2_core()), method, path, raw=b"{}")
        assert reply.status in (400, 405) and reply.body["field"] == "path", (method, reply.body)


def test_quotas_refuse_with_429_naming_the_limit_and_change_nothing() -> None:
    """Past max_services, max_instances_per_service, max_instances or max_reports_per_batch:
    429 naming the limit; a refresh of an existing instance still passes."""
    api = _limited(max_services=2, max_instances_per_service=2, max_instances=5,
                   max_reports_per_batch=1)
    cases = [("services", {"name": "svc3", "dsid": "10.0.100.3"}, "limits.max_services"),
             ("instances", {"dsid": "10.0.100.1", "dbid": "10.0.0.41"},
              "limits.max_instances_per_service"),
             ("metrics", {"reports": [GOOD_REPORT, GOOD_REPORT]}, "limits.max_reports_per_batch")]
    for path, body, limit in cases:
        before = _snapshot(api)
        reply = _call(api, "POST", path, body)
        assert (reply.status, reply.body["field"]) == (429, limit), reply.body
        assert limit in reply.body["error"] and _snapshot(api) == before
    assert _call(api, "POST", "instances", {"dsid": "10.0.100.1", "dbid": "10.0.0.21"}).status \
        == 200
    api = _limited(max_instances=4)
    reply = _call(api, "POST", "instances", {"dsid": "10.0.100.2", "dbid": "10.0.0.42"})
    assert (reply.status, reply.body["field"]) == (429, "limits.max_instances")


def test_topology_says_which_switches_are_connected() -> None:
    """A switch whose control channel closed stays in /topology for its grace period, marked
    not connected with the time it left; the others stay connected."""
    from controller.config import ControllerConfig
    from tests.helpers import SVC1, SVC2
    api = Api(figure2_core(ControllerConfig(services=(SVC1, SVC2), switch_grace_s=30.0)))
    assert [(s["dpid"], s["connected"], s["away_since"])
            for s in _call(api, "GET", "topology").body["switches"]] == \
        [(1, True, None), (2, True, None), (3, True, None), (4, True, None)]
    api.core.switch_left(2, 5.0)
    switches = {s["dpid"]: s for s in _call(api, "GET", "topology").body["switches"]}
    assert (switches[2]["connected"], switches[2]["away_since"]) == (False, 5.0)
    assert all(switches[d]["connected"] for d in (1, 3, 4))


def test_decisions_view_follows_every_recompute() -> None:
    """GET /decisions reuses a decision's view only while that decision is held: after a report
    moves the shares, and after a service is deleted, the reply is what the held decisions say
    now, and a caller changing a reply does not change the next one."""
    api = Api(figure2_core())

    def fresh() -> list[dict]:
        return [d.to_dict() for _, d in sorted(api.core.engine.decisions.items())]

    def answer() -> list[dict]:
        rows = _call(api, "GET", "decisions").body
        return [{k: v for k, v in r.items() if k not in ("role", "forwarders")} for r in rows]

    first = answer()
    assert first == fresh()
    _call(api, "GET", "decisions").body[0]["primary"] = "changed by a caller"
    assert answer() == fresh()
    busy = {**GOOD_REPORT, "cpu": 0.95, "sessions": 4, "queue": 40}
    assert _call(api, "POST", "metrics", busy).status == 200
    moved = answer()
    assert moved == fresh() and moved != first
    assert _call(api, "DELETE", "services/svc2").status == 200
    assert {r["service"] for r in answer()} == {"svc1"} and answer() == fresh()


@pytest.mark.parametrize("method", ["GET", "PUT", "DELETE"])
@pytest.mark.parametrize("segment", [".", ".."])
def test_a_dot_segment_is_a_400_on_path_as_the_names_rule_says(method: str,
                                                                 segment: str) -> None:
    """`.` and `..` are no names (docs/api.md): a 400 naming the path, as for any unsafe
    segment, not a 404 as for a name that could exist."""
    api = Api(figure2_core())
    reply = _call(api, method, f"services/{segment}",
                  {"name": segment, "dsid": "10.0.100.7"} if method == "PUT" else None)
    assert reply.status == 400 and reply.body["field"] == "path", reply.body


def test_a_405_names_the_methods_the_resource_takes() -> None:
    """RFC 9110: a 405 carries `Allow` (HEAD wherever GET is); a 404 none."""
    api = Api(figure2_core())
    assert _call(api, "PATCH", "services").allow == ("DELETE", "GET", "HEAD", "POST", "PUT")
    assert _call(api, "PUT", "metrics").allow == ("POST",)
    assert _call(api, "POST", "").allow == ("GET", "HEAD")
    assert _call(api, "GET", "nowhere").allow == ()
