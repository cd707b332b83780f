"""Link measurements: rates from port counters, utilisation, delay from LLDP, and link cost.

Port counters are cumulative 64-bit values; a sample lower than the previous one is a wrap when
the previous value was close to the top, and otherwise a reset (a switch that restarted): the
reset sample only starts a new baseline. Delays come from LLDP frames stamped with the send time:
the one-way time minus half of each switch's control-channel round trip (OpenFlow echo).
"""

from __future__ import annotations

from dataclasses import dataclass

COUNTER_BITS = 64
WRAP_ZONE = 1 << (COUNTER_BITS - 2)  # a drop from the top quarter of the range is a wrap
MAX_UTILISATION = 0.95
EWMA_ALPHA = 0.3
PACKET_BITS = 1500 * 8  # one full-size packet (Ethernet MTU): a link queue's unit of work


def counter_delta(old: int, new: int, bits: int = COUNTER_BITS) -> int | None:
    """How far a counter moved from `old` to `new`; None when it was reset."""
    if new >= old:
        return new - old
    top = 1 << bits
    if top - old <= (WRAP_ZONE if bits == COUNTER_BITS else top >> 2):
        return top - old + new
    return None


def utilisation(rate_bps: float, capacity_bps: float | None) -> float | None:
    """The fraction of capacity in use, or None when the capacity is unknown."""
    if not capacity_bps:
        return None
    return max(0.0, rate_bps / capacity_bps)


def link_delay_ms(sent_at: float, received_at: float, rtt_src_s: float | None,
                  rtt_dst_s: float | None) -> float | None:
    """One-way link delay from an LLDP frame: transit minus half of each control round trip."""
    if rtt_src_s is None or rtt_dst_s is None or received_at < sent_at:
        return None
    return max(0.0, (received_at - sent_at) - (rtt_src_s + rtt_dst_s) / 2.0) * 1000.0


def link_cost_ms(delay_ms: float, util: float | None, congestion_ms: float) -> float:
    """A link's cost: its delay plus a congestion penalty `congestion_ms * u / (1 - u)`."""
    if util is None:
        return delay_ms
    u = min(MAX_UTILISATION, util)
    return delay_ms + congestion_ms * u / (1.0 - u)


def packet_ms(capacity_bps: float | None) -> float | None:
    """The time to send one full-size packet at `capacity_bps` (None: capacity unknown). An
    M/M/1 queue of such packets waits this times `u / (1 - u)` on average."""
    if not capacity_bps:
        return None
    return PACKET_BITS / capacity_bps * 1000.0


def ewma(old: float | None, new: float, alpha: float = EWMA_ALPHA) -> float:
    """Exponentially weighted moving average (the first sample is taken as is)."""
    return new if old is None else old + alpha * (new - old)


@dataclass(slots=True)
class _Sample:
    """The previous counter sample of a port."""

    tx_bytes: int
    rx_bytes: int
    at: float


class PortRates:
    """Transmit and receive rates (bits/s) of every port, from successive counter samples."""

    def __init__(self) -> None:
        self._last: dict[tuple[int, int], _Sample] = {}
        self.rates: dict[tuple[int, int], tuple[float, float]] = {}

    def update(self, dpid: int, port: int, tx_bytes: int, rx_bytes: int, now: float) -> None:
        """Take one sample; the rate is over the interval since the previous sample."""
        key = (dpid, port)
        prev = self._last.get(key)
        self._last[key] = _Sample(tx_bytes, rx_bytes, now)
        if prev is None or now <= prev.at:
            return
        dtx = counter_delta(prev.tx_bytes, tx_bytes)
        drx = counter_delta(prev.rx_bytes, rx_bytes)
        if dtx is None or drx is None:
            self.rates.pop(key, None)  # counters were reset: wait for the next interval
            return
        span = now - prev.at
        self.rates[key] = (dtx * 8.0 / span, drx * 8.0 / span)

    def tx_bps(self, dpid: int, port: int) -> float | None:
        """The latest transmit rate of a port, if known."""
        rate = self.rates.get((dpid, port))
        return None if rate is None else rate[0]

    def forget(self, dpid: int) -> None:
        """Drop a switch's samples (it left; its counters will start again)."""
        for key in [k for k in self._last if k[0] == dpid]:
            del self._last[key]
            self.rates.pop(key, None)
