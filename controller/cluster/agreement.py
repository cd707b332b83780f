"""Settings every member of a cluster must share, as a digest each member publishes with its
lease, and which live members publish another.

Boundary: pure. It reads a `ControllerConfig` and the members' heartbeat rows; the shell
(apps/cluster.py) writes the digest with every beat and logs a disagreement.

Why: a member that takes a switch over repairs its tables to what *its* configuration wants.
Members configured apart (another `group_id_prefix`, other services or dataplane modes,
another connection-tracker zone, other health punts or limits) would each rewrite the others'
entries at every failover, leave groups the others cannot recognise as theirs, or steer the
same clients differently. docs/cluster.md asks for one configuration; this makes a departure
from it visible instead of silent.

What is shared: every setting but those that are a member's own by nature: where it listens
and with which certificates (`channel`), its logging, its operators' and agents' credential
files (`security`: paths differ per machine), the store URL (the host name may differ; the
database is one, or the members could not see each other), and in `[cluster]` its id and
advertised address.
"""

from __future__ import annotations

import dataclasses
import enum
import hashlib
import json
from collections.abc import Iterable, Mapping
from typing import Any

from controller.cluster.membership import MemberRow

OWN = frozenset({"store_url", "logging", "security", "channel"})  # a member's own settings
OWN_CLUSTER = frozenset({"enabled", "member_id", "advertise"})


def _canon(value: Any) -> Any:
    """`value` as plain JSON values whose encoding does not depend on the process (sets are
    sorted: their order follows string hashing, which differs from process to process)."""
    if dataclasses.is_dataclass(value) and not isinstance(value, type):
        return {f.name: _canon(getattr(value, f.name)) for f in dataclasses.fields(value)}
    if isinstance(value, enum.Enum):
        return _canon(value.value)
    if isinstance(value, Mapping):
        return {str(k): _canon(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_canon(v) for v in value]
    if isinstance(value, (set, frozenset)):
        return sorted((_canon(v) for v in value), key=lambda v: json.dumps(v, sort_keys=True))
    if isinstance(value, float):
        return repr(value)  # (exact; `inf` and `nan` too)
    if value is None or isinstance(value, (bool, int, str)):
        return value
    return repr(value)


def shared_settings(config: Any) -> dict[str, Any]:
    """The settings of `config` (a ControllerConfig) that every member must share."""
    out = {f.name: _canon(getattr(config, f.name)) for f in dataclasses.fields(config)
           if f.name not in OWN}
    out["cluster"] = {k: v for k, v in out["cluster"].items() if k not in OWN_CLUSTER}
    return out


def settings_digest(config: Any) -> str:
    """A short digest of `shared_settings(config)`: equal settings, equal digests."""
    text = json.dumps(shared_settings(config), sort_keys=True, separators=(",", ":"))
    return hashlib.sha256(text.encode()).hexdigest()[:16]


def disagreeing(rows: Iterable[MemberRow], own_id: str, own: str,
                now: float) -> dict[str, str | None]:
    """The live members (other than `own_id`) whose published digest is not `own`: member id
    -> its digest (None: it publishes none, e.g. a member of an earlier version)."""
    return {r.member_id: r.settings for r in sorted(rows, key=lambda r: r.member_id)
            if r.member_id != own_id and r.live(now) and r.settings != own}
