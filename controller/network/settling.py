"""Ports still in their first round of link discovery, and the hosts seen at them meanwhile.

Boundary: which (switch, port) pairs are settling and until when, and the last sighting of
each address at one of them; no topology, no intents. `Network` asks it before it learns a
host and hands it the ports of a switch as they become known.

Why: a port the controller has just heard of may be a link port whose LLDP frame has not come
back yet. A packet that crossed that link (a route miss at the switch behind it, say) then
looks like a host speaking at that port. Learned there, the host's routes point into the link;
when the frame comes back a moment later the host is forgotten and its routes are deleted,
until something places it again. A cluster member restarting in a running network saw exactly
that: held connections to an instance went silent for 6.5 s. Floodlight keeps new ports in a
quarantine for the same reason and drops their packet-ins meanwhile
(floodlight/floodlight, `LinkDiscoveryManager.processNewPort` and `handlePacketIn`); here the
packets are handled as usual and only the learning waits: the last sighting of each address
at a settling port is held and learned when the port has settled, unless the port has turned
out to be a link by then (the topology then refuses it) or the address was seen at a settled
port since (that place wins).

An ARP packet is the one sighting learned at once (`sure`), as before: every switch sends ARP
to the controller at the port it came in by, so a host's ARP never crosses a link, and hosts
on a new switch are found as soon as they speak. Except the controller's own floods: it sends
an ARP it cannot answer out of every edge port, which on a new switch may be a link port not
seen yet, and the copy comes back in at the switch behind it; and a controller that knows the
requested address answers that copy by proxy, out of the port it came in by, back through the
link. So an ARP the controller flooded within its hold time, and a reply to a request it
flooded then, are held like any packet (`Forwarding.arp_sure`); a probe (sender 0.0.0.0) is
never answered by proxy, so a reply to one is its owner's. A cluster member knows only its own
floods: a copy of another member's flood coming back in at a port this member has not seen a
link at yet is learned there (and forgotten when the link is seen), a gap left open; another
member floods only out of ports it takes for edges, so it takes two members new to a link.

The round lasts `settle_s`, 1.5 LLDP intervals from when the port became known (the core's
choice): every master sends a frame out of each port it has every interval, so a link is seen
from one end or the other within one. A port the controller knew before a reconnect does not
settle again; the hosts of a switch forgotten and back are put back at once (`Network._recall`).

The held sightings of settled ports are handed out in bounded slices (`settled(now, limit)`):
at a start in a busy network thousands may be held, and learning one costs a route at every
switch; the caller takes a slice a step (locator.py).
"""

from __future__ import annotations

import heapq
from collections import deque

SIGHTINGS_MAX = 4096  # addresses held at once; a sighting of another is not held (counted)

Port = tuple[int, int]


class Settling:
    """Settling ports and the sightings held at them. A port's settling ends in a heap (a
    network's switches connect one by one at a start: each end costs its own entries, not a
    look at every port or sighting)."""

    def __init__(self) -> None:
        self.until: dict[Port, float] = {}  # port -> when it has settled
        self._ends: list[tuple[float, Port]] = []  # (until, port), stale ones skipped
        # port -> address -> (MAC, whether the packet came to this member as the switch's
        # master: observer.py learns from the others' switches); address -> its port there
        self._at: dict[Port, dict[str, tuple[str, bool]]] = {}
        self.sightings: dict[str, Port] = {}
        self.ready: deque[Port] = deque()  # settled ports with sightings not handed out yet
        self.due = float("inf")  # the earliest end, or -inf while some are ready (a cheap
        #                          test on every packet-in)
        self.held = 0  # sightings held (each, not each address)
        self.refused = 0  # sightings not held: SIGHTINGS_MAX were

    def begin(self, dpid: int, ports: set[int], now: float, settle_s: float) -> None:
        """`ports` of `dpid` became known at `now`: they settle at `now + settle_s`."""
        if settle_s <= 0 or not ports:
            return
        until = now + settle_s
        for port in ports:
            self.until[(dpid, port)] = until
            heapq.heappush(self._ends, (until, (dpid, port)))
        self.due = self._ends[0][0]

    def hold(self, ip: str, mac: str, dpid: int, port: int, now: float, own: bool,
             sure: bool) -> bool:
        """True when (dpid, port) is still settling at `now` and the packet may have crossed
        a link (not `sure`): the sighting is held (the last one of each address). False
        otherwise: the caller learns the host, and any sighting held of it elsewhere is
        dropped (this place wins)."""
        where = (dpid, port)
        until = self.until.get(where)
        if until is not None and now < until and not sure:
            was = self.sightings.get(ip)
            if was is None and len(self.sightings) >= SIGHTINGS_MAX:
                self.refused += 1
                return True
            if was is not None and was != where:
                del self._at[was][ip]
            self._at.setdefault(where, {})[ip] = (mac, own)
            self.sightings[ip] = where
            self.held += 1
            return True
        if self.sightings:
            was = self.sightings.pop(ip, None)
            if was is not None:
                del self._at[was][ip]
        return False

    def settled(self, now: float, limit: int | None = None) -> list[tuple[str, str, int, int,
                                                                         bool]]:
        """End the settling of the ports settled by `now`; return the sightings held at them
        (address, MAC, switch, port, own), for the caller to learn: at most `limit` (None:
        all), oldest port first; the rest wait for the next call (`due` says they do)."""
        ends = self._ends
        while ends and ends[0][0] <= now:
            until, where = heapq.heappop(ends)
            if self.until.get(where) != until:
                continue  # forgotten, or begun again later
            del self.until[where]
            if where in self._at:
                self.ready.append(where)
        out: list[tuple[str, str, int, int, bool]] = []
        while self.ready and (limit is None or len(out) < limit):
            where = self.ready[0]
            at = self._at.get(where)
            if at is None or where in self.until:  # forgotten, or settling again
                self.ready.popleft()
                continue
            while at and (limit is None or len(out) < limit):
                ip = next(iter(at))
                mac, own = at.pop(ip)
                del self.sightings[ip]
                out.append((ip, mac, where[0], where[1], own))
            if not at:
                self.ready.popleft()
                del self._at[where]
        self.due = -float("inf") if self.ready else ends[0][0] if ends else float("inf")
        return out

    def forget(self, dpid: int, port: int | None = None) -> None:
        """A switch (or one of its ports) went: its ports stop settling, its sightings go
        (their heap and ready entries are skipped when they come up)."""
        gone = [p for p in self.until.keys() | self._at.keys()
                if p[0] == dpid and (port is None or p[1] == port)]
        for where in gone:
            self.until.pop(where, None)
            for ip in self._at.pop(where, {}):
                del self.sightings[ip]
