"""A `learn` flow moved off a dead instance, under Open vSwitch's datapath cache
(tests/fakedpcache.py).

Seen in Mininet (learn + UDP) before the fix: for about 0.5 s after an instance's access link
went down, 2-3 replies per moved flow reached the client from the new instance's D-BID instead
of the D-SID. The mechanism, reproduced on the model: the move changes the tables twice in
quick succession (the decision's entries, then the dead instance's learned entries deleted:
`Programmer.lost`), and the revalidators translate the flow's cached datapath flow again after
each. The first pass accounts for the flow's packets; at the second there are none since, so
the translation to the new instance (table 2 miss, table 3, table 4) runs its `learn`s without
side effects: the cached flow forwards to the new instance, but neither its forward nor its
reply entry is learned. The new instance's replies are upcalls that find no reply entry, leave
un-rewritten and are cached so, until the next periodic pass (OVS `max-revalidator`, 500 ms)
accounts for the forward flow's packets and learns the entries (docs/dataplanes.md, pitfall
14). The fix (controller/dataplane/relearn.py, `rehomed`): every flow the switch's latest read
showed on the lost instance gets the entries it would learn from the new bucket map in the same
flow-mods that delete the old ones, so no learn is needed.
"""

from __future__ import annotations

import dataclasses

from controller.dataplane.reconciler import Reconciler
from controller.dataplane.relearn import Learned, rehomed
from controller.dataplane.rules import Program, Target, service_entries
from controller.intents import (
    TABLE_AFFINITY,
    TABLE_DECISION,
    TABLE_FORWARD,
    CookieKind,
    FlowMod,
    Output,
    Resubmit,
    cookie,
    cookie_kind,
    match,
)
from tests.fakedpcache import DatapathCache
from tests.fakeoftable import FakeOFTable, Hop
from tests.helpers import SVC1

LEARN = dataclasses.replace(SVC1, dataplane="learn", buckets=8, protocol="udp",
                            affinity=dataclasses.replace(SVC1.affinity, idle_timeout=30))
E21, E31 = (Target("10.0.0.21", 16, "00:00:00:00:00:21"),
            Target("10.0.0.31", 17, "00:00:00:00:00:31"))
C1 = "10.0.0.1"
PORT_OF = {E21.dbid: 2, E31.dbid: 3, C1: 1}
SPORT = 40000
PERIOD_S = 0.1  # the flow's packet period: a request and its reply
PASS_S = 0.5  # OVS revalidators' periodic pass (other_config:max-revalidator)


class Ingress:
    """c1's ingress with a UDP `learn` service, programmed as the core would, behind its
    datapath cache; every table change is followed by a revalidator pass, as in OVS."""

    def __init__(self) -> None:
        self.table = FakeOFTable(1)
        self.dp = DatapathCache(self.table)
        self.reconciler = Reconciler()
        fixed = [FlowMod(1, TABLE_AFFINITY, 0, match(), (Resubmit(TABLE_DECISION),))]
        fixed += [FlowMod(1, TABLE_FORWARD, 100, match(eth_type=0x0800, ipv4_dst=ip),
                          (Output(port),)) for ip, port in PORT_OF.items()]
        for fm in fixed:
            self.table.apply(fm)

    def program(self, targets: tuple[Target, ...], label: int, now: float) -> None:
        """Every bucket to `label`; the instances `targets` located."""
        desired = service_entries(Program(LEARN, 1, targets, (label,) * 8))
        for intent in self.reconciler.apply(1, LEARN.name, desired):
            assert isinstance(intent, FlowMod)
            self.table.apply(intent, now)
        self.dp.revalidate(now)

    def read(self, now: float) -> list[Learned]:
        """The affinity table's forward entries as the shell's periodic read hands them over."""
        out = []
        for ck, fields, packets, age in self.table.flow_stats(TABLE_AFFINITY, now):
            kind, label = cookie_kind(ck) or (None, 0)
            if kind == CookieKind.LEARNED_FWD:
                out.append(Learned(1, "learned", label, dict(fields), packets, age))
        return out

    def lost(self, label: int, read: list[Learned], to: Target, now: float) -> None:
        """The dead instance's learned entries deleted (Programmer.lost): those of `read` (the
        latest) first given their entries to `to`, which the new bucket map names for all."""
        moved, _, _ = rehomed(1, read, LEARN, label, [to.dbid] * LEARN.buckets,
                           {t.dbid: t.label for t in (E21, E31)}.__getitem__)
        for fm in moved:
            self.table.apply(fm, now)
        for kind in (CookieKind.LEARNED_FWD, CookieKind.LEARNED_REV, CookieKind.PIN):
            self.table.apply(FlowMod(1, TABLE_AFFINITY, 0, (), command="delete",
                                     cookie=cookie(kind, label), cookie_mask=(1 << 64) - 1),
                             now)
        self.dp.revalidate(now)

    def exchange(self, now: float) -> tuple[Hop, Hop]:
        """c1 sends a datagram to the D-SID and the instance it reaches answers: where each
        arrived."""
        out = {"eth_type": 0x0800, "ip_proto": 17, "ipv4_src": C1, "ipv4_dst": LEARN.dsid,
               "udp_src": SPORT, "udp_dst": LEARN.port or 0}
        (there,) = self.dp.send(out, PORT_OF[C1], now).outputs
        dbid = str(there["ipv4_dst"])
        back = {"eth_type": 0x0800, "ip_proto": 17, "ipv4_src": dbid, "ipv4_dst": C1,
                "udp_src": LEARN.port or 0, "udp_dst": SPORT}
        (here,) = self.dp.send(back, PORT_OF[dbid], now + 0.001).outputs
        return there, here


def moved(sw: Ingress, read_at: float) -> list[tuple[str, str]]:
    """c1's flow on e21 for a while, the switch read at `read_at`; e21's link goes down at
    0.4 s (the decision names e31, then e21's learned entries go): for each exchange until
    the revalidators' next periodic pass, (where the datagram went, where the reply came
    from)."""
    sw.program((E21, E31), E21.label, 0.0)
    now, read = 0.0, sw.read(0.0)
    for _ in range(4):
        if now <= read_at:
            read = sw.read(now)
        there, here = sw.exchange(now)
        assert (there["ipv4_dst"], here["ipv4_src"]) == (E21.dbid, LEARN.dsid)
        now += PERIOD_S
    sw.dp.revalidate(now)  # a periodic pass
    sw.program((E31,), E31.label, now + 0.01)
    sw.lost(E21.label, read, E31, now + 0.02)
    seen = []
    for step in range(int(PASS_S / PERIOD_S)):
        there, here = sw.exchange(now + 0.03 + step * PERIOD_S)
        seen.append((str(there["ipv4_dst"]), str(here["ipv4_src"])))
    return seen


def test_a_moved_learn_flow_hears_its_new_instance_from_the_dsid_at_once() -> None:
    """A flow the switch's latest read showed: every reply c1 gets after the move comes from
    the D-SID, before the revalidators' next pass."""
    seen = moved(Ingress(), read_at=0.1)
    assert seen == [(E31.dbid, LEARN.dsid)] * len(seen), seen


def test_without_the_read_the_move_leaves_the_flow_to_learn_at_the_next_pass() -> None:
    """What the fix closes, and what it leaves: a flow learned after the latest read (here:
    none was read) gets no entries with the move, and its replies come from e31's D-BID
    until the next periodic pass learns them (the gap as it was for every flow)."""
    sw = Ingress()
    seen = moved(sw, read_at=-1.0)
    assert {there for there, _ in seen} == {E31.dbid}
    assert {here for _, here in seen} == {E31.dbid}
    sw.dp.revalidate(1.0)  # the periodic pass, with the flow's packets to account
    there, here = sw.exchange(1.0 + PERIOD_S)
    assert (there["ipv4_dst"], here["ipv4_src"]) == (E31.dbid, LEARN.dsid)
