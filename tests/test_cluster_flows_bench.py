"""bench/cluster_switch.py's emulated switches keep controller roles as Open vSwitch does:
generation ids (a stale MASTER request refused), one master, a slave's writes refused,
packet-ins to the roles and asynchronous configurations that ask for them; fed the app's own
role request and OFPT_SET_ASYNC bytes, and over real sockets to two emulated members."""

from __future__ import annotations

import contextlib
import socket
import struct
from collections.abc import Iterator

import pytest

from apps.cluster import async_config, role_request
from bench import ofgen
from bench.cluster_switch import (
    EQUAL,
    MASTER,
    OFPR_ACTION,
    OFPR_NO_MATCH,
    SLAVE,
    AsyncConfig,
    ClusterGenerator,
    RoleAnswer,
    Roles,
)
from bench.emuswitch import Scenario, dyncast_templates
from controller.cluster.member import MASTER as MASTER_NAME
from controller.cluster.member import SLAVE as SLAVE_NAME
from controller.cluster.member import RoleRequest
from tests.fakes import FakeDatapath


def test_a_stale_master_request_is_refused_and_one_master_remains() -> None:
    roles = Roles(3)
    assert roles.role == [EQUAL] * 3 and roles.packet_in_to() == [0, 1, 2]
    assert roles.request(0, MASTER, 10) == RoleAnswer(False, MASTER, 10)
    assert roles.request(1, SLAVE, 11).role == SLAVE
    assert roles.request(2, MASTER, 12) == RoleAnswer(False, MASTER, 12)
    assert roles.role == [SLAVE, SLAVE, MASTER] and roles.masters() == [2]
    late = roles.request(0, MASTER, 10)  # the old master's late request
    assert late.stale and roles.role == [SLAVE, SLAVE, MASTER] and roles.generation == 12
    assert roles.request(2, MASTER, 12).role == MASTER  # the same generation is not stale
    assert not roles.may_write(0) and roles.may_write(2)
    assert roles.packet_in_to(OFPR_ACTION) == [2]  # slaves get none by default
    assert roles.request(1, EQUAL, 0).role == EQUAL  # EQUAL needs no generation
    assert roles.master_changes == 2


def test_generation_ids_compare_as_signed_64_bit_differences() -> None:
    roles = Roles(2)
    roles.request(0, MASTER, 2**64 - 1)
    assert not roles.request(1, MASTER, 0).stale  # wrapped: 0 is newer than 2^64-1
    assert roles.request(0, MASTER, 2**64 - 2).stale


def test_the_apps_set_async_gives_slaves_packet_ins(dp: FakeDatapath) -> None:
    dp.send_msg(async_config(dp))
    cfg = AsyncConfig.parse(dp.sent[0])
    assert cfg.packet_in == (0b11, 0b11) and cfg.flow_removed[1] == 0
    roles = Roles(2)
    roles.request(0, MASTER, 1)
    roles.request(1, SLAVE, 2)
    assert roles.packet_in_to(OFPR_NO_MATCH) == [0]
    roles.set_async(1, cfg)
    assert roles.packet_in_to(OFPR_ACTION) == [0, 1]


# --- over sockets ---------------------------------------------------------------------------
Peers = tuple[ClusterGenerator, list[socket.socket]]


@pytest.fixture
def two() -> Iterator[Peers]:
    """One emulated switch connected to two listening sockets standing for two members."""
    servers = [socket.create_server(("127.0.0.1", 0)) for _ in range(2)]
    gen = ClusterGenerator([("127.0.0.1", s.getsockname()[1]) for s in servers], Scenario(1),
                           "dyncast")
    peers = [s.accept()[0] for s in servers]
    for p in peers:
        p.settimeout(0.02)
    try:
        assert [t for t, _ in exchange(gen, peers[0], b"")] == [ofgen.OFPT_HELLO]
        assert [t for t, _ in exchange(gen, peers[1], b"")] == [ofgen.OFPT_HELLO]
        yield gen, peers
    finally:
        gen.close()
        for s in servers + peers:
            s.close()


def exchange(gen: ClusterGenerator, peer: socket.socket, data: bytes,
             expect: int = 1) -> list[tuple[int, bytes]]:
    """Send `data` from a member, let the switch answer; the messages the member got (once
    `expect` came, after 0.1 s more if none is expected, or after 2 s)."""
    if data:
        peer.sendall(data)
    buf = bytearray()
    for _ in range(5 if expect == 0 else 100):
        gen.poll(0.01)
        with contextlib.suppress(TimeoutError):
            buf += peer.recv(1 << 16)
        if expect and len(ofgen.split(buf)[0]) >= expect:
            break
    msgs, _ = ofgen.split(buf)
    return [(t, m) for t, _, m in msgs]


def test_roles_writes_and_packet_ins_over_the_wire(two: Peers, dp: FakeDatapath) -> None:
    gen, (a, b) = two
    sw = gen.cswitches[0]
    dp.send_msg(role_request(dp, RoleRequest(1, MASTER_NAME, 5)))
    dp.send_msg(role_request(dp, RoleRequest(1, SLAVE_NAME, 6)))
    dp.send_msg(role_request(dp, RoleRequest(1, MASTER_NAME, 4)))
    master, slave, stale = dp.sent
    ((t, reply),) = exchange(gen, a, master)
    assert t == ofgen.OFPT_ROLE_REPLY and struct.unpack_from("!I4xQ", reply, 8) == (MASTER, 5)
    ((t, reply),) = exchange(gen, b, slave)
    assert struct.unpack_from("!I4xQ", reply, 8) == (SLAVE, 6)
    ((t, err),) = exchange(gen, a, stale)  # refused: a is still master (6 > 4 only for slaves)
    assert t == ofgen.OFPT_ERROR and struct.unpack_from("!HH", err, 8) == (11, 0)
    assert gen.master_members() == {1: [0]} and gen.stale_refused[0] == 1

    sw.new_requests(1, 0.0)  # a new flow: to the master only
    assert [t for t, _ in exchange(gen, a, b"")] == [ofgen.OFPT_PACKET_IN]
    assert exchange(gen, b, b"", expect=0) == []
    dp.sent.clear()
    dp.send_msg(async_config(dp))
    exchange(gen, b, dp.sent[0], expect=0)
    sw.new_requests(1, 0.0)  # the slave asked for packet-ins: both get the second flow
    assert [t for t, _ in exchange(gen, a, b"")] == [ofgen.OFPT_PACKET_IN]
    assert [t for t, _ in exchange(gen, b, b"")] == [ofgen.OFPT_PACKET_IN]

    # the answers to the first flow: refused from the slave, counted from the master
    (cip, sport), req = next(iter(sw.pending.items()))
    assert isinstance(cip, bytes) and isinstance(sport, int)
    tmpl = dyncast_templates(gen.sc, 0)[0]
    raw_sport = struct.pack("!H", sport)
    po = tmpl.packet_out
    answers = [tmpl.fwd.fill(cip, raw_sport), tmpl.rev.fill(cip, raw_sport),
               po[:2] + struct.pack("!H", len(po) + len(req.frame)) + po[4:] + req.frame]
    got = exchange(gen, b, b"".join(answers), expect=3)
    assert [(t, struct.unpack_from("!HH", m, 8)) for t, m in got] == [(ofgen.OFPT_ERROR,
                                                                       (1, 10))] * 3
    assert gen.slave_writes[1] == 3 and gen.tally.correct == 0
    exchange(gen, a, b"".join(answers), expect=0)
    assert gen.tally.correct == 1 and gen.setups_by_member == {0: 1}
    assert gen.tally.incorrect == 0 and (cip, sport) not in sw.pending
