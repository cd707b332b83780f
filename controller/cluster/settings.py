"""The `[cluster]` table of the controller's TOML file, validated (plain values only).

Absent or `enabled = false`: one member, nothing of the cluster runs (the default). Enabled:
the member needs an id of its own, an address the others and operators reach its REST API at,
and the timing: a heartbeat every `heartbeat_s`, a lease of `lease_s` renewed by each beat.
A member that cannot renew stops acting as master when its lease ends; the others take its
switches over at their next beat after it, so a failover takes at most `lease_s + heartbeat_s`,
which must not pass the documented target `failover_s`.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from controller.errors import ValidationError
from controller.validate import NAME_RE, check_number, reject_unknown

KEYS = {"enabled", "member_id", "advertise", "heartbeat_s", "lease_s", "failover_s"}


@dataclass(frozen=True, slots=True)
class ClusterConfig:
    """How this member takes part in a cluster (`enabled = False`: it is alone)."""

    enabled: bool = False
    member_id: str = ""  # unique in the cluster: [A-Za-z0-9._-]{1,63}
    advertise: str = ""  # where the others and operators reach this member's REST API
    heartbeat_s: float = 0.5  # the lease is renewed this often
    lease_s: float = 1.5  # a member not renewed for this long is dead; it fences itself
    failover_s: float = 2.0  # the target: a dead member's switches have a new master by then


def cluster_from_dict(raw: Any) -> ClusterConfig:
    """Parse the [cluster] table; ValidationError naming the key."""
    if not isinstance(raw, Mapping):
        raise ValidationError("cluster", "must be a table")
    reject_unknown(raw, KEYS, "cluster")
    d = ClusterConfig()
    enabled = raw.get("enabled", d.enabled)
    if not isinstance(enabled, bool):
        raise ValidationError("cluster.enabled", f"must be true or false, got {enabled!r}")
    member_id = raw.get("member_id", d.member_id)
    advertise = raw.get("advertise", d.advertise)
    if not isinstance(member_id, str) or (member_id and not NAME_RE.fullmatch(member_id)):
        raise ValidationError("cluster.member_id", "must be 1-63 of A-Z a-z 0-9 . _ -")
    if not isinstance(advertise, str) or len(advertise) > 200 or any(
            c.isspace() for c in advertise):
        raise ValidationError("cluster.advertise", "must be an address such as "
                              "'http://10.0.0.1:8080' (no spaces, at most 200 characters)")
    heartbeat = check_number(raw.get("heartbeat_s", d.heartbeat_s), "cluster.heartbeat_s",
                             0.05, 60.0)
    lease = check_number(raw.get("lease_s", d.lease_s), "cluster.lease_s", 0.1, 600.0)
    failover = check_number(raw.get("failover_s", d.failover_s), "cluster.failover_s",
                            0.1, 3600.0)
    if enabled and not member_id:
        raise ValidationError("cluster.member_id", "is required when the cluster is enabled")
    if lease < 2 * heartbeat:
        raise ValidationError("cluster.lease_s", f"must be at least twice heartbeat_s "
                              f"({heartbeat} s): one late beat must not lose the lease")
    if lease + heartbeat > failover:
        raise ValidationError("cluster.failover_s", f"lease_s + heartbeat_s ({lease + heartbeat}"
                              f" s) is the longest failover: it must not pass failover_s")
    return ClusterConfig(enabled, member_id, advertise, heartbeat, lease, failover)
