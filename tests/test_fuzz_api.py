"""Property-based tests of every endpoint and method of controller.api: random and mutated
paths and bodies never give a 5xx or an exception, a 4xx names the field and changes nothing.

Each example drives `Api.handle` on a fresh Figure 2 core (about 2 ms to build). The example
counts keep the whole file to a few seconds.
"""

from __future__ import annotations

import json
from typing import Any

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from controller.api import Api
from tests.helpers import figure2_core

METHODS = ("GET", "POST", "PUT", "DELETE", "PATCH")
RESOURCES = ("services", "instances", "metrics", "decisions", "bindings", "topology", "stats",
             "nothing", "")
KNOWN = ("svc1", "svc2", "10.0.0.21", "10.0.0.31", "10.0.100.1", "drain", "undrain",
         "activate", "deactivate")
FUZZ = settings(max_examples=150, deadline=None, derandomize=True,
                suppress_health_check=[HealthCheck.too_slow])

SCALARS = (st.none() | st.booleans() | st.integers(-(2**70), 2**70)
           | st.floats(allow_nan=False, allow_infinity=False) | st.text(max_size=12)
           | st.sampled_from(KNOWN))
# values of the wrong type or past a range, for any field
NASTY = st.sampled_from([[], ["tcp"], {}, {"a": 1}, None, True, "", "x" * 100, -1, 2**64,
                         1e308, -0.0, "10.0.0.21", "224.0.0.1", [{"a": []}]])
JSON = st.recursive(SCALARS, lambda kids: st.lists(kids, max_size=4)
                    | st.dictionaries(st.text(max_size=8), kids, max_size=4), max_leaves=12)

GOOD_BODIES: dict[str, list[dict[str, Any]]] = {
    "services": [{"name": "svc3", "dsid": "10.0.100.3", "protocol": "tcp", "port": 80,
                  "affinity": {"key": "source", "idle_timeout": 5, "hard_timeout": 0},
                  "weights": {"network": 1.0, "compute": 2.0}, "base_delay_ms": 5.0,
                  "delay_budget_ms": 50.0, "policy": "nearest", "dataplane": "bucket",
                  "overlay": False, "buckets": 16,
                  "scaling": {"high": 0.9, "low": 0.1, "hold_s": 1.0, "min_active": 1}}],
    "instances": [{"dsid": "10.0.100.1", "dbid": "10.0.0.41", "dma": "dma-1", "active": True},
                  {"deadline_s": 5.0}],
    "metrics": [{"dbid": "10.0.0.21", "dsid": "10.0.100.1", "cpu": 0.5, "sessions": 3,
                 "queue": 0, "capacity": 8, "active": True, "processing_delay_ms": 3.0},
                {"reports": [{"dbid": "10.0.0.31", "score": 7.5},
                             {"dbid": "10.0.0.21", "cpu": 0.1, "sessions": 0, "queue": 0,
                              "capacity": 1}]}],
}
RAW = st.sampled_from([b'{"' + b"k" * 100_000 + b'": 1}', b"[" * 5000, b'{"a":' * 3000,
                       b"1" * 5000, b'{"cpu": NaN}',
                       b'{"name": "x\\ud800", "dsid": "10.0.100.9"}', b"\xff\xfe", b"{",
                       b'{"reports": ' + b"[" * 2000 + b"]" * 2000 + b"}"])


def snapshot(api: Api) -> Any:
    """Everything a request could change: catalogue, decisions, bindings, queued writes."""
    core = api.core
    return (json.dumps({k: s.to_dict() for k, s in core.catalogue.services.items()}),
            json.dumps({k: i.to_dict() for k, i in core.catalogue.instances.items()},
                       default=str),
            {k: d.to_dict() for k, d in core.engine.decisions.items()},
            len(core.bindings), dict(core.writes._queue))


@st.composite
def mutated(draw: st.DrawFn) -> dict[str, Any] | list[Any]:
    """A valid body with a key dropped, a value replaced by random JSON, or a key added."""
    body = json.loads(json.dumps(draw(st.sampled_from(
        [b for bodies in GOOD_BODIES.values() for b in bodies]))))
    target = body
    while isinstance(target, dict) and target and draw(st.booleans()):
        key = draw(st.sampled_from(sorted(target)))
        if isinstance(target[key], dict):
            target = target[key]
        elif isinstance(target[key], list) and target[key] and isinstance(target[key][0], dict):
            target = target[key][0]
        else:
            break
    action = draw(st.sampled_from(["drop", "replace", "add"]))
    if action == "drop" and target:
        target.pop(draw(st.sampled_from(sorted(target))))
    elif action == "replace" and target:
        target[draw(st.sampled_from(sorted(target)))] = draw(NASTY | JSON)
    else:
        target[draw(st.text(min_size=1, max_size=8))] = draw(JSON)
    return body


PATHS = st.builds(lambda r, segs: "/".join([r, *segs]), st.sampled_from(RESOURCES),
                  st.lists(st.sampled_from(KNOWN) | st.text(max_size=10), max_size=3))
BODIES = (st.builds(lambda v: json.dumps(v).encode(), JSON | mutated())
          | st.sampled_from([json.dumps(b).encode() for bs in GOOD_BODIES.values() for b in bs])
          | RAW | st.binary(max_size=40))


def check(api: Api, method: str, path: str, body: bytes) -> None:
    """The invariants of one request: no 5xx; a 4xx names its field and changes nothing."""
    before = snapshot(api)
    reply = api.handle(method, "/dyncast/v1/" + path, body, 5.0)
    assert 200 <= reply.status < 500, reply
    if reply.status >= 400:
        assert isinstance(reply.body.get("field"), str) and reply.body["field"], reply.body
        assert reply.body["field"].split(".")[0].split("[")[0] in str(reply.body["error"]) \
            or reply.status in (404, 405, 409), reply.body
        assert snapshot(api) == before, (method, path, reply.body)
        assert reply.intents == []
        assert len(json.dumps(reply.body)) < 1000, "an error reply echoes a bounded excerpt"
    json.dumps(reply.body)  # whatever comes back can be sent


@FUZZ
@given(method=st.sampled_from(METHODS), path=PATHS, body=BODIES)
def test_any_request_is_answered_without_5xx_or_half_applying(method: str, path: str,
                                                             body: bytes) -> None:
    """Random methods, paths and bodies on every resource: never a 5xx, a 4xx leaves no trace."""
    check(Api(figure2_core()), method, path, body)


@settings(FUZZ, max_examples=250)
@given(resource=st.sampled_from(sorted(GOOD_BODIES)), body=mutated(),
       method=st.sampled_from(("POST", "PUT")), name=st.sampled_from(("", "/svc1", "/svc9",
                                                                      "/10.0.0.21/drain")))
def test_mutated_valid_bodies_never_5xx_nor_half_apply(resource: str, body: Any, method: str,
                                                      name: str) -> None:
    """Valid bodies with one key dropped, replaced or added, on the routes that take bodies."""
    check(Api(figure2_core()), method, resource + name, json.dumps(body).encode())


@settings(max_examples=40, deadline=None, derandomize=True)
@given(st.lists(st.tuples(st.sampled_from(METHODS), PATHS, BODIES), min_size=2, max_size=6))
def test_sequences_of_requests_keep_every_invariant(requests: list[tuple[str, str, bytes]]
                                                    ) -> None:
    """A sequence on one core: each request, whatever came before, keeps the invariants."""
    api = Api(figure2_core())
    for method, path, body in requests:
        check(api, method, path, body)


def key_paths(value: Any, prefix: tuple[Any, ...] = ()) -> list[tuple[Any, ...]]:
    """Every key path in a JSON body (through objects, and the first item of lists)."""
    out: list[tuple[Any, ...]] = []
    if isinstance(value, dict):
        for key, sub in value.items():
            out += [(*prefix, key), *key_paths(sub, (*prefix, key))]
    elif isinstance(value, list) and value:
        out += key_paths(value[0], (*prefix, 0))
    return out


def test_every_field_of_every_body_refuses_every_wrong_value() -> None:
    """Exhaustive: each field of each valid body, replaced by each wrong-typed or out-of-range
    value (or dropped), on each route that takes that body: no 5xx, no half-apply."""
    routes = {"services": [("POST", "services"), ("PUT", "services/svc1")],
              "instances": [("POST", "instances"), ("POST", "instances/10.0.0.21/drain")],
              "metrics": [("POST", "metrics")]}
    nasty = [[], ["tcp"], {}, None, True, "", "x" * 100, -1, 2**64, 1e308, "224.0.0.1"]
    for resource, bodies in GOOD_BODIES.items():
        for good in bodies:
            for path in key_paths(good):
                for value in [*nasty, KeyError]:
                    body = json.loads(json.dumps(good))
                    target = body
                    for step in path[:-1]:
                        target = target[step]
                    if value is KeyError:
                        del target[path[-1]]
                    else:
                        target[path[-1]] = value
                    for method, route in routes[resource]:
                        check(Api(figure2_core()), method, route, json.dumps(body).encode())
