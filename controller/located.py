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
# Held sightings learned a step, as routes (one a host and switch): a tick step takes up to
# SETTLED_ROUTES, a packet-in a quarter of that (the ports settled meanwhile are found by
# the next packet-in or tick step). A route costs a few microseconds of Python.
SETTLED_ROUTES = 2_000


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
        if now >= self.network.settling.due:
            intents += self.settled(now, SETTLED_ROUTES // 4)
        return intents

    def settled(self, now: float, routes: int = SETTLED_ROUTES) -> list[Intent]:
        """Learn hosts held at ports that have settled by `now`: as many as cost about
        `routes` routes (at least one); `pending` says whether more are left."""
        per = max(1, routes // max(1, len(self.network.topology.ports)))
        found = self.network.settled(now, per)
        return self._located_all(found, now) if found else []

    def pending(self) -> bool:
        """True when held sightings of settled ports are left to learn (`settled`)."""
        return bool(self.network.settling.ready)

    def _located(self, ip: str, now: float, own: bool) -> list[Intent]:
        """`ip` lives where the topology now says (see `_located_all`)."""
        return self._located_all([(ip, own)], now)

    def _located_all(self, found: list[tuple[str, bool]], now: float) -> list[Intent]:
        """Each address lives where the topology now says: routes to it (one sync for all);
        liveness notes it; `own` (its switch's master saw it): a client's bindings follow it
        and an instance's decisions are taken again, once a service (else the instance's
        service is left dirty, recomputed at the next flush: observer.py)."""
        hosts = self.network.topology.hosts
        for ip, _ in found:
            loc = hosts[ip]
            self.liveness.seen(ip, loc.dpid, loc.port, now)
        intents = self.network.forwarding.sync_routes([ip for ip, _ in found])
        services: set[str] = set()
        for ip, own in found:
            inst = self.catalogue.instances.get(ip)
            if not own:
                if inst is not None:
                    self.intake.dirty.add(inst.service)
                continue
            intents += self.flows.follow_client(ip, hosts[ip].dpid, now)
            if inst is not None:
                services.add(inst.service)
        for name in sorted(services):
            intents += self.recompute(name, now)
        return intents
