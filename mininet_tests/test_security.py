"""Authenticated agents and operators on real OVS (issue 18): a hostile client host that
reaches the REST port can neither report for a real instance nor register its own, and
changes no decision; the real D-MAs' signed reports keep working.

The edge D-MAs are granted only their own D-SIDs and D-BIDs (agent table made by the test);
a 'rogue' agent with a valid key but a narrow grant stands for a compromised D-MA elsewhere.
Every forged request is sent from client c1, over its own management link, with curl.
"""

from __future__ import annotations

import json
import shlex
import time
from typing import Any

import pytest

from agents.credset import CredentialSet
from agents.signing import Signer
from mininet_tests.harness import Lab
from mininet_tests.processes import wait_until
from mininet_tests.test_fig2 import R1, R2, SVC1, client, shares, wait_shares

API = "/dyncast/v1"
GRANTS = {"dma-e2": ["10.0.100.0/24", "10.0.0.21/32", "10.0.0.22/32"],
          "dma-e3": ["10.0.100.0/24", "10.0.0.31/32", "10.0.0.32/32"],
          "rogue": ["10.0.100.0/24", "10.0.0.99/32"]}
REPORT_DOWN = {"dbid": "10.0.0.21", "cpu": 0.0, "sessions": 0, "queue": 0, "capacity": 4,
               "active": False}


def from_host(lab: Lab, host: str, method: str, path: str, body: Any,
              headers: dict[str, str]) -> tuple[int, Any]:
    """One HTTP request made by `host` (curl) to the controller: (status, decoded JSON)."""
    assert lab.controller is not None
    data = b"" if body is None else json.dumps(body).encode()
    file = lab.artifacts / f"forged-{time.monotonic_ns()}.json"
    file.write_bytes(data)
    args = ["curl", "-s", "-m", "5", "-w", "\\n%{http_code}", "-X", method]
    for name, value in headers.items():
        args += ["-H", f"{name}: {value}"]
    if data:
        args += ["--data-binary", f"@{file}"]
    args.append(f"http://{lab.mgmt[host]}:{lab.controller.rest_port}{path}")
    out = lab.host_cmd(host, shlex.join(args)).strip().splitlines()
    assert out and out[-1].isdigit(), f"curl in {host} printed {out!r}"
    return int(out[-1]), json.loads("\n".join(out[:-1]) or "null")


def signed(signer: Signer, method: str, path: str, body: Any) -> dict[str, str]:
    """The headers `signer` would send for this request (made in the root namespace)."""
    data = b"" if body is None else json.dumps(body).encode()
    return {"Content-Type": "application/json", **signer.headers(method, path, data)}


def picture(lab: Lab) -> tuple[dict[str, Any], dict[str, Any]]:
    """What a forged request could change: who gets new flows at each ingress, and each
    instance's owner, state and service."""
    decided = {f"{row['service']}@{row['ingress']}":
               sorted(c["dbid"] for c in row["candidates"] if c["share"] > 0)
               for row in lab.rest("GET", "/decisions")[1]}
    insts = {i["dbid"]: (i["dma"], i["state"], i["service"])
             for i in lab.rest("GET", "/instances")[1]}
    return decided, insts


@pytest.mark.parametrize("fig2", [{"edges": False}], indirect=True)
def test_forged_reports_and_registrations_are_refused_and_change_nothing(fig2: Lab) -> None:
    """From a client host: an unsigned or mis-signed `active: false` report for a real
    instance, an unsigned registration, and a validly signed registration or report outside
    the signer's grant are refused (401/403, JSON naming the problem); the decisions and the
    instances stay as they were, and the real D-MAs' signed reports go on being accepted."""
    ctl = fig2.controller
    assert ctl is not None and ctl.creds is not None
    creds: CredentialSet = ctl.creds
    for agent, prefixes in GRANTS.items():
        creds.key_file(agent, prefixes)
    for host in ("e2", "e3"):
        fig2.start_edge(host)
    wait_shares(fig2, "svc1", R1, {"10.0.0.21", "10.0.0.31"})
    fig2.add_mgmt_link("c1", 9)
    before = picture(fig2)
    assert before[1]["10.0.0.21"] == ("dma-e2", "active", "svc1")
    reported = fig2.rest("GET", "/instances/10.0.0.21")[1]["metrics_at"]

    forger = Signer("dma-e2", bytes(32))  # the right name, not its key
    rogue = Signer.from_file(creds.key_file("rogue"))
    metrics, instances = f"{API}/metrics", f"{API}/instances"
    c1_reg = {"dsid": SVC1, "dbid": "10.0.0.1", "dma": "dma-e2"}
    rogue_reg = {"dsid": SVC1, "dbid": "10.0.0.31", "dma": "rogue"}
    json_only = {"Content-Type": "application/json"}
    cases = [
        ("POST", metrics, REPORT_DOWN, json_only, 401, "X-Dyncast-Agent"),
        ("POST", metrics, REPORT_DOWN, signed(forger, "POST", metrics, REPORT_DOWN), 401,
         "X-Dyncast-Signature"),
        ("POST", instances, c1_reg, json_only, 401, "X-Dyncast-Agent"),
        ("POST", instances, c1_reg, signed(forger, "POST", instances, c1_reg), 401,
         "X-Dyncast-Signature"),
        ("POST", instances, rogue_reg, signed(rogue, "POST", instances, rogue_reg), 403,
         "dbid"),
        ("POST", metrics, REPORT_DOWN, signed(rogue, "POST", metrics, REPORT_DOWN), 403,
         "dbid"),
        # unsigned, a withdrawal is an operator's: it needs an admin token
        ("DELETE", f"{instances}/10.0.0.21", None, {}, 401, "Authorization"),
        ("POST", f"{instances}/10.0.0.21/drain", {}, json_only, 401, "Authorization"),
        ("DELETE", f"{API}/services/svc1", None, {}, 401, "Authorization"),
        ("POST", f"{API}/services", {"name": "evil", "dsid": "10.0.100.9"},
         {"Content-Type": "text/plain", "Authorization": f"Bearer {creds.admin_token}"}, 415,
         "Content-Type"),
    ]
    unknown = {**REPORT_DOWN, "dbid": "10.0.0.99"}  # inside rogue's grant, not registered
    replay = signed(rogue, "POST", metrics, unknown)
    for method, path, body, headers, status, field in cases:
        got, reply = from_host(fig2, "c1", method, path, body, headers)
        assert (got, reply and reply.get("field")) == (status, field), (method, path, reply)
    # a captured request replayed: the first use is judged (404: no such instance), the copy
    # is refused before that
    assert from_host(fig2, "c1", "POST", metrics, unknown, replay)[0] == 404
    got, reply = from_host(fig2, "c1", "POST", metrics, unknown, replay)
    assert (got, reply["field"]) == (401, "X-Dyncast-Seq"), reply
    assert picture(fig2) == before
    wait_until(lambda: fig2.rest("GET", "/instances/10.0.0.21")[1]["metrics_at"] > reported,
               10, "a new signed report from the real D-MA on e2")
    time.sleep(2.0)  # a forged `active: false` that got through would show by now
    assert picture(fig2) == before
    assert set(shares(fig2, "svc1", R2)) <= {"10.0.0.21", "10.0.0.31"}
    served = client(fig2, "c1", SVC1, requests=4)["served"]
    assert served and set(served) <= {"svc1@e2", "svc1@e3"}, served
