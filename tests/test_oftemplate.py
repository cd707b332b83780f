"""A binding's entries packed from their actions' template (apps/oftemplate.py) give exactly the
framework's bytes, and anything not the template's kind of entry is packed field by field."""

from __future__ import annotations

import dataclasses

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from apps import oftemplate
from apps.ofmsg import Unsupported, encode, serialise
from controller.dataplane.affinity import Binding, FlowKey, binding_flows
from controller.intents import FlowMod, Output, SetField, match
from controller.model import AffinityPolicy, Service
from tests.fakes import FakeDatapath, framework_bytes

ADDRESSES = st.tuples(*[st.integers(0, 255)] * 4).map(lambda q: ".".join(map(str, q)))


def rewrites(dbid: str) -> tuple[SetField, ...]:
    """A fresh actions tuple (its own template)."""
    return (SetField("eth_dst", "00:00:00:00:00:21"), SetField("ipv4_dst", dbid))


@settings(max_examples=80, deadline=None,
          suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(src=ADDRESSES, dsid=ADDRESSES, dbid=ADDRESSES, proto=st.sampled_from((6, 17)),
       ports=st.lists(st.tuples(st.integers(0, 65535), st.integers(0, 65535)), min_size=2,
                      max_size=4),
       ident=st.integers(0, (1 << 48) - 1), idle=st.integers(0, 65535),
       hard=st.integers(0, 65535), xid=st.integers(0, 0xFFFFFFFF))
def test_every_binding_entry_from_its_template_is_the_framework_bytes(
        dp: FakeDatapath, src: str, dsid: str, dbid: str, proto: int,
        ports: list[tuple[int, int]], ident: int, idle: int, hard: int, xid: int) -> None:
    """Any 5-tuple, address, cookie, timeouts and transaction id: the template's bytes (from
    the second entry of an instance on) are the framework's."""
    svc = Service("s", dsid, "tcp" if proto == 6 else "udp", 80,
                  AffinityPolicy("5-tuple", idle, hard))
    for n, (sport, dport) in enumerate(ports):
        key = FlowKey(svc.name, src, dsid, proto, sport, dport)
        binding = Binding((ident + n) % (1 << 48), key, dbid, 2, 0.0)
        for fm in binding_flows(binding, svc, "00:00:00:00:00:21"):
            expected = framework_bytes(dp, fm, xid)
            assert encode(fm, xid) == expected, fm
            assert oftemplate.flow_mod(fm, xid) == expected, fm  # made from the template


def test_an_entry_differing_in_any_other_field_is_packed_field_by_field(
        dp: FakeDatapath) -> None:
    """Same actions tuple, anything else changed (table, priority, timeouts, command,
    notification, cookie mask, meter, goto): the template does not answer it; the bytes are
    right. The last kind packed field by field becomes the template (timeouts reconfigured)."""
    acts = rewrites("10.0.0.21")
    base = FlowMod(1, 0, 300, match(eth_type=0x800, ip_proto=6, ipv4_src="10.0.0.1",
                                    ipv4_dst="10.0.100.1", tcp_src=4000, tcp_dst=80),
                   acts, 1, 30, 0, 0xDC01000000000001, "add", True)
    assert encode(base, 1) == framework_bytes(dp, base, 1)
    assert oftemplate.flow_mod(base, 2) == framework_bytes(dp, base, 2)
    for change in [{"table": 2}, {"priority": 301}, {"goto": None}, {"goto": 3},
                   {"idle_timeout": 31}, {"hard_timeout": 5}, {"command": "delete_strict"},
                   {"notify_removal": False}, {"cookie_mask": 0xFF}, {"meter": 7}]:
        other = dataclasses.replace(base, **change)
        assert oftemplate.flow_mod(other, 3) is None, change
        assert encode(other, 3) == framework_bytes(dp, other, 3), change
    assert encode(base, 4) == framework_bytes(dp, base, 4)
    assert oftemplate.flow_mod(base, 5) == framework_bytes(dp, base, 5)  # its template again


def test_other_matches_under_a_templated_actions_tuple_are_packed_field_by_field(
        dp: FakeDatapath) -> None:
    """A 3-tuple, an extra field, a masked or boolean port, a port out of range, an address in
    another notation: not the template's; the field-by-field way (or the framework) decides.
    UDP, or TCP ports under another protocol number, are 5-tuples: the template's bytes."""
    acts = rewrites("10.0.0.22")
    tcp = {"eth_type": 0x800, "ip_proto": 6, "ipv4_src": "10.0.0.1", "ipv4_dst": "10.0.100.1",
           "tcp_src": 4000, "tcp_dst": 80}
    first = FlowMod(1, 0, 300, match(**tcp), acts, 1)
    encode(first, 1)
    assert oftemplate.flow_mod(first, 1) is not None
    others = [({k: v for k, v in tcp.items() if k not in ("tcp_src", "tcp_dst")}, False),
              ({**tcp, "in_port": 3}, False), ({**tcp, "tcp_src": (0x30, 0xF0)}, False),
              ({"eth_type": 0x800, "ip_proto": 17, "ipv4_src": "10.0.0.1",
                "ipv4_dst": "10.0.100.1", "udp_src": 4000, "udp_dst": 80}, True),
              ({**tcp, "ip_proto": 17}, True)]
    for fields, five_tuple in others:
        fm = FlowMod(1, 0, 300, match(**fields), acts, 1)
        expected = framework_bytes(dp, fm, 5)
        assert oftemplate.flow_mod(fm, 5) == (expected if five_tuple else None), fields
        assert encode(fm, 5) == expected, fields
    for bad in ({**tcp, "tcp_src": True}, {**tcp, "tcp_dst": 65536},
                {**tcp, "ipv4_src": "10.1"}):
        fm = FlowMod(1, 0, 300, match(**bad), acts, 1)
        assert oftemplate.flow_mod(fm, 5) is None, bad
        with pytest.raises(Unsupported):
            encode(fm, 5)
    fm = FlowMod(1, 0, 300, match(**{**tcp, "tcp_src": True}), acts, 1)
    dp.xid = 0
    assert serialise(dp, [fm]) == framework_bytes(dp, fm, 1)  # the framework's own way


def test_actions_whose_first_entry_is_no_5_tuple_never_get_a_template(dp: FakeDatapath) -> None:
    """The first entry of an actions tuple is a destination route: no template is kept for
    those actions, and a 5-tuple entry with them later is packed field by field, right."""
    acts = (Output(4),)
    route = FlowMod(1, 1, 100, match(eth_type=0x800, ipv4_dst="10.0.0.9"), acts)
    assert encode(route, 1) == framework_bytes(dp, route, 1)
    five = FlowMod(1, 1, 100, match(eth_type=0x800, ip_proto=6, ipv4_src="10.0.0.1",
                                    ipv4_dst="10.0.0.9", tcp_src=1, tcp_dst=2), acts)
    assert oftemplate.flow_mod(five, 2) is None
    assert encode(five, 2) == framework_bytes(dp, five, 2)
    assert encode(route, 3) == framework_bytes(dp, route, 3)


def test_templates_of_more_actions_than_kept_are_made_again(
        dp: FakeDatapath, monkeypatch: pytest.MonkeyPatch) -> None:
    """Past the templates' bound they are dropped and made again as entries come (instances
    come and go: the old tuples must not keep every new one from its template)."""
    monkeypatch.setattr(oftemplate, "_MAX_TEMPLATES", 3)
    monkeypatch.setattr(oftemplate, "_templates", {})
    five = match(eth_type=0x800, ip_proto=6, ipv4_src="10.0.0.1", ipv4_dst="10.0.100.1",
                 tcp_src=1, tcp_dst=2)
    for n in range(10):
        fm = FlowMod(1, 0, 300, five, rewrites(f"10.0.1.{n}"), 1, cookie=n)
        assert encode(fm, n) == framework_bytes(dp, fm, n)
        assert oftemplate.flow_mod(fm, n) == framework_bytes(dp, fm, n), n
        assert len(oftemplate._templates) <= 3
