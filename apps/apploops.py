"""The Dyncast app's periodic work (a mixin of `apps.dyncast_app.DyncastApp`): the event-loop lag
watch (which also runs a reload a SIGHUP asked for), the tick timer, the statistics and echo
poller, the table reads spread over the reconcile interval (each read audited in the core's
steps and its repair sent a slice at a time), the coalesced recomputation of services that
reports made dirty, and the store flusher in a worker OS thread. Boundary: shell; each loop
is a green thread started by the app, and sends what the core returns."""

from __future__ import annotations

import logging
import struct
import time
from collections import deque
from collections.abc import Iterable, Iterator
from typing import Any

from eventlet import tpool

from apps import channelguard, logs, storespill
from apps.flowread import read_request
from apps.framework import event, hub
from apps.storeflush import StoreHealth, Unstored, flush_at_stop, reason, wait_idle
from controller.dataplane.reconciler import entry_key
from controller.intents import FlowMod, Intent, StoreWrite, SwitchEntry

LOG = logging.getLogger("dyncast")
COSTS_QUEUED = 4096  # port-counter replies waiting for `_coster` (past it the oldest go:
# a rate is then taken over a longer interval)
RECOMPUTE_DELAY_S = 0.1  # reports this soon after one are recomputed with it (a new flow
# or GET /decisions recomputes a dirty service at once: only switch-held decisions wait)
WATCH_S = 0.25  # the event-loop lag is sampled, and a SIGHUP looked for, this often
LAG_WINDOW = 20  # samples over which the largest lag is reported (5 s)
REPAIR_SLICE = 500  # flow-mods of one switch's repair serialised and sent a step (a switch
# that lost its table of 5,000 host routes and bindings held the loop ~100 ms in one go)


class EventTick(event.EventBase):  # type: ignore[misc]
    """Time for the periodic work."""


class TableRead:
    """A switch's table being read: the request, when, the parts so far, what we sent since."""

    def __init__(self, xid: int, at: float) -> None:
        self.xid = xid
        self.at = at
        self.entries: list[SwitchEntry] = []
        self.sent: list[FlowMod] = []


class Loops:
    """The app's green-thread loops; the app provides `send`, the framework `send_event`."""

    core: Any
    config: Any
    metrics: Any
    reloader: Any
    rejects: Any
    store: Any
    name: str
    punt_pps: int
    unmetered: set[int]  # switches that refused the packet-in meter
    datapaths: dict[int, Any]
    _polls: Any
    _reads: dict[int, TableRead]
    _dropped_reads: set[int]
    _repairs: dict[int, list[set[Any]]]  # switch -> entries sent it while repairs are under way
    _reported: Any
    _costs: deque[Iterator[list[Intent]]]  # port counters' steps, queued by the handler
    _costs_ready: Any
    _hup: bool
    _lags: list[float]
    programs: Any  # apps.cluster.ClusterSide: may this member program the switch?
    lease_epoch: Any  # ... the lease epoch held now ("current" outside a cluster)
    stale_refused: Any  # ... a failed batch's writes less those made under an earlier lease
    _read_groups: Any  # apps.groupsync.GroupSync: read a switch's groups (after its table)
    flushing: tuple[Any, ...] = ()  # the store writes being applied now
    store_health: StoreHealth  # whether the store's batches fail (/readyz, the outage's log)
    unstored: Unstored  # our bindings the store holds (a failed batch's needless deletes)
    _spill_last: list[StoreWrite] | None = None  # the writes an outage last kept in the file
    _spill_failing = False  # the file could not be written (said once)

    def _watch(self) -> None:
        """Sample the event loop's lag (how late a sleep wakes), and run a reload a SIGHUP
        asked for, on the loop."""
        while True:
            start = time.monotonic()
            hub.sleep(WATCH_S)
            self._watched(max(time.monotonic() - start - WATCH_S, 0.0))

    def _watched(self, lag: float) -> None:
        """One sample of the loop's lag; then a reload, if a SIGHUP asked for one."""
        self._lags = [*self._lags[-(LAG_WINDOW - 1):], lag]
        self.metrics.shell.loop_lag_s = max(self._lags)
        self.rejects.roll()
        if self._hup:
            self._hup = False
            try:
                self.send(self.reloader.reload(time.time(), "sighup").intents)
            except Exception:
                self.core.counters["errors"] += 1
                LOG.exception("dyncast: exception reloading the configuration")

    def _timer(self) -> None:
        """Post an EventTick every LLDP interval."""
        while True:
            hub.sleep(self.config.lldp_interval_s)
            self.send_event(self.name, EventTick())

    def _poller(self) -> None:
        """Ask every switch for its port counters and an echo (control round trip)."""
        while True:
            hub.sleep(self.config.stats_interval_s)
            for dp in list(self.datapaths.values()):
                for msg in self._stats_requests(dp):
                    dp.send_msg(msg)
            for dpid in self.core.programmer.switches_to_poll():  # what switches learned
                dp = self.datapaths.get(dpid)
                if dp is not None:
                    dp.send_msg(self._polls.ask(dp, time.time()))

    def _stats_requests(self, dp: Any) -> list[Any]:
        """A switch's periodic requests: port counters, an echo, and the punt meter's counters
        where this member made the meter (the member that programs the switch: in a cluster a
        slave's request could reach the switch before any master made it, and the switch
        answers it with an error)."""
        parser = dp.ofproto_parser
        out = [parser.OFPPortStatsRequest(dp, 0, dp.ofproto.OFPP_ANY),
               parser.OFPEchoRequest(dp, data=struct.pack("!d", time.time()))]
        if self.punt_pps and self.programs(dp.id) and dp.id not in self.unmetered:
            out.append(channelguard.meter_stats_request(dp))
        return out

    def _auditor(self) -> None:
        """Read every switch's table back every `reconcile_interval_s` (a reading that got no
        answer by then is asked again), one switch at a time, spread over the interval: each
        answer is reconciled in a turn of its own, never every switch's in one."""
        while True:
            interval = self.config.reconcile_interval_s  # a reload may change it
            dps = list(self.datapaths.values())
            if not dps:
                hub.sleep(interval)
            for dp in dps:
                hub.sleep(interval / len(dps))
                if self.datapaths.get(dp.id) is dp and self.programs(dp.id):  # connected
                    self._read_table(dp)  # (not replaced), and ours to program (a cluster)

    def _read_table(self, dp: Any) -> None:
        """Ask a switch for every entry with our cookie (`_flow_stats_handler` reconciles)."""
        req = read_request(dp)
        dp.set_xid(req)
        old = self._reads.get(dp.id)
        if old is not None:
            self._dropped_reads = {*list(self._dropped_reads)[-63:], old.xid}
        self._reads[dp.id] = TableRead(req.xid, time.time())
        dp.send_msg(req)

    def _reconcile(self, dpid: int, read: TableRead) -> None:
        """Repair a switch from what it was read to hold, in the core's steps with the event
        loop running between two (apps/apploops.py); say so when it needed repair."""
        c, keys = self.core.counters, ("reconcile_added", "reconcile_removed",
                                       "bindings_adopted", "bindings_retired")
        before = [c[k] for k in keys]
        self._send_steps(dpid, self.core.switch_table_steps(dpid, read.entries, read.sent,
                                                            read.at, time.time()))
        self._read_groups(dpid)  # and then its groups (apps/groupsync.py)
        after = [c[k] for k in keys]
        if after != before:
            added, removed, adopted, retired = map(int.__sub__, after, before)
            logs.event("reconcile", "switch_repaired", dpid=f"{dpid:016x}",
                       entries_read=len(read.entries), added=added, removed=removed,
                       bindings_adopted=adopted, bindings_retired=retired,
                       reason="the switch's table differed from what the controller holds")

    def _send_repair(self, dpid: int, intents: list[Intent]) -> None:
        """Send a switch's repair, REPAIR_SLICE intents a step (`_send_steps`)."""
        self._send_steps(dpid, [intents])

    def _send_steps(self, dpid: int, steps: Iterable[list[Intent]]) -> None:
        """Run a switch's audit in the core's steps (`Core.switch_table_steps`) and send what
        they give, REPAIR_SLICE intents at a time, letting the event loop run after each step
        and between two slices. A flow-mod the app sent that switch meanwhile (a binding, a
        route, a service programmed) is newer than the audit's view of the same entry, whose
        flow-mod is then left out; if the switch's connection is closed or replaced meanwhile,
        the rest is dropped, steps not run included (a new connection's table is read
        again)."""
        dp = self.datapaths.get(dpid)
        newer: set[Any] = set()
        it, ran = iter(steps), False
        try:
            while True:
                if ran and not self._pause(dpid, dp, newer):
                    return
                step = next(it, None)
                if step is None:
                    return
                ran = True
                for i in range(0, len(step), REPAIR_SLICE):
                    if i and not self._pause(dpid, dp, newer):
                        return
                    part = [x for x in step[i:i + REPAIR_SLICE] if not (
                        newer and isinstance(x, FlowMod) and entry_key(x) in newer)]
                    if part:
                        self.send(part)
        finally:
            self._unwatch(dpid, newer)

    def _pause(self, dpid: int, dp: Any, newer: set[Any]) -> bool:
        """Let the event loop run, noting in `newer` what is sent to `dpid` meanwhile (`send`
        does); False when the switch's connection was closed or replaced."""
        self._repairs.setdefault(dpid, []).append(newer)
        try:
            hub.sleep(0)
        finally:
            self._unwatch(dpid, newer)
        return self.datapaths.get(dpid) is dp

    def _unwatch(self, dpid: int, newer: set[Any]) -> None:
        """Stop noting what is sent to `dpid` in `newer` (other repairs' sets stay)."""
        kept = [x for x in self._repairs.get(dpid, ()) if x is not newer]
        if kept:
            self._repairs[dpid] = kept
        else:
            self._repairs.pop(dpid, None)

    def _recomputer(self) -> None:
        """Recompute the services reports (or a link cost's change) made dirty, once per burst:
        woken by a report, wait RECOMPUTE_DELAY_S for the rest of the burst, then one service at
        a time."""
        while True:
            self._reported.wait()
            hub.sleep(RECOMPUTE_DELAY_S)
            self._reported.clear()
            self._recompute_dirty()

    def _coster(self) -> None:
        """Apply the queued port counters in order, each in the core's steps
        (`Core.port_stats_steps`: a moved cost's tree repairs a slice a step, then the
        routes), letting the event loop run between two (the handler only queues them: on Kdl,
        754 switches, one cost's repairs took up to 142 ms, bench/results/kdl_links_200.txt);
        then wake the recomputer for the services a moved cost left dirty."""
        while True:
            self._costs_ready.wait()
            self._costs_ready.clear()
            self._apply_costs()

    def _apply_costs(self) -> None:
        """Apply every queued port-counter reply (`_coster`)."""
        while self._costs:
            steps = self._costs.popleft()
            try:
                for k, intents in enumerate(steps):
                    if k:
                        hub.sleep(0)
                    self.send(intents)
            except Exception:
                self.core.counters["errors"] += 1
                LOG.exception("dyncast: exception applying port counters")
            if self.core.intake.dirty:
                self._reported.set()
            hub.sleep(0)

    def _recompute_dirty(self) -> None:
        """Recompute the dirty services one at a time, letting the event loop run between
        two (50 dirty services of 100 instances took 0.5 s at once)."""
        for name in self.core.intake.pending():
            try:
                with self.metrics.compute.time():
                    intents = self.core.flush(time.time(), name)
                self.send(intents)
            except Exception:
                self.core.counters["errors"] += 1
                LOG.exception("dyncast: exception recomputing service %s", name)
            hub.sleep(0)

    def _tick_round(self, now: float) -> None:
        """Run one tick in the core's bounded steps (`Core.tick_steps`: a slice of instances
        or one service a step), sending each step's intents and letting the event loop run
        before the next (5,000 instances walked at once held it 60-100 ms)."""
        for k, intents in enumerate(self.core.tick_steps(now)):
            if k:
                hub.sleep(0)
            self.send(intents)

    def _flusher(self) -> None:
        """Apply queued store writes in a worker OS thread, in batches."""
        while True:
            hub.sleep(self.config.store_flush_s)
            self._flush()

    def _flush(self) -> None:
        """Apply the queued store writes as one batch in a worker OS thread; a batch that
        fails is requeued whole (behind nothing newer) and counted, and an outage is logged
        at its start and end only (apps/storeflush.py)."""
        token = self.lease_epoch()  # the lease the writes were made under, read with them
        writes = self.core.drain_writes()
        if not writes:
            return
        self.flushing = tuple(writes)  # on their way (apps/changefeed.py's catch-up)
        try:
            tpool.execute(self.store.apply, writes, token)
        except Exception as exc:
            self.core.counters["errors"] += 1
            needed = self.stale_refused(self.unstored.needed(writes), token)
            self.core.writes.requeue(needed)
            self.store_health.failed(exc, len(self.core.writes), time.time())
            self._spill(needed)  # (still `flushing`: the stop waits for the file too)
        else:
            self.unstored.landed(writes)
            self.store_health.landed(len(writes), time.time())
            self._unspill()
        finally:
            self.flushing = ()

    def _spill_path(self) -> str | None:
        """Where unstored writes are kept (apps/storespill.py): None in a cluster or when
        `unstored_path` is empty."""
        path = self.config.unstored_path
        return None if self.config.cluster.enabled or not path else path

    def _spill(self, writes: list[StoreWrite]) -> None:
        """Keep a failed batch (every write queued then) in the file too, in a worker thread,
        so that a controller killed during the outage loses only what was queued since; not
        again while the queue holds the very writes last kept. A file that cannot be written
        is said once until one can."""
        path = self._spill_path()
        last = self._spill_last
        if not writes:  # (a failed batch of needless deletes alone: nothing to keep)
            self._unspill()
            return
        if path is None or (last is not None and len(last) == len(writes)
                            and {id(w) for w in last} == {id(w) for w in writes}):
            return  # (`last` holds its writes: their ids are not reused meanwhile)
        try:
            tpool.execute(storespill.keep, path, writes, True)
        except OSError as exc:
            if not self._spill_failing:
                self._spill_failing = True
                logs.event("store", "store_writes_unkept", logging.WARNING,
                           reason=reason(exc), path=path, waiting=len(writes))
            return
        self._spill_last, self._spill_failing = writes, False

    def _unspill(self) -> None:
        """A batch landed: every write the file held has been stored; remove it."""
        path = self._spill_path()
        if path is None or self._spill_last is None:
            return
        try:
            storespill.discard(path)
        except OSError as exc:  # (the next start stores them again: the same records)
            LOG.warning("dyncast: cannot remove %s: %s", path, reason(exc))
            return
        self._spill_last = None

    def _keep(self, writes: list[StoreWrite]) -> str | None:
        """Keep the writes the stop could not store for the next start (apps/storespill.py),
        outside a cluster and unless `unstored_path` is empty; the file, or None. The file
        an outage of this run wrote is replaced (every write of it is among these)."""
        path = self._spill_path()
        if path is None:
            return None
        storespill.keep(path, self.unstored.needed(writes), self._spill_last is not None)
        return path

    def _stop_flushing(self, workers: list[Any]) -> None:
        """The stop's last flush: wait for the batch a worker thread may be applying, kill
        `workers` (the flusher among them), then write the rest, retried for a bounded time
        (apps/storeflush.py)."""
        deadline = wait_idle(lambda: bool(self.flushing), hub.sleep)
        for worker in workers:
            hub.kill(worker)
        queued = self.core.drain_writes()
        stored = flush_at_stop(self.store.apply, queued, hub.sleep, deadline, self._keep)
        if stored == len(queued):
            self._unspill()
        LOG.info("dyncast: stopped; %d of %d store writes flushed", stored, len(queued))
