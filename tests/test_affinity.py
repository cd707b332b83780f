"""Flow keys per affinity policy, and the entries that enforce a binding."""

from __future__ import annotations

import pytest

from controller.dataplane.affinity import Binding, FlowKey, binding_flows, flow_key
from controller.model import AffinityPolicy, Service
from controller.network.packet import parse
from tests.helpers import tcp_frame

MAC = "00:00:00:00:00:01"


def _svc(key: str, protocol: str | None = "tcp", port: int | None = 8000) -> Service:
    return Service("s", "10.0.100.1", protocol, port, AffinityPolicy(key, 10, 0))


def _pkt(sport: int = 40000, dport: int = 8000, proto: int = 6, dst: str = "10.0.100.1"):
    return parse(tcp_frame(MAC, MAC, "10.0.0.1", dst, sport, dport, proto))


@pytest.mark.parametrize(("key", "expected"), [
    ("5-tuple", FlowKey("s", "10.0.0.1", "10.0.100.1", 6, 40000, 8000)),
    ("3-tuple", FlowKey("s", "10.0.0.1", "10.0.100.1", 6)),
    ("source", FlowKey("s", "10.0.0.1", "10.0.100.1")),
])
def test_flow_key_per_policy(key: str, expected: FlowKey) -> None:
    """Each policy keeps exactly the fields it names."""
    assert flow_key(_svc(key), _pkt()) == expected


def test_packets_outside_the_service_have_no_key() -> None:
    """Another port, protocol or destination is not a demand for the service."""
    svc = _svc("5-tuple")
    assert flow_key(svc, _pkt(dport=9000)) is None
    assert flow_key(svc, _pkt(proto=17)) is None
    assert flow_key(svc, _pkt(dst="10.0.100.2")) is None


def test_udp_five_tuple_and_protocol_free_service() -> None:
    """UDP ports are part of a 5-tuple; a service without protocol keys any IP packet."""
    udp = parse(tcp_frame(MAC, MAC, "10.0.0.1", "10.0.100.1", 5000, 53, proto=17))
    assert flow_key(_svc("5-tuple", "udp", 53), udp) == FlowKey(
        "s", "10.0.0.1", "10.0.100.1", 17, 5000, 53)
    assert flow_key(_svc("5-tuple", None, None), udp).sport == 5000


def test_udp_entries_match_udp_ports_both_ways() -> None:
    """A UDP binding's forward and reverse entries match udp_src/udp_dst, mirrored."""
    svc = _svc("5-tuple", "udp", 53)
    b = Binding(7, FlowKey("s", "10.0.0.1", "10.0.100.1", 17, 5000, 53), "10.0.0.21", 1, 0.0)
    fwd, rev = binding_flows(b, svc, "00:00:00:00:00:21")
    assert dict(fwd.match)["udp_src"] == 5000 and dict(fwd.match)["udp_dst"] == 53
    assert dict(rev.match)["udp_src"] == 53 and dict(rev.match)["udp_dst"] == 5000


def test_source_key_reverse_entry_is_narrowed_by_service_port() -> None:
    """With a client-address key, replies are still matched on the service's port only."""
    b = Binding(8, FlowKey("s", "10.0.0.1", "10.0.100.1"), "10.0.0.21", 1, 0.0)
    fwd, rev = binding_flows(b, _svc("source"), "00:00:00:00:00:21")
    assert dict(fwd.match) == {"eth_type": 0x800, "ipv4_src": "10.0.0.1",
                               "ipv4_dst": "10.0.100.1"}
    assert dict(rev.match) == {"eth_type": 0x800, "ipv4_src": "10.0.0.21",
                               "ipv4_dst": "10.0.0.1", "ip_proto": 6, "tcp_src": 8000}
