"""Plain values of the Dyncast domain: services, their affinity policy, instances and metrics.

Parsing from untrusted dicts (TOML tables, REST bodies) lives here too, so that one set of rules
decides what a valid service or metric report is, wherever it comes from.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from controller.errors import ValidationError
from controller.validate import (
    check_address,
    check_integer,
    check_name,
    check_number,
    parse_ipv4,
    reject_unknown,
    sub_table,
)

FLOW_KEYS = ("5-tuple", "3-tuple", "source")
PROTOCOLS = {"tcp": 6, "udp": 17, "icmp": 1}
MAX_TIMEOUT_S = 65535  # OpenFlow timeouts are 16-bit seconds
MAX_SESSIONS = 10_000_000
MAX_DELAY_MS = 3_600_000.0  # an hour: a reported delay beyond it is a broken agent


SCALING_KEYS = {"high", "low", "hold_s", "cooldown_s", "activation_timeout_s", "scale_in",
                "min_active", "drain_deadline_s"}


@dataclass(frozen=True, slots=True)
class ScalingPolicy:
    """A service's reactivation / scale-in thresholds and timers."""

    high: float = 0.8
    low: float = 0.2
    hold_s: float = 10.0
    cooldown_s: float = 60.0
    activation_timeout_s: float = 60.0
    scale_in: bool = False
    min_active: int = 1
    drain_deadline_s: float = 60.0

    def to_dict(self) -> dict[str, Any]:
        """Return the policy as the table it can be read back from."""
        return {"high": self.high, "low": self.low, "hold_s": self.hold_s,
                "cooldown_s": self.cooldown_s, "activation_timeout_s": self.activation_timeout_s,
                "scale_in": self.scale_in, "min_active": self.min_active,
                "drain_deadline_s": self.drain_deadline_s}


def scaling_from_dict(data: Any, where: str = "scaling") -> ScalingPolicy:
    """Parse and validate a service's `scaling` table; errors name `where.key`."""
    if not isinstance(data, Mapping):
        raise ValidationError(where, "must be a table/object")
    reject_unknown(data, SCALING_KEYS, where)
    d = ScalingPolicy()
    high = check_number(data.get("high", d.high), f"{where}.high", 0.01, 1.0)
    low = check_number(data.get("low", d.low), f"{where}.low", 0.0, 1.0)
    if low >= high:
        raise ValidationError(f"{where}.low", f"must be below high ({high:g}), got {low:g}")
    scale_in = data.get("scale_in", d.scale_in)
    if not isinstance(scale_in, bool):
        raise ValidationError(f"{where}.scale_in", f"must be true or false, got {scale_in!r}")

    def seconds(key: str, default: float) -> float:
        return check_number(data.get(key, default), f"{where}.{key}", 0.0, 86_400.0)

    return ScalingPolicy(
        high=high, low=low, hold_s=seconds("hold_s", d.hold_s),
        cooldown_s=seconds("cooldown_s", d.cooldown_s),
        activation_timeout_s=max(0.1, seconds("activation_timeout_s", d.activation_timeout_s)),
        scale_in=scale_in,
        min_active=check_integer(data.get("min_active", d.min_active), f"{where}.min_active",
                                 1, 10_000),
        drain_deadline_s=seconds("drain_deadline_s", d.drain_deadline_s))


@dataclass(frozen=True, slots=True)
class AffinityPolicy:
    """What identifies a flow of a service, and how long its instance binding lives."""

    key: str = "5-tuple"
    idle_timeout: int = 30
    hard_timeout: int = 0


@dataclass(frozen=True, slots=True)
class Weights:
    """How a service weighs network cost against compute cost (both in milliseconds)."""

    network: float = 1.0
    compute: float = 1.0


@dataclass(frozen=True, slots=True)
class Service:
    """A service reached at anycast address `dsid`; `protocol`/`port` narrow what is steered."""

    name: str
    dsid: str
    protocol: str | None = None
    port: int | None = None
    affinity: AffinityPolicy = field(default_factory=AffinityPolicy)
    weights: Weights = field(default_factory=Weights)
    base_delay_ms: float = 10.0
    delay_budget_ms: float | None = None
    scaling: ScalingPolicy | None = None  # reactivation / scale-in; None: off
    policy: str = "dyncast"  # how new flows are shared among instances: SELECTION_POLICIES
    dataplane: str = "reactive"  # who keeps affinity: DATAPLANES (controller/dataplane/modes.py)
    overlay: bool = False  # instances answer on the D-SID; steered by label, no translation
    buckets: int = 64  # decision entries per ingress in `learn`, `bucket`, `conntrack` modes
    failover: bool = False  # a backup per instance in the switches (dataplane/failover.py)

    @property
    def ct_zone(self) -> int:
        """`conntrack` mode: the connection-tracker zone of the service, the low 16 bits of its
        D-SID (0xFFFF for x.x.0.0: zone 0 is everyone's); unique among conntrack services."""
        _, _, c, d = (int(x) for x in self.dsid.split("."))
        return (c << 8 | d) or 0xFFFF

    @property
    def ip_proto(self) -> int | None:
        """IP protocol number of `protocol`, or None when every protocol is steered."""
        return PROTOCOLS[self.protocol] if self.protocol else None

    def to_dict(self) -> dict[str, Any]:
        """Return the service as the JSON/TOML table it can be read back from."""
        out: dict[str, Any] = {"name": self.name, "dsid": self.dsid}
        if self.protocol:
            out["protocol"] = self.protocol
        if self.port is not None:
            out["port"] = self.port
        out["affinity"] = {
            "key": self.affinity.key,
            "idle_timeout": self.affinity.idle_timeout,
            "hard_timeout": self.affinity.hard_timeout,
        }
        out["weights"] = {"network": self.weights.network, "compute": self.weights.compute}
        out["base_delay_ms"] = self.base_delay_ms
        if self.policy != "dyncast":
            out["policy"] = self.policy
        if self.dataplane != "reactive" or self.overlay:
            out.update(dataplane=self.dataplane, overlay=self.overlay, buckets=self.buckets)
        if self.failover:
            out["failover"] = True
        if self.delay_budget_ms is not None:
            out["delay_budget_ms"] = self.delay_budget_ms
        if self.scaling is not None:
            out["scaling"] = self.scaling.to_dict()
        return out


SERVICE_KEYS = {"name", "dsid", "protocol", "port", "affinity", "weights", "base_delay_ms",
                "delay_budget_ms", "scaling", "policy", "dataplane", "overlay", "buckets",
                "failover"}
DATAPLANES = ("reactive", "learn", "bucket", "conntrack")
MAX_BUCKETS = 4096
# selection policies (controller/selection/engine.py): joint cost (default), network only,
# compute only, equal shares in turn, uniformly random; per flow: the cheaper of two random, the
# fewest flows in flight, a Maglev hash of the flow key (controller/selection/policies.py)
SELECTION_POLICIES = ("dyncast", "nearest", "least-loaded", "round-robin", "random", "p2c",
                      "least-inflight", "consistent-hash")


def service_from_dict(data: Any, where: str = "", strict: bool = True) -> Service:
    """Parse and validate one service table; `where` prefixes field names in errors.

    `strict` (every new service) applies the name and D-SID rules (controller/validate.py);
    a service read back from the store was checked when it was created, under the rules of
    its time, and is loaded as it is (strict=False) rather than lost."""
    if not isinstance(data, Mapping):
        raise ValidationError(where or "service", "must be a table/object")
    reject_unknown(data, SERVICE_KEYS, where.rstrip("."))
    name = data.get("name")
    if strict:
        name = check_name(name, f"{where}name")
    elif not isinstance(name, str) or not name or len(name) > 64 or "/" in name:
        raise ValidationError(f"{where}name", "must be a non-empty string of at most 64 "
                              "characters without '/'")
    dsid = (check_address(data.get("dsid"), f"{where}dsid", "D-SID") if strict
            else parse_ipv4(data.get("dsid"), f"{where}dsid"))
    protocol = data.get("protocol")
    if protocol is not None and (not isinstance(protocol, str) or protocol not in PROTOCOLS):
        raise ValidationError(f"{where}protocol", f"must be one of {sorted(PROTOCOLS)}")
    port = data.get("port")
    if port is not None:
        port = check_integer(port, f"{where}port", 1, 65535)
        if protocol not in ("tcp", "udp"):
            raise ValidationError(f"{where}port", "needs protocol 'tcp' or 'udp'")
    aff = sub_table(data, "affinity", where)
    reject_unknown(aff, {"key", "idle_timeout", "hard_timeout"}, f"{where}affinity")
    key = aff.get("key", "5-tuple")
    if not isinstance(key, str) or key not in FLOW_KEYS:
        raise ValidationError(f"{where}affinity.key", f"must be one of {list(FLOW_KEYS)}")
    idle = check_integer(aff.get("idle_timeout", 30), f"{where}affinity.idle_timeout",
                         0, MAX_TIMEOUT_S)
    hard = check_integer(aff.get("hard_timeout", 0), f"{where}affinity.hard_timeout",
                         0, MAX_TIMEOUT_S)
    if idle == 0 and hard == 0:
        raise ValidationError(f"{where}affinity.idle_timeout",
                              "idle_timeout and hard_timeout cannot both be 0 (bindings would "
                              "never end)")
    wts = sub_table(data, "weights", where)
    reject_unknown(wts, {"network", "compute"}, f"{where}weights")
    weights = Weights(
        network=check_number(wts.get("network", 1.0), f"{where}weights.network", 0.0, 1000.0),
        compute=check_number(wts.get("compute", 1.0), f"{where}weights.compute", 0.0, 1000.0),
    )
    if weights.network == 0 and weights.compute == 0:
        raise ValidationError(f"{where}weights", "network and compute cannot both be 0")
    base = check_number(data.get("base_delay_ms", 10.0), f"{where}base_delay_ms", 0.001, 60_000.0)
    budget = data.get("delay_budget_ms")
    if budget is not None:
        budget = check_number(budget, f"{where}delay_budget_ms", 0.001, 3_600_000.0)
    scaling = data.get("scaling")
    if scaling is not None:
        scaling = scaling_from_dict(scaling, f"{where}scaling")
    policy = data.get("policy", "dyncast")
    if not isinstance(policy, str) or policy not in SELECTION_POLICIES:
        raise ValidationError(f"{where}policy", f"must be one of {', '.join(SELECTION_POLICIES)}"
                              f", got {policy!r}")
    return Service(name=name, dsid=dsid, protocol=protocol, port=port,
                   affinity=AffinityPolicy(key=key, idle_timeout=idle, hard_timeout=hard),
                   weights=weights, base_delay_ms=base, delay_budget_ms=budget,
                   scaling=scaling, policy=policy,
                   **_dataplane(data, where, protocol, port))


def _dataplane(data: Mapping[str, Any], where: str, protocol: str | None,
               port: int | None) -> dict[str, Any]:
    """The service's dataplane, overlay and buckets settings, checked against its protocol."""
    dataplane = data.get("dataplane", "reactive")
    if not isinstance(dataplane, str) or dataplane not in DATAPLANES:
        raise ValidationError(f"{where}dataplane", f"must be one of {', '.join(DATAPLANES)}, "
                              f"got {dataplane!r}")
    if dataplane != "reactive" and (protocol not in ("tcp", "udp") or port is None):
        raise ValidationError(f"{where}dataplane", f"{dataplane!r} needs protocol 'tcp' or "
                              "'udp' and a port")
    overlay = data.get("overlay", False)
    if not isinstance(overlay, bool):
        raise ValidationError(f"{where}overlay", f"must be true or false, got {overlay!r}")
    buckets = check_integer(data.get("buckets", 64), f"{where}buckets", 2, MAX_BUCKETS)
    if buckets & (buckets - 1):
        raise ValidationError(f"{where}buckets", f"must be a power of two, got {buckets}")
    failover = data.get("failover", False)
    if not isinstance(failover, bool):
        raise ValidationError(f"{where}failover", f"must be true or false, got {failover!r}")
    if failover and (dataplane == "conntrack" or overlay or port is None):
        raise ValidationError(f"{where}failover", "needs dataplane 'reactive', 'learn' or "
                              "'bucket' without overlay, protocol 'tcp' or 'udp' and a port")
    return {"dataplane": dataplane, "overlay": overlay, "buckets": buckets,
            "failover": failover}


@dataclass(frozen=True, slots=True)
class Metrics:
    """One compute-metric report of an instance: CATS level-0 raw metrics, or a level-2 score
    (0-10, 10 best) computed by the D-MA, in which case the raw fields may be left out."""

    cpu: float = 0.0
    sessions: int = 0
    queue: int = 0
    capacity: int = 1
    active: bool = True
    processing_delay_ms: float | None = None
    score: float | None = None
    service_ms: float | None = None

    def to_dict(self) -> dict[str, Any]:
        """Return the report as JSON-ready values."""
        return {"cpu": self.cpu, "sessions": self.sessions, "queue": self.queue,
                "capacity": self.capacity, "active": self.active,
                "processing_delay_ms": self.processing_delay_ms, "score": self.score,
                "service_ms": self.service_ms}


METRIC_KEYS = {"dbid", "dsid", "cpu", "sessions", "queue", "capacity", "active",
               "processing_delay_ms", "score", "service_ms"}
RAW_DEFAULTS: dict[str, float | int] = {"cpu": 0.0, "sessions": 0, "queue": 0, "capacity": 1}


def metrics_from_dict(data: Any, where: str = "") -> tuple[str, Metrics]:
    """Parse one D-MA report into (D-BID, Metrics), rejecting absurd values; a `dsid` given
    must be an address (that it is the instance's service's is the API's check)."""
    if not isinstance(data, Mapping):
        raise ValidationError(where.rstrip(".") or "report", "must be an object")
    reject_unknown(data, METRIC_KEYS, where.rstrip("."))
    dbid = parse_ipv4(data.get("dbid"), f"{where}dbid")
    if "dsid" in data:
        parse_ipv4(data["dsid"], f"{where}dsid")
    score = data.get("score")
    if score is None:
        for required in ("cpu", "sessions", "queue", "capacity"):
            if required not in data:
                raise ValidationError(f"{where}{required}", "is required (or give a level-2 "
                                      "`score`)")
    else:
        score = check_number(score, f"{where}score", 0.0, 10.0)
        data = {**RAW_DEFAULTS, **data}
    active = data.get("active", True)
    if not isinstance(active, bool):
        raise ValidationError(f"{where}active", f"must be true or false, got {active!r}")
    delay, service = data.get("processing_delay_ms"), data.get("service_ms")
    metrics = Metrics(
        cpu=check_number(data["cpu"], f"{where}cpu", 0.0, 1.0),
        sessions=check_integer(data["sessions"], f"{where}sessions", 0, MAX_SESSIONS),
        queue=check_integer(data["queue"], f"{where}queue", 0, MAX_SESSIONS),
        capacity=check_integer(data["capacity"], f"{where}capacity", 1, MAX_SESSIONS),
        active=active,
        processing_delay_ms=None if delay is None else check_number(
            delay, f"{where}processing_delay_ms", 0.0, MAX_DELAY_MS),
        score=score,
        service_ms=None if service is None else check_number(
            service, f"{where}service_ms", 0.0, MAX_DELAY_MS),
    )
    return dbid, metrics


@dataclass(slots=True)
class Instance:
    """A registered (D-SID, D-BID) binding with its latest metrics and life-cycle state (see
    controller/instances/lifecycle.py); mutated only by the core."""

    service: str
    dbid: str
    dma: str = ""
    registered_active: bool = True
    metrics: Metrics | None = None
    metrics_at: float | None = None
    registered_at: float = 0.0
    state: str = "unknown"
    state_since: float = 0.0
    drain_deadline: float | None = None
    stop_when_drained: bool = False  # scale-in: tell the D-MA to stop it once drained
    label: int | None = None  # its number in the switches (learn/bucket/overlay), kept for good
    history: list[Any] = field(default_factory=list)  # lifecycle.Transition, newest last

    @property
    def draining(self) -> bool:
        """True while the instance takes no new flows but keeps its bound ones."""
        return self.state == "draining"

    def to_dict(self) -> dict[str, Any]:
        """Return the instance as JSON-ready values."""
        return {"service": self.service, "dbid": self.dbid, "dma": self.dma,
                "registered_active": self.registered_active,
                "metrics": self.metrics.to_dict() if self.metrics else None,
                "metrics_at": self.metrics_at, "registered_at": self.registered_at,
                "state": self.state, "state_since": self.state_since,
                "draining": self.draining, "drain_deadline": self.drain_deadline,
                "stop_when_drained": self.stop_when_drained, "label": self.label,
                "history": [t.to_dict() for t in self.history]}


def check_unique(services: tuple[Service, ...]) -> None:
    """Raise if two services share a name, a D-SID, or (`conntrack`) a tracker zone."""
    names: set[str] = set()
    dsids: dict[str, str] = {}
    zones: dict[int, str] = {}
    for i, svc in enumerate(services):
        if svc.dataplane == "conntrack":
            if svc.ct_zone in zones:
                raise ValidationError(f"service[{i}].dsid", f"conntrack zone {svc.ct_zone} (the "
                                      f"D-SID's low 16 bits) is already used by "
                                      f"{zones[svc.ct_zone]!r}")
            zones[svc.ct_zone] = svc.name
        if svc.name in names:
            raise ValidationError(f"service[{i}].name", f"duplicate service name {svc.name!r}")
        if svc.dsid in dsids:
            raise ValidationError(f"service[{i}].dsid",
                                  f"D-SID {svc.dsid} is already used by {dsids[svc.dsid]!r}")
        names.add(svc.name)
        dsids[svc.dsid] = svc.name
