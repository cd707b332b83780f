"""The Dyncast controller application for Ryu 4.34 or os-ken 3.x (the thin shell).

Each handler turns one OpenFlow event into plain values, calls the core in `controller/`, and
sends the intents it returns. Periodic work (LLDP, link expiry, stale metrics) arrives as an
`EventTick` posted by a timer thread; store writes are applied in a worker OS thread, never on
the packet-in path. The core does no I/O, so a call into it is never interleaved with another
green thread (REST requests call it directly for that reason). A REST request is served in the
API's bounded steps, and the event loop runs between two of them (a large metrics batch takes
one step per slice); services that reports made dirty are recomputed once per burst, by a
green thread woken by the reports (one service a step), on every tick, and on first use.
The REST side is `apps/restside.py` and the periodic loops `apps/apploops.py` (mixins).

Run: `dyncast-manager --dyncast-config dyncast.toml apps/dyncast_app.py`
(plain `ryu-manager` lacks the Python 3.11 workarounds in `apps/manager.py`; see
docs/troubleshooting.md).
"""

from __future__ import annotations

import functools
import gc
import logging
import os
import signal
import struct
import sys
import time
from collections import deque
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

if __package__ in (None, ""):  # loaded by path from ryu-manager: make the repo importable
    sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from sqlalchemy.engine import make_url

from apps import (
    channelguard,
    fastpath,
    flowstats,
    logs,
    packet_in,
    procsignals,
    security,
    storespill,
)
from apps.apploops import COSTS_QUEUED, EventTick, Loops, TableRead
from apps.changefeed import SharedSide
from apps.cluster import ClusterSide, async_config
from apps.configfile import load_config
from apps.flowread import Polls, entry_of
from apps.framework import (
    CONFIG_DISPATCHER,
    DEAD_DISPATCHER,
    MAIN_DISPATCHER,
    App,
    WSGIApplication,
    hub,
    ofp_event,
    ofproto_v1_3,
    ofproto_v1_3_parser,
    set_ev_cls,
)
from apps.gcpause import GcPauses, apply_thresholds
from apps.groupsync import GroupSync
from apps.metrics import Metrics
from apps.ofmsg import serialise
from apps.reloader import Reloader
from apps.rest import APP_KEY, RestController
from apps.restside import SHELL_RESOURCES, RestSide
from apps.stallwatch import StallWatch, threshold_from_env
from apps.store import load_store, open_store
from apps.storeflush import StoreHealth, Unstored
from apps.tracker import TrackerReader
from apps.web import WebController
from controller.api import Api
from controller.core import Core
from controller.dataplane.healthpunt import TABLE_HEALTH
from controller.dataplane.punt import meter_punts
from controller.dataplane.reconciler import entry_key
from controller.dataplane.rules import caveats
from controller.intents import FlowMod, Intent
from controller.observer import observe

LOG = logging.getLogger("dyncast")
OFPET = {v: k[6:].lower() for k, v in vars(ofproto_v1_3).items() if k.startswith("OFPET_")}


def guarded(handler: Callable[..., None]) -> Callable[..., None]:
    """Log a handler's exception loudly with a traceback and count it; never swallow silently."""

    @functools.wraps(handler)
    def wrapper(self: DyncastApp, ev: Any) -> None:
        try:
            handler(self, ev)
        except Exception:
            self.core.counters["errors"] += 1
            LOG.exception("dyncast: exception in %s", handler.__name__)

    return wrapper


class DyncastApp(ClusterSide, SharedSide, RestSide, Loops, GroupSync, App):  # type: ignore[misc]
    """Dyncast in centralized mode: per-ingress decisions, affinity held by the switches."""

    OFP_VERSIONS = [ofproto_v1_3.OFP_VERSION]  # noqa: RUF012 - the framework's contract
    _CONTEXTS = {"wsgi": WSGIApplication}  # noqa: RUF012 - the framework's contract
    _EVENTS = [EventTick]  # noqa: RUF012 - the framework's contract

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        packet_in.install(ofproto_v1_3_parser)  # PACKET_INs parsed with struct (same objects)
        flowstats.install(ofproto_v1_3_parser, lambda: hub.sleep(0))  # and flow statistics
        path = os.environ.get("DYNCAST_CONFIG") or None
        self.config = load_config(path)
        logs.configure(self.config.logging)
        self.core = Core(self.config)
        self.metrics = Metrics(self.core)
        self.state_log = logs.StateLog()  # instance_state lines, a budget an instance
        self.rejects = logs.RejectLog(self.config.logging.rejected_per_minute,
                                      counts=self.metrics.shell.requests_refused)
        self.reloader = Reloader(self.core, path, self.metrics.shell, self._swapped)
        self._hup = False  # set by SIGHUP; the reload runs on the loop (`_watch`)
        self._lags: list[float] = []
        self.stall_watch: StallWatch | None = None  # started at start if asked for
        self.gc_pauses = GcPauses()  # installed at start: the survivors of a full GC frozen
        try:
            signal.signal(signal.SIGHUP, self._on_sighup)
        except ValueError:  # not the main thread (an embedding test): no signal reload
            LOG.warning("dyncast: SIGHUP reload unavailable (not the main thread)")
        else:  # a SIGHUP the manager held since the process began: reload once running
            if procsignals.take_held_sighup():
                self._hup = True
                LOG.info("dyncast: SIGHUP during the start: the configuration is reloaded "
                         "once the app runs")
        self.store = open_store(self.config.store_url, path or "(defaults)",
                                shared=self.config.cluster.enabled)  # or it is ours alone
        self.core.network.keyed(self.store.lldp_key)  # our LLDP frames, no host's forgery
        self.store_health = StoreHealth()  # whether its batches fail (apps/storeflush.py)
        cluster = self.config.cluster  # [cluster]: listen for the others' changes, then load
        self._feed_init(cluster.enabled, cluster.member_id, self.config.store_url)
        storespill.replay(self.store, self.config, path or "(defaults)")  # the last stop's
        snap = load_store(self.store, path or "(defaults)")  # a bad record: one line
        self._cluster_init(self.config.cluster, self.config.store_url)  # [cluster]: else nothing
        self.core.restore(snap.services, snap.instances, snap.bindings, time.time())
        self.unstored = Unstored(self.core.flows.born, not cluster.enabled)  # (storeflush)
        self.api = Api(self.core, SHELL_RESOURCES)
        self.datapaths: dict[int, Any] = {}  # the switches we program (allowed, connected)
        self.punt_pps = self.config.channel.punt_pps  # packet-in meter rate; 0: no meter
        self.unmetered: set[int] = set()  # switches that refused the packet-in meter
        self._meter_drops: dict[int, int] = {}  # switch -> packets its punt meter dropped
        self._flow_rows: dict[int, list[Any]] = {}  # flow statistics until the last part
        self._polls = Polls()  # affinity-table reads under way: when each was asked
        self._reads: dict[int, TableRead] = {}  # switch -> the reading of its table under way
        self._dropped_reads: set[int] = set()  # xids of readings asked again (answers ignored)
        self._repairs: dict[int, list[set[Any]]] = {}  # repairs under way (apploops)
        self._workers: list[Any] = []
        self._reported = hub.Event()  # set when reports left services dirty
        self._costs: deque[Iterator[list[Intent]]] = deque(maxlen=COSTS_QUEUED)  # (apploops)
        self._costs_ready = hub.Event()  # set when port counters were queued
        kwargs["wsgi"].register(RestController, {APP_KEY: self})
        fastpath.attach(kwargs["wsgi"], self)  # the gate serves the API's routes directly
        kwargs["wsgi"].register(WebController, {})  # the web view's files: /dyncast/ui/
        self.guard = security.install(
            kwargs["wsgi"], self.config, lambda: self.core.catalogue.instances, snap.agent_seqs,
            security.store_writes(self.core.writes), self.rejects, snap.agent_keys)
        LOG.info("dyncast: %d services, %d instances, %d bindings loaded; store %s",
                 len(self.core.catalogue.services), len(self.core.catalogue.instances),
                 len(self.core.bindings),
                 make_url(self.config.store_url).render_as_string(hide_password=True))
        for name, svc in sorted(self.core.catalogue.services.items()):
            for text in caveats(svc):
                LOG.warning("dyncast: service %s: %s", name, text)

    def start(self) -> Any:
        """Start the event loop, then the timer and store threads. What was loaded so far (the
        framework, the configuration, the restored state) is moved out of the garbage
        collector's sight: a full collection scanned it all and held the event loop for
        60-70 ms (bench/control_plane.py saw it in the echo delays)."""
        thread = super().start()
        self._workers = [hub.spawn(self._timer), hub.spawn(self._flusher),
                         hub.spawn(self._poller), hub.spawn(self._recomputer),
                         hub.spawn(self._coster),
                         hub.spawn(self._auditor), hub.spawn(self._watch),
                         hub.spawn(TrackerReader(self).run),  # conntrack zones (apps/tracker.py)
                         *self._cluster_threads(), *self._feed_threads()]
        stall_s = threshold_from_env()  # a debugging aid: DYNCAST_STALL_MS (apps/stallwatch)
        if stall_s:
            self.stall_watch = StallWatch(stall_s)
            self._workers.append(self.stall_watch.start(hub.spawn, hub.sleep))
            self.gc_pauses.log_over_s = stall_s / 3.0  # and the collections of 1/3 of it
        self.threads.extend(self._workers)
        apply_thresholds()  # opt-in: DYNCAST_GC_THRESHOLD (apps/gcpause.py)
        gc.collect()
        gc.freeze()
        self.gc_pauses.walk_s = self.config.gc_full_walk_s  # cycles among frozen objects freed
        self.gc_pauses.install()  # and what later full collections leave (apps/gcpause.py)
        return thread

    def stop(self) -> None:
        """Flush the last store writes, end our loops, then let the framework stop the rest
        (it joins every thread of the app, so endless loops must be killed first)."""
        with procsignals.stop_under_way():  # a second SIGTERM/SIGINT must not cut the flush
            self.gc_pauses.uninstall()
            self._stop_flushing(self._workers)  # kills them after the batch under way
            self._cluster_stop()
            if self.feed is not None:
                self.feed.close()
            super().stop()

    # --- sending ------------------------------------------------------------------------
    def send(self, intents: list[Intent]) -> None:
        """Carry out intents at the switches they name (skipping switches not connected).

        Each switch's messages go out in order as one write (`ofmsg.serialise`: the bytes and
        transaction ids `send_msg` would give them, without building the framework's message
        objects): on the packet-in path that is the forward and reverse entries and the packet.
        Every core call's intents come through here, so the instance state transitions the core
        recorded are logged here too, whatever the intents (none, one switch or several).
        """
        if self.member is not None:  # a cluster member programs only the switches it masters
            intents = [i for i in intents if self.member.masters(i.dpid)]
        if self.punt_pps:
            intents = meter_punts(intents, unmetered=self.unmetered)
        if self._reads or self._repairs:
            for intent in intents:
                if not isinstance(intent, FlowMod):
                    continue
                read = self._reads.get(intent.dpid)
                if read is not None:
                    read.sent.append(intent)
                for newer in self._repairs.get(intent.dpid, ()):
                    newer.add(entry_key(intent))
        if len({i.dpid for i in intents}) == 1:  # a new flow's: one switch
            dp = self.datapaths.get(intents[0].dpid)
            if dp is not None:
                dp.send(serialise(dp, intents))
        elif intents:
            by_dpid: dict[int, list[Intent]] = {}
            for intent in intents:
                by_dpid.setdefault(intent.dpid, []).append(intent)
            for dpid, group in by_dpid.items():
                dp = self.datapaths.get(dpid)
                if dp is not None:
                    dp.send(serialise(dp, group))
        self.metrics.shell.flow_mods_sent += len([i for i in intents if isinstance(i, FlowMod)])
        if (self.core.states.transitions or self.core.decisions.bases.change_log
                or self.core.topology.relocations):
            logs.core_events(self.core, self.state_log)

    @set_ev_cls(EventTick)
    @guarded
    def _tick_handler(self, ev: EventTick) -> None:
        self._recompute_dirty()  # first, a service at a time: the tick would do all at once
        self._tick_round(time.time())

    # --- OpenFlow events ----------------------------------------------------------------
    @set_ev_cls(ofp_event.EventOFPSwitchFeatures, CONFIG_DISPATCHER)
    @guarded
    def _switch_features_handler(self, ev: Any) -> None:
        dp = ev.msg.datapath
        if not self.config.channel.switch_allowed(dp.id):
            self.core.counters["switches_refused"] += 1
            channelguard.refuse_switch(dp)
            return
        self.datapaths[dp.id] = dp
        self.metrics.shell.switch_connections += 1
        logs.event("switches", "switch_connected", dpid=f"{dp.id:016x}",
                   reason="features reply")
        if self.member is None:  # in a cluster: once this member masters it (`_step_roles`)
            self._configure(dp)  # the punt meter before any entry that uses it
        else:  # every member hears every switch's packet-ins, whatever its role
            dp.send_msg(async_config(dp))
            self._watch_packet_ins(dp)  # those that teach a slave nothing: dropped unparsed
        self.send(self.core.switch_connected(dp.id, reads_table=True))
        dp.send_msg(dp.ofproto_parser.OFPPortDescStatsRequest(dp, 0))
        if self.member is None:
            self._read_table(dp)  # answered after the ports: the table is repaired, not wiped
        else:
            self._step_roles()  # MASTER: the same reading; SLAVE: nothing is sent to it

    @set_ev_cls(ofp_event.EventOFPPortDescStatsReply, MAIN_DISPATCHER)
    @guarded
    def _port_desc_handler(self, ev: Any) -> None:
        dp = ev.msg.datapath
        if self.datapaths.get(dp.id) is not dp:
            return  # a refused switch
        ofp = dp.ofproto
        ports = {p.port_no for p in ev.msg.body
                 if p.port_no <= ofp.OFPP_MAX and not p.state & ofp.OFPPS_LINK_DOWN
                 and not p.config & ofp.OFPPC_PORT_DOWN}
        self.send(self.core.switch_ports(dp.id, ports, time.time()))

    @set_ev_cls(ofp_event.EventOFPStateChange, DEAD_DISPATCHER)
    @guarded
    def _state_change_handler(self, ev: Any) -> None:
        dp = ev.datapath
        if dp.id is None or self.datapaths.get(dp.id) is not dp:
            return
        del self.datapaths[dp.id]
        self._reads.pop(dp.id, None)
        logs.event("switches", "switch_left", dpid=f"{dp.id:016x}",
                   reason="control channel closed")
        self.send(self.core.switch_left(dp.id, time.time()))

    @set_ev_cls(ofp_event.EventOFPPortStatus, MAIN_DISPATCHER)
    @guarded
    def _port_status_handler(self, ev: Any) -> None:
        msg = ev.msg
        if self.datapaths.get(msg.datapath.id) is not msg.datapath:
            return  # a refused switch
        ofp = msg.datapath.ofproto
        desc = msg.desc
        if desc.port_no > ofp.OFPP_MAX:
            return
        up = (msg.reason != ofp.OFPPR_DELETE and not desc.state & ofp.OFPPS_LINK_DOWN
              and not desc.config & ofp.OFPPC_PORT_DOWN)
        self.send(self.core.port_changed(msg.datapath.id, desc.port_no, up, time.time()))

    @set_ev_cls(ofp_event.EventOFPPacketIn, MAIN_DISPATCHER)
    @guarded
    def _packet_in_handler(self, ev: Any) -> None:
        msg = ev.msg
        if self.datapaths.get(msg.datapath.id) is not msg.datapath:
            return  # a refused switch: nothing learned from it, nothing sent to it
        if msg.table_id == TABLE_HEALTH:  # an instance's reset, copied (passive health):
            # counted by every member, its switch's master or not (each hears the copy), so
            # all eject alike; a member's intents go to the switches it masters only (`send`)
            self.send(self.core.health.reset(msg.cookie, msg.datapath.id, msg.match["in_port"],
                                             msg.data, time.time()))
            return
        if not self.programs(msg.datapath.id):  # another member's: links and hosts only
            self.send(observe(self.core, msg.datapath.id, msg.match["in_port"], msg.data,
                              time.time()))
            return
        self.send(self.core.packet_in(msg.datapath.id, msg.match["in_port"], msg.data,
                                      time.time(), msg.cookie))

    @set_ev_cls(ofp_event.EventOFPFlowRemoved, MAIN_DISPATCHER)
    @guarded
    def _flow_removed_handler(self, ev: Any) -> None:
        msg = ev.msg
        ofp = msg.datapath.ofproto
        reason = {ofp.OFPRR_IDLE_TIMEOUT: "idle", ofp.OFPRR_HARD_TIMEOUT: "hard",
                  ofp.OFPRR_DELETE: "delete"}.get(msg.reason, "other")
        self.send(self.core.flow_removed(msg.datapath.id, msg.cookie, reason, time.time()))

    @set_ev_cls(ofp_event.EventOFPPortStatsReply, MAIN_DISPATCHER)
    @guarded
    def _port_stats_handler(self, ev: Any) -> None:
        dp = ev.msg.datapath
        samples = [(s.port_no, s.tx_bytes, s.rx_bytes) for s in ev.msg.body
                   if s.port_no <= dp.ofproto.OFPP_MAX]
        if len(self._costs) == COSTS_QUEUED:  # (the oldest goes: its rates are then over
            self.core.counters["port_stats_dropped"] += 1  # a longer interval)
        self._costs.append(self.core.port_stats_steps(dp.id, samples, time.time()))
        self._costs_ready.set()  # (`_coster` applies them: a moved cost's work is in steps)

    @set_ev_cls(ofp_event.EventOFPMeterStatsReply, MAIN_DISPATCHER)
    @guarded
    def _meter_stats_handler(self, ev: Any) -> None:
        self._meter_drops[ev.msg.datapath.id] = channelguard.meter_drops(ev.msg.body)
        self.core.counters["punt_meter_drops"] = sum(self._meter_drops.values())

    @set_ev_cls(ofp_event.EventOFPFlowStatsReply, MAIN_DISPATCHER)
    @guarded
    def _flow_stats_handler(self, ev: Any) -> None:
        msg = ev.msg
        dp = msg.datapath
        body = msg.body  # read first: apps/flowstats.py pauses before reading it, and a read
        # of the table may be asked again meanwhile (then this one's replies are dropped)
        read = self._reads.get(dp.id)
        if read is not None and read.xid == msg.xid:
            read.entries += [entry_of(s, dp.ofproto) for s in body]
            if not msg.flags & dp.ofproto.OFPMPF_REPLY_MORE:
                del self._reads[dp.id]
                self._reconcile(dp.id, read)
            return
        if msg.xid in self._dropped_reads:
            return
        rows = self._flow_rows.setdefault(msg.datapath.id, [])
        rows += [(s.cookie, dict(s.match.items()), s.packet_count,
                  s.duration_sec + s.duration_nsec / 1e9) for s in body]
        if not msg.flags & msg.datapath.ofproto.OFPMPF_REPLY_MORE:
            self.core.learned_entries(msg.datapath.id, self._flow_rows.pop(msg.datapath.id),
                                      self._polls.answered(msg.xid))

    @set_ev_cls(ofp_event.EventOFPRoleReply, MAIN_DISPATCHER)
    @guarded
    def _role_reply_handler(self, ev: Any) -> None:
        self.role_confirmed(ev.msg)

    @set_ev_cls(ofp_event.EventOFPEchoReply, MAIN_DISPATCHER)
    @guarded
    def _echo_reply_handler(self, ev: Any) -> None:
        msg = ev.msg
        if len(msg.data) == 8:
            sent = struct.unpack("!d", msg.data)[0]
            self.core.echo_rtt(msg.datapath.id, time.time() - sent)

    @set_ev_cls(ofp_event.EventOFPErrorMsg, MAIN_DISPATCHER)
    @guarded
    def _error_handler(self, ev: Any) -> None:
        msg = ev.msg
        if channelguard.expected_error(msg):
            LOG.info("dyncast: switch %016x already has the punt meter", msg.datapath.id)
            return
        if self.cluster_error(msg):
            return
        health = channelguard.health_meter_error(msg, self.core.health)
        if health is not None:  # the switch has no meter for passive health: logged once
            self.send(health)
            return
        punt = channelguard.punt_meter_error(msg, self.unmetered, self.core.counters)
        if punt is not None:  # the switch has no meter for packet-ins: logged once
            dp = msg.datapath
            if punt and self.datapaths.get(dp.id) is dp and self.programs(dp.id):
                self._read_table(dp)  # the entries it refused come back, unmetered
            return
        self.core.counters["errors"] += 1
        self.metrics.shell.openflow_errors[OFPET.get(msg.type, str(msg.type))] += 1
        LOG.error("dyncast: OpenFlow error from switch %016x: type=%d code=%d data=%s",
                  msg.datapath.id, msg.type, msg.code, bytes(msg.data[:64]).hex())
