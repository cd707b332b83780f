"""The network's state beyond its shape: link load, link delay, and the cost of each link.

Fed with port statistics, OpenFlow echo round trips and timestamped LLDP frames, it gives each
link a cost in milliseconds: its delay (configured, else measured when `use_measured_delay`,
else `hop_ms`) plus a congestion penalty from the busier direction's utilisation, scaled by
`congestion_ms` or, when that is None, by the time to send one packet at the link's capacity.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from controller.network.linkstats import (
    PortRates,
    ewma,
    link_cost_ms,
    link_delay_ms,
    packet_ms,
    utilisation,
)
from controller.network.topology import Topology

Direction = tuple[tuple[int, int], tuple[int, int]]
COST_CHANGE = 0.05  # relative change of a link's cost that counts as a change


@dataclass(frozen=True, slots=True)
class LinkConfig:
    """Administrative facts about the link between two switches."""

    a: int
    b: int
    delay_ms: float | None = None
    capacity_mbps: float | None = None
    admin_ms: float = 0.0


@dataclass(frozen=True, slots=True)
class MonitorSettings:
    """How links are priced: administrative facts, defaults and the congestion penalty."""

    links: tuple[LinkConfig, ...] = ()
    link_capacity_mbps: float = 0.0
    congestion_ms: float | None = 10.0  # None: per link, one packet's time at its capacity
    use_measured_delay: bool = False
    hop_ms: float = 1.0


class NetworkMonitor:
    """Measurements per switch and per link direction, and the link costs they imply."""

    def __init__(self, config: MonitorSettings) -> None:
        self.config = config
        self.rates = PortRates()
        self.rtt_s: dict[int, float] = {}
        self.delay_ms: dict[Direction, float] = {}
        self._configured = {frozenset((lk.a, lk.b)): lk for lk in config.links}

    def echo_rtt(self, dpid: int, rtt_s: float) -> None:
        """A control-channel round trip to a switch was measured."""
        self.rtt_s[dpid] = ewma(self.rtt_s.get(dpid), rtt_s)

    def lldp_delay(self, direction: Direction, sent_at: float, now: float) -> None:
        """An LLDP frame sent at `sent_at` crossed `direction` and reached us at `now`."""
        src, dst = direction
        delay = link_delay_ms(sent_at, now, self.rtt_s.get(src[0]), self.rtt_s.get(dst[0]))
        if delay is not None:
            self.delay_ms[direction] = ewma(self.delay_ms.get(direction), delay)

    def forget(self, dpid: int) -> None:
        """A switch left: its counters and round trip start again when it returns."""
        self.rates.forget(dpid)
        self.rtt_s.pop(dpid, None)

    def capacity_bps(self, a: int, b: int) -> float | None:
        """The configured capacity of the link a-b, else the default; None when unknown."""
        lk = self._configured.get(frozenset((a, b)))
        mbps = lk.capacity_mbps if lk and lk.capacity_mbps else self.config.link_capacity_mbps
        return mbps * 1e6 if mbps else None

    def base_delay_ms(self, direction: Direction) -> float:
        """The delay a link's cost starts from (configured, measured, or one hop)."""
        lk = self._configured.get(frozenset((direction[0][0], direction[1][0])))
        if lk is not None and lk.delay_ms is not None:
            return lk.delay_ms
        measured = self.delay_ms.get(direction)
        if self.config.use_measured_delay and measured is not None:
            return measured
        return self.config.hop_ms

    def parts(self, direction: Direction) -> dict[str, float]:
        """The components of one link direction's cost: delay, congestion, administrative."""
        (a, pa), (b, _) = direction
        rate = self.rates.tx_bps(a, pa)
        capacity = self.capacity_bps(a, b)
        util = None if rate is None else utilisation(rate, capacity)
        delay = self.base_delay_ms(direction)
        lk = self._configured.get(frozenset((a, b)))
        scale = self.config.congestion_ms
        if scale is None:
            scale = packet_ms(capacity) or 0.0  # util is None too when the capacity is unknown
        return {"delay_ms": delay,
                "congestion_ms": link_cost_ms(delay, util, scale) - delay,
                "admin_ms": lk.admin_ms if lk is not None else 0.0}

    def link_parts(self, a: tuple[int, int], b: tuple[int, int]) -> dict[str, float]:
        """The components of the dearer direction of the link between ports `a` and `b`."""
        return max(self.parts((a, b)), self.parts((b, a)), key=lambda p: sum(p.values()))

    def direction_view(self, direction: Direction) -> dict[str, Any]:
        """Rate, utilisation, measured delay and cost of one link direction."""
        (a, pa), (b, _) = direction
        rate = self.rates.tx_bps(a, pa)
        util = None if rate is None else utilisation(rate, self.capacity_bps(a, b))
        measured = self.delay_ms.get(direction)
        return {"rate_bps": None if rate is None else round(rate, 1),
                "utilisation": None if util is None else round(util, 4),
                "delay_ms": None if measured is None else round(measured, 3),
                "cost_ms": round(sum(self.parts(direction).values()), 3)}

    def costs(self, topology: Topology,
              directions: list[Direction] | None = None) -> dict[frozenset[int], float]:
        """Each undirected link's cost: the dearer of its two directions (of the links of
        `directions`, else of every link)."""
        out: dict[frozenset[int], float] = {}
        for direction in topology.links() if directions is None else directions:
            key = frozenset((direction[0][0], direction[1][0]))
            cost = self.direction_view(direction)["cost_ms"]
            out[key] = max(cost, out.get(key, 0.0))
        return out


def costs_changed(old: dict[frozenset[int], float], new: dict[frozenset[int], float]) -> bool:
    """True when a link appeared, vanished or changed its cost by more than COST_CHANGE."""
    if old.keys() != new.keys():
        return True
    return any(abs(new[k] - old[k]) > COST_CHANGE * max(old[k], 1e-3) for k in old)
