"""Service demand dispatch through the core, from packet-in to intents, on Figure 2."""

from __future__ import annotations

import dataclasses
from collections import Counter

from controller.intents import (
    PRIO_AFFINITY,
    TABLE_FORWARD,
    VIRTUAL_MAC,
    CookieKind,
    Output,
    PacketOut,
    SetField,
    cookie,
    cookie_kind,
)
from controller.network.packet import ARP_REPLY, parse
from controller.views import stats_view
from tests.helpers import (
    HOSTS,
    figure2_core,
    flow_mods,
    packet_outs,
    report,
    see_links,
    tcp_frame,
)

C1_IP, C1_MAC = HOSTS["c1"][0], HOSTS["c1"][1]


def _demand(core, sport: int, now: float = 1.0, dsid: str = "10.0.100.1", host: str = "c1"):
    ip, mac, dpid, port = HOSTS[host]
    return core.packet_in(dpid, port, tcp_frame(mac, VIRTUAL_MAC, ip, dsid, sport, 8000), now)


def _fresh(core, now: float = 1.0, e21_sessions: int = 0) -> None:
    for dbid in ("10.0.0.21", "10.0.0.22", "10.0.0.32"):
        report(core, dbid, now)
    report(core, "10.0.0.31", now, sessions=e21_sessions)


def test_topology_learned_from_lldp_and_arp() -> None:
    """LLDP gives the three links; ARP gives every host's attachment point."""
    core = figure2_core()
    assert len(core.topology.links()) == 6
    assert core.topology.path(1, 3) == [1, 4, 3]
    assert {h: (core.topology.hosts[v[0]].dpid, core.topology.hosts[v[0]].port)
            for h, v in HOSTS.items()} == {h: (v[2], v[3]) for h, v in HOSTS.items()}


def test_first_packet_installs_forward_and_reverse_entries_then_delivers() -> None:
    """A new flow gets a D-SID->D-BID entry and its reverse at the ingress, then a packet-out."""
    core = figure2_core()
    _fresh(core)
    intents = _demand(core, 40000)
    fwd, rev = flow_mods(intents)
    (out,) = packet_outs(intents)
    assert intents.index(out) == 2  # flow-mods before the packet-out
    dbid = fwd.actions[1].value
    assert dbid in ("10.0.0.21", "10.0.0.31")
    assert fwd.dpid == rev.dpid == 1 and fwd.priority == PRIO_AFFINITY
    assert dict(fwd.match) == {"eth_type": 0x0800, "ipv4_src": C1_IP, "ipv4_dst": "10.0.100.1",
                               "ip_proto": 6, "tcp_src": 40000, "tcp_dst": 8000}
    assert fwd.goto == TABLE_FORWARD and fwd.idle_timeout == 30 and fwd.notify_removal
    assert dict(rev.match) == {"eth_type": 0x0800, "ipv4_src": dbid, "ipv4_dst": C1_IP,
                               "ip_proto": 6, "tcp_src": 8000, "tcp_dst": 40000}
    assert rev.actions == (SetField("eth_src", VIRTUAL_MAC), SetField("ipv4_src", "10.0.100.1"))
    assert out.actions[-1] == Output(10) and SetField("ipv4_dst", dbid) in out.actions
    assert len(core.bindings) == 1


def test_existing_binding_is_reinstalled_never_redecided() -> None:
    """A packet-in for a bound flow re-installs the same instance even after the decision moved."""
    core = figure2_core()
    _fresh(core)
    first = flow_mods(_demand(core, 40001))[0].actions[1].value
    other = "10.0.0.31" if first == "10.0.0.21" else "10.0.0.21"
    report(core, first, 2.0, sessions=10, queue=10)  # make the bound instance much worse
    report(core, other, 2.0)
    assert core.engine.decisions[(1, "svc1")].primary == other
    again = flow_mods(_demand(core, 40001, now=3.0))[0].actions[1].value
    assert again == first
    assert flow_mods(_demand(core, 40002, now=3.0))[0].actions[1].value == other


def test_three_tuple_service_binds_all_ports_of_a_client_together() -> None:
    """With a 3-tuple key, two connections of one client share one binding and one instance."""
    core = figure2_core()
    _fresh(core)
    a = flow_mods(_demand(core, 40010, dsid="10.0.100.2"))
    assert dict(a[0].match) == {"eth_type": 0x0800, "ipv4_src": C1_IP,
                                "ipv4_dst": "10.0.100.2", "ip_proto": 6}
    b = flow_mods(_demand(core, 40011, dsid="10.0.100.2", now=2.5))
    assert a[0].actions == b[0].actions and len(core.bindings) == 1


def test_packet_of_a_flow_just_installed_is_delivered_without_new_entries() -> None:
    """A packet that reached the controller while the switch was still taking its flow's
    entries is delivered to the same instance; the entries are sent again only once they have
    had time to settle (a packet after that means the switch lost them)."""
    core = figure2_core()
    _fresh(core)
    first = _demand(core, 40012, now=1.0)
    (fwd,) = [f for f in flow_mods(first) if ("tcp_src", 40012) in f.match]
    dbid = next(a.value for a in fwd.actions if getattr(a, "field", "") == "ipv4_dst")
    again = _demand(core, 40012, now=1.2)
    assert flow_mods(again) == []
    (out,) = [i for i in again if isinstance(i, PacketOut)]
    assert SetField("ipv4_dst", dbid) in out.actions
    later = flow_mods(_demand(core, 40012, now=2.5))
    assert fwd in later and len(core.bindings) == 1


def test_flow_removed_ends_binding_and_deletes_reverse_entry() -> None:
    """When the switch drops the forward entry, the binding goes and so does the reverse."""
    core = figure2_core()
    _fresh(core)
    fwd = flow_mods(_demand(core, 40020))[0]
    kind, ident = cookie_kind(fwd.cookie)
    assert kind == CookieKind.AFFINITY_FWD
    assert core.flow_removed(1, fwd.cookie, "delete", 40.0) == []  # our own deletion
    assert len(core.bindings) == 1
    (delete,) = core.flow_removed(1, fwd.cookie, "idle", 40.0)
    assert delete.command == "delete" and delete.cookie == cookie(CookieKind.AFFINITY_REV, ident)
    assert len(core.bindings) == 0
    writes = core.drain_writes()
    assert writes[-1].kind == "binding" and writes[-1].value is None


def test_new_flows_from_one_ingress_are_spread_by_the_decision() -> None:
    """Equal instances at equal distance share a burst of new flows evenly."""
    core = figure2_core()
    _fresh(core)
    dbids = Counter(flow_mods(_demand(core, 41000 + i))[0].actions[1].value for i in range(100))
    assert dbids == {"10.0.0.21": 50, "10.0.0.31": 50}


def test_ingress_near_an_instance_prefers_it() -> None:
    """From r2, the local instance (0 hops) costs less than the one 2 hops away."""
    core = figure2_core()
    _fresh(core)
    d = core.engine.decisions[(2, "svc1")]
    costs = {c.dbid: c.network_ms for c in d.candidates}
    assert costs == {"10.0.0.21": 0.0, "10.0.0.31": 2.0}
    assert d.primary == "10.0.0.21"


def test_withdrawn_instance_gets_no_new_flows() -> None:
    """After a D-MA withdraws an instance, every new flow goes to the remaining one."""
    core = figure2_core()
    _fresh(core)
    core.withdraw("10.0.0.21", 2.0)
    dbids = {flow_mods(_demand(core, 42000 + i, now=2.0))[0].actions[1].value for i in range(20)}
    assert dbids == {"10.0.0.31"}


def test_stale_metrics_make_an_instance_unknown_on_tick() -> None:
    """Metrics older than stale_after_s take an instance out of new-flow choice at the next tick."""
    core = figure2_core()
    _fresh(core, now=1.0)
    report(core, "10.0.0.31", 20.0)  # only e31 stays fresh
    see_links(core, 20.0)
    core.tick(20.0)
    d = core.engine.decisions[(1, "svc1")]
    assert d.shares == {"10.0.0.31": 1.0}
    assert {c.dbid: c.state for c in d.candidates}["10.0.0.21"] == "unknown"


def test_no_usable_instance_drops_and_counts() -> None:
    """With every instance withdrawn a demand is dropped, counted, and nothing is installed."""
    core = figure2_core()
    core.withdraw("10.0.0.21", 1.0)
    core.withdraw("10.0.0.31", 1.0)
    assert _demand(core, 43000) == []
    assert stats_view(core)["dropped_no_instance"] == 1


def test_arp_for_a_dsid_is_answered_with_the_virtual_mac() -> None:
    """Clients resolve every D-SID to the controller's virtual MAC."""
    from tests.helpers import arp_request

    core = figure2_core()
    (reply,) = packet_outs(core.packet_in(1, 1, arp_request("c1", "10.0.100.2"), 1.0))
    pkt = parse(reply.data)
    assert pkt.arp_op == ARP_REPLY and pkt.arp_sha == VIRTUAL_MAC and pkt.arp_spa == "10.0.100.2"
    assert reply.dpid == 1 and reply.actions == (Output(1),)


def test_unknown_arp_target_is_flooded_to_edge_ports_only() -> None:
    """ARP for an unknown address goes out of host ports, never inter-switch links."""
    from tests.helpers import arp_request

    core = figure2_core()
    outs = packet_outs(core.packet_in(1, 1, arp_request("c1", "10.0.0.99"), 5.0))
    ports = {(o.dpid, a.port) for o in outs for a in o.actions}
    assert ports == {(2, 1), (2, 2), (3, 1)}


def test_host_routes_follow_shortest_paths() -> None:
    """Every switch has a forward-table route to every host along the shortest path."""
    core = figure2_core()
    routes = core.forwarding._installed
    assert routes[1]["10.0.0.31"] == 10 and routes[4]["10.0.0.31"] == 3
    assert routes[3]["10.0.0.31"] == 1


def test_service_policy_reaches_the_decision() -> None:
    """A service set to `nearest` is decided by network cost alone at every ingress."""
    core = figure2_core()
    _fresh(core, e21_sessions=9)
    svc = dataclasses.replace(core.catalogue.services["svc1"], policy="nearest")
    core.put_service(svc, create=False, now=1.0)
    _fresh(core, now=2.0, e21_sessions=9)
    d = core.engine.decisions[(2, "svc1")]
    assert d.policy == "nearest"
    assert d.shares == {"10.0.0.21": 1.0}
