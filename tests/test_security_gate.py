"""The shell's gate (apps/security.py) in front of a real Api: keys and tokens made by
`dyncastctl keys`, requests signed by the clients' signer, every refusal a JSON 4xx that
changes nothing, and the tables re-read when their files change."""

from __future__ import annotations

import io
import json
import logging
import os
import time
from pathlib import Path
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from agents import keys
from agents.signing import Signer, read_token
from apps import security
from apps.logs import RejectLog
from apps.security import Gate, Guard, install
from controller.api import Api
from controller.auth.settings import SecuritySettings
from controller.config import ControllerConfig
from controller.core import Core
from controller.model import service_from_dict

SVC = {"name": "svc1", "dsid": "10.0.100.1", "protocol": "tcp", "port": 8000}


class Lab:
    """A gate in front of an Api, with an admin token, a read token and one agent."""

    def __init__(self, tmp: Path, open_reads: bool = False) -> None:
        self.tmp = tmp
        keys.add_agent(tmp / "agents.toml", tmp / "dma-e2.key", "dma-e2",
                       ["10.0.100.0/24", "10.0.0.0/24"], max_instances=2)
        keys.add_token(tmp / "tokens.toml", tmp / "admin.token", "ops", "admin")
        keys.add_token(tmp / "tokens.toml", tmp / "read.token", "viewer", "read")
        settings = SecuritySettings(agents_file=str(tmp / "agents.toml"),
                                    tokens_file=str(tmp / "tokens.toml"),
                                    open_reads=open_reads)
        self.core = Core(ControllerConfig(security=settings))
        self.core.put_service(service_from_dict(SVC), create=True, now=time.time())
        self.api = Api(self.core)
        self.gate = Gate(self)  # the gate finds its guard on the object it wraps
        self.guard: Guard = install(self, self.core.config, lambda: self.core.catalogue.instances)
        self.admin = read_token(tmp / "admin.token")
        self.reader = read_token(tmp / "read.token")
        self.signer = Signer.from_file(tmp / "dma-e2.key")
        self.served = 0

    def __call__(self, environ: dict[str, Any], start_response: Any) -> list[bytes]:
        """The wrapped application: the real API."""
        self.served += 1
        body = environ["wsgi.input"].read(int(environ.get("CONTENT_LENGTH") or 0))
        reply = self.api.handle(environ["REQUEST_METHOD"], environ["PATH_INFO"], body,
                                time.time())
        start_response(f"{reply.status} X", [("Content-Type", "application/json")])
        return [json.dumps(reply.body).encode()]

    def call(self, method: str, path: str, body: Any = None, token: str | None = None,
             signer: Signer | None = None, content_type: str = "application/json",
             extra: dict[str, str] | None = None) -> tuple[int, Any]:
        """One request through the gate: (status, decoded JSON)."""
        raw = b"" if body is None else json.dumps(body).encode()
        hdrs = dict(extra or {})
        if token is not None:
            hdrs["Authorization"] = f"Bearer {token}"
        if signer is not None:
            hdrs.update(signer.headers(method, path, raw))
        environ: dict[str, Any] = {"REQUEST_METHOD": method, "PATH_INFO": path,
                                   "wsgi.input": io.BytesIO(raw),
                                   "CONTENT_LENGTH": str(len(raw)) if raw else ""}
        if raw:
            environ["CONTENT_TYPE"] = content_type
        for name, value in hdrs.items():
            environ["HTTP_" + name.upper().replace("-", "_")] = value
        status: list[str] = []
        out = b"".join(self.gate(environ, lambda s, h: status.append(s)))
        return int(status[0].split()[0]), json.loads(out)


@pytest.fixture
def lab(tmp_path: Path) -> Lab:
    return Lab(tmp_path)


REG = {"dsid": "10.0.100.1", "dbid": "10.0.0.21", "dma": "dma-e2"}
REPORT = {"dbid": "10.0.0.21", "cpu": 0.1, "sessions": 0, "queue": 0, "capacity": 4}


def test_signed_agent_calls_and_admin_calls_go_through(lab: Lab) -> None:
    """The D-MA's signed registration, report and withdrawal work; so do admin writes."""
    assert lab.call("POST", "/dyncast/v1/instances", REG, signer=lab.signer)[0] == 201
    status, body = lab.call("POST", "/dyncast/v1/metrics", REPORT, signer=lab.signer)
    assert (status, body["accepted"]) == (200, 1)
    assert lab.call("POST", "/dyncast/v1/instances/10.0.0.21/drain", {}, token=lab.admin)[0] \
        == 200
    assert lab.call("DELETE", "/dyncast/v1/instances/10.0.0.21", signer=lab.signer)[0] == 200
    assert lab.call("GET", "/dyncast/v1/instances", token=lab.reader) == (200, [])


def test_an_operator_withdraws_an_instance_with_an_admin_token(lab: Lab) -> None:
    """An instance whose agent was revoked (or lost its key) can be withdrawn by an operator:
    DELETE with an admin token, no signature (it answered 401 "X-Dyncast-Agent: missing",
    and only deleting its whole service was left)."""
    assert lab.call("POST", "/dyncast/v1/instances", REG, signer=lab.signer)[0] == 201
    assert lab.call("DELETE", "/dyncast/v1/instances/10.0.0.21", token=lab.admin)[0] == 200
    assert lab.call("GET", "/dyncast/v1/instances", token=lab.reader) == (200, [])


@pytest.mark.parametrize("dbid", ["0.0.0.0", "255.255.255.255", "224.0.0.1", "127.0.0.1"])
def test_a_reserved_address_gets_the_apis_400_not_a_403(lab: Lab, dbid: str) -> None:
    """A reserved address can be no D-BID: the API's 400 says why (it got 403 "outside the
    agent's prefixes", which sent the operator to the agents table)."""
    status, body = lab.call("POST", "/dyncast/v1/instances", {**REG, "dbid": dbid},
                            signer=lab.signer)
    assert (status, body["field"]) == (400, "dbid") and "reserved" in body["error"], body
    assert lab.call("GET", "/dyncast/v1/instances", token=lab.reader) == (200, [])


def test_forged_calls_change_nothing(lab: Lab) -> None:
    """Unsigned, mis-signed or foreign calls get a JSON 401/403 naming the problem, never
    reach the API, and leave the instances as they were."""
    lab.call("POST", "/dyncast/v1/instances", REG, signer=lab.signer)
    before = lab.call("GET", "/dyncast/v1/instances", token=lab.admin)[1]
    served = lab.served
    forger = Signer("dma-e2", bytes(32))
    for method, path, body, kw, status, field in [
        ("POST", "/dyncast/v1/metrics", {"dbid": "10.0.0.21", "active": False}, {}, 401,
         "X-Dyncast-Agent"),
        ("POST", "/dyncast/v1/metrics", {"dbid": "10.0.0.21", "active": False},
         {"signer": forger}, 401, "X-Dyncast-Signature"),
        ("POST", "/dyncast/v1/metrics", {"dbid": "10.0.0.21", "active": False},
         {"token": lab.admin}, 401, "X-Dyncast-Agent"),
        ("DELETE", "/dyncast/v1/instances/10.0.0.21", None, {}, 401, "Authorization"),
        ("DELETE", "/dyncast/v1/instances/10.0.0.21", None, {"token": lab.reader}, 403,
         "Authorization"),
        ("DELETE", "/dyncast/v1/instances/10.0.0.21", None, {"signer": forger}, 401,
         "X-Dyncast-Signature"),
        ("POST", "/dyncast/v1/instances", {**REG, "dbid": "10.0.1.5"}, {"signer": lab.signer},
         403, "dbid"),
        ("DELETE", "/dyncast/v1/services/svc1", None, {"token": lab.reader}, 403,
         "Authorization"),
        ("POST", "/dyncast/v1/instances/10.0.0.21/drain", {}, {}, 401, "Authorization"),
        ("POST", "/dyncast/v1/services", SVC, {"token": lab.admin,
                                                "content_type": "text/plain"}, 415,
         "Content-Type"),
    ]:
        got, reply = lab.call(method, path, body, **kw)
        assert (got, reply["field"]) == (status, field), (method, path, kw, reply)
        assert field in reply["error"]
    assert lab.served == served
    assert lab.call("GET", "/dyncast/v1/instances", token=lab.admin)[1] == before


def test_a_captured_request_replayed_is_refused(lab: Lab) -> None:
    """The exact bytes and headers of a signed report, sent again, get 401 replayed."""
    lab.call("POST", "/dyncast/v1/instances", REG, signer=lab.signer)
    body = REPORT
    captured = lab.signer.headers("POST", "/dyncast/v1/metrics", json.dumps(body).encode())
    assert lab.call("POST", "/dyncast/v1/metrics", body, extra=captured)[0] == 200
    status, reply = lab.call("POST", "/dyncast/v1/metrics", body, extra=captured)
    assert (status, reply["field"]) == (401, "X-Dyncast-Seq")


def test_the_agents_quota_is_a_429(lab: Lab) -> None:
    """max_instances = 2 for this agent: the third registration is refused with 429."""
    for i in (21, 22):
        assert lab.call("POST", "/dyncast/v1/instances", {**REG, "dbid": f"10.0.0.{i}"},
                        signer=lab.signer)[0] == 201
    status, reply = lab.call("POST", "/dyncast/v1/instances", {**REG, "dbid": "10.0.0.23"},
                             signer=lab.signer)
    assert (status, reply["field"]) == (429, "security.max_instances_per_agent")
    assert len(lab.core.catalogue.instances) == 2


def test_an_agent_added_later_is_known_without_a_restart(lab: Lab) -> None:
    """`dyncastctl keys agent` rewrites the table; the next call of that agent works, and
    the old agents keep working."""
    keys.add_agent(lab.tmp / "agents.toml", lab.tmp / "dma-e3.key", "dma-e3", ["10.0.0.31/32",
                                                                                "10.0.100.1/32"])
    e3 = Signer.from_file(lab.tmp / "dma-e3.key")
    reg = {"dsid": "10.0.100.1", "dbid": "10.0.0.31", "dma": "dma-e3"}
    assert lab.call("POST", "/dyncast/v1/instances", reg, signer=e3)[0] == 201
    assert lab.call("POST", "/dyncast/v1/instances", REG, signer=lab.signer)[0] == 201
    status, reply = lab.call("POST", "/dyncast/v1/metrics", {"dbid": "10.0.0.21"}, signer=e3)
    assert (status, reply["field"]) == (403, "dbid")


def test_a_broken_table_is_read_and_logged_once_not_per_unknown_caller(
        lab: Lab, caplog: pytest.LogCaptureFixture, monkeypatch: pytest.MonkeyPatch) -> None:
    """While a table file does not parse, requests naming unknown tokens (anyone can send
    them) neither re-read it nor log its error each: they did, 200 ERROR lines for 200
    requests. The tables in use keep working, the fixed file is taken at the next unknown
    caller, and a file rewritten bad then good within one mtime tick at the next check."""
    reads: list[str] = []
    real = security.read_table
    monkeypatch.setattr(security, "read_table", lambda path: reads.append(path) or real(path))
    tokens = lab.tmp / "tokens.toml"
    good = tokens.read_bytes()
    tokens.write_bytes(good + b"garbage [[[\n")
    for k in range(50):
        status, reply = lab.call("GET", "/dyncast/v1/services", token=f"bogus-{k}")
        assert (status, reply["field"]) == (401, "Authorization")
    assert lab.call("GET", "/dyncast/v1/services", token=lab.reader)[0] == 200
    assert len(reads) == 1, reads
    guard = lab.guard
    guard.failed_at = {key: at - security.RELOAD_CHECK_S for key, at in guard.failed_at.items()}
    assert lab.call("GET", "/dyncast/v1/services", token="bogus")[0] == 401
    assert len(reads) == 2  # read again after RELOAD_CHECK_S, the same error not logged again
    assert sum("previous table stays" in r.getMessage() for r in caplog.records) == 1
    keys.add_token(lab.tmp / "ok.toml", lab.tmp / "new.token", "later", "read")
    tokens.write_bytes(good + (lab.tmp / "ok.toml").read_bytes())  # fixed, and a token added
    assert lab.call("GET", "/dyncast/v1/services", token=read_token(lab.tmp / "new.token"))[0] \
        == 200
    stat = os.stat(tokens)
    tokens.write_bytes(good + b"garbage [[[\n")
    os.utime(tokens, ns=(stat.st_atime_ns, stat.st_mtime_ns + 10**7))
    assert lab.call("GET", "/dyncast/v1/services", token="bogus")[0] == 401
    tokens.write_bytes(good)  # good again, within the same mtime
    os.utime(tokens, ns=(stat.st_atime_ns, stat.st_mtime_ns + 10**7))
    assert lab.call("GET", "/dyncast/v1/services", token="bogus")[0] == 401
    guard.failed_at = {key: at - security.RELOAD_CHECK_S for key, at in guard.failed_at.items()}
    assert lab.call("GET", "/dyncast/v1/services", token="bogus")[0] == 401  # read again
    assert lab.call("GET", "/dyncast/v1/services", token=read_token(lab.tmp / "new.token"))[0] \
        == 401  # the good file without the added token is the one in use now


def test_refusals_at_the_gate_are_logged_within_the_rejected_input_budget(
        lab: Lab, caplog: pytest.LogCaptureFixture) -> None:
    """Anyone can send requests the gate refuses; each was a log line, without the
    `rejected_per_minute` budget the API's refusals keep (docs/observability.md: "rejected
    input cannot fill the disk"): 1,000 unauthenticated requests, 1,000 lines."""
    lab.guard.rejects = RejectLog(5)
    caplog.set_level(logging.INFO)
    for k in range(1000):
        assert lab.call("GET", "/dyncast/v1/services", token=f"bogus-{k}")[0] == 401
    lines = [r for r in caplog.records if r.name.startswith("dyncast.")]
    assert len(lines) <= 5 + 2, [r.getMessage() for r in lines[:10]]  # and the tables' reads
    written = [r for r in lines if getattr(r, "fields", {}).get("event") == "rejected_input"]
    assert [r.fields["field"] for r in written] == ["Authorization"] * 5  # type: ignore[attr-defined]
    assert lab.guard.rejects.suppressed == {"Authorization": 995}
    assert lab.guard.rejects.counts == {401: 1000}  # every one counted (the metric's source)


def test_open_reads(tmp_path: Path) -> None:
    """open_reads: a GET needs no token; a write still does."""
    lab = Lab(tmp_path, open_reads=True)
    assert lab.call("GET", "/dyncast/v1/services")[0] == 200
    assert lab.call("DELETE", "/dyncast/v1/services/svc1")[0] == 401


def test_an_oversized_body_is_refused_before_it_is_read(lab: Lab) -> None:
    """A Content-Length past [limits] max_body_bytes is a 413; nothing is read."""
    environ = {"REQUEST_METHOD": "POST", "PATH_INFO": "/dyncast/v1/services",
               "CONTENT_TYPE": "application/json", "CONTENT_LENGTH": str(1 << 30),
               "wsgi.input": io.BytesIO(b"")}
    status: list[str] = []
    out = json.loads(b"".join(lab.gate(environ, lambda s, h: status.append(s))))
    assert status[0].startswith("413") and out["field"] == "body"


def test_before_the_app_installs_its_guard_everything_is_503() -> None:
    """The server may answer before the app has started: no request passes unguarded."""
    gate = Gate(object())
    status: list[str] = []
    gate({"REQUEST_METHOD": "GET", "PATH_INFO": "/dyncast/v1/stats"},
         lambda s, h: status.append(s))
    assert status[0].startswith("503")


def test_key_files_are_private(lab: Lab) -> None:
    """Keys, tokens and tables are written mode 600."""
    for name in ("agents.toml", "tokens.toml", "dma-e2.key", "admin.token"):
        assert (lab.tmp / name).stat().st_mode & 0o777 == 0o600, name


# --- hypothesis: whatever arrives without a valid credential changes nothing --------------

HEADER_NAMES = ["Authorization", "X-Dyncast-Agent", "X-Dyncast-Timestamp", "X-Dyncast-Seq",
                "X-Dyncast-Signature", "Content-Type"]


@settings(max_examples=150, deadline=None,
          suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(method=st.sampled_from(["GET", "POST", "PUT", "DELETE", "HEAD", "PATCH"]),
       path=st.sampled_from(["/dyncast/v1/instances", "/dyncast/v1/metrics",
                             "/dyncast/v1/services/svc1", "/dyncast/v1/instances/10.0.0.21",
                             "/dyncast/v1/instances/10.0.0.21/drain", "/metrics",
                             "/dyncast/ui/x", "/dyncast/v1/config/reload"]),
       headers=st.dictionaries(st.sampled_from(HEADER_NAMES),
                               st.text(st.characters(min_codepoint=32, max_codepoint=126),
                                       max_size=80), max_size=6),
       body=st.one_of(st.none(), st.just(REG), st.just(REPORT),
                      st.dictionaries(st.text(max_size=5), st.integers(), max_size=3)))
def test_random_credentials_never_pass_or_fail_with_a_5xx(
        lab: Lab, method: str, path: str, headers: dict[str, str], body: object) -> None:
    """Random headers (bearer tokens, agent headers, content types) and bodies: no 5xx, and
    no change to the services or instances."""
    services = dict(lab.core.catalogue.services)
    status, reply = lab.call(method, path, body, extra=headers,
                             content_type=headers.get("Content-Type", "application/json"))
    assert status < 500, reply
    assert lab.core.catalogue.services == services
    assert lab.core.catalogue.instances == {}


RYU_GATE_CHECK = """
from apps import framework, restserver
from apps.security import Gate
from ryu.app import wsgi as ryu_wsgi
assert framework.FRAMEWORK == "ryu", framework.FRAMEWORK
served = []
restserver.configured = lambda app, host, port: served.append((app, host, port)) or app
context = ryu_wsgi.WSGIApplication()
ryu_wsgi.start_service(type("Manager", (), {"contexts": {"wsgi": context}})())
assert len(served) == 1, served
assert isinstance(served[0][0], Gate) and served[0][0].inner is context, served
print("gated")
"""


def test_ryus_server_is_handed_the_gate() -> None:
    """Under Ryu, the manager's start_service serves the WSGI context wrapped in the Gate
    through the hardened server (os-ken's server is ours and does the same in
    apps/osken_wsgi.py). In a process of its own: this one may have loaded os-ken."""
    pytest.importorskip("ryu")
    import subprocess
    import sys

    env = {**os.environ, "DYNCAST_FRAMEWORK": "ryu"}
    done = subprocess.run([sys.executable, "-c", RYU_GATE_CHECK], env=env, capture_output=True,
                          text=True, timeout=60, check=False)
    assert done.returncode == 0 and done.stdout.strip() == "gated", done.stderr[-2000:]
