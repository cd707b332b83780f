"""The pure auth core: signatures, clock skew, replays, authorisation by prefix and owner,
per-agent quotas, token roles and JSON-only bodies (controller/auth/)."""

from __future__ import annotations

import dataclasses
import hashlib
import json
from typing import Any

import pytest

from controller.auth.credentials import (
    Agent,
    Token,
    agents_from_dict,
    find_token,
    token_digest,
    tokens_from_dict,
)
from controller.auth.errors import AuthError
from controller.auth.policy import Request, admit, classify
from controller.auth.settings import SecuritySettings, security_from_dict
from controller.auth.signing import SIGNATURE_HEADER, Stamp, headers
from controller.auth.verifier import Verifier, key_id
from controller.config import config_from_dict
from controller.errors import ValidationError
from controller.model import Instance

NOW = 1_800_000_000.0
KEY = bytes(range(32))
NEW_KEY = bytes(range(1, 33))
AGENT = Agent("dma-e2", KEY, agents_from_dict({"agent": [{"id": "x", "key": "0" * 64,
                                                          "prefixes": ["10.0.0.0/24",
                                                                       "10.0.100.0/24"]}]},
                                              2)["x"].prefixes, 2)
ADMIN, READER = "admin-secret", "read-secret"
TOKENS = (Token("ops", "admin", token_digest(ADMIN)), Token("viewer", "read",
                                                           token_digest(READER)))
SETTINGS = SecuritySettings()
PATH = "/dyncast/v1/"


def verifier() -> Verifier:
    return Verifier({AGENT.id: AGENT}, TOKENS, 30.0)


def signed(method: str, path: str, body: Any, seq: int = 1, at: float = NOW,
           key: bytes = KEY, agent: str = AGENT.id) -> Request:
    """A request signed as `agent` with `key`."""
    raw = b"" if body is None else json.dumps(body).encode()
    hdrs = headers(key, Stamp.make(agent, at, seq), method, path, raw)
    return Request(method, path, raw, "application/json" if raw else "",
                   lambda name: hdrs.get(name, ""))


def with_token(method: str, path: str, token: str | None, body: bytes = b"",
               content_type: str = "application/json") -> Request:
    hdrs = {} if token is None else {"Authorization": f"Bearer {token}"}
    return Request(method, path, body, content_type if body else "",
                   lambda name: hdrs.get(name, ""))


def refusal(req: Request, v: Verifier | None = None, instances: dict[str, Instance] | None = None,
            settings: SecuritySettings = SETTINGS) -> AuthError:
    with pytest.raises(AuthError) as info:
        admit(req, settings, v or verifier(), instances or {}, NOW)
    return info.value


REG = {"dsid": "10.0.100.1", "dbid": "10.0.0.21", "dma": "dma-e2"}


def test_a_good_signature_is_accepted() -> None:
    """A registration signed with the agent's key, now, is admitted as that agent."""
    assert admit(signed("POST", PATH + "instances", REG), SETTINGS, verifier(), {},
                 NOW) == "agent dma-e2"


@pytest.mark.parametrize("change", ["body", "path", "dbid", "key", "agent", "signature"])
def test_a_signature_over_anything_else_is_refused(change: str) -> None:
    """Changing the body, path, key or agent after signing gives 401."""
    req = signed("POST", PATH + "instances", REG)
    if change == "body":
        req = Request(req.method, req.path, req.body.replace(b"21", b"22"), req.content_type,
                      req.header)
    elif change == "path":
        req = Request(req.method, PATH + "metrics", req.body, req.content_type, req.header)
    elif change == "dbid":
        req = signed("DELETE", PATH + "instances/10.0.0.21", None)
        req = Request(req.method, PATH + "instances/10.0.0.22", b"", "", req.header)
    elif change == "key":
        req = signed("POST", PATH + "instances", REG, key=bytes(32))
    elif change == "agent":
        req = signed("POST", PATH + "instances", REG, agent="dma-e9")
    else:
        original = req.header
        req = Request(req.method, req.path, req.body, req.content_type,
                      lambda n: "0" * 64 if n == SIGNATURE_HEADER else original(n))
    err = refusal(req)
    assert err.status == 401 and err.field.startswith("X-Dyncast-")


def test_an_unsigned_agent_call_is_refused_naming_the_header() -> None:
    """No signature headers: 401 naming the first missing one; a token does not do."""
    err = refusal(with_token("POST", PATH + "metrics", ADMIN, b'{"dbid": "10.0.0.21"}'))
    assert (err.status, err.field) == (401, "X-Dyncast-Agent")
    assert "agent signature" in err.message


@pytest.mark.parametrize("skew", [-31.0, 31.0, 1e6])
def test_a_stale_timestamp_is_refused(skew: float) -> None:
    """A timestamp further than max_skew_s from now (either way) gives 401."""
    err = refusal(signed("POST", PATH + "instances", REG, at=NOW + skew))
    assert (err.status, err.field) == (401, "X-Dyncast-Timestamp")


def test_a_timestamp_inside_the_window_is_accepted() -> None:
    """29 s of skew either way is within the default 30 s window."""
    v = verifier()
    admit(signed("POST", PATH + "instances", REG, seq=1, at=NOW - 29), SETTINGS, v, {}, NOW)
    admit(signed("POST", PATH + "instances", REG, seq=2, at=NOW + 29), SETTINGS, v, {}, NOW)


def test_a_replay_or_a_lower_sequence_is_refused() -> None:
    """The same signed request twice: the second is 401 (replayed); so is a lower sequence;
    a higher one goes through."""
    v = verifier()
    req = signed("POST", PATH + "instances", REG, seq=10)
    admit(req, SETTINGS, v, {}, NOW)
    err = refusal(req, v)
    assert (err.status, err.field) == (401, "X-Dyncast-Seq") and "replayed" in err.message
    assert refusal(signed("POST", PATH + "instances", REG, seq=9), v).status == 401
    admit(signed("POST", PATH + "instances", REG, seq=11), SETTINGS, v, {}, NOW)


def test_restored_sequences_refuse_replays_from_before_a_restart() -> None:
    """The sequences a verifier accepted (`take_risen`, once each) restored into a new one:
    the old request is refused there, a higher sequence passes; a lower stored value never
    lowers a remembered one."""
    v = verifier()
    req = signed("POST", PATH + "instances", REG, seq=10)
    admit(req, SETTINGS, v, {}, NOW)
    risen = v.take_risen()
    assert risen == {"dma-e2": 10} and v.take_risen() == {}
    fresh = verifier()
    fresh.restore(risen)
    assert refusal(req, fresh).field == "X-Dyncast-Seq"
    fresh.restore({"dma-e2": 3})
    assert refusal(signed("POST", PATH + "instances", REG, seq=9), fresh).status == 401
    admit(signed("POST", PATH + "instances", REG, seq=11), SETTINGS, fresh, {}, NOW)


def test_a_sequence_another_member_accepted_is_refused_here() -> None:
    """A cluster member that witnessed another's accepted sequence (Verifier.witness) refuses
    that request and every lower one; a higher one passes; a lower witness lowers nothing; a
    witness under another key than the agent has here is not taken."""
    v = verifier()
    req = signed("POST", PATH + "instances", REG, seq=10)
    other = verifier()
    admit(req, SETTINGS, other, {}, NOW)  # accepted by the other member
    v.witness("dma-e2", 10, other.seq_keys["dma-e2"])
    assert refusal(req, v).field == "X-Dyncast-Seq"
    assert refusal(signed("POST", PATH + "instances", REG, seq=9), v).status == 401
    v.witness("dma-e2", 3, other.seq_keys["dma-e2"])
    assert refusal(signed("POST", PATH + "instances", REG, seq=10), v).status == 401
    assert v.take_risen() == {}  # (the accepting member stores it)
    admit(signed("POST", PATH + "instances", REG, seq=11), SETTINGS, v, {}, NOW)
    fresh = verifier()
    fresh.witness("dma-e2", 50, key_id(bytes(32)))  # signed under a key it does not have
    admit(signed("POST", PATH + "instances", REG, seq=12), SETTINGS, fresh, {}, NOW)
    unknown = verifier()
    unknown.witness("dma-x", 7, None)  # an agent not (yet) in this member's table: kept
    assert unknown.last_seq["dma-x"] == 7


def test_a_refused_signature_does_not_advance_the_sequence() -> None:
    """A forged request with a huge sequence must not lock the real agent out."""
    v = verifier()
    refusal(signed("POST", PATH + "instances", REG, seq=10**18, key=bytes(32)), v)
    admit(signed("POST", PATH + "instances", REG, seq=5), SETTINGS, v, {}, NOW)


def test_a_huge_sequence_locks_out_only_the_key_it_was_signed_with() -> None:
    """An agent that sent a huge sequence (a bug, or its key stolen) is refused lower ones, as
    replays; given a new key it is heard again from any sequence, while a request signed with
    the old key stays refused. Across a restart too: the sequence is stored with its key_id,
    and one stored without (an earlier version) binds whatever key."""
    v = verifier()
    admit(signed("POST", PATH + "instances", REG, seq=2**62), SETTINGS, v, {}, NOW)
    assert refusal(signed("POST", PATH + "instances", REG, seq=5), v).field == "X-Dyncast-Seq"
    stored, kid = v.take_risen(), v.seq_keys["dma-e2"]
    assert stored == {"dma-e2": 2**62} and kid == key_id(KEY) != key_id(NEW_KEY)
    rekeyed = Verifier({AGENT.id: dataclasses.replace(AGENT, key=NEW_KEY)}, TOKENS, 30.0)
    for fresh in (v, rekeyed):  # the same process, then a restart with what was stored
        fresh.agents = {AGENT.id: dataclasses.replace(AGENT, key=NEW_KEY)}
        if fresh is rekeyed:
            fresh.restore(stored, {"dma-e2": kid})
        admit(signed("POST", PATH + "instances", REG, seq=5, key=NEW_KEY), SETTINGS, fresh, {},
              NOW)
        assert refusal(signed("POST", PATH + "instances", REG, seq=6), fresh).field == (
            "X-Dyncast-Signature")  # the old key
        assert refusal(signed("POST", PATH + "instances", REG, seq=5, key=NEW_KEY),
                       fresh).field == "X-Dyncast-Seq"  # the new key's sequence binds it
    same = verifier()
    same.restore(stored, {"dma-e2": kid})  # not re-keyed: still refused
    assert refusal(signed("POST", PATH + "instances", REG, seq=5), same).field == "X-Dyncast-Seq"
    legacy = Verifier({AGENT.id: dataclasses.replace(AGENT, key=NEW_KEY)}, TOKENS, 30.0)
    legacy.restore(stored)  # stored with no key: binds the new key as well
    assert refusal(signed("POST", PATH + "instances", REG, seq=5, key=NEW_KEY),
                   legacy).field == "X-Dyncast-Seq"


@pytest.mark.parametrize(("body", "field"), [
    ({**REG, "dsid": "10.0.200.1"}, "dsid"),
    ({**REG, "dbid": "10.0.1.21"}, "dbid"),
    ({**REG, "dma": "dma-e3"}, "dma"),
    ({"dsid": "10.0.100.1", "dbid": "10.0.0.21"}, "dma"),
])
def test_a_registration_outside_the_grant_is_forbidden(body: dict[str, Any], field: str) -> None:
    """D-SID or D-BID outside the agent's prefixes, or another dma name: 403 naming it."""
    err = refusal(signed("POST", PATH + "instances", body))
    assert (err.status, err.field) == (403, field)


def test_an_agent_cannot_touch_another_agents_instance() -> None:
    """Re-registering, reporting for or withdrawing an instance another agent owns: 403."""
    theirs = {"10.0.0.21": Instance("svc1", "10.0.0.21", dma="dma-e3")}
    for seq, req in enumerate([
            signed("POST", PATH + "instances", REG),
            signed("POST", PATH + "metrics", {"dbid": "10.0.0.21", "cpu": 0.1}),
            signed("POST", PATH + "metrics", {"reports": [{"dbid": "10.0.0.21"}]}),
            signed("DELETE", PATH + "instances/10.0.0.21", None)], 1):
        req = signed(req.method, req.path, json.loads(req.body) if req.body else None, seq=seq)
        err = refusal(req, instances=theirs)
        assert err.status == 403 and err.field.endswith("dbid"), err


def test_an_ownerless_instance_is_claimed_by_registering_it() -> None:
    """An instance stored before authentication (no dma) inside the agent's grant: its
    registration takes it over; a report before that is refused."""
    old = {"10.0.0.21": Instance("svc1", "10.0.0.21", dma="")}
    assert refusal(signed("POST", PATH + "metrics", {"dbid": "10.0.0.21"}),
                   instances=old).status == 403
    admit(signed("POST", PATH + "instances", REG), SETTINGS, verifier(), old, NOW)


def test_reports_outside_the_prefixes_are_forbidden_by_index() -> None:
    """A batch with one report for a D-BID (or D-SID) outside the grant names that report."""
    mine = {"10.0.0.21": Instance("svc1", "10.0.0.21", dma="dma-e2")}
    body = {"reports": [{"dbid": "10.0.0.21"}, {"dbid": "10.0.5.1"}]}
    err = refusal(signed("POST", PATH + "metrics", body), instances=mine)
    assert (err.status, err.field) == (403, "reports[1].dbid")
    body = {"reports": [{"dbid": "10.0.0.21", "dsid": "10.9.9.9"}]}
    assert refusal(signed("POST", PATH + "metrics", body), instances=mine).field == \
        "reports[0].dsid"
    assert admit(signed("POST", PATH + "metrics", {"dbid": "10.0.0.21"}), SETTINGS,
                 verifier(), mine, NOW) == "agent dma-e2"


def test_an_agents_instance_quota_is_a_429() -> None:
    """An agent at its quota may re-register its own instances but not add one."""
    mine = {f"10.0.0.{i}": Instance("svc1", f"10.0.0.{i}", dma="dma-e2") for i in (1, 2)}
    err = refusal(signed("POST", PATH + "instances", REG), instances=mine)
    assert (err.status, err.field) == (429, "security.max_instances_per_agent")
    again = {**REG, "dbid": "10.0.0.1"}
    admit(signed("POST", PATH + "instances", again), SETTINGS, verifier(), mine, NOW)


@pytest.mark.parametrize(("method", "path", "token", "status"), [
    ("GET", PATH + "decisions", None, 401),
    ("GET", PATH + "decisions", "wrong", 401),
    ("GET", PATH + "decisions", READER, None),
    ("GET", PATH + "decisions", ADMIN, None),
    ("HEAD", "/metrics", READER, None),
    ("POST", PATH + "services", READER, 403),
    ("POST", PATH + "services", ADMIN, None),
    ("PUT", PATH + "services/svc1", None, 401),
    ("DELETE", PATH + "services/svc1", READER, 403),
    ("POST", PATH + "instances/10.0.0.21/drain", READER, 403),
    ("POST", PATH + "instances/10.0.0.21/drain", ADMIN, None),
    ("POST", PATH + "config/reload", READER, 403),
    ("GET", "/dyncast/ui/index.html", None, None),
    ("POST", "/dyncast/ui/index.html", None, 401),
])
def test_token_roles(method: str, path: str, token: str | None, status: int | None) -> None:
    """Reads need a read or admin token; every other non-agent call needs admin; the UI's
    static files are open."""
    req = with_token(method, path, token, b"{}" if method in ("POST", "PUT") else b"")
    if status is None:
        assert admit(req, SETTINGS, verifier(), {}, NOW) != ""
    else:
        assert refusal(req).status == status


def test_open_reads_and_auth_off() -> None:
    """open_reads lets GETs through without a token, not writes; auth = false lets all
    through, but not a body that is not JSON."""
    opened = SecuritySettings(open_reads=True)
    assert admit(with_token("GET", PATH + "stats", None), opened, verifier(), {}, NOW)
    assert refusal(with_token("DELETE", PATH + "services/a", None), settings=opened).status \
        == 401
    off = SecuritySettings(auth=False)
    assert admit(with_token("DELETE", PATH + "services/a", None), off, verifier(), {},
                 NOW) == "anonymous"
    err = refusal(with_token("POST", PATH + "services", None, b"a=b",
                             "application/x-www-form-urlencoded"), settings=off)
    assert (err.status, err.field) == (415, "Content-Type")


@pytest.mark.parametrize(("coding", "refused"), [("gzip", True), ("deflate, br", True),
                                                 ("identity", False), ("", False)])
def test_a_body_in_a_content_coding_is_a_415_naming_it(coding: str, refused: bool) -> None:
    """The server decodes no content coding: a gzip body reached the JSON parser as it was
    (400 "malformed JSON: 'utf-8' codec ..."), and a plain body labelled gzip was taken."""
    hdrs = {"Authorization": f"Bearer {ADMIN}", "Content-Encoding": coding}
    req = Request("POST", PATH + "services", b"{}", "application/json",
                  lambda name: hdrs.get(name, ""))
    if not refused:
        assert admit(req, SETTINGS, verifier(), {}, NOW)
        return
    err = refusal(req)
    assert (err.status, err.field) == (415, "Content-Encoding") and coding in str(err)
    bare = Request("GET", PATH + "services", b"", "", lambda name: hdrs.get(name, ""))
    assert admit(bare, SETTINGS, verifier(), {}, NOW)  # no body: nothing coded


@pytest.mark.parametrize("content_type", ["", "text/plain", "multipart/form-data; x=y",
                                          "application/jsonp"])
def test_a_body_that_is_not_json_is_a_415(content_type: str) -> None:
    """Whatever the credentials, a body-carrying request must say application/json."""
    err = refusal(with_token("POST", PATH + "services", ADMIN, b"{}", content_type))
    assert err.status == 415
    # the message says what came: none at all is "missing", not a type the client never sent
    assert ("missing" in str(err)) == (not content_type), str(err)
    assert content_type[:20] in str(err)
    admit(with_token("POST", PATH + "services", ADMIN, b"{}", "application/json; charset=utf-8"),
          SETTINGS, verifier(), {}, NOW)


def test_classify_agent_endpoints() -> None:
    """Register, report and withdraw are agent calls; instance verbs are the operator's."""
    assert classify("POST", PATH + "instances") == "agent"
    assert classify("POST", PATH + "instances/") == "agent"
    assert classify("POST", PATH + "metrics") == "agent"
    assert classify("DELETE", PATH + "instances/10.0.0.1") == "agent"  # (unsigned: admin)
    assert classify("POST", PATH + "instances/10.0.0.1/drain") == "admin"
    assert classify("GET", PATH + "instances") == "read"


def test_probes_are_open_for_reads_only() -> None:
    """/healthz and /readyz answer a probe without credentials; nothing else near them does."""
    for path in ("/healthz", "/readyz"):
        assert classify("GET", path) == "open" and classify("HEAD", path) == "open"
        assert classify("POST", path) == "admin" and classify("DELETE", path) == "admin"
    for path in ("/healthz/x", "/readyzz", PATH + "healthz", "/metrics"):
        assert classify("GET", path) == "read"


def test_tokens_are_found_by_digest_only() -> None:
    """The table holds digests; the right token is found, a prefix of it is not."""
    table = tokens_from_dict({"token": [{"name": "ops", "role": "admin",
                                         "sha256": hashlib.sha256(b"abc").hexdigest()}]})
    assert find_token(table, "abc") == table[0]
    assert find_token(table, "ab") is None


@pytest.mark.parametrize(("data", "field"), [
    ({"agent": [{"id": "a b", "key": "0" * 64, "prefixes": ["10.0.0.0/8"]}]}, "agent[0].id"),
    ({"agent": [{"id": "a", "key": "0" * 63, "prefixes": ["10.0.0.0/8"]}]}, "agent[0].key"),
    ({"agent": [{"id": "a", "key": "0" * 64, "prefixes": []}]}, "agent[0].prefixes"),
    ({"agent": [{"id": "a", "key": "0" * 64, "prefixes": ["10.0.0.1/8"]}]},
     "agent[0].prefixes[0]"),
    ({"agent": [{"id": "a", "key": "0" * 64, "prefixes": ["10.0.0.0/8"], "x": 1}]},
     "agent[0].x"),
])
def test_a_bad_agent_table_names_the_key(data: dict[str, Any], field: str) -> None:
    """Every mistake in the agent table is refused naming where it is."""
    with pytest.raises(ValidationError) as info:
        agents_from_dict(data, 4)
    assert info.value.field == field


def test_security_section_of_the_config() -> None:
    """[security] is parsed into the config, auth on by default, unknown keys refused."""
    assert config_from_dict({}).security.auth is True
    cfg = config_from_dict({"security": {"auth": False, "open_reads": True,
                                         "agents_file": "a.toml", "max_skew_s": 5}})
    assert (cfg.security.auth, cfg.security.open_reads, cfg.security.max_skew_s) == \
        (False, True, 5.0)
    for bad, field in (({"auth": "no"}, "security.auth"),
                       ({"max_skew_s": 0}, "security.max_skew_s"),
                       ({"tokens": "x"}, "security.tokens")):
        with pytest.raises(ValidationError) as info:
            security_from_dict(bad)
        assert info.value.field == field
