"""The network feature: one object the core asks about switches, links, hosts and link load.

Boundary: it applies what the switches report (ports, LLDP frames, port counters, round trips,
hosts seen) to the topology and the link monitor, keeps link costs current, and answers with
the forwarding entries that follow. It says *whether* paths may have changed; recomputing
decisions then is the caller's job.
"""

from __future__ import annotations

import hmac
from collections.abc import Callable
from typing import Any

from controller.intents import FlowMod, Intent, Output, PacketOut, SetField
from controller.network.costs import PathCosts
from controller.network.forwarding import Forwarding, base_flows
from controller.network.monitor import Direction, MonitorSettings, NetworkMonitor, costs_changed
from controller.network.packet import Packet, lldp_tag
from controller.network.settling import Settling
from controller.network.topology import HostLoc, Topology
from controller.network.unplaced import Found, Unplaced


class Network:
    """Topology, link measurements and ordinary forwarding, kept in step."""

    def __init__(self, settings: MonitorSettings, is_dsid: Callable[[str], bool]) -> None:
        self.topology = Topology(hop_ms=settings.hop_ms)
        self.monitor = NetworkMonitor(settings)
        self.forwarding = Forwarding(self.topology, is_dsid)
        self.costs = PathCosts(self.topology, self.monitor)  # shared by every service
        self.away: dict[int, float] = {}  # switches whose control channel is down, since when
        # the hosts each forgotten switch had (`left`), put back if it comes back (`ports`)
        self.forgotten: dict[int, list[HostLoc]] = {}
        # link directions whose measured delay moved since the last tick (applied then), and
        # whether links went without their costs being looked at (every link is, then)
        self._delayed: set[tuple[tuple[int, int], tuple[int, int]]] = set()
        self._stale = False
        self.settling = Settling()  # new ports' first round of discovery (settling.py)
        self.unplaced = Unplaced()  # routes read back to addresses not located (unplaced.py)
        self.lldp_key: bytes | None = None  # tags our LLDP frames (`keyed`)
        self.lldp_refused = 0  # frames without our tag: a host's forgery, or another's

    def keyed(self, key: bytes) -> None:
        """Tag the LLDP frames we send with `key` and take only frames so tagged as links:
        a host that sends a frame naming another switch's port cannot fake a link (and
        unlearn hosts, and draw paths through itself). The shell gives every process of a
        store the same key (apps/store.py `secret`), so a cluster's members take each
        other's frames."""
        self.lldp_key = self.forwarding.lldp_key = key

    def connected(self, dpid: int) -> list[FlowMod]:
        """A switch connected: what it holds is unknown; it gets the fixed pipeline."""
        self.forwarding.forget_switch(dpid)
        self.unplaced.forget(dpid)
        self.away.pop(dpid, None)
        return list(base_flows(dpid))

    def ports(self, dpid: int, ports: set[int], now: float,
              settle_s: float = 0.0) -> tuple[list[Intent], list[str]]:
        """A switch's port list: discover links from it and route hosts through it (hosts
        seen at the ports it did not have are learned once those have settled, `settle_s`
        later). Return the intents and the hosts lost with ports it no longer has (after a
        reconnect)."""
        lost: list[str] = []
        had = self.topology.ports.get(dpid, set())
        for port in sorted(had - ports):
            link_lost, hosts_lost = self.topology.port_down(dpid, port)
            self.settling.forget(dpid, port)
            self._stale |= link_lost  # its cost is looked at next tick, with every link's
            lost += [h.ip for h in hosts_lost]
        self.settling.begin(dpid, ports - had, now, settle_s)
        self.topology.switch_up(dpid, ports)
        self._recall(dpid, ports)
        self.topology.touch_links(dpid, now)  # links kept through a reconnect: seen now
        return self.forwarding.lldp(now, [dpid]) + self.forwarding.sync_routes(), lost

    def _recall(self, dpid: int, ports: set[int]) -> None:
        """A forgotten switch is back: the hosts it had are where they were, as they would be
        had it come back within its grace period, at the ports it still has, unless seen
        elsewhere since. A client that only receives on a held connection sends nothing that
        would place it again (its packets match its binding), so without this the routes to
        it stayed gone until the sender's TCP backed off into a route miss and an ARP probe.
        Instances (locked addresses) are not put back: they are down until seen (probed)."""
        for h in self.forgotten.pop(dpid, []):
            if h.port in ports and h.ip not in self.topology.hosts and not self.topology.locked(
                    h.ip):
                self.topology.learn_host(h.ip, h.mac, dpid, h.port)

    def learn(self, ip: str, mac: str, dpid: int, port: int, now: float, own: bool = True,
              sure: bool = False) -> bool:
        """A sender seen at (dpid, port) (`own`: by this member as the switch's master;
        `sure`: in a packet that cannot have crossed a link): True when that is where it now
        lives (new or moved). At a port still settling, the sighting is held instead unless
        `sure` (settling.py)."""
        if (dpid, port) in self.settling.until and self.topology.is_link_port(dpid, port):
            return False  # (it crossed a link: nothing to hold; `learn_host` refuses it too)
        if self.settling.hold(ip, mac, dpid, port, now, own, sure):
            return False
        return self.topology.learn_host(ip, mac, dpid, port)

    def settled(self, now: float, limit: int | None = None) -> list[tuple[str, bool]]:
        """Learn the sightings held at ports settled by `now`, at most `limit` of them (each
        where it was seen, unless that port is a link now or is gone); return the addresses
        that now live there, each with whether it was seen as its switch's master."""
        topo = self.topology
        return [(ip, own) for ip, mac, dpid, port, own in self.settling.settled(now, limit)
                if port in topo.ports.get(dpid, ()) and topo.learn_host(ip, mac, dpid, port)]

    def settles(self, dpid: int, port: int) -> float | None:
        """When (dpid, port), an edge port, settles or settled (0.0: known before); None when
        it is no edge port: a link's end, or not a port of a known switch."""
        if port not in self.topology.ports.get(dpid, ()) or self.topology.is_link_port(dpid, port):
            return None
        return self.settling.until.get((dpid, port), 0.0)

    def routes_unplaced(self, dpid: int, found: list[Found], now: float) -> list[Intent]:
        """A read of `dpid` found routes to addresses not located: the probes (unplaced.py)."""
        return self.unplaced.read(dpid, found, now, self.settles, self.forwarding.ask)

    def ask_unplaced(self, now: float) -> list[Intent]:
        """The probes for routes read at ports that have settled since (unplaced.py)."""
        hosts = self.topology.hosts
        return self.unplaced.due(now, hosts.__contains__, self.settles, self.forwarding.ask)

    def disconnected(self, dpid: int, now: float) -> bool:
        """A known switch's control channel closed: keep it, its links and hosts as they are
        (its data plane may well be forwarding on) until `grace_over`. False if unknown."""
        if dpid not in self.topology.ports:
            return False
        self.away.setdefault(dpid, now)
        return True

    def grace_over(self, now: float, grace_s: float) -> list[int]:
        """Switches away for `grace_s` or longer (they are to be forgotten)."""
        over = [d for d, since in self.away.items() if now - since >= grace_s]
        for dpid in over:
            del self.away[dpid]
        return over

    def left(self, dpid: int) -> list[str]:
        """A switch disconnected: forget it; return the addresses of the hosts lost with it."""
        self.away.pop(dpid, None)
        lost = self.topology.switch_down(dpid)
        self.settling.forget(dpid)
        if lost:  # (no more than it held; replaced if it leaves again)
            self.forgotten[dpid] = lost
        self._stale = True  # its links and counters went: every link is looked at next tick
        self.forwarding.forget_switch(dpid)
        self.unplaced.forget(dpid)
        self.monitor.forget(dpid)
        return [h.ip for h in lost]

    def port_up(self, dpid: int, port: int, now: float, settle_s: float = 0.0) -> list[Intent]:
        """A port came up: look for a link behind it (hosts seen there meanwhile are learned
        `settle_s` later, if it was new)."""
        if port not in self.topology.ports.get(dpid, ()):
            self.settling.begin(dpid, {port}, now, settle_s)
        self.topology.port_up(dpid, port)
        return self.forwarding.lldp(now, [dpid])

    def port_down(self, dpid: int, port: int) -> tuple[bool, list[str]]:
        """A port went down: (whether paths may have changed, the hosts lost with it)."""
        self.settling.forget(dpid, port)
        link_lost, hosts_lost = self.topology.port_down(dpid, port)
        if not link_lost and not hosts_lost:
            return False, []
        self.refresh_costs()
        return True, [h.ip for h in hosts_lost]

    def expire(self, now: float, link_timeout_s: float) -> bool:
        """Links not seen for `link_timeout_s` are gone, and the measured delays that moved
        since the last tick are applied; True if paths may have changed.

        A link's cost moves only with its ports' counters (applied as each switch replies,
        `port_stats`), its measured delay (`lldp_in` notes it, applied here, once a tick) and
        links coming or going. So a tick looks at every link only when links went (here, or
        with a switch) and otherwise at the links whose delay moved: on a 754-switch network
        looking at every link each tick took about 10 ms CPU."""
        gone = self.topology.expire_links(now, link_timeout_s, set(self.away))
        if gone or self._stale:
            return self.refresh_costs() | gone
        if not self._delayed:
            return False
        delayed, self._delayed = self._delayed, set()
        links = self.topology.known_ways(delayed)
        return bool(links) and self._apply(links)

    def port_stats(self, dpid: int, samples: list[tuple[int, int, int]], now: float,
                   defer: bool = False) -> bool:
        """Port counters (port, tx_bytes, rx_bytes) of one switch; True if costs changed.
        They move the rates of that switch's ports only, so only its links are looked at and
        applied (every switch's reply, every stats interval: on a 754-switch network looking
        at every link took 10-18 ms per reply); a link of another switch is looked at when
        that switch replies, or when links come or go (`refresh_costs`). `defer`: the trees'
        repairs are left queued (`Topology.repair_some`)."""
        for port, tx_bytes, rx_bytes in samples:
            self.monitor.rates.update(dpid, port, tx_bytes, rx_bytes, now)
        links = self.topology.links_at(dpid)
        for direction in links:
            self.costs.refresh_link(direction)
        return self._apply(links, defer)

    def _apply(self, links: list[Direction], defer: bool = False) -> bool:
        """Apply the costs of `links` (every direction of each, their parts looked at already)
        if one moved by more than COST_CHANGE; True if it did (paths may have changed)."""
        costs = self.monitor.costs(self.topology, links)
        old = self.topology.link_cost_ms
        if any(k not in old for k in costs):  # a link never priced: every link is
            return self.refresh_costs()
        if not costs_changed({k: old[k] for k in costs}, costs):
            return False
        self.topology.set_costs({**old, **costs}, defer)
        return True

    def lldp_in(self, dpid: int, in_port: int, pkt: Packet, now: float,
                measure: bool = True) -> bool:
        """An LLDP frame we sent came back in at another switch: that is a link (not one
        without our tag, once `keyed`). True when the link is new (paths may have changed).
        `measure`: its send time is ours, a link delay can be measured from it."""
        if pkt.lldp_dpid is None or pkt.lldp_port is None:
            return False
        if self.lldp_key is not None and not _tagged(self.lldp_key, pkt):
            self.lldp_refused += 1
            return False
        direction = ((pkt.lldp_dpid, pkt.lldp_port), (dpid, in_port))
        new = self.topology.link_seen(*direction, now)
        if pkt.lldp_sent_at is not None and measure:
            self.monitor.lldp_delay(direction, pkt.lldp_sent_at, now)
            if not new and self.monitor.config.use_measured_delay:
                self.costs.refresh_link(direction)
                self._delayed.add(direction)  # its cost is applied at the next tick
        if new:
            self.refresh_costs()
        return new

    def refresh_costs(self) -> bool:
        """Apply the monitor's link costs to the topology; True if paths may have changed."""
        self._stale = False
        self._delayed.clear()
        self.costs.refresh()
        costs = self.monitor.costs(self.topology)
        if not costs_changed(self.topology.link_cost_ms, costs):
            return False
        self.topology.set_costs(costs)
        return True

    def deliver(self, dpid: int, in_port: int, ip: str, data: bytes) -> list[Intent] | None:
        """A packet to an address we have no entry for: deliver it if we now know a route
        (None when we do not)."""
        port = self.topology.out_port(dpid, ip)
        if port is None or port == in_port:
            return None
        mac = self.topology.hosts[ip].mac
        return [PacketOut(dpid, data, (SetField("eth_dst", mac), Output(port)), in_port)]

    def view(self) -> dict[str, Any]:
        """Switches (connected or away), hosts, and links with their rate, utilisation, delay
        and cost."""
        view = self.topology.to_dict()
        for switch in view["switches"]:  # a switch away keeps its place for its grace period
            switch["connected"] = switch["dpid"] not in self.away
            switch["away_since"] = self.away.get(switch["dpid"])
        for link in view["links"]:
            direction = ((link["src"]["dpid"], link["src"]["port"]),
                         (link["dst"]["dpid"], link["dst"]["port"]))
            link.update(self.monitor.direction_view(direction))
        return view


def _tagged(key: bytes, pkt: Packet) -> bool:
    """True when the LLDP frame carries the tag `key` gives what it says."""
    if pkt.lldp_tag is None or pkt.lldp_dpid is None or pkt.lldp_port is None or not (
            0 <= pkt.lldp_dpid < 1 << 64 and 0 <= pkt.lldp_port < 1 << 32):
        return False
    return hmac.compare_digest(pkt.lldp_tag, lldp_tag(key, pkt.lldp_dpid, pkt.lldp_port,
                                                      pkt.lldp_sent_at))
