"""A signed agent request accepted by one cluster member is refused when replayed to another:
the gate (apps/security.py) hands the accepted signature to the request's change
(`environ[SIGNED_KEY]`, `Change.signed`), and a member applying the change witnesses its
sequence (apps/changefeed.py, `Verifier.witness`). Two gates with the same key files stand for
two members; the app's two ends are checked on the app itself."""

from __future__ import annotations

import io
import json
import time
from pathlib import Path
from typing import Any

from apps import fastpath
from apps.fastpath import SIGNED_KEY
from apps.security import Gate, install
from controller.api import Api
from controller.auth.signing import SEQ_HEADER
from controller.auth.verifier import Signed, key_id
from controller.cluster.changes import Change
from controller.core import Core
from controller.model import service_from_dict
from tests import test_app_smoke, test_cluster_shell
from tests.test_app_smoke import DSID, INSTANCE, Shell
from tests.test_security_gate import REG, SVC, Lab

shell = test_app_smoke.shell  # the fixture: the app on each framework
member, pg_url = test_cluster_shell.member, test_cluster_shell.pg_url  # m1 on PostgreSQL
PATH = "/dyncast/v1/instances"


class Recording(Lab):
    """A member's gate in front of its API that records the signature each request it
    serves was accepted under."""

    def __init__(self, tmp: Path) -> None:
        super().__init__(tmp)
        self.signed: list[Signed | None] = []

    def __call__(self, environ: dict[str, Any], start_response: Any) -> list[bytes]:
        self.signed.append(environ.get(SIGNED_KEY))
        return super().__call__(environ, start_response)


class OtherMember(Recording):
    """Another member: its own core, API and gate, the same key and token files."""

    def __init__(self, first: Lab) -> None:  # (not Lab's: the files exist)
        self.tmp, self.admin, self.reader = first.tmp, first.admin, first.reader
        self.signer, self.served, self.signed = first.signer, 0, []
        self.core = Core(first.core.config)
        self.core.put_service(service_from_dict(SVC), create=True, now=time.time())
        self.api = Api(self.core)
        self.gate = Gate(self)
        self.guard = install(self, self.core.config, lambda: self.core.catalogue.instances)


def test_a_request_accepted_by_one_member_is_refused_when_replayed_to_another(
        tmp_path: Path) -> None:
    """m1 accepts a signed registration (captured on the way); m2 applies m1's change, which
    carries the signature's sequence: the captured request sent to m2 is 401 naming the
    sequence and registers nothing there. Before m2 applied the change it would have been
    accepted there (the check fails without the witness). A token call carries none."""
    m1 = Recording(tmp_path)
    m2 = OtherMember(m1)
    capture = m1.signer.headers("POST", PATH, json.dumps(REG).encode())
    assert m1.call("POST", PATH, REG, extra=capture)[0] == 201
    (signed,) = m1.signed
    assert signed == Signed("dma-e2", int(capture[SEQ_HEADER]),
                            key_id(m1.guard.verifier.agents["dma-e2"].key))
    m2.guard.verifier.witness(signed.agent, signed.seq, signed.key)  # m2 applies the change
    status, body = m2.call("POST", PATH, REG, extra=capture)
    assert (status, body["field"]) == (401, SEQ_HEADER) and "replayed" in body["error"]
    assert m2.served == 0 and not m2.core.catalogue.instances
    assert m2.call("POST", PATH, REG, signer=m2.signer)[0] == 201  # the agent's next call
    assert m1.call("GET", PATH, token=m1.admin)[0] == 200 and m1.signed[-1] is None


def test_the_app_shares_the_signature_and_witnesses_the_others(member: str,
                                                               shell: Shell) -> None:
    """The app (m1) queues an accepted agent call's change with its signature, and a change
    from m2 that carries one raises m1's sequence for that agent."""
    app = shell.app
    report = {"dbid": INSTANCE[0], "cpu": 0.1, "sessions": 1, "queue": 0, "capacity": 4}
    shell.rest("POST", "instances", {"dsid": DSID, "dbid": INSTANCE[0], "dma": "smoke"})
    app._outbox.clear()
    signed = Signed("dma-e2", 77, "00ff00ff00ff00ff")
    out: list[str] = []
    environ = {"REQUEST_METHOD": "POST", "PATH_INFO": "/dyncast/v1/metrics",
               SIGNED_KEY: signed, "wsgi.input": io.BytesIO()}
    fastpath.serve(app, environ, json.dumps(report).encode(), lambda s, h: out.append(s))
    assert out and out[0].startswith("200")
    assert [c.signed for c in app._outbox] == [signed]
    app.apply_change(Change("m2", "POST", "/dyncast/v1/metrics", json.dumps(report),
                            time.time(), Signed("dma-e3", 91, None)))
    assert app.guard.verifier.last_seq["dma-e3"] == 91
    assert app.core.counters["errors"] == 0
