"""Input rules in one place: safe names, D-SID/D-BID address rules, bounded JSON, [limits]."""

from __future__ import annotations

import json

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from controller.api import Api
from controller.config import config_from_toml
from controller.errors import ConfigError, ValidationError
from controller.jsonbody import _NOT_BRACKET, _STRING, OutOfRange, loads, too_deep
from controller.limits import Limits
from controller.validate import address_problem, check_name, check_number
from tests.helpers import figure2_core


@pytest.mark.parametrize("name", ["svc1", "a", "A.b_c-9", "x" * 63, "10.0.0.1"])
def test_safe_names_are_accepted(name: str) -> None:
    """Names of 1-63 characters from [A-Za-z0-9._-] are taken as they are."""
    assert check_name(name, "name") == name


@pytest.mark.parametrize("name", ["", "x" * 64, "a b", "a%20", "a?b", "a#b", "a/b", "a\x00",
                                  "caf\u00e9", "x\ud800", ".", "..", None, 3, ["a"]])
def test_unsafe_names_are_refused_naming_the_field(name: object) -> None:
    """Space, %, ?, #, /, NUL, non-ASCII, a lone surrogate, '.', '..' and non-strings are
    refused: they could not be read back through a URL or written to the store."""
    with pytest.raises(ValidationError) as err:
        check_name(name, "service.name")
    assert err.value.field == "service.name"


@pytest.mark.parametrize("ip", ["0.0.0.0", "0.1.2.3", "127.0.0.1", "169.254.1.1", "224.0.0.251",
                                "239.255.255.250", "240.0.0.1", "255.255.255.255"])
def test_reserved_addresses_are_neither_dsids_nor_dbids(ip: str) -> None:
    """This-network, loopback, link-local, multicast, 240/4 and broadcast are refused in both
    roles."""
    assert "reserved" in (address_problem(ip, "D-SID") or "")
    assert "reserved" in (address_problem(ip, "D-BID") or "")


@pytest.mark.parametrize("ip", ["10.0.100.1", "172.16.0.1", "192.168.1.1", "100.64.0.1",
                                "192.0.2.10", "8.8.8.8", "223.255.255.254"])
def test_private_cgnat_and_public_unicast_are_allowed(ip: str) -> None:
    """RFC 1918, 100.64/10 and public unicast addresses may be D-SIDs and D-BIDs."""
    assert address_problem(ip, "D-SID") is None and address_problem(ip, "D-BID") is None


def test_a_dsid_is_not_a_learned_host_nor_a_dbid_and_a_dbid_not_a_dsid() -> None:
    """The roles exclude each other, and a D-SID cannot take a learned host's address."""
    assert "learned host" in (address_problem("10.0.0.1", "D-SID", hosts={"10.0.0.1"}) or "")
    assert "D-BID" in (address_problem("10.0.0.21", "D-SID", others={"10.0.0.21"}) or "")
    assert "D-SID" in (address_problem("10.0.100.1", "D-BID", others={"10.0.100.1"}) or "")
    assert address_problem("10.0.0.21", "D-BID", hosts={"10.0.0.21"}) is None


@pytest.mark.parametrize("body", [b"[" * 33 + b"]" * 33, b'{"a":' * 40 + b"1" + b"}" * 40])
def test_deep_json_is_refused_before_parsing(body: bytes) -> None:
    """Nesting past the limit is a 400 on `body`, never a RecursionError."""
    with pytest.raises(ValidationError, match="nested deeper") as err:
        loads(body, 1 << 20, 32)
    assert err.value.field == "body"


def test_brackets_inside_strings_do_not_count_as_depth() -> None:
    """A string full of brackets (and escaped quotes) is one level, not thousands."""
    body = json.dumps({"name": "[{" * 5000 + '\\"'}).encode()
    assert not too_deep(body, 1) and too_deep(b'[{"a": []}]', 2)
    assert not too_deep(b'[{"a": []}, [[]]]', 3) and too_deep(b"[[[" * 100, 32)
    assert loads(body, 1 << 20, 32) == {"name": "[{" * 5000 + '\\"'}


def _deepest(body: bytes) -> int:
    """The deepest bracket level outside strings, the general way (the expression for
    strings, then every bracket)."""
    level = most = 0
    for c in _STRING.sub(b"", body).translate(None, _NOT_BRACKET):
        level += 1 if c in b"[{" else -1
        most = max(most, level)
    return most


@settings(max_examples=300, deadline=None)
@given(st.text(alphabet='[]{}"\\a, :', max_size=60), st.integers(0, 6))
def test_the_short_way_round_strings_judges_depth_as_the_general_one(text: str,
                                                                      depth: int) -> None:
    """Any body, well-formed or not, quotes paired or not, with or without backslashes: too
    deep exactly when the general way finds a level past the limit."""
    body = text.encode()
    assert too_deep(body, depth) == (_deepest(body) > depth)


def test_a_large_batch_is_judged_by_its_real_depth() -> None:
    reports = [{"dbid": f"10.2.{k // 250}.{k % 250}", "cpu": 0.5} for k in range(10000)]
    body = json.dumps({"reports": reports, "note": "[[[[{{{{"}).encode()
    assert not too_deep(body, 3) and too_deep(body, 2)


@pytest.mark.parametrize("body", [b'{"a": 1, "a": 1}', b'[{"b": {"a": 1, "a": 2}}]',
                                  b'{"a": 1, "\\u0061": 2}'])
def test_a_key_twice_in_one_object_is_refused_naming_it(body: bytes) -> None:
    """At any depth, spelled alike or escaped: a 400 on `body` naming the key."""
    with pytest.raises(ValidationError, match="'a' twice") as err:
        loads(body, 1 << 20, 32)
    assert err.value.field == "body"
    assert loads(b'{"a": {"a": 1}, "b": [{"a": 2}, {"a": 3}]}', 1 << 20, 32)["b"][1] == {"a": 3}


def test_oversized_body_is_refused() -> None:
    """A body past max_body_bytes is refused before it is decoded."""
    with pytest.raises(ValidationError, match="larger than"):
        loads(b" " * 2000, 1024, 32)


@pytest.mark.parametrize("literal", ["1" * 5000, "1e400", "-1e400", "NaN", "Infinity",
                                     "-Infinity", "1" * 401 + ".0", "0." + "0" * 60 + "1"])
def test_huge_or_non_finite_numbers_decode_to_a_marker_validators_refuse(literal: str) -> None:
    """Ints past 4,300 digits, 1e400, NaN and Infinity never reach arithmetic: they decode to
    OutOfRange, which check_number refuses naming the field."""
    value = loads(f'{{"cpu": {literal}}}'.encode(), 1 << 20, 32)["cpu"]
    assert isinstance(value, OutOfRange)
    with pytest.raises(ValidationError) as err:
        check_number(value, "cpu", 0.0, 1.0)
    assert err.value.field == "cpu"


def test_limits_table_is_read_checked_and_defaulted() -> None:
    """[limits] sets the quotas; unknown keys and absurd values name the key and the file."""
    cfg = config_from_toml("[limits]\nmax_services = 3\nmax_instances = 7\n", "c.toml")
    assert cfg.limits == Limits(max_services=3, max_instances=7)
    assert config_from_toml("", "c.toml").limits == Limits()
    for bad, key in (("max_service = 3", "limits.max_service"), ("max_services = 0",
                     "limits.max_services"), ("max_json_depth = 1e9", "limits.max_json_depth")):
        with pytest.raises(ConfigError) as err:
            config_from_toml(f"[limits]\n{bad}\n", "c.toml")
        assert err.value.field == key and "c.toml" in str(err.value)


def test_a_report_without_its_dbid_is_told_the_dbid_is_required() -> None:
    """`{}` said "dbid: must be an IPv4 address string, got None": the field is missing."""
    reply = Api(figure2_core()).handle("POST", "/dyncast/v1/metrics", b"{}", 1.0)
    assert (reply.status, reply.body["field"]) == (400, "dbid")
    assert reply.body["error"].startswith("dbid: required"), reply.body
