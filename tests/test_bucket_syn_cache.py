"""Bucket moves under Open vSwitch's datapath cache (tests/fakedpcache.py): a new connection
reusing the 5-tuple of an earlier one keeps one instance for all its packets (pitfall 14)."""

from __future__ import annotations

import dataclasses
import struct

import pytest

from apps.ofmsg import to_message
from controller.dataplane.reconciler import Reconciler
from controller.dataplane.rules import (
    PRIO_BUCKET,
    PRIO_BUCKET_SYN,
    SYN_PIN_LIMIT,
    Program,
    Target,
    service_entries,
)
from controller.intents import (
    TABLE_AFFINITY,
    TABLE_DECISION,
    TABLE_FORWARD,
    FlowMod,
    Output,
    Resubmit,
    match,
)
from tests.fakedpcache import DatapathCache
from tests.fakeoftable import FakeOFTable
from tests.fakes import FakeDatapath, parse_back
from tests.helpers import SVC1

IDLE_S = 4
BUCKET = dataclasses.replace(SVC1, dataplane="bucket", buckets=8,
                             affinity=dataclasses.replace(SVC1.affinity, idle_timeout=IDLE_S))
E21, E31 = (Target("10.0.0.21", 16, "00:00:00:00:00:21"),
            Target("10.0.0.31", 17, "00:00:00:00:00:31"))
PORT_OF = {"10.0.0.21": 2, "10.0.0.31": 3}
CLIENT_PORT = 1
SPORT = 40000  # bucket 0
SYN, ACK = 0x002, 0x010


class Switch:
    """One ingress with svc1 in bucket mode, its decision programmed as the core would."""

    def __init__(self) -> None:
        self.table = FakeOFTable(1)
        self.dp = DatapathCache(self.table)
        self.reconciler = Reconciler()
        fixed = [FlowMod(1, TABLE_AFFINITY, 0, match(), (Resubmit(TABLE_DECISION),))]
        fixed += [FlowMod(1, TABLE_FORWARD, 100, match(eth_type=0x0800, ipv4_dst=t.dbid),
                          (Output(PORT_OF[t.dbid]),)) for t in (E21, E31)]
        for fm in fixed:
            self.table.apply(fm)

    def program(self, label: int, moving: tuple[tuple[int, int, int, bool], ...], now: float
                ) -> None:
        """Bucket 0 (and every other) points to `label`, bucket 0 moving as `moving` says;
        then the revalidators run, as after every table change."""
        desired = service_entries(Program(BUCKET, 1, (E21, E31), (label,) * 8, moving))
        for intent in self.reconciler.apply(1, BUCKET.name, desired):
            assert isinstance(intent, FlowMod)
            self.table.apply(intent, now)
        self.dp.revalidate(now)

    def send(self, flags: int, now: float) -> str:
        """A packet of c1's connection from SPORT: the instance it reaches."""
        pkt = {"eth_type": 0x0800, "ip_proto": 6, "ipv4_src": "10.0.0.1",
               "ipv4_dst": BUCKET.dsid, "tcp_src": SPORT, "tcp_dst": BUCKET.port or 0,
               "tcp_flags": flags}
        (hop,) = self.dp.send(pkt, CLIENT_PORT, now).outputs
        return str(hop["ipv4_dst"])


def connection(sw: Switch, now: float) -> list[str]:
    """SYN, handshake ACK and request, a millisecond apart (before the revalidators next
    run): the instances they reach; then a revalidator pass."""
    reached = [sw.send(SYN, now), sw.send(ACK, now + 0.001), sw.send(ACK, now + 0.002)]
    sw.dp.revalidate(now + 0.5)
    return reached


def test_a_new_connection_on_a_reused_5_tuple_keeps_one_instance_while_its_bucket_moves(
        ) -> None:
    """A connection's SYN, sent to e31 by a moving bucket's SYN entry, is cached; the bucket's
    move ends, a move back to e21 begins, its SYN entry comes, and the connection's pin idles
    out while the SYN's datapath flow stays (OVS keeps it 10 s). A new connection from the
    same port then: its SYN must not go to e21 by that cached flow, learning nothing, while its
    ACK, finding no pin, is pinned to e31 by the bucket's entry."""
    sw = Switch()
    sw.program(16, ((0, 16, 17, True),), 0.0)  # bucket 0 moving e21 -> e31, SYNs to e31
    assert connection(sw, 0.0) == ["10.0.0.31"] * 3
    sw.program(17, (), 1.0)  # the move ended
    sw.program(17, ((0, 17, 16, False),), 2.0)  # moving back: pins first
    sw.program(17, ((0, 17, 16, True),), 3.0)  # then SYNs to e21
    sw.program(17, ((0, 17, 16, True),), 0.5 + IDLE_S + 0.1)  # its pin (last used by the
    # revalidator's pass at 0.5 s) idled out; the SYN's flow, idle 4.6 s, is still cached
    reached = connection(sw, 5.0)
    assert len(set(reached)) == 1, f"SYN, ACK, request reached {reached}"
    assert reached[0] == "10.0.0.21"  # a new connection of a moving bucket: the new instance


def test_without_a_reused_5_tuple_every_connection_takes_an_upcall_and_its_pin() -> None:
    """The same move with a fresh port: the SYN is an upcall and learns its pin, so the rest of
    the connection follows it (what the datapath cache changes nothing for)."""
    sw = Switch()
    sw.program(17, ((0, 17, 16, True),), 0.0)
    upcalls = sw.dp.upcalls
    assert connection(sw, 1.0) == ["10.0.0.21"] * 3
    assert sw.dp.upcalls - upcalls == 2  # the SYN and the first ACK; the request hits a flow


@pytest.mark.parametrize("framework", ["ryu", "os-ken"])
def test_the_syn_entrys_learn_is_sent_as_learn2_with_its_limit(framework: str) -> None:
    """The SYN entry's learn leaves as NXAST_LEARN2: learn's fixed fields, then the limit (and
    a zero result offset and pad), then the same specs, padded to 8 bytes; the pinning entry's
    as plain NXAST_LEARN. (`ovs-ofctl ofp-print` of these bytes shows `limit=4294967295`.)"""
    dp = FakeDatapath(framework)
    entries = service_entries(Program(BUCKET, 1, (E21, E31), (16,) * 8, ((0, 16, 17, True),)))
    syn, keep = (next(f for f in entries if f.table == TABLE_DECISION and f.priority == p)
                 for p in (PRIO_BUCKET_SYN, PRIO_BUCKET))
    plain = dataclasses.replace(syn, actions=(dataclasses.replace(syn.actions[0], limit=0),
                                              *syn.actions[1:]))
    learn2, learn, pinning = (_first_action(parse_back(dp, to_message(dp, f))[1])
                              for f in (syn, plain, keep))
    assert [struct.unpack_from("!H", a, 8)[0] for a in (learn, pinning)] == [16, 16]  # LEARN
    kind, length, vendor, subtype = struct.unpack_from("!HHIH", learn2, 0)
    assert (kind, length, vendor, subtype) == (0xFFFF, len(learn2), 0x2320, 45)  # LEARN2
    assert length % 8 == 0 and learn2[10:32] == learn[10:32]  # timeouts, priority, cookie...
    assert struct.unpack_from("!IHH", learn2, 32) == (SYN_PIN_LIMIT, 0, 0)
    assert learn2[40:].rstrip(b"\0") == learn[32:].rstrip(b"\0")  # the same specs


def _first_action(msg: bytes) -> bytes:
    """The first action of a flow-mod's first (apply-actions) instruction."""
    match_len = struct.unpack_from("!H", msg, 50)[0]
    inst = 48 + match_len + (-match_len % 8)
    length = struct.unpack_from("!H", msg, inst + 8 + 2)[0]
    return msg[inst + 8:inst + 8 + length]
