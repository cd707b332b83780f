"""Addresses the switches route to that the controller has not located, and the probes that
place them.

Boundary: pure. A read of a switch's table names, for each host route to an address not
located, the port the route leads out of there (dataplane/audit.py); the caller says which
ports are settled edge ports (settled: their first round of link discovery is over, so a link
behind them would be known; network/settling.py). Out come ARP probes (sender 0.0.0.0, which
only the address's owner answers, never a controller by proxy: forwarding.py), one per
address, out of the one port its route leaves by at a switch where that port is an edge port.
The owner's reply places it where it is (its packet-in, learned as any ARP is).

Why: a restarted controller keeps the routes its predecessor left for hosts it has not
located yet, and finds hosts again only as they send. A client whose packets the switches
serve alone (a `learn`, `bucket` or `conntrack` service, or a held `reactive` flow) sends
nothing the controller sees: its routes stayed as the previous process had made them, and
were not recomputed when the topology changed. Found in Mininet on GEANT (40 switches): a
transit switch lost all its links 14 s after a restart; replies to the clients routed through
it went into its dead links, and held connections were silent for up to 28 s (until the
clients' ARP entries for the D-SID went stale and their unicast ARP reached the controller);
new connections from them timed out meanwhile. Routes that lead out of a settled edge port
are probed as soon as they are read; those read at a port still settling (a switch's first
read follows its connection at once) are probed once it has settled, unless it turned out to
be a link's end. An address is probed at most every `REPROBE_S` (one that does not answer is
gone, or elsewhere: its routes are kept, as before, and it is found when it sends).
"""

from __future__ import annotations

from collections.abc import Callable, Iterable

from controller.intents import Intent

REPROBE_S = 5.0  # an address is probed again no sooner than this
ASKED_MAX = 65_536  # addresses whose last probe is remembered (older ones are forgotten first)
LATER_MAX = 65_536  # (address, port) pairs waiting for their port to settle, at all switches
DUE_STEP = 2_000  # of those, looked at a tick (the rest at the next: a loop of 5,000 compares
# held the event loop about 26 ms, dataplane/audit.py)

Found = tuple[str, int]  # (address not located, the port its route leads out of)


class Unplaced:
    """The probes for addresses the switches route to, placed nowhere yet."""

    def __init__(self) -> None:
        self._asked: dict[str, float] = {}  # address -> when it was last probed
        self._later: dict[int, tuple[float, list[Found]]] = {}  # switch -> (due, found)
        self.probed = 0  # probes sent (counted as `host_route_probes`)

    def read(self, dpid: int, found: Iterable[Found], now: float,
             settles: Callable[[int, int], float | None],
             probe: Callable[[str, int, int], list[Intent]]) -> list[Intent]:
        """A read of switch `dpid` found routes to addresses not located: probe those that
        lead out of an edge port now; keep those at a port still settling for `due`.

        settles(dpid, port): None if the port is no edge port (a link's end, or gone), else
        when it settles (or settled). probe(ip, dpid, port): the probe's intents.
        """
        out: list[Intent] = []
        later: list[Found] = []
        due = 0.0
        waiting = sum(len(f) for _, f in self._later.values()) - len(
            self._later.get(dpid, (0.0, []))[1])
        for ip, port in found:
            until = settles(dpid, port)
            if until is None:
                continue
            if until > now:
                if waiting + len(later) < LATER_MAX:
                    later.append((ip, port))
                    due = max(due, until)
                continue
            out += self._ask(ip, dpid, port, now, probe)
        if later:
            self._later[dpid] = (due, later)
        else:
            self._later.pop(dpid, None)
        return out

    def due(self, now: float, located: Callable[[str], bool],
            settles: Callable[[int, int], float | None],
            probe: Callable[[str, int, int], list[Intent]]) -> list[Intent]:
        """The probes for routes read at ports that have settled by `now` (at the tick), at
        most DUE_STEP of them looked at (the rest wait for the next tick)."""
        if not self._later:
            return []
        out: list[Intent] = []
        budget = DUE_STEP
        for dpid in [d for d, (due, _) in self._later.items() if due <= now]:
            due, found = self._later.pop(dpid)
            if len(found) > budget:  # (the rest stay, still due)
                self._later[dpid] = (due, found[budget:])
                found = found[:budget]
            budget -= len(found)
            for ip, port in found:
                until = settles(dpid, port)
                if not located(ip) and until is not None and until <= now:
                    out += self._ask(ip, dpid, port, now, probe)
            if budget <= 0:
                break
        return out

    def forget(self, dpid: int) -> None:
        """A switch left or reconnected: what was read of it waits for its next read."""
        self._later.pop(dpid, None)

    def _ask(self, ip: str, dpid: int, port: int, now: float,
             probe: Callable[[str, int, int], list[Intent]]) -> list[Intent]:
        """Probe `ip` out of (dpid, port), unless it was probed within REPROBE_S."""
        if now - self._asked.get(ip, -1e9) < REPROBE_S:
            return []
        self._asked.pop(ip, None)  # (re-inserted last: the oldest are forgotten first)
        self._asked[ip] = now
        while len(self._asked) > ASKED_MAX:
            del self._asked[next(iter(self._asked))]
        self.probed += 1
        return probe(ip, dpid, port)
