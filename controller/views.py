"""Read-only views of the core's state for the API: instances, bindings, the topology, and
each decision's JSON view and its encoded text, kept while the decision is held.

Boundary: it reads the features through the facade and returns plain dicts; it changes nothing.
"""

from __future__ import annotations

import json
from collections.abc import Collection
from typing import Any

from controller.core import Core
from controller.model import Instance
from controller.selection.engine import Decision
from controller.trackview import tracker_rows, tracker_stats


def instance_view(core: Core, inst: Instance, now: float) -> dict[str, Any]:
    """An instance with its state, history, location and bindings."""
    host = core.topology.hosts.get(inst.dbid)
    out = inst.to_dict()
    out["location"] = None if host is None else {"dpid": host.dpid, "port": host.port,
                                                  "mac": host.mac}
    out["bindings"] = core.flows.bound(inst.dbid)
    svc = core.catalogue.services.get(inst.service)
    out["placed_since_report"] = 0 if svc is None else core.decisions.placed_count(svc, inst, now)
    out["pending_commands"] = [c.to_dict() for c in core.states.pending.get(inst.dbid, [])]
    # passive health: None, or until when it gets no new flows (then its next report ends it)
    out["ejected_until"] = core.health.state.until(inst.dbid)
    return out


def bindings_view(core: Core) -> list[dict[str, Any]]:
    """The affinity table: bindings the controller made, entries switches learned, and the
    connection trackers' entries of `conntrack` services (controller/trackview.py)."""
    return core.flows.view() + core.programmer.bindings_view(
        lambda dsid: core.catalogue.by_dsid.get(dsid)) + tracker_rows(core)


def topology_view(core: Core) -> dict[str, Any]:
    """Switches, hosts, and links with their rate, utilisation, delay and cost."""
    return core.network.view()


def stats_view(core: Core) -> dict[str, int]:
    """Counters for /stats."""
    out = dict(core.counters)
    out["bucket_moves_started"] = core.programmer.moves_started
    out["learned_moves"] = core.programmer.learned_moves
    out["dataplane_entries"] = core.programmer.reconciler.count()
    out["bindings"] = len(core.bindings)
    out["decisions_recomputed"] = core.engine.recomputed
    out["host_moves_refused"] = core.topology.moves_refused
    out["host_sightings_held"] = core.network.settling.held
    out["host_route_probes"] = core.network.unplaced.probed
    out["host_sightings_refused"] = core.network.settling.refused
    out["lldp_refused"] = core.network.lldp_refused
    for name in ("affinity_moves", "errors", "reconcile_runs", "reconcile_added",
                 "reconcile_removed", "bindings_adopted", "bindings_retired",
                 "punt_meter_drops", "punt_meter_refused", "switches_refused",
                 "reconcile_group_runs",
                 "reconcile_groups_added", "reconcile_groups_removed",
                 "takeover_stored_again", "takeover_superseded"):
        out.setdefault(name, 0)
    out.update(tracker_stats(core))
    return out

MAX_BODIES = 256  # GET /decisions bodies kept (every service's, and one per service asked)


class DecisionViews:
    """Each decision's JSON view, built once while that decision is held. A decision is
    immutable and a recompute makes a new one, so a view is reused only for the very same
    object (at 5,000 instances, building the views took more CPU than encoding them)."""

    def __init__(self) -> None:
        self._held: dict[tuple[int, str], tuple[Decision, dict[str, Any]]] = {}
        # a decision's row (its view, role and forwarders) and the row's JSON text
        self._rows: dict[tuple[int, str], tuple[Decision, list[int], dict[str, Any], str]] = {}
        self._bodies: dict[str, tuple[list[str], bytes]] = {}  # the last body joined, per
        # GET path (every service's, or one service's)

    def row(self, decision: Decision, forwarders: list[int]) -> tuple[dict[str, Any], str, bool]:
        """The decision's GET /decisions row (its view, `role` router, the `forwarders` that
        rely on its ingress) and the row's JSON text (`json.dumps(row, sort_keys=True)`), made
        again only when the decision or its forwarders changed; and whether it was made now.
        The row is shared between replies: never change it."""
        key = (decision.ingress, decision.service)
        held = self._rows.get(key)
        if held is not None and held[0] is decision and held[1] == forwarders:
            return held[2], held[3], False
        row = {**self.view(decision), "role": "router", "forwarders": forwarders}
        self._rows[key] = (decision, forwarders, row, json.dumps(row, sort_keys=True))
        return row, self._rows[key][3], True

    def body(self, path: str, texts: list[str]) -> bytes:
        """The JSON list of rows whose texts are `texts` (what `json.dumps` of the rows gives,
        and a newline), joined again only when a text changed since the last body of `path`."""
        last, data = self._bodies.get(path, ([], b"[]\n"))
        if len(last) != len(texts) or any(a is not b for a, b in zip(last, texts, strict=True)):
            data = ("[" + ", ".join(texts) + "]\n").encode()
            if len(self._bodies) >= MAX_BODIES:
                self._bodies.clear()
            self._bodies[path] = (texts, data)
        return data

    def view(self, decision: Decision) -> dict[str, Any]:
        """`decision.to_dict()`, a shallow copy the caller may add keys to (its candidates
        are shared between replies: never change them)."""
        key = (decision.ingress, decision.service)
        held = self._held.get(key)
        if held is None or held[0] is not decision:
            held = self._held[key] = (decision, decision.to_dict())
        return dict(held[1])

    def keep(self, keys: Collection[tuple[int, str]]) -> None:
        """Forget the views of decisions no longer held (a service or switch gone)."""
        for key in [k for k in self._held if k not in keys]:
            del self._held[key]
        for key in [k for k in self._rows if k not in keys]:
            del self._rows[key]


class Rows(list[dict[str, Any]]):
    """GET /decisions' rows, with their encoded body: the shell sends `body` as it is (the
    same bytes as the rows encoded with `json.dumps(rows, sort_keys=True)` and a newline)."""

    def __init__(self, rows: list[dict[str, Any]], body: bytes) -> None:
        super().__init__(rows)
        self.body = body
