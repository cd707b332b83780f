"""Configuration reload: what a re-read TOML file changes, and what of it can be applied live.

Boundary: pure. The shell (apps/reloader.py) reads the file, calls `plan`, then applies the
services through the same paths as the REST API and swaps in `ReloadPlan.config`.

Live: the services ([[service]]: added, changed, removed), [limits] (but `max_body_bytes`:
the REST server judges bodies by the one it started with), [controller.logging], and
the tunables in `LIVE` (read each time they are used). [security] is not: a reload cannot turn
authentication off (the agent and token tables themselves are re-read when their files
change). Every other key is bound into the running features when they start (selection,
scoring, the store, ingresses, links, ...): a change to one is reported in `restart_required`
and NOT applied (the running value is kept).
"""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from controller.config import ControllerConfig
from controller.model import Service

# ControllerConfig fields a running controller can take at once
LIVE = ("lldp_interval_s", "stats_interval_s", "store_flush_s", "reconcile_interval_s",
        "link_timeout_s", "switch_grace_s", "limits", "logging", "conntrack")
# the TOML key each field is written as (for the report)
KEY_OF = {"limits": "limits", "links": "link", "forwarders": "forwarder",
          "logging": "controller.logging", "security": "security",
          "channel": "channel", "cluster": "cluster",  # [channel], [cluster]: at start only
          "conntrack": "dataplane.conntrack", "group_id_prefix": "dataplane.group_id_prefix"}


def key_of(field_name: str) -> str:
    """The TOML key an operator wrote for a ControllerConfig field."""
    return KEY_OF.get(field_name, f"controller.{field_name}")


@dataclass(frozen=True, slots=True)
class ReloadPlan:
    """What a reload does: the config to run with (new live values, running values of the
    restart-only keys), the service changes, and which keys were applied or need a restart."""

    config: ControllerConfig
    added: tuple[Service, ...] = ()
    changed: tuple[Service, ...] = ()
    removed: tuple[str, ...] = ()
    applied: tuple[str, ...] = ()
    restart_required: tuple[str, ...] = ()

    @property
    def empty(self) -> bool:
        """True when the file changes nothing."""
        return not (self.added or self.changed or self.removed or self.applied
                    or self.restart_required)

    def summary(self) -> dict[str, Any]:
        """The plan as JSON-ready values (the reload's reply and log line)."""
        return {"services_added": [s.name for s in self.added],
                "services_changed": [s.name for s in self.changed],
                "services_removed": list(self.removed),
                "applied": list(self.applied),
                "restart_required": list(self.restart_required)}


def plan(running: ControllerConfig, new: ControllerConfig,
         current: Mapping[str, Service]) -> ReloadPlan:
    """Compare the running config (and the services the controller holds now, `current`) with
    a newly read one. A service the file no longer lists is removed only if the running file
    listed it (services made through the REST API are not the file's to remove)."""
    applied: list[str] = []
    restart: list[str] = []
    live: dict[str, Any] = {}
    new_limits = new.limits
    if new_limits.max_body_bytes != running.limits.max_body_bytes:
        restart.append("limits.max_body_bytes")  # the REST server's, from its start
        new_limits = dataclasses.replace(new_limits,
                                         max_body_bytes=running.limits.max_body_bytes)
        new = dataclasses.replace(new, limits=new_limits)
    for f in dataclasses.fields(ControllerConfig):
        if f.name == "services":
            continue
        if getattr(running, f.name) == getattr(new, f.name):
            continue
        if f.name in LIVE:
            live[f.name] = getattr(new, f.name)
            applied.append(key_of(f.name))
        else:
            restart.append(key_of(f.name))
    wanted = {s.name: s for s in new.services}
    removed = tuple(sorted(s.name for s in running.services
                           if s.name not in wanted and s.name in current))
    added = tuple(s for s in new.services if s.name not in current)
    changed = tuple(s for s in new.services if s.name in current and current[s.name] != s)
    config = dataclasses.replace(running, services=new.services, **live)
    return ReloadPlan(config, added, changed, removed, tuple(applied), tuple(restart))


def refusal(p: ReloadPlan, current: Mapping[str, Service]) -> tuple[str, str] | None:
    """Why the plan's services cannot be applied one by one without a conflict, as (field,
    reason); None if they can. A D-SID, and a `conntrack` service's tracker zone, may move
    only to one no other remaining service holds now (swapping two services' D-SIDs takes two
    reloads)."""
    holder = {s.dsid: name for name, s in current.items() if name not in p.removed}
    zones = {s.ct_zone: name for name, s in current.items()
             if name not in p.removed and s.dataplane == "conntrack"}
    for s in (*p.changed, *p.added):
        other = holder.get(s.dsid)
        if other is not None and other != s.name:
            return (f"service.{s.name}.dsid", f"{s.dsid} is the D-SID of service {other}")
        other = zones.get(s.ct_zone) if s.dataplane == "conntrack" else None
        if other is not None and other != s.name:  # the catalogue's check_unique, ahead
            return (f"service.{s.name}.dsid", f"conntrack zone {s.ct_zone} (the D-SID's low "
                    f"16 bits) is the zone of service {other}")
    return None
