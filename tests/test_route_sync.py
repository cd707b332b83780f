"""Host routes synced incrementally: after a tree repair only the switches whose next hop
changed are looked at, yet every switch's routes equal what a sync of every route gives."""

from __future__ import annotations

from controller.intents import FlowMod, Output
from controller.network.forwarding import Forwarding
from controller.network.topology import Topology


def line(n: int) -> Topology:
    """Switches 1..n in a line (port 1 towards n, port 2 towards 1), a host on 1 and one on n,
    and a shortcut 1-n (port 3 at both) that costs 10 ms."""
    topo = Topology()
    for dpid in range(1, n + 1):
        topo.switch_up(dpid, {1, 2, 3, 9})
    for a in range(1, n):
        topo.link_seen((a, 1), (a + 1, 2), 0.0)
        topo.link_seen((a + 1, 2), (a, 1), 0.0)
    topo.set_costs({frozenset((1, n)): 10.0})
    topo.link_seen((1, 3), (n, 3), 0.0)
    topo.link_seen((n, 3), (1, 3), 0.0)
    topo.learn_host("10.0.0.1", "02:00:00:00:00:01", 1, 9)
    topo.learn_host("10.0.0.9", "02:00:00:00:00:09", n, 9)
    return topo


def routes(intents: list[object]) -> dict[tuple[int, str], int | None]:
    """(switch, host) -> the port a route sends it to (None: the route is deleted)."""
    out: dict[tuple[int, str], int | None] = {}
    for i in intents:
        assert isinstance(i, FlowMod)
        ip = dict(i.match)["ipv4_dst"]
        port = [a.port for a in i.actions if isinstance(a, Output)]
        out[(i.dpid, str(ip))] = port[0] if port else None
    return out


def full(topo: Topology) -> dict[int, dict[str, int]]:
    """What a new Forwarding installs syncing every route at every switch."""
    fresh = Forwarding(topo, lambda ip: False)
    fresh.sync_routes()
    return fresh._installed


def test_a_dearer_link_moves_only_the_routes_whose_next_hop_changed() -> None:
    """With 6 switches in a line and a 10 ms shortcut 1-6, making link 3-4 cost 20 ms sends
    switches 1-3's traffic for the host on 6 over the shortcut: exactly those routes (and
    4-6's towards the host on 1) are rewritten, the rest are left alone."""
    topo = line(6)
    fwd = Forwarding(topo, lambda ip: False)
    fwd.sync_routes()
    costs = dict(topo.link_cost_ms)
    costs[frozenset((3, 4))] = 20.0
    topo.set_costs(costs)
    changed = routes(fwd.sync_routes())
    assert changed == {(1, "10.0.0.9"): 3, (2, "10.0.0.9"): 2, (3, "10.0.0.9"): 2,
                       (4, "10.0.0.1"): 1, (5, "10.0.0.1"): 1, (6, "10.0.0.1"): 3}
    assert fwd._installed == full(topo)
    assert fwd.sync_routes() == []  # nothing changed since: nothing to look at


def test_a_link_moved_to_another_port_moves_the_routes_over_it() -> None:
    """An edge that stays between the same switches but now uses other ports (re-cabled)
    rewrites the routes across it, though no tree changed."""
    topo = line(3)
    fwd = Forwarding(topo, lambda ip: False)
    fwd.sync_routes()
    topo.port_up(2, 5)
    topo.link_seen((1, 1), (2, 5), 5.0)  # the link 1-2 now ends at switch 2's port 5 ...
    topo.link_seen((2, 5), (1, 1), 5.0)
    for src, dst in topo.links():  # ... and its old end's frames stopped coming
        if src != (2, 2):
            topo.link_seen(src, dst, 5.0)
    topo.expire_links(5.0, 1.0)
    assert topo.edge_ports_of(1, 2) == {1: 1, 2: 5}
    assert [str(i) for i in fwd.sync_routes()] == [str(fwd._route(2, "10.0.0.1", 5))]
    assert fwd._installed[2]["10.0.0.1"] == 5
    assert fwd._installed == full(topo)


def test_a_reconnected_switch_gets_every_route_and_a_host_gone_loses_them() -> None:
    """A switch whose routes were forgotten (it reconnected) gets every host's route at the
    next sync though nothing else changed; a host that is gone has its routes deleted at every
    switch, once."""
    topo = line(4)
    fwd = Forwarding(topo, lambda ip: False)
    fwd.sync_routes()
    fwd.forget_switch(3)
    assert routes(fwd.sync_routes()) == {(3, "10.0.0.1"): 2, (3, "10.0.0.9"): 1}
    del topo.hosts["10.0.0.9"]
    assert routes(fwd.sync_routes()) == {(d, "10.0.0.9"): None for d in (1, 2, 3, 4)}
    assert fwd.sync_routes() == []
    assert fwd._installed == full(topo)


def test_syncing_one_host_leaves_a_reconnected_switch_unsynced_for_the_others() -> None:
    """A sync of one host (it moved) installs it everywhere, and a switch that reconnected
    before still gets the other hosts at the next sync of every route."""
    topo = line(4)
    fwd = Forwarding(topo, lambda ip: False)
    fwd.sync_routes()
    fwd.forget_switch(2)
    topo.learn_host("10.0.0.1", "02:00:00:00:00:01", 3, 9)
    assert routes(fwd.sync_routes(["10.0.0.1"])) == {  # (4 sent it to 3 already)
        (1, "10.0.0.1"): 1, (2, "10.0.0.1"): 1, (3, "10.0.0.1"): 9}
    assert routes(fwd.sync_routes()) == {(2, "10.0.0.9"): 1}
    assert fwd._installed == full(topo)
