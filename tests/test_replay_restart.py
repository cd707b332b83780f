"""A signed agent request captured before a controller restart is refused after it: the gate
(apps/security.py) hands each agent's last sequence to the store writes, the store (SQLite,
as the controller uses it) keeps it, and the restarted gate loads it (docs/security.md)."""

from __future__ import annotations

import json
import time
from pathlib import Path
from typing import Any

from apps.security import Gate, install, store_writes
from apps.store import Snapshot, Store
from controller.api import Api
from controller.auth.signing import SEQ_HEADER, TIMESTAMP_HEADER
from controller.auth.verifier import key_id
from controller.core import Core
from tests.test_security_gate import REG, Lab

PATH = "/dyncast/v1/instances"


class Restarted(Lab):
    """The same keys and tokens as `before`, in a new core and gate built from the store's
    snapshot, as the app builds them at start."""

    def __init__(self, before: Lab, snap: Snapshot) -> None:
        self.tmp, self.admin, self.reader = before.tmp, before.admin, before.reader
        self.signer, self.served = before.signer, 0
        self.core = Core(before.core.config)
        self.core.restore(snap.services, snap.instances, snap.bindings, time.time())
        self.api = Api(self.core)
        self.gate = Gate(self)
        self.guard = install(self, self.core.config, lambda: self.core.catalogue.instances,
                             snap.agent_seqs, store_writes(self.core.writes),
                             keys=snap.agent_keys)


def _flush(lab: Lab, store: Store) -> None:
    store.apply(lab.core.drain_writes())


def _captured(lab: Lab, body: Any) -> dict[str, str]:
    """The signature headers of a registration, as an eavesdropper would copy them."""
    return lab.signer.headers("POST", PATH, json.dumps(body).encode())


def test_a_request_captured_before_a_restart_is_refused_after_it(tmp_path: Path) -> None:
    """Register (captured), withdraw; restart; the captured registration sent again is 401
    naming the sequence and registers nothing; the agent's next real call goes through."""
    store = Store(f"sqlite:///{tmp_path / 'dyncast.db'}")
    try:
        lab = Lab(tmp_path)
        lab.guard = install(lab, lab.core.config, lambda: lab.core.catalogue.instances,
                            store.load().agent_seqs, store_writes(lab.core.writes))
        capture = _captured(lab, REG)
        assert lab.call("POST", PATH, REG, extra=capture)[0] == 201
        assert lab.call("DELETE", f"{PATH}/10.0.0.21", signer=lab.signer)[0] == 200
        _flush(lab, store)
        after = Restarted(lab, store.load())
        status, body = after.call("POST", PATH, REG, extra=capture)
        assert (status, body["field"]) == (401, SEQ_HEADER), body
        assert "replayed" in body["error"]
        assert after.call("GET", PATH, token=after.admin) == (200, [])
        newer = _captured(after, REG)
        assert after.call("POST", PATH, REG, extra=newer)[0] == 201
        _flush(after, store)
        again = Restarted(after, store.load())  # the newest sequence is the one kept
        assert again.call("POST", PATH, REG, extra=newer)[0] == 401
        assert again.call("POST", PATH, REG, signer=again.signer)[0] == 200  # registered
    finally:
        store.close()


def test_a_sequence_used_by_a_refused_call_is_stored_too(tmp_path: Path) -> None:
    """A well-signed call refused by authorisation (403) used up its sequence: it is stored,
    so it cannot be replayed after a restart either."""
    store = Store(f"sqlite:///{tmp_path / 'dyncast.db'}")
    try:
        lab = Lab(tmp_path)
        lab.guard = install(lab, lab.core.config, lambda: lab.core.catalogue.instances,
                            {}, store_writes(lab.core.writes))
        foreign = {**REG, "dsid": "10.0.200.1"}
        capture = _captured(lab, foreign)
        assert lab.call("POST", PATH, foreign, extra=capture)[0] == 403
        _flush(lab, store)
        seq = int(capture[SEQ_HEADER])
        assert store.load().agent_seqs == {"dma-e2": seq}
        assert store.load().agent_keys == {"dma-e2": key_id(lab.signer.key)}  # (re-keying)
        status, body = Restarted(lab, store.load()).call("POST", PATH, foreign, extra=capture)
        assert (status, body["field"]) == (401, SEQ_HEADER)
    finally:
        store.close()


def test_a_call_whose_sequence_was_never_stored_is_refused_after_a_restart(
        tmp_path: Path) -> None:
    """An unclean stop loses the sequences not flushed yet: a call accepted just before it
    and replayed after the restart passes the sequence check, and is refused because it was
    signed before the restarted process started (401 naming the timestamp)."""
    store = Store(f"sqlite:///{tmp_path / 'dyncast.db'}")
    try:
        lab = Lab(tmp_path)
        lab.guard = install(lab, lab.core.config, lambda: lab.core.catalogue.instances,
                            {}, store_writes(lab.core.writes))
        _flush(lab, store)  # the service, as stored long before
        capture = _captured(lab, REG)
        assert lab.call("POST", PATH, REG, extra=capture)[0] == 201
        assert store.load().agent_seqs == {}  # not flushed: the process was killed
        time.sleep(0.01)  # the restart takes time
        after = Restarted(lab, store.load())
        status, body = after.call("POST", PATH, REG, extra=capture)
        assert (status, body["field"]) == (401, TIMESTAMP_HEADER), body
        assert "before this controller started" in body["error"]
        assert after.call("GET", PATH, token=after.admin) == (200, [])
        assert after.call("POST", PATH, REG, signer=after.signer)[0] == 201
    finally:
        store.close()
