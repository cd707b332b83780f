"""GET /metrics: the controller in Prometheus' text format, from a registry of the app's own.

Boundary: the shell. The core keeps plain counters and state (`Core.counters`, the catalogue,
the binding table, the engine); `CoreCollector` reads them when scraped, so nothing is updated
per event for Prometheus and a scrape costs one pass over instances and bindings. What only the
shell sees (OpenFlow errors, flow-mods sent, rejected reports, reloads, event-loop lag, the
time a recompute takes) is kept in `ShellCounts` and the compute-time histogram.
Names: `dyncast_` prefix, counters end in `_total`, times in `_seconds` (docs/observability.md).
"""

from __future__ import annotations

import time
from collections import Counter
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any

from prometheus_client import CollectorRegistry, Histogram, generate_latest
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, Metric
from prometheus_client.registry import Collector

from controller.core import Core
from controller.dataplane.modes import MODES
from controller.instances.lifecycle import STATES
from controller.trackview import zone_counts

CONTENT_TYPE = "text/plain; version=0.0.4; charset=utf-8"
USABLE = "active"  # the state in which an instance takes new flows
COMPUTE_BUCKETS = (0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0)


@dataclass
class ShellCounts:
    """What the shell counts itself (the core never sees these events)."""

    openflow_errors: Counter[str] = field(default_factory=Counter)  # by OpenFlow error type
    flow_mods_sent: int = 0
    switch_connections: int = 0
    switches_connected: int = 0
    reports_rejected: Counter[str] = field(default_factory=Counter)  # by the field at fault
    requests_refused: Counter[int] = field(default_factory=Counter)  # REST, by status
    reloads: Counter[str] = field(default_factory=Counter)  # "success" / "failure"
    loop_lag_s: float = 0.0  # the largest lag of the event loop in the last window
    gc_longest_s: float = 0.0  # the longest garbage collection since start (apps/gcpause.py)
    stall_longest_s: float = 0.0  # the longest event-loop stall seen (apps/stallwatch.py, if on)


def _counter(name: str, doc: str, labels: list[str] | None = None) -> CounterMetricFamily:
    """A counter family (prometheus_client appends `_total` to `name`)."""
    return CounterMetricFamily(name, doc, labels=labels)


class CoreCollector(Collector):
    """Reads the core's counters and state at scrape time (no work between scrapes)."""

    def __init__(self, core: Core, shell: ShellCounts, clock: Any = time.time) -> None:
        self.core = core
        self.shell = shell
        self.clock = clock

    def collect(self) -> Iterator[Metric]:
        """Every family, from the current state."""
        yield from self._traffic()
        yield from self._decisions()
        yield from self._instances()
        yield from self._shell()

    def _traffic(self) -> Iterator[Metric]:
        core, c = self.core, self.core.counters
        pins = _counter("dyncast_packet_ins", "Packets sent to the controller, by reason",
                        ["reason"])
        other = c["packet_in"] - c["packet_in_dsid"] - c["route_miss"]
        for reason, n in (("service_flow", c["packet_in_dsid"]), ("route_miss", c["route_miss"]),
                          ("other", max(other, 0))):
            pins.add_metric([reason], n)
        yield pins
        outcomes = _counter("dyncast_service_packet_in_outcomes",
                            "What became of packet-ins to a service address", ["outcome"])
        for outcome, key in (("new_flow", "new_flows"), ("reinstall", "reinstalls"),
                             ("settling", "packet_in_settling"),
                             ("new_connection_rebound", "new_connections_rebound"),
                             ("new_connection_excepted", "new_connections_excepted"),
                             ("stateless", "stateless_flows"),
                             ("dropped_no_instance", "dropped_no_instance"),
                             ("dropped_unreachable", "dropped_unreachable")):
            outcomes.add_metric([outcome], c[key])
        yield outcomes
        by_flow = core.flows.new_by
        setups = _counter("dyncast_flow_setups", "New flows bound by the controller, by the "
                          "service's dataplane", ["dataplane"])
        per_mode: Counter[str] = Counter({m: 0 for m in MODES})
        services = core.catalogue.services
        for (svc, _, _), n in by_flow.items():
            s = services.get(svc)
            per_mode[s.dataplane if s is not None else "removed"] += n
        for mode, n in sorted(per_mode.items()):
            setups.add_metric([mode], n)
        yield setups
        new = _counter("dyncast_new_flows", "New flows bound, by service, ingress switch and "
                       "instance", ["service", "ingress", "instance"])
        for (svc, ingress, dbid), n in sorted(by_flow.items()):
            new.add_metric([svc, str(ingress), dbid], n)
        yield new
        bound: Counter[tuple[str, str]] = Counter((b.key.service, b.dbid)
                                                  for b in core.bindings.unordered())
        bindings = GaugeMetricFamily("dyncast_bindings", "Affinity bindings the controller "
                                     "holds, by service and instance", labels=["service",
                                                                              "instance"])
        for (svc, dbid), n in sorted(bound.items()):
            bindings.add_metric([svc, dbid], n)
        yield bindings
        yield GaugeMetricFamily("dyncast_dataplane_entries", "Entries the controller keeps in "
                                "switches for learn/bucket services",
                                value=core.programmer.reconciler.count())
        tracked = GaugeMetricFamily("dyncast_conntrack_entries", "Connection-tracker entries "
                                    "of conntrack services in the latest read, by service and "
                                    "zone", labels=["service", "zone"])
        for svc, zone, n in zone_counts(core):
            tracked.add_metric([svc, str(zone)], n)
        yield tracked

    def _decisions(self) -> Iterator[Metric]:
        core, c = self.core, self.core.counters
        yield CounterMetricFamily("dyncast_decision_recomputes", "Decisions taken again",
                                  value=core.engine.recomputed)
        yield CounterMetricFamily("dyncast_decision_changes", "Decisions whose outcome changed",
                                  value=c["decision_changes"])
        yield GaugeMetricFamily("dyncast_decisions", "Decisions held (service x ingress)",
                                value=len(core.engine.decisions))
        moves = _counter("dyncast_affinity_moves", "Bound flows moved to another instance",
                         ["reason"])
        for reason, key in (("instance_unusable", "affinity_moves"),
                            ("client_moved", "client_moves")):
            moves.add_metric([reason], c[key])
        moves.add_metric(["switch_learned"], core.programmer.learned_moves)
        yield moves
        yield CounterMetricFamily("dyncast_drain_deadline_moves", "Flows moved because a "
                                  "drain deadline passed", value=c["drain_deadline_moves"])
        yield CounterMetricFamily("dyncast_reconcile_runs", "Switch tables read back and "
                                  "compared", value=c["reconcile_runs"])
        actions = _counter("dyncast_reconcile_actions", "Repairs made after reading a switch "
                           "table back", ["action"])
        for action, key in (("added", "reconcile_added"), ("removed", "reconcile_removed"),
                            ("binding_adopted", "bindings_adopted"),
                            ("binding_retired", "bindings_retired"),
                            ("binding_stored_again", "takeover_stored_again"),
                            ("binding_superseded", "takeover_superseded"),
                            ("group_added", "reconcile_groups_added"),
                            ("group_removed", "reconcile_groups_removed")):
            actions.add_metric([action], c[key])
        yield actions
        fenced = _counter("dyncast_cluster_writes_fenced", "Binding writes a cluster member's "
                          "store refused, by reason (its lease, or another member masters the "
                          "switch)", ["reason"])
        for reason in ("lease", "mastership"):
            fenced.add_metric([reason], c[f"writes_refused_{reason}"])
        yield fenced
        yield CounterMetricFamily("dyncast_cluster_slave_refusals", "Writes a switch refused "
                                  "because another cluster member took it (OFPBRC_IS_SLAVE; "
                                  "the member stops programming it at once)",
                                  value=c["slave_refusals"])
        yield GaugeMetricFamily("dyncast_cluster_settings_disagree", "Live cluster members "
                                "whose shared settings differ from this member's (docs/cluster.md)",
                                value=c["cluster_settings_disagree"])
        yield CounterMetricFamily("dyncast_cluster_changes_conflicting", "Other cluster "
                                  "members' writes a record here excluded (409: e.g. one D-SID "
                                  "for two services): the members differ (docs/cluster.md)",
                                  value=c["changes_conflicting"])
        claims = _counter("dyncast_cluster_dsid_claims", "A cluster member's D-SID claims in "
                          "the store, by outcome (refused: another service holds the D-SID; "
                          "failed: the store did not answer; docs/cluster.md)", ["outcome"])
        for outcome in ("taken", "refused", "failed", "released", "release_failed"):
            claims.add_metric([outcome], c[f"dsid_claims_{outcome}"])
        yield claims
        yield CounterMetricFamily("dyncast_errors", "Exceptions and OpenFlow errors in the "
                                  "controller", value=c["errors"])
        # the channel guards (docs/channels.md)
        yield CounterMetricFamily("dyncast_punt_meter_drops", "Packets the switches' packet-in "
                                  "meters dropped", value=c["punt_meter_drops"])
        yield CounterMetricFamily("dyncast_punt_meter_refused", "Switches that refused the "
                                  "packet-in meter (no meter support): their entries go "
                                  "unmetered", value=c["punt_meter_refused"])
        yield CounterMetricFamily("dyncast_switches_refused", "Connections from switches not "
                                  "on [channel].switches", value=c["switches_refused"])
        yield CounterMetricFamily("dyncast_host_moves_refused", "Packets claiming a registered "
                                  "instance's address from another port",
                                  value=core.topology.moves_refused)
        yield CounterMetricFamily("dyncast_host_sightings_held", "Senders seen at a port still "
                                  "in its first round of link discovery: learned once it has "
                                  "settled", value=core.network.settling.held)
        yield CounterMetricFamily("dyncast_host_route_probes", "ARP probes for addresses a "
                                  "switch routes to that the controller has not located (after "
                                  "a restart)", value=core.network.unplaced.probed)
        yield CounterMetricFamily("dyncast_host_sightings_refused", "Senders seen at a settling "
                                  "port and not held (the held sightings were at their cap)",
                                  value=core.network.settling.refused)

    def _instances(self) -> Iterator[Metric]:
        core, now = self.core, self.clock()
        age = GaugeMetricFamily("dyncast_instance_metric_age_seconds", "Time since the "
                                "instance's last accepted report", labels=["service", "instance"])
        state = GaugeMetricFamily("dyncast_instance_state", "The instance's current life-cycle "
                                  "state (one series, value 1; one of " + ", ".join(STATES) + ")",
                                  labels=["service", "instance", "state"])
        usable: Counter[str] = Counter({name: 0 for name in core.catalogue.services})
        total: Counter[str] = Counter({name: 0 for name in core.catalogue.services})
        for dbid, inst in core.catalogue.instances.items():
            if inst.metrics_at is not None:
                age.add_metric([inst.service, dbid], max(now - inst.metrics_at, 0.0))
            state.add_metric([inst.service, dbid, inst.state], 1.0)
            total[inst.service] += 1
            usable[inst.service] += inst.state == USABLE
        yield age
        yield state
        svc_total = GaugeMetricFamily("dyncast_service_instances", "Instances registered, by "
                                      "service", labels=["service"])
        svc_usable = GaugeMetricFamily("dyncast_service_usable_instances", "Instances taking "
                                       "new flows (state active), by service", labels=["service"])
        for name in sorted(total):
            svc_total.add_metric([name], total[name])
            svc_usable.add_metric([name], usable[name])
        yield svc_total
        yield svc_usable
        health = _counter("dyncast_health_events", "Passive health: instance resets copied to "
                          "the controller, refusals among them, ejections, ends of ejections, "
                          "copies not from where their label's instance is; switches that "
                          "refused its meter, entries refused for it", ["event"])
        for event in ("resets", "refusals", "ejections", "unejections", "resets_foreign",
                      "meter_refused", "entries_refused"):
            health.add_metric([event], core.counters[f"health_{event}"])
        yield health
        yield GaugeMetricFamily("dyncast_instances_ejected", "Active instances passive health "
                                "keeps out of new flows", value=len(core.health.state.ejected))
        c = core.counters
        yield CounterMetricFamily("dyncast_reports_accepted", "D-MA metric reports recorded",
                                  value=c["metric_reports"])
        rejected = _counter("dyncast_reports_rejected", "D-MA metric reports refused, by "
                            "reason (the field at fault)", ["reason"])
        rejected.add_metric(["instance_withdrawn"], c["reports_dropped"])
        for reason, n in sorted(self.shell.reports_rejected.items()):
            rejected.add_metric([reason], n)
        yield rejected
        yield GaugeMetricFamily("dyncast_store_write_queue_depth", "Store writes waiting",
                                value=len(core.writes))

    def _shell(self) -> Iterator[Metric]:
        sh = self.shell
        yield CounterMetricFamily("dyncast_flow_mods_sent", "OpenFlow flow-mods sent",
                                  value=sh.flow_mods_sent)
        errors = _counter("dyncast_openflow_errors", "OpenFlow error messages from switches, "
                          "by type", ["type"])
        for kind, n in sorted(sh.openflow_errors.items()):
            errors.add_metric([kind], n)
        yield errors
        yield CounterMetricFamily("dyncast_switch_connections", "Switch connections made",
                                  value=sh.switch_connections)
        refused = _counter("dyncast_requests_refused", "REST requests answered with a 4xx or a "
                           "503, by status: the security gate's (401, 403, 413, 415, 429) and "
                           "the API's (400, 404, 409, ...)", ["status"])
        for status in sorted({401, 403, 429} | sh.requests_refused.keys()):  # (the gate's
            refused.add_metric([str(status)], sh.requests_refused[status])  # usual: at 0)
        yield refused
        yield GaugeMetricFamily("dyncast_switches_connected", "Switches connected now",
                                value=sh.switches_connected)
        reloads = _counter("dyncast_config_reloads", "Configuration reloads, by result",
                           ["result"])
        for result in ("success", "failure"):
            reloads.add_metric([result], sh.reloads[result])
        yield reloads
        yield GaugeMetricFamily("dyncast_event_loop_lag_seconds", "Largest delay of the event "
                                "loop over its recent samples", value=sh.loop_lag_s)
        yield GaugeMetricFamily("dyncast_gc_longest_pause_seconds", "Longest garbage "
                                "collection since start", value=sh.gc_longest_s)
        yield GaugeMetricFamily("dyncast_event_loop_stall_longest_seconds", "Longest event-loop "
                                "stall since start (0 unless DYNCAST_STALL_MS watches for them)",
                                value=sh.stall_longest_s)


class WithoutCreated(Collector):
    """`metric`'s families without the `_created` sample prometheus_client adds, which the
    text format exports as a family of its own (`..._created`, a gauge): a series the
    documentation does not list and no other dyncast_ metric has."""

    def __init__(self, metric: Any) -> None:
        self.metric = metric

    def collect(self) -> Iterator[Metric]:
        """The metric's families, each without its `_created` samples."""
        for family in self.metric.collect():
            family.samples = [s for s in family.samples if not s.name.endswith("_created")]
            yield family


class Metrics:
    """The app's registry: the core collector, and the histogram of recompute times."""

    def __init__(self, core: Core, clock: Any = time.time) -> None:
        self.shell = ShellCounts()
        self.registry = CollectorRegistry(auto_describe=False)
        self.collector = CoreCollector(core, self.shell, clock)
        self.registry.register(self.collector)
        self.compute = Histogram("dyncast_decision_compute_seconds", "Time to recompute one "
                                 "service's decisions", buckets=COMPUTE_BUCKETS, registry=None)
        self.registry.register(WithoutCreated(self.compute))

    def scrape(self) -> bytes:
        """The text exposition of every metric."""
        return generate_latest(self.registry)
