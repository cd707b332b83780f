"""Controller configuration: one TOML file, parsed and validated here and nowhere else."""

from __future__ import annotations

import tomllib
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from controller.auth.settings import SecuritySettings, security_from_dict
from controller.channel import ChannelConfig, channel_from_dict
from controller.cluster.settings import ClusterConfig, cluster_from_dict
from controller.dataplane.failover import DEFAULT_GROUP_PREFIX, GROUP_PREFIX_MAX, GROUP_PREFIX_MIN
from controller.dataplane.tracker import TrackerConfig, tracker_from_dict
from controller.errors import ConfigError, ValidationError
from controller.instances.health import HealthConfig, health_from_dict
from controller.limits import Limits, limits_from_dict
from controller.logcfg import LogConfig, logging_from_dict
from controller.model import Service, check_unique, service_from_dict
from controller.network.monitor import LinkConfig, MonitorSettings
from controller.selection.allowance import MAX_ALLOWANCE, MAX_PRICE
from controller.selection.decisions import SelectionConfig
from controller.selection.marginal import QUEUE_PRICES
from controller.selection.perflow import PICKS
from controller.selection.scoring import ScoringConfig, scoring_from_dict
from controller.validate import check_number, check_path, reject_unknown


@dataclass(frozen=True, slots=True)
class ControllerConfig:
    """Everything the controller reads from its TOML file."""

    store_url: str = "sqlite:///dyncast.db"
    stale_after_s: float = 10.0
    lldp_interval_s: float = 1.0
    link_timeout_s: float = 3.5
    store_flush_s: float = 1.0
    unstored_path: str = "dyncast-unstored.jsonl"  # a failing store's queue (apps/storespill)
    stats_interval_s: float = 2.0
    link_capacity_mbps: float = 0.0
    congestion_ms: float | None = 10.0  # None ("packet"): per link, one packet at its capacity
    use_measured_delay: bool = False
    probe_timeout_s: float = 3.0
    reconcile_interval_s: float = 10.0  # every switch's table is read back and repaired
    switch_grace_s: float = 15.0  # a switch's lost control channel is not its data plane
    gc_full_walk_s: float = 86400.0  # frozen objects handed back to the collector (apps/gcpause)
    ingresses: tuple[int, ...] = ()
    forwarders: tuple[tuple[int, int], ...] = ()  # (forwarder dpid, the D-Router deciding for it)
    selection: SelectionConfig = field(default_factory=SelectionConfig)
    scoring: ScoringConfig = field(default_factory=ScoringConfig)
    health: HealthConfig = field(default_factory=HealthConfig)  # [controller.health]: passive
    services: tuple[Service, ...] = ()
    links: tuple[LinkConfig, ...] = ()
    limits: Limits = field(default_factory=Limits)  # [limits]: quotas and input bounds
    logging: LogConfig = field(default_factory=LogConfig)  # [controller.logging]
    security: SecuritySettings = field(default_factory=SecuritySettings)  # [security]
    channel: ChannelConfig = field(default_factory=ChannelConfig)  # [channel]: listen, TLS
    conntrack: TrackerConfig = field(default_factory=TrackerConfig)  # [dataplane.conntrack]
    group_id_prefix: int = DEFAULT_GROUP_PREFIX  # [dataplane]: high 8 bits of our group ids
    cluster: ClusterConfig = field(default_factory=ClusterConfig)  # [cluster]: off by default

    def monitor_settings(self) -> MonitorSettings:
        """What the network monitor needs to price links."""
        return MonitorSettings(self.links, self.link_capacity_mbps, self.congestion_ms,
                               self.use_measured_delay, self.selection.hop_ms)


CONTROLLER_KEYS = {"store_url", "stale_after_s", "lldp_interval_s", "link_timeout_s",
                   "store_flush_s", "stats_interval_s", "link_capacity_mbps", "congestion_ms",
                   "use_measured_delay", "probe_timeout_s", "ingresses", "selection", "scoring",
                   "reconcile_interval_s", "switch_grace_s", "logging", "gc_full_walk_s",
                   "health", "unstored_path"}


def _links(raw: Any) -> tuple[LinkConfig, ...]:
    """Parse the [[link]] tables: `a` and `b` (datapath ids), `delay_ms`, `capacity_mbps`,
    `admin_ms` (an administrative cost added to the link's cost)."""
    if not isinstance(raw, list):
        raise ValidationError("link", "must be an array of tables ([[link]])")
    out = []
    for i, item in enumerate(raw):
        where = f"link[{i}]"
        if not isinstance(item, Mapping):
            raise ValidationError(where, "must be a table")
        reject_unknown(item, {"a", "b", "delay_ms", "capacity_mbps", "admin_ms"}, where)
        a, b = (int(check_number(item.get(k), f"{where}.{k}", 1, 2**63)) for k in ("a", "b"))
        delay = item.get("delay_ms")
        cap = item.get("capacity_mbps")
        out.append(LinkConfig(
            a, b,
            None if delay is None else check_number(delay, f"{where}.delay_ms", 0.0, 100000.0),
            None if cap is None else check_number(cap, f"{where}.capacity_mbps", 0.001, 1e7),
            check_number(item.get("admin_ms", 0.0), f"{where}.admin_ms", 0.0, 1e6)))
    return tuple(out)


def _selection(data: Mapping[str, Any]) -> SelectionConfig:
    """Parse the [controller.selection] table."""
    reject_unknown(data, {"spread", "sharpness", "hysteresis", "hop_ms", "placed_flows",
                          "placed_grace_s", "queueing", "pick", "queue_price",
                          "wait_allowance", "allowance_price"},
                   "controller.selection")
    d = SelectionConfig()
    pick = data.get("pick", d.pick)
    if pick not in PICKS:
        raise ValidationError("controller.selection.pick",
                              f"must be one of {', '.join(PICKS)}, got {str(pick)[:40]!r}")
    queue_price = data.get("queue_price", d.queue_price)
    if queue_price not in QUEUE_PRICES:
        raise ValidationError("controller.selection.queue_price",
                              f"must be one of {', '.join(QUEUE_PRICES)}, "
                              f"got {str(queue_price)[:40]!r}")
    placed_flows = _flag(data, "placed_flows", d.placed_flows, "controller.selection.")
    if pick == "per-flow" and not placed_flows:
        raise ValidationError("controller.selection.pick",
                              "per-flow needs placed_flows = true (it re-prices the flows placed)")
    return SelectionConfig(
        spread=check_number(data.get("spread", d.spread), "controller.selection.spread",
                            0.0, 100.0),
        sharpness=check_number(data.get("sharpness", d.sharpness), "controller.selection.sharpness",
                          0.0, 64.0),
        hysteresis=check_number(data.get("hysteresis", d.hysteresis),
                           "controller.selection.hysteresis", 0.0, 10.0),
        hop_ms=check_number(data.get("hop_ms", d.hop_ms), "controller.selection.hop_ms",
                            0.0, 1000.0),
        placed_flows=placed_flows,
        placed_grace_s=check_number(data.get("placed_grace_s", d.placed_grace_s),
                                    "controller.selection.placed_grace_s", 0.0, 60.0),
        queueing=_flag(data, "queueing", d.queueing, "controller.selection."),
        pick=pick,
        queue_price=queue_price,
        wait_allowance=check_number(data.get("wait_allowance", d.wait_allowance),
                                    "controller.selection.wait_allowance", 0.0, MAX_ALLOWANCE),
        allowance_price=check_number(data.get("allowance_price", d.allowance_price),
                                     "controller.selection.allowance_price", 1.0, MAX_PRICE),
    )


def config_from_dict(data: Mapping[str, Any]) -> ControllerConfig:
    """Validate a parsed TOML document; raises ValidationError naming the key."""
    reject_unknown(data, {"controller", "service", "link", "forwarder", "limits", "security",
                          "channel", "dataplane", "cluster"},
                   "")
    ctl = data.get("controller", {})
    if not isinstance(ctl, Mapping):
        raise ValidationError("controller", "must be a table")
    reject_unknown(ctl, CONTROLLER_KEYS, "controller")
    d = ControllerConfig()
    store_url = ctl.get("store_url", d.store_url)
    if not isinstance(store_url, str) or "://" not in store_url:
        raise ValidationError("controller.store_url", "must be a sqlalchemy URL such as "
                              "'sqlite:///dyncast.db'")
    sel = ctl.get("selection", {})
    if not isinstance(sel, Mapping):
        raise ValidationError("controller.selection", "must be a table")
    raw_services = data.get("service", [])
    if not isinstance(raw_services, list):
        raise ValidationError("service", "must be an array of tables ([[service]])")
    services = tuple(service_from_dict(s, f"service[{i}].") for i, s in enumerate(raw_services))
    check_unique(services)
    limits = limits_from_dict(data.get("limits", {}))
    if len(services) > limits.max_services:
        raise ValidationError("service", f"{len(services)} services, more than "
                              f"limits.max_services ({limits.max_services})")
    return ControllerConfig(
        store_url=store_url,
        stale_after_s=check_number(ctl.get("stale_after_s", d.stale_after_s),
                              "controller.stale_after_s", 0.1, 86400.0),
        lldp_interval_s=check_number(ctl.get("lldp_interval_s", d.lldp_interval_s),
                                "controller.lldp_interval_s", 0.05, 3600.0),
        link_timeout_s=check_number(ctl.get("link_timeout_s", d.link_timeout_s),
                               "controller.link_timeout_s", 0.1, 86400.0),
        store_flush_s=check_number(ctl.get("store_flush_s", d.store_flush_s),
                              "controller.store_flush_s", 0.05, 3600.0),
        unstored_path=check_path(ctl.get("unstored_path", d.unstored_path),
                                 "controller.unstored_path"),
        stats_interval_s=check_number(ctl.get("stats_interval_s", d.stats_interval_s),
                                      "controller.stats_interval_s", 0.1, 3600.0),
        link_capacity_mbps=check_number(ctl.get("link_capacity_mbps", d.link_capacity_mbps),
                                        "controller.link_capacity_mbps", 0.0, 1e7),
        congestion_ms=_congestion(ctl.get("congestion_ms", d.congestion_ms)),
        use_measured_delay=_flag(ctl, "use_measured_delay", d.use_measured_delay),
        probe_timeout_s=check_number(ctl.get("probe_timeout_s", d.probe_timeout_s),
                                     "controller.probe_timeout_s", 0.1, 3600.0),
        reconcile_interval_s=check_number(
            ctl.get("reconcile_interval_s", d.reconcile_interval_s),
            "controller.reconcile_interval_s", 0.5, 86400.0),
        switch_grace_s=check_number(ctl.get("switch_grace_s", d.switch_grace_s),
                                    "controller.switch_grace_s", 0.0, 86400.0),
        gc_full_walk_s=check_number(ctl.get("gc_full_walk_s", d.gc_full_walk_s),
                                    "controller.gc_full_walk_s", 10.0, 604800.0),
        selection=_selection(sel),
        scoring=scoring_from_dict(_subtable(ctl, "scoring")),
        health=health_from_dict(ctl.get("health", {})),
        ingresses=_ingresses(ctl.get("ingresses", [])),
        services=services,
        links=_links(data.get("link", [])),
        forwarders=_forwarders(data.get("forwarder", [])),
        limits=limits,
        logging=logging_from_dict(ctl.get("logging", {})),
        security=security_from_dict(data.get("security", {})),
        channel=channel_from_dict(data.get("channel", {})),
        conntrack=_dataplane(data.get("dataplane", {})),
        group_id_prefix=_group_id_prefix(data.get("dataplane", {})),
        cluster=_cluster(data.get("cluster", {}), store_url),
    )


def _dataplane(raw: Any) -> TrackerConfig:
    """Parse the [dataplane] table: [dataplane.conntrack] (`group_id_prefix`: below)."""
    if not isinstance(raw, Mapping):
        raise ValidationError("dataplane", "must be a table")
    reject_unknown(raw, {"conntrack", "group_id_prefix"}, "dataplane")
    return tracker_from_dict(raw.get("conntrack", {}))


def _group_id_prefix(raw: Mapping[str, Any]) -> int:
    """[dataplane] `group_id_prefix`: the high 8 bits of Dyncast's group ids, 1-0xFE (0 would
    be other applications' low ids; with 0xFF the ids would reach OFPG_MAX, ALL and ANY)."""
    value = raw.get("group_id_prefix", DEFAULT_GROUP_PREFIX)
    if isinstance(value, bool) or not isinstance(value, int) or not (
            GROUP_PREFIX_MIN <= value <= GROUP_PREFIX_MAX):
        raise ValidationError("dataplane.group_id_prefix", "must be an integer from "
                              f"{GROUP_PREFIX_MIN} to {GROUP_PREFIX_MAX:#x} (0xFF would reach "
                              f"the reserved group ids 0xffffff00 and up), got {repr(value)[:40]}")
    return value


def _cluster(raw: Any, store_url: str) -> ClusterConfig:
    """Parse [cluster]; an enabled cluster shares its state in PostgreSQL, never SQLite."""
    cluster = cluster_from_dict(raw)
    if cluster.enabled and not store_url.startswith("postgresql"):
        raise ValidationError("controller.store_url", "must be a PostgreSQL URL "
                              "('postgresql+psycopg://...') when [cluster] is enabled: the "
                              "members share their leases and state there")
    return cluster


def _forwarders(raw: Any) -> tuple[tuple[int, int], ...]:
    """Parse [[forwarder]] tables: `dpid` holds bindings, `router` takes its decisions."""
    if not isinstance(raw, list):
        raise ValidationError("forwarder", "must be an array of tables ([[forwarder]])")
    out: dict[int, int] = {}
    for i, item in enumerate(raw):
        where = f"forwarder[{i}]"
        if not isinstance(item, Mapping):
            raise ValidationError(where, "must be a table")
        reject_unknown(item, {"dpid", "router"}, where)
        dpid, router = (int(check_number(item.get(k), f"{where}.{k}", 1, 2**63))
                        for k in ("dpid", "router"))
        if dpid == router or dpid in out:
            raise ValidationError(f"{where}.dpid", "must be another switch than its router, "
                                  "and listed once")
        out[dpid] = router
    if set(out) & set(out.values()):
        raise ValidationError("forwarder", "a forwarder's router must be a D-Router, not "
                              "another forwarder")
    return tuple(sorted(out.items()))


def _ingresses(raw: Any) -> tuple[int, ...]:
    """The datapath ids that keep decisions ([] = every switch)."""
    if not isinstance(raw, list):
        raise ValidationError("controller.ingresses", "must be a list of datapath ids")
    return tuple(int(check_number(d, f"controller.ingresses[{i}]", 1, 2**63))
                 for i, d in enumerate(raw))


def _congestion(raw: Any) -> float | None:
    """`congestion_ms`: a number of milliseconds, or "packet" (None): per link, the time to
    send one full-size packet at its capacity."""
    if raw is None or raw == "packet":
        return None
    if isinstance(raw, str):
        raise ValidationError("controller.congestion_ms",
                              f'must be a number or "packet", got {raw!r}')
    return check_number(raw, "controller.congestion_ms", 0.0, 1e6)


def _subtable(table: Mapping[str, Any], key: str) -> Mapping[str, Any]:
    """A sub-table of [controller] (empty when absent)."""
    value = table.get(key, {})
    if not isinstance(value, Mapping):
        raise ValidationError(f"controller.{key}", "must be a table")
    return value


def _flag(table: Mapping[str, Any], key: str, default: bool,
          where: str = "controller.") -> bool:
    """A boolean setting of [controller] (or of the table `where` names)."""
    value = table.get(key, default)
    if not isinstance(value, bool):
        raise ValidationError(f"{where}{key}", f"must be true or false, got {value!r}")
    return value


def config_from_toml(text: str, source: str) -> ControllerConfig:
    """Parse and validate the TOML text of the file named `source` (errors name the file)."""
    try:
        data = tomllib.loads(text)
    except tomllib.TOMLDecodeError as exc:
        raise ConfigError(source, "(syntax)", str(exc)) from None
    try:
        return config_from_dict(data)
    except ValidationError as exc:
        raise ConfigError(source, exc.field, exc.message) from None
