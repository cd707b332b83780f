"""A binding's entries, built on the packet-in path's short way, are the entries the generic
construction (a match from keyword fields, fresh rewrites) gives, for every kind of flow key."""

from __future__ import annotations

from hypothesis import given, settings
from hypothesis import strategies as st

from controller.dataplane.affinity import (
    Binding,
    FlowKey,
    _forward_match,
    _reverse_match,
    binding_flows,
)
from controller.intents import (
    PRIO_AFFINITY,
    TABLE_CLASSIFY,
    TABLE_FORWARD,
    VIRTUAL_MAC,
    CookieKind,
    FlowMod,
    SetField,
    cookie,
    match,
)
from controller.model import AffinityPolicy, Service


def generic(binding: Binding, service: Service, mac: str) -> tuple[FlowMod, FlowMod]:
    """The entries as `binding_flows` built them before its short way (keyword fields); an
    exact key in a group-keyed service is an exception, two priorities up (guards.py)."""
    aff = service.affinity
    prio = PRIO_AFFINITY + (2 if binding.key.sport is not None and aff.key != "5-tuple" else 0)
    forward = FlowMod(
        dpid=binding.ingress, table=TABLE_CLASSIFY, priority=prio,
        match=match(**_forward_match(binding.key)),
        actions=(SetField("eth_dst", mac), SetField("ipv4_dst", binding.dbid)),
        goto=TABLE_FORWARD, idle_timeout=aff.idle_timeout, hard_timeout=aff.hard_timeout,
        cookie=cookie(CookieKind.AFFINITY_FWD, binding.ident), notify_removal=True)
    reverse = FlowMod(
        dpid=binding.ingress, table=TABLE_CLASSIFY, priority=prio,
        match=match(**_reverse_match(binding.key, service, binding.dbid)),
        actions=(SetField("eth_src", VIRTUAL_MAC), SetField("ipv4_src", service.dsid)),
        goto=TABLE_FORWARD, hard_timeout=aff.hard_timeout,
        cookie=cookie(CookieKind.AFFINITY_REV, binding.ident))
    return forward, reverse


PORTS = st.one_of(st.none(), st.integers(0, 65535))


@settings(max_examples=300, deadline=None)
@given(st.sampled_from(("5-tuple", "3-tuple", "source")), st.sampled_from((None, 1, 6, 17)),
       st.sampled_from((None, 6, 17)), PORTS, PORTS, st.one_of(st.none(), st.integers(1, 65535)),
       st.integers(0, 1 << 50), st.integers(0, 600), st.integers(0, 600))
def test_binding_entries_equal_the_generic_construction(
        kind: str, proto: int | None, svc_proto: int | None, sport: int | None,
        dport: int | None, svc_port: int | None, ident: int, idle: int, hard: int) -> None:
    """Same match (fields and order), rewrites, cookies, timeouts and flags, whatever the key:
    a TCP or UDP 5-tuple, a 3-tuple, a source, a key without ports or protocol."""
    svc = Service("s", "10.0.100.1", {6: "tcp", 17: "udp"}.get(svc_proto or 0), svc_port,
                  AffinityPolicy(kind, idle, hard))
    key = FlowKey("s", "10.0.0.7", svc.dsid, proto, sport, dport)
    b = Binding(ident, key, "10.0.1.2", 3, 0.0)
    assert binding_flows(b, svc, "02:00:00:00:01:02") == generic(b, svc, "02:00:00:00:01:02")
