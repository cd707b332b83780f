"""The shell's side of `controller.cluster`: the lease table in PostgreSQL, the heartbeat off
the event loop, OpenFlow 1.3 role requests, the gate that keeps a non-master member from
programming a switch, and what `/dyncast/v1/cluster`, `/healthz` and `/readyz` answer.

Boundary: shell. `LeaseTable` (apps/leases.py) does the database work (blocking: the app
runs it in a worker OS thread through `tpool`); `ClusterSide` is a mixin of
`apps.dyncast_app.DyncastApp`, whose green threads beat (`_heartbeat`) and apply the core's
role intents (`_roles`). With `[cluster]` absent or disabled none of it runs: `programs()`
is True for every switch.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from typing import Any, Literal

from eventlet import tpool

from apps import channelguard, logs, packet_in
from apps.dsidclaims import DsidClaims
from apps.fencing import StoreFence
from apps.framework import hub
from apps.leases import LeaseTable, store_reachable
from controller.api import Reply
from controller.cluster.agreement import settings_digest
from controller.cluster.fencing import FENCED, LEASE
from controller.cluster.member import (
    MASTER,
    NOCHANGE,
    SLAVE,
    ClusterIntent,
    Member,
    Reconcile,
    RoleRequest,
    StopProgramming,
)
from controller.cluster.membership import View
from controller.cluster.settings import ClusterConfig
from controller.dataplane.healthpunt import HEALTH_METER
from controller.intents import StoreWrite
from controller.observer import nothing_new

LOG = logging.getLogger("dyncast")
ROLES_EVERY_S = 0.1  # the role intents are stepped this often (fencing: at most this late)


def role_request(dp: Any, intent: RoleRequest) -> Any:
    """The framework's OFPRoleRequest (OpenFlow 1.3) for a role intent."""
    ofp = dp.ofproto
    role = {MASTER: ofp.OFPCR_ROLE_MASTER, SLAVE: ofp.OFPCR_ROLE_SLAVE,
            NOCHANGE: ofp.OFPCR_ROLE_NOCHANGE}[intent.role]
    return dp.ofproto_parser.OFPRoleRequest(dp, role, intent.generation_id)


def async_config(dp: Any) -> Any:
    """OFPT_SET_ASYNC: the packet-ins and port changes of the slave role as of the master
    (OpenFlow 1.3 sends a slave none by default), so every member learns every link and host;
    flow-removed messages to the master only (a binding ends at the member that made it)."""
    ofp = dp.ofproto
    packet_in = 1 << ofp.OFPR_NO_MATCH | 1 << ofp.OFPR_ACTION
    port_status = 1 << ofp.OFPPR_ADD | 1 << ofp.OFPPR_DELETE | 1 << ofp.OFPPR_MODIFY
    removed = (1 << ofp.OFPRR_IDLE_TIMEOUT | 1 << ofp.OFPRR_HARD_TIMEOUT
               | 1 << ofp.OFPRR_DELETE)
    return dp.ofproto_parser.OFPSetAsync(dp, [packet_in, packet_in],
                                         [port_status, port_status], [removed, 0])


class ClusterSide:
    """The cluster's part of the app; the app provides `datapaths`, `store`, `core`,
    `_read_table` and `punt_pps`."""

    core: Any
    store: Any
    store_health: Any  # apps.storeflush.StoreHealth
    punt_pps: int
    unmetered: set[int]  # switches that refused the packet-in meter
    datapaths: dict[int, Any]
    _reads: dict[int, Any]
    _dropped_reads: set[int]
    member: Member | None
    leases: LeaseTable | None
    _read_table: Callable[[Any], None]  # apps.apploops.Loops

    def _cluster_init(self, cluster: ClusterConfig, store_url: str) -> None:
        """Join the cluster if `[cluster]` enables it (nothing otherwise)."""
        self.member, self.leases = None, None
        self._apart: dict[str, str | None] = {}  # members with other settings, as last said
        self._digested: tuple[Any, str | None] = (None, None)  # (configuration, its digest)
        if cluster.enabled:
            self.member = Member(cluster.member_id, cluster.lease_s)
            self.leases = LeaseTable(store_url, cluster)
            self.store.fence = StoreFence(self.member, cluster.lease_s)  # bindings: fenced
            self.claims = DsidClaims(self.store.engine, cluster.member_id, self.core.counters)
            LOG.info("dyncast: cluster member %s (heartbeat %.2f s, lease %.2f s)",
                     cluster.member_id, cluster.heartbeat_s, cluster.lease_s)

    def _cluster_threads(self) -> list[Any]:
        """The green threads to start (none without a cluster)."""
        if self.member is None:
            return []
        return [hub.spawn(self._heartbeat), hub.spawn(self._roles)]

    def programs(self, dpid: int) -> bool:
        """True if this member may send flow-mods and packet-outs to `dpid`."""
        return self.member is None or self.member.masters(dpid)

    def _heartbeat(self) -> None:
        """Renew the lease every heartbeat_s in a worker thread; say when it fails and when
        it recovers."""
        assert self.member is not None and self.leases is not None
        while True:
            asked = time.time()
            self._beat(asked)
            self._step_roles()
            hub.sleep(max(self.leases.cluster.heartbeat_s - (time.time() - asked), 0.0))

    def _beat(self, asked: float) -> None:
        """One renewal, with the digest of our shared settings as they are now (a reload
        changes them); then what the view says of the others' settings."""
        assert self.member is not None and self.leases is not None
        self.member.settings = self._digest()
        try:
            view = tpool.execute(self.leases.beat, self.member.settings)
        except Exception as exc:
            if not self.member.beats_failed:
                LOG.error("dyncast: cluster: heartbeat failed: %s", exc)
            self.member.failed()
            return
        if self.member.beats_failed:
            LOG.warning("dyncast: cluster: heartbeat back after %d failures",
                        self.member.beats_failed)
            self.member.beats_failed = 0
        self._renewed(view, asked)
        self._agreement()
        if not self.claims.started:  # (once, and after each reload: apps/dsidclaims.py)
            self.claims.start({n: s.dsid for n, s in self.core.catalogue.services.items()})

    def _digest(self) -> str | None:
        """`settings_digest` of the running configuration, made once per configuration (None,
        logged, if it cannot be made: the lease matters more than the check)."""
        config = self.core.config
        if self._digested[0] is config:  # (a reload replaces the configuration object)
            return self._digested[1]
        try:
            self._digested = (config, settings_digest(config))
            return self._digested[1]
        except Exception:
            self.core.counters["errors"] += 1
            LOG.exception("dyncast: cluster: could not digest the shared settings")
            return None

    def _agreement(self) -> None:
        """Say when live members publish other shared settings than ours, and when they no
        longer do (docs/cluster.md: one configuration for every member)."""
        assert self.member is not None
        apart = self.member.disagreement()
        if apart == self._apart:
            return
        self._apart = apart
        self.core.counters["cluster_settings_disagree"] = len(apart)  # (a gauge: /metrics)
        mine = self.member.settings
        if apart:
            logs.event("config", "cluster_settings_disagree", logging.ERROR, settings=mine,
                       members=apart, reason="members configured apart rewrite each other's "
                       "switch entries at failover: give every member the same configuration")
        else:
            logs.event("config", "cluster_settings_agree", logging.INFO, settings=mine)

    def _renewed(self, view: View, asked: float) -> None:
        """A beat reached the database. If our lease had lapsed and was taken anew (a new
        epoch), the fenced writes still queued were made under the old one (queued before the
        lapse, or kept when the store could not be reached): refused, as the store would have
        refused them then, not written under the new epoch; the other writes stay queued."""
        assert self.member is not None
        old = self.member.epoch
        self.member.renewed(view, asked)
        if old is None or self.member.epoch == old:
            return
        self.core.writes.requeue(self.stale_refused(self.core.drain_writes(), old))

    def lease_epoch(self) -> int | Literal["current"] | None:
        """The lease epoch this member holds now, which the writes drained with it were made
        under ("current" outside a cluster: no fence)."""
        return "current" if self.member is None else self.member.epoch

    def stale_refused(self, writes: list[StoreWrite], token: int | Literal["current"] | None
                      ) -> list[StoreWrite]:
        """`writes`, made under lease epoch `token`, less the fenced ones when our lease has
        been taken anew since: those are refused (counted, logged), as the store would refuse
        them, never written under the new epoch."""
        if self.member is None or token == "current" or token == self.member.epoch:
            return writes
        stale = [w for w in writes if w.kind in FENCED]
        if stale:
            self.core.counters[f"writes_refused_{LEASE}"] += len(stale)
            logs.event("store", "writes_fenced", logging.WARNING, refused={LEASE: len(stale)},
                       epoch=token, stepped_down=False,
                       reason="made under an earlier lease of ours (it lapsed, now taken anew)")
        return [w for w in writes if w.kind not in FENCED]

    def _roles(self) -> None:
        """Step the roles often, whatever the heartbeat does (a hung beat must not delay the
        fencing at the lease's end)."""
        while True:
            hub.sleep(ROLES_EVERY_S)
            self._step_roles()

    def _step_roles(self) -> None:
        """Carry out the member's role intents now."""
        if self.member is None:
            return
        try:
            self._fence_refusals()
            for intent in self.member.step(list(self.datapaths), time.time()):
                self._role_intent(intent)
        except Exception:
            self.core.counters["errors"] += 1
            LOG.exception("dyncast: exception stepping the cluster roles")

    def _fence_refusals(self) -> None:
        """Count and log the store writes the fence refused (apps/fencing.py); one refused
        for the lease we hold steps this member down at once (its next renewal asks again);
        a batch made under an earlier lease of ours is refused, and that lease is long gone."""
        fence = self.store.fence
        while fence is not None and fence.refusals:
            refusal = fence.refusals.popleft()
            for reason, n in refusal.reasons.items():
                self.core.counters[f"writes_refused_{reason}"] += n
            down = (refusal.lease_lost and self.member is not None
                    and refusal.token == self.member.epoch)
            logs.event("store", "writes_fenced", logging.WARNING, refused=refusal.reasons,
                       epoch=refusal.token, stepped_down=down,
                       reason="another member masters their switches" if not
                       refusal.lease_lost else "our lease ended or was taken anew" if down
                       else "made under an earlier lease of ours (it lapsed, now taken anew)")
            if down and self.member is not None:
                self.member.fenced()

    def _watch_packet_ins(self, dp: Any) -> None:
        """Have the PACKET_IN parser drop, before the framework makes an event of it, a
        packet-in from `dp` while this member does not master it and it teaches nothing
        (`controller.observer.nothing_new`: a known client's packet to a D-SID)."""

        def skip(in_port: int, frame: bytes) -> bool:
            try:
                if (self.member is None or self.member.masters(dp.id)
                        or self.datapaths.get(dp.id) is not dp
                        or not nothing_new(self.core, dp.id, in_port, frame)):
                    return False
            except Exception:
                self.core.counters["errors"] += 1
                LOG.exception("dyncast: exception checking an observed packet-in")
                return False
            self.core.counters["packet_in_observed"] += 1
            return True

        setattr(dp, packet_in.SKIP_ATTR, skip)

    def _role_intent(self, intent: ClusterIntent) -> None:
        """Send a role request; start repairing a switch we now master; stop one we left."""
        dp = self.datapaths.get(intent.dpid)
        if dp is None:
            return
        dpid = f"{intent.dpid:016x}"
        if isinstance(intent, RoleRequest):
            dp.send_msg(role_request(dp, intent))
            logs.event("switches", "role_requested", dpid=dpid, role=intent.role,
                       generation_id=intent.generation_id, reason="cluster mastership")
        elif isinstance(intent, StopProgramming):
            read = self._reads.pop(intent.dpid, None)
            if read is not None:  # its answer is not a learned-entries poll's: ignore it
                self._dropped_reads = {*list(self._dropped_reads)[-63:], read.xid}
            logs.event("switches", "mastership_lost", dpid=dpid,
                       reason="another member masters it, or our lease ended")
        elif isinstance(intent, Reconcile):
            self._configure(dp)
            self._take_over(dp)  # a query in a worker thread: the hub runs meanwhile

    def _take_over(self, dp: Any) -> None:
        """Read the bindings the switch's previous master stored (in a worker thread), hold
        those this member does not know, then read the switch's table: the reconciliation
        keeps their entries instead of removing another member's flows, and adopts those of
        the bindings it had not stored yet (ReactiveFlows.take_over)."""
        try:
            stored = tpool.execute(self.store.bindings_at, dp.id)
        except Exception as exc:
            stored = []
            LOG.error("dyncast: cluster: could not read the bindings of %016x: %s", dp.id, exc)
        if self.datapaths.get(dp.id) is not dp or not self.programs(dp.id):
            return  # gone, or no longer ours, meanwhile
        counts = self.core.counters
        before = counts["takeover_stored_again"], counts["takeover_superseded"]
        new = self.core.flows.take_over(stored, dp.id, time.time())
        logs.event("reconcile", "bindings_taken_over", dpid=f"{dp.id:016x}", stored=len(stored),
                   taken=len(new), stored_again=counts["takeover_stored_again"] - before[0],
                   superseded=counts["takeover_superseded"] - before[1],
                   reason="this member now masters the switch")
        self._read_table(dp)  # answered by the reconciliation, as at connect

    def _configure(self, dp: Any) -> None:
        """What a switch gets at connect from the member that programs it."""
        dp.send_msg(dp.ofproto_parser.OFPSetConfig(dp, dp.ofproto.OFPC_FRAG_NORMAL, 0xFFFF))
        if self.punt_pps and dp.id not in self.unmetered:  # (one that refused it: not again)
            for mod in channelguard.meter_mods(dp, self.punt_pps):
                dp.send_msg(mod)
        health = self.core.config.health
        if health.enabled:  # passive health's reset copies, metered apart from new flows
            for mod in channelguard.meter_mods(dp, health.punt_pps, HEALTH_METER):
                dp.send_msg(mod)

    def role_confirmed(self, msg: Any) -> None:
        """The switch's role reply: log the role it now gives this member (the Controller
        table of OVS shows a role change only at its next status refresh, seconds later); a
        MASTER it confirms starts the programming (the table read and repair)."""
        ofp = msg.datapath.ofproto
        role = {ofp.OFPCR_ROLE_MASTER: MASTER, ofp.OFPCR_ROLE_SLAVE: SLAVE,
                ofp.OFPCR_ROLE_EQUAL: "equal"}.get(msg.role, str(msg.role))
        logs.event("switches", "role_confirmed", dpid=f"{msg.datapath.id:016x}", role=role,
                   generation_id=msg.generation_id, reason="the switch's role reply")
        if self.member is not None and self.datapaths.get(msg.datapath.id) is msg.datapath:
            for intent in self.member.role_reply(msg.datapath.id, role, msg.generation_id,
                                                 time.time()):
                self._role_intent(intent)

    def cluster_error(self, msg: Any) -> bool:
        """True if an OpenFlow error is one a cluster expects: a role request refused as
        stale (a takeover race: asked again at once, or with the next ticket), or a write
        refused because another member took the switch (`OFPBRC_IS_SLAVE`: this member stops
        programming it at once; counted in `slave_refusals`, not as an error)."""
        ofp = msg.datapath.ofproto
        if self.member is None:
            return False
        dpid = msg.datapath.id
        if msg.type == ofp.OFPET_ROLE_REQUEST_FAILED and msg.code == ofp.OFPRRFC_STALE:
            self.core.counters["role_refused"] += 1
            again = self.member.refused(dpid, time.time())
            LOG.info("dyncast: cluster: switch %016x refused a stale role request%s", dpid,
                     "; asked again at once" if again else "")
            for intent in again:
                self._role_intent(intent)
            return True
        if msg.type == ofp.OFPET_BAD_REQUEST and msg.code == ofp.OFPBRC_IS_SLAVE:
            self.core.counters["slave_refusals"] += 1
            stop = self.member.lost(dpid)
            if stop:
                LOG.warning("dyncast: cluster: switch %016x refused a write as from a slave "
                            "(another member took it): programming it stops now", dpid)
            for intent in stop:
                self._role_intent(intent)
            return True
        return False

    def cluster_view(self) -> Reply:
        """GET /dyncast/v1/cluster."""
        if self.member is None:
            return Reply(200, {"enabled": False})
        return Reply(200, self.member.as_json(list(self.datapaths), time.time()))

    def health(self, ready: bool) -> tuple[int, dict[str, Any]]:
        """/healthz (alive: the event loop answers) or /readyz (ready: the store answers and
        its batches land, not failing since the last that did; in a cluster, the lease is
        held)."""
        if not ready:
            return 200, {"status": "alive"}
        reachable = bool(tpool.execute(store_reachable, self.store.engine))
        checks = {"store": reachable and not self.store_health.failing}  # writes land too
        if self.member is not None:
            checks["lease"] = self.member.holds_lease(time.time())
        ok = all(checks.values())
        return (200 if ok else 503), {"status": "ready" if ok else "not ready", **checks}

    def _cluster_stop(self) -> None:
        """Leave the cluster (the others take our switches at once) and close the table."""
        if self.leases is None:
            return
        try:
            self.leases.leave()
        except Exception as exc:
            LOG.warning("dyncast: cluster: could not remove our lease row: %s", exc)
        self.leases.close()
