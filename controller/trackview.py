"""Read-only views of the connection trackers' entries (`conntrack` services) for the API:
`/bindings` rows and the per-zone counters of `/stats` and `/metrics`.

Boundary: reads the core through the facade (`drains.tracker`, the catalogue, the labels) and
returns plain values; it changes nothing. A service whose zone was not read (the reader is
"none", a read failed or has not happened yet) gets one row of kind "unread" saying why,
never an error.
"""

from __future__ import annotations

from typing import Any

from controller.core import Core
from controller.dataplane.modes import mode_of
from controller.model import Service


def tracked_services(core: Core) -> list[Service]:
    """The services whose affinity lives in the trackers, by name."""
    return [s for _, s in sorted(core.catalogue.services.items()) if mode_of(s).tracks]


def _unread(core: Core) -> str:
    """Why a zone has no read."""
    cfg = core.config.conntrack
    if cfg.reader == "none":
        return ("the controller does not read the connection tracker ([dataplane.conntrack] "
                "reader = \"none\": it is not beside the switch)")
    return core.drains.tracker.failure or "not read yet"


def tracker_rows(core: Core) -> list[dict[str, Any]]:
    """The trackers' entries of every `conntrack` service, as `/bindings` rows."""
    rows: list[dict[str, Any]] = []
    reads = core.drains.tracker.zones
    for svc in tracked_services(core):
        r = reads.get(svc.ct_zone) if core.config.conntrack.reader != "none" else None
        if r is None:
            rows.append({"id": None, "service": svc.name, "source": "tracker", "kind": "unread",
                         "zone": svc.ct_zone, "dbid": None, "reason": _unread(core)})
            continue
        for e in r.entries:
            rows.append({"id": None, "service": svc.name, "source": "tracker",
                         "kind": "connection", "zone": e.zone,
                         "dbid": core.programmer.dbid_of(e.mark) if e.mark else None,
                         "mark": e.mark, "state": e.state, "live": e.live,
                         "flow": {"src": e.src, "dsid": e.dst, "proto": e.proto,
                                  "sport": e.sport, "dport": e.dport, "reply_src": e.reply_src},
                         "read_at": r.requested_at, "truncated": r.truncated})
    return rows


def zone_counts(core: Core) -> list[tuple[str, int, int]]:
    """(service, zone, entries) of every `conntrack` service whose zone was read."""
    counts = core.drains.tracker.counts() if core.config.conntrack.reader != "none" else {}
    return [(s.name, s.ct_zone, counts[s.ct_zone]) for s in tracked_services(core)
            if s.ct_zone in counts]


def tracker_stats(core: Core) -> dict[str, int]:
    """Counters for `/stats`: whether the trackers are read, entries in all and per zone."""
    zones = zone_counts(core)
    out = {"conntrack_read": int(core.config.conntrack.reader != "none"
                                 and core.drains.tracker.failure is None),
           "conntrack_entries": sum(n for _, _, n in zones)}
    out.update({f"conntrack_entries_zone_{z}": n for _, z, n in zones})
    return out
