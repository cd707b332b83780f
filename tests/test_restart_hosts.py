"""A restarted controller places the hosts its switches still route to, so that their routes
follow the topology again (controller/network/unplaced.py).

Found in Mininet on GEANT (40 switches, `bucket` and `conntrack`): a transit switch lost all its
links 14 s after a controller restart. The clients sent nothing the controller saw (the switches
served their flows alone), so it had not located them: their routes were the ones the previous
process left, kept as they were, and the replies to them went on into the dead links. Held
connections were silent for up to 28 s, new ones from those clients timed out, until the
clients' ARP entries went stale and their own ARP reached the controller.

Here Figure 2 gets a link between r1 and r2, so that r2's route towards c1 has somewhere else to
go when that link fails: c1 only receives after the restart; every other host speaks again.
"""

from __future__ import annotations

from pathlib import Path

import pytest

from apps.store import Store
from controller.config import ControllerConfig
from controller.core import Core
from controller.intents import VIRTUAL_MAC, Intent, PacketOut
from controller.network.packet import ARP_REPLY, BROADCAST, parse
from controller.network.unplaced import DUE_STEP, REPROBE_S, Unplaced
from controller.views import stats_view
from tests.fakeoftable import Hop, Result
from tests.helpers import HOSTS, LINKS, PORTS, SVC2
from tests.test_pipelines import ALL, DSID, E21, FLOWS, SERVICES, Figure2, arp, connect, to_dsid
from tests.test_reconcile import read

R1_R2 = ((1, 11), (2, 11))  # r1 and r2, also joined directly
TRIANGLE = [*LINKS, R1_R2]
TRIANGLE_PORTS = {**PORTS, 1: PORTS[1] | {11}, 2: PORTS[2] | {11}}
C1_IP, C1_MAC, C1_DPID, C1_PORT = HOSTS["c1"]
Probe = tuple[int, int, str]  # (switch, port, address asked for)


def probes(intents: list[Intent]) -> set[Probe]:
    """The ARP probes (sender 0.0.0.0) among `intents`: (switch, port, address asked for)."""
    out = set()
    for i in intents:
        pkt = parse(i.data) if isinstance(i, PacketOut) else None
        if pkt is not None and pkt.arp_spa == "0.0.0.0" and pkt.arp_tpa is not None:
            out |= {(i.dpid, a.port, pkt.arp_tpa) for a in i.actions}  # type: ignore[attr-defined]
    return out


def answered(fig: Figure2, res: Result) -> None:
    """Each host a probe reached answers it (as Linux does: to the asker, for 0.0.0.0)."""
    for hop in res.outputs:
        if hop["eth_type"] != 0x0806 or hop["arp_spa"] != "0.0.0.0":
            continue
        host = next((n for n, (ip, _, d, p) in HOSTS.items()
                     if (d, p) == (hop.dpid, hop.port) and hop["arp_tpa"] == ip), None)
        if host is not None:
            ip, mac, _, _ = HOSTS[host]
            fig.send(host, arp(mac, ip, VIRTUAL_MAC, "0.0.0.0", op=ARP_REPLY))


def read_back(fig: Figure2, dpid: int) -> list[Intent]:
    """The shell reads the switch's table: the core's repair (and probes), applied."""
    intents = [i for step in fig.core.switch_table_steps(dpid, read(fig, dpid), [], fig.now,
                                                          fig.now) for i in step]
    fig.apply(intents)
    return intents


def restarted(mode: str, tmp_path: Path) -> tuple[Figure2, dict[int, Hop], set[Probe]]:
    """Figure 2 with the r1-r2 link and held flows from c1; then a restart: every switch read
    as it connects, every host but c1 speaking again. The held flows (each packet as its
    instance received it) and the probes the reads at connection sent."""
    fig = Figure2(SERVICES[mode], links=TRIANGLE, ports=TRIANGLE_PORTS)
    placed = connect(fig, FLOWS[:8])
    assert E21 in placed.values(), placed  # (some behind r2, whose way to c1 will change)
    at = {s: fig.send("c1", to_dsid("c1", s)).only() for s in placed}
    store = Store(f"sqlite:///{tmp_path / 'dyncast.db'}")
    store.apply(fig.core.drain_writes())
    snap = store.load()
    fig.core = Core(ControllerConfig(services=(fig.svc, SVC2)))
    fig.core.restore(snap.services, snap.instances, snap.bindings, fig.now)
    asked: set[Probe] = set()
    for dpid, ports in TRIANGLE_PORTS.items():
        fig.apply(fig.core.switch_connected(dpid, reads_table=True))
        fig.apply(fig.core.switch_ports(dpid, ports, fig.now))
        asked |= probes(read_back(fig, dpid))
    for name, (ip, mac, _, _) in HOSTS.items():
        if name != "c1":
            fig.send(name, arp(mac, ip, BROADCAST, "10.0.0.254"))
    assert C1_IP not in fig.core.topology.hosts
    return fig, at, asked


def ticks(fig: Figure2, seconds: int, answer: bool) -> set[Probe]:
    """`seconds` ticks, a second apart (LLDP, reports, ports settling): the probes they sent,
    answered by their hosts if `answer`."""
    asked: set[Probe] = set()
    for _ in range(seconds):
        fig.now += 1.0
        fig.report()
        intents = fig.core.tick(fig.now)
        asked |= probes(intents)
        res = fig.apply(intents)
        if answer:
            answered(fig, res)
    return asked


@pytest.mark.parametrize("mode", ALL)
def test_a_client_that_only_receives_is_placed_and_its_routes_follow_a_failed_link(
        mode: str, tmp_path: Path) -> None:
    """Once the ports have settled, c1 is asked for out of its own port only, answers and is
    placed there; when the r1-r2 link then fails, the instances' replies on the held flows
    reach c1 the other way round, from the D-SID."""
    fig, at, _ = restarted(mode, tmp_path)
    assert ticks(fig, 3, answer=True) == {(C1_DPID, C1_PORT, C1_IP)}
    assert (fig.core.topology.hosts[C1_IP].dpid, fig.core.topology.hosts[C1_IP].port) == (
        C1_DPID, C1_PORT)
    for end in R1_R2:  # the r1-r2 link fails
        del fig.net.peer[end]
        fig.apply(fig.core.port_changed(end[0], end[1], False, fig.now))
    for sport, hop in at.items():
        res = fig.reply(hop)
        assert res.is_output(C1_PORT, C1_DPID, ipv4_src=DSID, ipv4_dst=C1_IP, tcp_dst=sport), (
            sport, hop.dpid, res)
    assert stats_view(fig.core)["host_route_probes"] == 1


def test_no_probe_before_the_ports_settle_nor_by_a_link_and_a_silent_host_is_asked_again_later(
        tmp_path: Path) -> None:
    """The reads at connection, before link discovery, send no probe; once the ports have
    settled c1 is probed out of its port (r1's route to it) and nowhere else (the other
    switches' routes to it lead into links); c1 not answering is asked again at the periodic
    reads only once REPROBE_S has passed."""
    fig, _, at_connection = restarted("bucket", tmp_path)
    assert at_connection == set()
    assert ticks(fig, 2, answer=False) == {(C1_DPID, C1_PORT, C1_IP)}
    first, seen = fig.now, []
    while fig.now < first + REPROBE_S + 1.5:
        fig.now += 0.5
        for dpid in TRIANGLE_PORTS:
            seen += [(fig.now, p) for p in probes(read_back(fig, dpid))]
    assert seen == [(first + REPROBE_S, (C1_DPID, C1_PORT, C1_IP))]
    assert C1_IP not in fig.core.topology.hosts


def test_routes_waiting_for_their_ports_are_probed_a_bounded_number_a_tick() -> None:
    """A switch read at connection with 5,000 routes to addresses not located, at a port that
    has not settled: once it has, a tick looks at DUE_STEP of them, the next ticks at the rest;
    each address is probed once."""
    unplaced = Unplaced()
    found = [(f"10.1.{i // 256}.{i % 256}", 1) for i in range(5000)]

    def settles(dpid: int, port: int) -> float:
        return 2.0

    def probe(ip: str, dpid: int, port: int) -> list[Intent]:
        return [PacketOut(dpid, ip.encode(), ())]

    assert unplaced.read(7, found, 1.0, settles, probe) == []
    assert unplaced.due(1.5, lambda ip: False, settles, probe) == []  # not settled yet
    steps = [unplaced.due(t, lambda ip: False, settles, probe) for t in (2.0, 3.0, 4.0, 5.0)]
    assert [len(s) for s in steps] == [DUE_STEP, DUE_STEP, 5000 - 2 * DUE_STEP, 0]
    assert len({i.data for s in steps for i in s}) == 5000 == unplaced.probed
