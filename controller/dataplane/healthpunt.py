"""Passive health's data plane: each instance's switch copies its TCP resets to the controller.

Boundary: pure. Given a service, its instances and where they are attached, it says which
entries each switch holds, and the flow-mods that turn what was sent into that
(`HealthPunts.sync`); the audit reads `at` as part of what a switch should hold.

Per TCP instance k (label L) of a service, at its own switch, access port P:
- table 0 `classify`, PRIO_HEALTH (above every entry a reply can meet there): a packet from
  port P, source D-BID k (overlay: the D-SID, which the instance answers from), source port
  the service's port, TCP flags RST and ACK set, reg2 = 0 -> set reg2 = L, resubmit to
  table 0 (the packet now meets the entries it would have met: the binding's reverse
  rewrite, the route on; this entry no longer matches), then resubmit to table 5 `health`;
- table 5 `health`: reg2 = L -> meter HEALTH_METER, output to the controller (the cookie
  names L: the packet-in says which instance sent it; one host may hold several D-BIDs on
  one port, and the rewrite may have replaced the source address by then).
RST with ACK is what a host answers a SYN with (RFC 9293 3.10.7.1); a reset answering a
segment that carries an ACK (a stray segment of a connection the instance no longer has, e.g.
one a drain deadline moved to it) has no ACK flag and is not copied, so such a storm takes
none of the meter's budget. An abort (close with unread data) carries ACK and is copied; the
controller tells it from a refusal by its sequence number (instances/health.py).
A service without a port gets no entries: any port of its D-SID reaches the instance, so a
client trying closed ports would make refusals of a healthy instance and eject it.
The copy goes last and through its own meter: a meter drops what exceeds its rate, and the
packet it drops is the copy alone, the reset having been delivered already (the datapath ran
its outputs first); a storm of resets costs the controller at most `punt_pps` packet-ins a
second per switch, and leaves the new-flow meter (PUNT_METER) to new flows. The controller
tells a refusal from the end of an established connection itself (instances/health.py).
A switch that refuses the meter (an OpenFlow error answering its meter-mod: no meter support)
gets no entries from then on, and those it was sent are deleted (`without_meter`): unmetered
copies would let a storm of resets through to the controller, and the entries the meter is
missing from are refused one by one. Its instances' refusals are not seen; elsewhere passive
health goes on, and steering is unchanged.
An instance needs a label for its entries (its cookie and reg2); labels are 16 bits and never
given back while the controller runs (dataplane/labels.py), and with passive health every
located TCP instance takes one, whatever the dataplane. Past 65,520 D-BIDs in one run, an
instance without a label gets no entries (its refusals are not seen); its service is served as
any other.
UDP is not covered: an instance's host answers a datagram to a closed port with an ICMP port
unreachable, which does not carry the service's port in its own header; matching it would
take the quoted header, which OpenFlow cannot match.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable

from controller.dataplane.rules import ETH_TYPE_IP
from controller.intents import (
    PORT_CONTROLLER,
    TABLE_CLASSIFY,
    TABLE_HEALTH,
    CookieKind,
    FlowMod,
    Intent,
    MatchValue,
    Output,
    Resubmit,
    SetField,
    cookie,
    match,
)
from controller.model import Instance, Service
from controller.network.topology import Topology

PRIO_HEALTH = 3000  # above bindings (2000) and the D-SID punts (1000); under ARP and LLDP
HEALTH_METER = 2  # the meter every reset copy passes (the new-flow punts pass meter 1)
HEALTH_REG = "reg2"  # the label of the instance whose reset this is, once it was seen
TCP_RST = 0x04
TCP_ACK = 0x10
Entries = tuple[FlowMod, ...]
Key = tuple[int, int, int, int | None]  # switch, port, label, the service's port


def health_cookie(label: int) -> int:
    """The cookie of instance `label`'s entries."""
    return cookie(CookieKind.HEALTH, label)


def entries_for(svc: Service, dpid: int, port: int, dbid: str, label: int) -> Entries:
    """The two entries of instance `dbid` (label `label`) attached at `dpid` port `port`."""
    fields: dict[str, MatchValue] = {"eth_type": ETH_TYPE_IP, "ip_proto": 6, "in_port": port,
                                     "ipv4_src": svc.dsid if svc.overlay else dbid,
                                     "tcp_flags": (TCP_RST | TCP_ACK, TCP_RST | TCP_ACK),
                                     HEALTH_REG: 0}
    if svc.port is not None:  # always, from `sync`
        fields["tcp_src"] = svc.port
    ck = health_cookie(label)
    copy = FlowMod(dpid, TABLE_CLASSIFY, PRIO_HEALTH, match(**fields), (
        SetField(HEALTH_REG, label), Resubmit(TABLE_CLASSIFY), Resubmit(TABLE_HEALTH)),
                   cookie=ck)
    punt = FlowMod(dpid, TABLE_HEALTH, PRIO_HEALTH, match(**{HEALTH_REG: label}),
                   (Output(PORT_CONTROLLER),), cookie=ck, meter=HEALTH_METER)
    return copy, punt


def _deleted(fm: FlowMod) -> FlowMod:
    """The strict delete of an entry we added."""
    return FlowMod(fm.dpid, fm.table, fm.priority, fm.match, command="delete_strict",
                   cookie=fm.cookie)


class HealthPunts:
    """What reset-copy entries each switch was sent, per service and instance."""

    def __init__(self, topology: Topology, label: Callable[[str], int | None]) -> None:
        self.topology = topology
        self.label = label
        # service -> instance -> (where it is attached and its label, its entries)
        self._held: dict[str, dict[str, tuple[Key, Entries]]] = {}
        self.meterless: set[int] = set()  # switches that refused HEALTH_METER: no entries

    def sync(self, svc: Service, insts: Iterable[Instance], enabled: bool) -> list[Intent]:
        """The flow-mods that make the switches hold `svc`'s entries for its located
        instances (none when passive health is off, or the service is not TCP or has no
        port: see the module docstring). Called on
        every recompute: an instance's entries are made again only when it moved."""
        have = self._held.get(svc.name, {})
        want: dict[str, tuple[Key, Entries]] = {}
        if enabled and svc.ip_proto in (None, 6) and svc.port is not None:
            hosts = self.topology.hosts
            for inst in insts:
                host = hosts.get(inst.dbid)
                if host is None or host.dpid in self.meterless:
                    continue
                label = self.label(inst.dbid)
                if label is None:
                    continue  # every label is in use (see the module docstring)
                key: Key = (host.dpid, host.port, label, svc.port)
                old = have.get(inst.dbid)
                want[inst.dbid] = old if old is not None and old[0] == key else (
                    key, entries_for(svc, host.dpid, host.port, inst.dbid, key[2]))
        out: list[Intent] = []
        for dbid, (key, old_entries) in have.items():
            if dbid not in want or want[dbid][0] != key:
                out += [_deleted(fm) for fm in old_entries]
        for dbid, (key, new_entries) in want.items():
            if dbid not in have or have[dbid][0] != key:
                out += new_entries
        if want:
            self._held[svc.name] = want
        else:
            self._held.pop(svc.name, None)
        return out

    def without_meter(self, dpid: int) -> list[Intent]:
        """Switch `dpid` refused HEALTH_METER: it gets no entries any more; the deletes of
        those it was sent (see the module docstring)."""
        self.meterless.add(dpid)
        out: list[Intent] = []
        for name, held in list(self._held.items()):
            for dbid, (key, entries) in list(held.items()):
                if key[0] == dpid:
                    out += [_deleted(fm) for fm in entries]
                    del held[dbid]
            if not held:
                del self._held[name]
        return out

    def remove(self, svc: Service) -> list[Intent]:
        """The service is gone: delete its entries."""
        return [_deleted(fm) for _, old in self._held.pop(svc.name, {}).values() for fm in old]

    def at(self, dpid: int) -> list[FlowMod]:
        """Every entry switch `dpid` should hold (the audit's view; sent again at connect)."""
        return [fm for held in self._held.values() for _, entries in held.values()
                for fm in entries if fm.dpid == dpid]
