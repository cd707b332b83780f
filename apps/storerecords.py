"""A stored record read back into core values: services, instances, bindings and agents'
sequences, each from its JSON; no database connection of its own (apps/store.py runs the
queries).

At a start, a record that cannot be read stops the controller with one line naming its table
and key (`load_store`): nothing is guessed. A member running on reads the shared records again
(a cluster's catch-up, a takeover's bindings); there a record another program or a hand wrote
is skipped and named in the log, and the rest are read (`read(..., bad=[])`).
"""

from __future__ import annotations

import json
from collections.abc import Callable
from typing import Any

from sqlalchemy import Table, select

from controller.dataplane.affinity import Binding, FlowKey
from controller.errors import ValidationError
from controller.instances.lifecycle import STATES, transition_from_dict
from controller.model import Instance, Metrics

UNREADABLE = (ValueError, KeyError, TypeError, AttributeError, ValidationError)


class StoreError(RuntimeError):
    """A stored record that cannot be read."""


def read(conn: Any, table: Table, key: str, parse: Callable[[Any], Any],
         bad: list[tuple[str, str, str]] | None = None) -> list[Any]:
    """Every record of `table` parsed; a StoreError naming the first that cannot be, or, with
    `bad`, that record's (table, key, reason) added there and the rest read."""
    out = []
    for row in conn.execute(select(table.c[key], table.c.data)):
        try:
            out.append(parse(json.loads(row.data)))
        except UNREADABLE as exc:
            why = f"{type(exc).__name__}: {str(exc)[:200]}"
            if bad is None:
                raise StoreError(f"the {table.name} record {row[0]!r} cannot be read ({why}); "
                                 "fix or delete that row (nothing was changed)") from None
            bad.append((table.name, str(row[0]), why))
    return out


def agent_seq(data: dict[str, Any]) -> tuple[str, int, str | None]:
    """An agent's stored sequence: (agent, sequence, the key_id it was taken under)."""
    key = data.get("key")
    return str(data["agent"]), int(data["seq"]), key if isinstance(key, str) else None


def instance(data: dict[str, Any]) -> Instance:
    """An Instance from its stored record."""
    m = data.get("metrics")
    metrics = None if m is None else Metrics(
        cpu=m["cpu"], sessions=m["sessions"], queue=m["queue"], capacity=m["capacity"],
        active=m["active"], processing_delay_ms=m.get("processing_delay_ms"),
        score=m.get("score"), service_ms=m.get("service_ms"))
    state = data.get("state") or ("draining" if data.get("draining") else "unknown")
    if state not in STATES:
        state = "unknown"
    history = [transition_from_dict(data["dbid"], t) for t in data.get("history", [])]
    return Instance(service=data["service"], dbid=data["dbid"], dma=data.get("dma", ""),
                    registered_active=data.get("registered_active", True), metrics=metrics,
                    metrics_at=data.get("metrics_at"),
                    registered_at=data.get("registered_at", 0.0),
                    state=state, state_since=data.get("state_since", 0.0),
                    drain_deadline=data.get("drain_deadline"),
                    stop_when_drained=bool(data.get("stop_when_drained", False)),
                    label=data.get("label") if isinstance(data.get("label"), int) else None,
                    history=[t for t in history if t is not None])


def binding(data: dict[str, Any]) -> Binding:
    """A Binding from its stored record."""
    f = data["flow"]
    key = FlowKey(data["service"], f["src"], f["dsid"], f.get("proto"), f.get("sport"),
                  f.get("dport"))
    return Binding(int(data["id"]), key, data["dbid"], data["ingress"], data["created_at"],
                   float(data.get("moved_at") or 0.0))
