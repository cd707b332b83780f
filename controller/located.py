"""Where senders live: a packet's sender learned at its port, and what follows from that.

Boundary: between the network (which says whether a sighting moves a host, or holds it while
its port settles: network/settling.py) and the features a host's place matters to: its routes,
liveness, a client's bindings (which follow it to a new switch) and an instance's decisions.
It owns no state; the core builds it with its features and its recompute.
"""

from __future__ import annotations

from collections.abc import Callable

from controller.dataplane.reactive import ReactiveFlows
from controller.instances.catalogue import Catalogue
from controller.instances.intake import Intake
from controller.instances.liveness import Liveness
from controller.intents import Intent
from controller.network.network import Network

SETTLE_LLDP_INTERVALS = 1.5  # a new port's first round of discovery, in LLDP intervals


class Locator:
    """Sightings in, the intents of each host found somewhere new out."""

    def __init__(self, network: Network, liveness: Liveness, flows: ReactiveFlows,
                 features: tuple[Catalogue, Intake],
                 recompute: Callable[[str, float], list[Intent]]) -> None:
        self.network = network
        self.liveness = liveness
        self.flows = flows
        self.catalogue, self.intake = features
        self.recompute = recompute

    def learn(self, ip: str, mac: str, dpid: int, port: int, now: float, own: bool = True,
              sure: bool = False) -> list[Intent]:
        """A sender seen at (dpid, port): `own`, in a packet-in to this member as the switch's
        master (else observed at another member's switch: observer.py); `sure`, in a packet
        that cannot have crossed a link (settling.py). The intents of every host found
        somewhere new by then (this one, and those held at ports settled since)."""
        intents: list[Intent] = []
        if (ip != "0.0.0.0" and ip not in self.catalogue.by_dsid  # (a D-SID lives nowhere
                and self.network.learn(ip, mac, dpid, port, now, own, sure)):  # in particular)
            intents += self._located(ip, now, own)
        # then what was held (after: a sighting at a settled port wins over one held)
        return intents + self.settled(now) if now >= self.network.settling.due else intents

    def settled(self, now: float) -> list[Intent]:
        """Learn the hosts held at ports that have settled by `now`."""
        intents: list[Intent] = []
        for ip, own in self.network.settled(now):
            intents += self._located(ip, now, own)
        return intents

    def _located(self, ip: str, now: float, own: bool) -> list[Intent]:
        """`ip` lives where the topology now says: routes to it; liveness notes it; `own`: a
        client's bindings follow it and an instance's decisions are taken again (else the
        instance's service is left dirty, recomputed at the next flush: observer.py)."""
        loc = self.network.topology.hosts[ip]
        self.liveness.seen(ip, loc.dpid, loc.port, now)
        intents = self.network.forwarding.sync_routes([ip])
        inst = self.catalogue.instances.get(ip)
        if not own:
            if inst is not None:
                self.intake.dirty.add(inst.service)
            return intents
        intents += self.flows.follow_client(ip, loc.dpid, now)
        if inst is not None:
            intents += self.recompute(inst.service, now)
        return intents
