"""What the switches' connection trackers hold for `conntrack` services: the reader's settings,
the parser of `ovs-appctl dpctl/dump-conntrack`, and the latest read of each zone.

Boundary: pure. OpenFlow cannot read a tracker, so the shell runs `ovs-appctl` where the switch
is local (apps/tracker.py), off the event loop, every `interval_s`, and hands the text to
`parse_dump`; `TrackerReads` keeps each zone's latest entries with the time the read was
*requested*, for `/bindings`, the per-zone counters and drains (`dataplane/drains.py`). With
`reader = "none"` (the controller is not beside the switch) nothing is read and the views say so.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from controller.errors import ValidationError
from controller.validate import check_number, reject_unknown

READERS = ("ovs-appctl", "none")
# a TCP connection is over when both directions are in these states: each side's FIN sent
# and acknowledged (FIN_WAIT_2, TIME_WAIT: Open vSwitch's states, from pf), or a reset
FINISHED = frozenset({"FIN_WAIT_2", "TIME_WAIT", "CLOSED"})
_TUPLE = re.compile(r"(orig|reply)=\(([^)]*)\)")
_FIELD = re.compile(r"(?:^|,)(zone|mark)=(\d+)")
_STATE = re.compile(r"state(?:_orig|_reply)?=([A-Z_0-9]+)")
_LIMIT = re.compile(r"zone=(\d+),limit=(\d+)")
_TARGET = re.compile(r"[A-Za-z0-9_./@:-]{1,200}")


@dataclass(frozen=True, slots=True)
class TrackerConfig:
    """[dataplane.conntrack]: how (whether) the controller reads the trackers, and the limit of
    entries it sets on each `conntrack` service's zone (0: none, the tracker's global one)."""

    reader: str = "ovs-appctl"
    target: str | None = None  # ovs-appctl -t TARGET (None: the local ovs-vswitchd)
    interval_s: float = 5.0
    max_entries: int = 10000  # per zone and read; a read past it is marked truncated
    zone_limit: int = 0


def tracker_from_dict(data: Any, where: str = "dataplane.conntrack") -> TrackerConfig:
    """Parse the [dataplane.conntrack] table; raises ValidationError naming the key."""
    if not isinstance(data, Mapping):
        raise ValidationError(where, "must be a table")
    reject_unknown(data, {"reader", "target", "interval_s", "max_entries", "zone_limit"}, where)
    d = TrackerConfig()
    reader = data.get("reader", d.reader)
    if reader not in READERS:
        raise ValidationError(f"{where}.reader", f"must be one of {', '.join(READERS)}, "
                              f"got {reader!r}")
    target = data.get("target", d.target)
    if target is not None and (not isinstance(target, str) or not _TARGET.fullmatch(target)):
        raise ValidationError(f"{where}.target", "must be an ovs-appctl target (a name or a "
                              "socket path: letters, digits, _ . / @ : -)")
    out = TrackerConfig(
        reader=reader, target=target,
        interval_s=check_number(data.get("interval_s", d.interval_s), f"{where}.interval_s",
                                0.5, 3600.0),
        max_entries=int(check_number(data.get("max_entries", d.max_entries),
                                     f"{where}.max_entries", 1, 1_000_000)),
        zone_limit=int(check_number(data.get("zone_limit", d.zone_limit),
                                    f"{where}.zone_limit", 0, 100_000_000)))
    if out.zone_limit and reader == "none":
        raise ValidationError(f"{where}.zone_limit", "needs reader = \"ovs-appctl\" (the "
                              "limit is set with ovs-appctl dpctl/ct-set-limits)")
    return out


@dataclass(frozen=True, slots=True)
class TrackedConn:
    """One tracker entry: the client's original tuple, who replies, the mark, the TCP state."""

    zone: int
    proto: str
    src: str
    dst: str
    sport: int | None
    dport: int | None
    reply_src: str
    mark: int
    state: str | None  # TCP only ("ESTABLISHED", "TIME_WAIT", or "orig/reply" when they differ)

    @property
    def live(self) -> bool:
        """False for a TCP connection that is over but still lingers in the tracker."""
        return self.state is None or not set(self.state.split("/")) <= FINISHED


def _kv(text: str) -> dict[str, str]:
    """`src=1.2.3.4,dst=...` as a dict."""
    return dict(p.split("=", 1) for p in text.split(",") if "=" in p)


def _port(value: str | None) -> int | None:
    """A port number, or None when the tuple has none (ICMP)."""
    return int(value) if value is not None and value.isdigit() else None


def parse_line(line: str) -> TrackedConn | None:
    """One line of `dpctl/dump-conntrack` (None: not an IPv4 entry we understand)."""
    tuples = {k: _kv(v) for k, v in _TUPLE.findall(line)}
    orig, reply = tuples.get("orig"), tuples.get("reply")
    if not orig or not reply or "src" not in orig or "dst" not in orig or "src" not in reply:
        return None
    rest = _TUPLE.sub("", line)
    fields = {k: int(v) for k, v in _FIELD.findall(rest.replace(" ", ""))}
    states = _STATE.findall(rest)
    return TrackedConn(
        zone=fields.get("zone", 0), proto=line.split(",", 1)[0].strip(),
        src=orig["src"], dst=orig["dst"], sport=_port(orig.get("sport")),
        dport=_port(orig.get("dport")), reply_src=reply["src"], mark=fields.get("mark", 0),
        state="/".join(dict.fromkeys(states)) or None)


def parse_dump(text: str, max_entries: int) -> tuple[list[TrackedConn], bool]:
    """The entries of a dump, at most `max_entries`; True when there were more (or the text
    was cut short by the reader: a last line without its end is dropped)."""
    lines = text.splitlines()
    cut = bool(text) and not text.endswith("\n")
    if cut:
        lines = lines[:-1]
    out: list[TrackedConn] = []
    for line in lines:
        conn = parse_line(line)
        if conn is None:
            continue
        if len(out) == max_entries:
            return out, True
        out.append(conn)
    return out, cut


def parse_limits(text: str) -> dict[int, int]:
    """`ovs-appctl dpctl/ct-get-limits` as {zone: limit} (the zones with a limit of their own;
    its `default limit=N` line is not a zone's)."""
    return {int(z): int(n) for z, n in _LIMIT.findall(text)}


def limit_changes(want: dict[int, int], have: dict[int, int],
                  ours: set[int]) -> tuple[dict[int, int], list[int]]:
    """The limits to set (zone: limit) and the zones whose limit to remove, given the limits
    wanted, those the tracker has now, and the zones we limited before (only those are ours
    to remove). Nothing when the tracker already has them: OVS logs every change."""
    sets = {z: n for z, n in sorted(want.items()) if have.get(z) != n}
    return sets, sorted(z for z in ours - set(want) if z in have)


@dataclass(frozen=True, slots=True)
class ZoneRead:
    """A zone's latest read: its entries, whether there were more, when it was requested."""

    entries: tuple[TrackedConn, ...]
    truncated: bool
    requested_at: float


class TrackerReads:
    """The latest read of every zone (one tracker per ovs-vswitchd: the default target's)."""

    def __init__(self) -> None:
        self.zones: dict[int, ZoneRead] = {}
        self.failure: str | None = None  # why the latest read failed (None: it did not)

    def read(self, zone: int, entries: list[TrackedConn], truncated: bool,
             requested_at: float) -> None:
        """A zone's entries, read as asked at `requested_at` (only its own zone's are kept)."""
        mine = tuple(e for e in entries if e.zone == zone)
        self.zones[zone] = ZoneRead(mine, truncated, requested_at)
        self.failure = None

    def failed(self, reason: str) -> None:
        """A read failed (ovs-appctl missing, no datapath, a timeout): earlier reads are
        dropped, since they can no longer be shown as current."""
        self.zones.clear()
        self.failure = reason[:200]

    def keep(self, zones: set[int]) -> None:
        """Forget the reads of zones no service uses any more."""
        for z in set(self.zones) - zones:
            del self.zones[z]

    def held(self, zone: int, label: int, since: float) -> int | None:
        """Live connections of `zone` marked `label`, from a complete read requested at or
        after `since`; None when there is no such read."""
        r = self.zones.get(zone)
        if r is None or r.truncated or r.requested_at < since:
            return None
        return sum(1 for e in r.entries if e.mark == label and e.live)

    def counts(self) -> dict[int, int]:
        """Entries per zone in the latest reads (lingering closed connections included)."""
        return {z: len(r.entries) for z, r in sorted(self.zones.items())}
