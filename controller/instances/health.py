"""Passive health: an instance whose host refuses new connections is ejected for new flows.

Boundary: pure. Plain values in (a refusal seen for a D-BID, a metric report's arrival, the
service's instances and `now`), which instances are ejected out. It never changes an
instance's life-cycle state: an ejected instance stays `active`; selection
(selection/decisions.py) shows it as `ejected` and gives it no new flows, and existing
bindings keep it (their connections are already dead, or alive on their own).

The model is Envoy's outlier detection: `consecutive` connect failures within `window_s`
eject the instance for `base_eject_s` times the number of times it was ejected (capped at
`max_eject_s`); past that time, the instance's next metric report (its D-MA answering) ends
the ejection. At most `max_eject_percent` of a service's active instances are ejected at once
(at least one), and never the last one not ejected: a service keeps somewhere to send flows.

What counts as a connect failure (`is_refusal`): a TCP RST from the instance that refuses a
SYN. A host with no listener answers a SYN (which carries no ACK) with a RST whose sequence
number is 0 and which acknowledges the SYN (RFC 9293 3.10.7.1); a RST ending an established
connection carries the connection's sequence number (the ACK of the segment it answers), so
the two are told apart from the packet alone. The switch sends these RSTs to the controller
(dataplane/healthpunt.py) through their own meter.
"""

from __future__ import annotations

import struct
from collections import deque
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Any

from controller.errors import ValidationError
from controller.validate import check_integer, check_number, reject_unknown

TCP_RST_ACK = 0x14  # RST and ACK: the answer to a SYN nobody listens for
_SEQ_FLAGS = struct.Struct("!I5xB")  # sequence number, (ack, data offset), flags
EJECTIONS_COUNTED = 10  # the base time is multiplied by at most this many ejections


@dataclass(frozen=True, slots=True)
class HealthConfig:
    """[controller.health]: passive health (docs/configuration.md)."""

    enabled: bool = True
    consecutive: int = 3
    window_s: float = 1.0
    base_eject_s: float = 2.0
    max_eject_s: float = 30.0
    max_eject_percent: float = 50.0
    punt_pps: int = 100  # resets a switch may copy per second (their own meter; burst a tenth)


HEALTH_KEYS = {"enabled", "consecutive", "window_s", "base_eject_s", "max_eject_s",
               "max_eject_percent", "punt_pps"}


def health_from_dict(data: Mapping[str, Any], where: str = "controller.health") -> HealthConfig:
    """Parse the [controller.health] table; a bad value raises naming its key."""
    if not isinstance(data, Mapping):
        raise ValidationError(where, "must be a table")
    reject_unknown(data, HEALTH_KEYS, where)
    d = HealthConfig()
    enabled = data.get("enabled", d.enabled)
    if not isinstance(enabled, bool):
        raise ValidationError(f"{where}.enabled", f"must be true or false, got {enabled!r}")
    base = check_number(data.get("base_eject_s", d.base_eject_s), f"{where}.base_eject_s",
                        0.0, 3600.0)
    most = check_number(data.get("max_eject_s", d.max_eject_s), f"{where}.max_eject_s",
                        0.0, 3600.0)
    if most < base:
        raise ValidationError(f"{where}.max_eject_s", f"must be at least base_eject_s ({base:g})")
    return HealthConfig(
        enabled=enabled,
        consecutive=check_integer(data.get("consecutive", d.consecutive),
                                  f"{where}.consecutive", 1, 1000),
        window_s=check_number(data.get("window_s", d.window_s), f"{where}.window_s",
                              0.001, 3600.0),
        base_eject_s=base, max_eject_s=most,
        max_eject_percent=check_number(data.get("max_eject_percent", d.max_eject_percent),
                                       f"{where}.max_eject_percent", 0.0, 100.0),
        punt_pps=check_integer(data.get("punt_pps", d.punt_pps), f"{where}.punt_pps", 1,
                               100_000))


def is_refusal(data: bytes) -> bool:
    """True when the Ethernet frame is a TCP RST refusing a SYN: RST and ACK set, sequence
    number 0 (see the module docstring); any other frame, False."""
    if len(data) < 34 or data[12:14] != b"\x08\x00" or data[23] != 6:
        return False
    if int.from_bytes(data[20:22], "big") & 0x1FFF:
        return False  # a later fragment: no TCP header
    l4 = 14 + (data[14] & 0x0F) * 4
    if len(data) < l4 + 14:
        return False
    seq: int
    flags: int
    seq, flags = _SEQ_FLAGS.unpack_from(data, l4 + 4)
    return seq == 0 and flags & TCP_RST_ACK == TCP_RST_ACK


class PassiveHealth:
    """Which instances are ejected, from the refusals seen (see the module docstring)."""

    def __init__(self, config: HealthConfig) -> None:
        self.config = config
        self.ejected: set[str] = set()  # read by selection on every recompute
        self._refusals: dict[str, deque[float]] = {}
        self._until: dict[str, float] = {}  # ejected instance -> end of its base time
        self._times: dict[str, int] = {}  # instance -> how many times it was ejected

    def refused(self, dbid: str, active: Iterable[str], now: float) -> bool:
        """A connection to `dbid` was refused; `active`: the service's active instances
        (`dbid` among them or not). True when this ejects it."""
        if not self.config.enabled or dbid in self.ejected:
            return False
        seen = self._refusals.setdefault(dbid, deque())
        seen.append(now)
        while seen and seen[0] < now - self.config.window_s:
            seen.popleft()
        if len(seen) < self.config.consecutive or not self._may_eject(dbid, active):
            return False
        times = min(self._times.get(dbid, 0) + 1, EJECTIONS_COUNTED)
        self._times[dbid] = times
        self._until[dbid] = now + min(self.config.base_eject_s * times, self.config.max_eject_s)
        self.ejected.add(dbid)
        del self._refusals[dbid]
        return True

    def _may_eject(self, dbid: str, active: Iterable[str]) -> bool:
        """Ejecting `dbid` keeps the service within `max_eject_percent` (at least one may be
        ejected) and leaves it an active instance not ejected."""
        pool = set(active) | {dbid}
        out = len(pool & self.ejected) + 1
        limit = max(1, int(len(pool) * self.config.max_eject_percent / 100.0 + 1e-9))
        return out <= limit and out < len(pool)

    def reported(self, dbid: str, now: float) -> bool:
        """A metric report of `dbid` arrived: past its base time, its ejection ends. True when
        it did."""
        until = self._until.get(dbid)
        if until is None or now < until:
            return False
        del self._until[dbid]
        self.ejected.discard(dbid)
        return True

    def until(self, dbid: str) -> float | None:
        """When the ejection of `dbid` may end (None: not ejected)."""
        return self._until.get(dbid)

    def forget(self, dbid: str) -> None:
        """`dbid` is gone."""
        self._refusals.pop(dbid, None)
        self._until.pop(dbid, None)
        self._times.pop(dbid, None)
        self.ejected.discard(dbid)
