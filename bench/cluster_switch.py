"""Emulated OpenFlow 1.3 switches connected to every member of a controller cluster, as
`ovs-vsctl set-controller BR tcp:A tcp:B tcp:C` connects an Open vSwitch bridge.

Each emulated switch (`ClusterSwitch`) has one TCP connection (`MemberConn`) to each member and
keeps the controller roles the way Open vSwitch does (`Roles`, no sockets: unit-tested in
tests/test_cluster_flows_bench.py): every connection starts EQUAL; a MASTER or SLAVE request
with a generation id older than the newest the switch accepted (signed 64-bit difference < 0)
is refused with OFPET_ROLE_REQUEST_FAILED / OFPRRFC_STALE; a MASTER request turns the previous
master into a SLAVE; the role reply carries the role and the switch's generation id.
OFPT_SET_ASYNC is honoured: a new flow's PACKET_IN (reason OFPR_ACTION) goes to every
connection whose role and asynchronous configuration ask for it (by default: master and equal,
not slave). A slave's FLOW_MOD, PACKET_OUT, GROUP_MOD, PORT_MOD, TABLE_MOD or METER_MOD is
refused with OFPET_BAD_REQUEST / OFPBRC_IS_SLAVE and counted (`slave_writes`): the benchmark
asserts none. Only the MASTER's answers are checked and counted, by bench/emuswitch.py's
`Verifier` (forward and reverse affinity FLOW_MODs and the PACKET_OUT with the rewrite).

Boundary: benchmark tooling; bench/emuswitch.py is reused (subclassed), not changed.
"""

from __future__ import annotations

import contextlib
import select
import socket
import struct
import time
from collections import Counter
from dataclasses import dataclass

from bench import ofgen
from bench.emuswitch import EmuSwitch, Generator, Pending, Scenario, Verifier

NOCHANGE, EQUAL, MASTER, SLAVE = 0, 1, 2, 3  # OFPCR_ROLE_*
ROLE_NAMES = {EQUAL: "equal", MASTER: "master", SLAVE: "slave"}
OFPT_GROUP_MOD, OFPT_PORT_MOD, OFPT_TABLE_MOD = 15, 16, 17
OFPT_GET_ASYNC_REQUEST, OFPT_GET_ASYNC_REPLY, OFPT_SET_ASYNC, OFPT_METER_MOD = 26, 27, 28, 29
OFPET_BAD_REQUEST, OFPBRC_IS_SLAVE = 1, 10
OFPET_ROLE_REQUEST_FAILED, OFPRRFC_STALE = 11, 0
OFPR_NO_MATCH, OFPR_ACTION, OFPR_INVALID_TTL = 0, 1, 2
WRITES = {ofgen.OFPT_FLOW_MOD, ofgen.OFPT_PACKET_OUT, OFPT_GROUP_MOD, OFPT_PORT_MOD,
          OFPT_TABLE_MOD, OFPT_METER_MOD}
_ROLE = struct.Struct("!I4xQ")
_ASYNC = struct.Struct("!6I")


@dataclass(frozen=True)
class AsyncConfig:
    """OFPT_SET_ASYNC's masks, each (master or equal, slave): bit `reason` set = sent."""

    packet_in: tuple[int, int] = (1 << OFPR_NO_MATCH | 1 << OFPR_ACTION | 1 << OFPR_INVALID_TTL,
                                  0)
    port_status: tuple[int, int] = (0b111, 0b111)
    flow_removed: tuple[int, int] = (0b1111, 0)

    @classmethod
    def parse(cls, msg: bytes) -> AsyncConfig:
        """From an OFPT_SET_ASYNC message (header included)."""
        a, b, c, d, e, f = _ASYNC.unpack_from(msg, 8)
        return cls((a, b), (c, d), (e, f))

    def encode(self, xid: int) -> bytes:
        """As an OFPT_GET_ASYNC_REPLY."""
        return ofgen.message(OFPT_GET_ASYNC_REPLY, xid, _ASYNC.pack(
            *self.packet_in, *self.port_status, *self.flow_removed))


@dataclass(frozen=True)
class RoleAnswer:
    """What the switch answers a role request: a reply (role, generation id or None when the
    switch has none) or, when `stale`, OFPRRFC_STALE."""

    stale: bool
    role: int
    generation_id: int | None


class Roles:
    """One switch's controller roles and asynchronous configurations, connection by
    connection, with Open vSwitch's rules (ofproto's handle_role_request and connmgr)."""

    def __init__(self, conns: int) -> None:
        self.role = [EQUAL] * conns
        self.asyncs = [AsyncConfig()] * conns
        self.generation: int | None = None
        self.master_changes = 0  # how often a MASTER request changed the master

    def request(self, conn: int, role: int, generation_id: int) -> RoleAnswer:
        """A role request on connection `conn` (the generation id is the request's field)."""
        if role != NOCHANGE:
            if role != EQUAL:
                if (self.generation is not None
                        and _signed64(generation_id - self.generation) < 0):
                    return RoleAnswer(True, self.role[conn], self.generation)
                self.generation = generation_id
            if role == MASTER:
                if self.role[conn] != MASTER:
                    self.master_changes += 1
                self.role = [SLAVE if r == MASTER else r for r in self.role]
            self.role[conn] = role
        return RoleAnswer(False, self.role[conn], self.generation)

    def set_async(self, conn: int, config: AsyncConfig) -> None:
        self.asyncs[conn] = config

    def packet_in_to(self, reason: int = OFPR_ACTION) -> list[int]:
        """The connections a PACKET_IN of `reason` goes to."""
        return [k for k, (role, cfg) in enumerate(zip(self.role, self.asyncs, strict=True))
                if cfg.packet_in[role == SLAVE] >> reason & 1]

    def may_write(self, conn: int) -> bool:
        """False for a slave: its state-changing messages are refused."""
        return self.role[conn] != SLAVE

    def masters(self) -> list[int]:
        return [k for k, r in enumerate(self.role) if r == MASTER]


def _signed64(x: int) -> int:
    x &= (1 << 64) - 1
    return x - (1 << 64) if x >> 63 else x


def role_reply(xid: int, answer: RoleAnswer) -> bytes:
    """OFPT_ROLE_REPLY (generation id all ones when the switch has none, as OVS encodes it)."""
    gen = (1 << 64) - 1 if answer.generation_id is None else answer.generation_id
    return ofgen.message(ofgen.OFPT_ROLE_REPLY, xid, _ROLE.pack(answer.role, gen))


def error(err_type: int, code: int, request: bytes) -> bytes:
    """OFPT_ERROR answering `request` (its first 64 bytes as the data)."""
    xid = ofgen.HEADER.unpack_from(request, 0)[3]
    return ofgen.message(ofgen.OFPT_ERROR, xid, struct.pack("!HH", err_type, code) + request[:64])


class MemberConn(EmuSwitch):
    """One switch's connection to one member: answers the handshake and reads as
    `EmuSwitch` does; roles, asynchronous configuration and writes through its switch."""

    def __init__(self, gen: ClusterGenerator, switch: ClusterSwitch, member: int,
                 sock: socket.socket) -> None:
        super().__init__(gen, switch.index, sock)
        self.switch = switch
        self.member = member

    def handle(self, msg_type: int, xid: int, msg: bytes) -> None:
        sw = self.switch
        gen = self.switch.cgen
        if msg_type in WRITES and not sw.roles.may_write(self.member):
            gen.slave_writes[self.member] += 1
            gen.odd_writes.append((time.time(), self.member, sw.dpid, msg_type))
            self.send(error(OFPET_BAD_REQUEST, OFPBRC_IS_SLAVE, msg))
        elif msg_type in (ofgen.OFPT_FLOW_MOD, ofgen.OFPT_PACKET_OUT):
            if sw.roles.role[self.member] != MASTER:
                gen.equal_writes[self.member] += 1  # before roles were given: not counted
                gen.odd_writes.append((time.time(), self.member, sw.dpid, -msg_type))
            elif msg_type == ofgen.OFPT_FLOW_MOD:
                gen.verifier.flow_mod(sw, msg)
            else:
                gen.verifier.packet_out(sw, msg)
        elif msg_type == ofgen.OFPT_ROLE_REQUEST:
            role, generation_id = _ROLE.unpack_from(msg, 8)
            answer = sw.roles.request(self.member, role, generation_id)
            gen.role_requests[self.member] += 1
            if answer.stale:
                gen.stale_refused[self.member] += 1
                self.send(error(OFPET_ROLE_REQUEST_FAILED, OFPRRFC_STALE, msg))
            else:
                self.send(role_reply(xid, answer))
        elif msg_type == OFPT_SET_ASYNC:
            sw.roles.set_async(self.member, AsyncConfig.parse(msg))
        elif msg_type == OFPT_GET_ASYNC_REQUEST:
            self.send(sw.roles.asyncs[self.member].encode(xid))
        else:
            super().handle(msg_type, xid, msg)


class ClusterSwitch(EmuSwitch):
    """One emulated switch with a connection to each member: its new flows' PACKET_INs go to
    the connections the roles pick; its requests in flight are checked against its master's
    answers (`Verifier` sees this object as the switch)."""

    def __init__(self, gen: ClusterGenerator, index: int, members: int) -> None:
        super().__init__(gen, index, None)  # type: ignore[arg-type]  # no socket of its own
        self.cgen = gen
        self.roles = Roles(members)
        self.conns: list[MemberConn] = []

    @property
    def features_done(self) -> bool:
        return all(c.features_done for c in self.conns)

    @features_done.setter
    def features_done(self, value: bool) -> None:
        pass  # EmuSwitch.__init__ sets it; the connections keep their own

    @property
    def port_desc_replies(self) -> int:
        return min((c.port_desc_replies for c in self.conns), default=0)

    @port_desc_replies.setter
    def port_desc_replies(self, value: int) -> None:
        pass

    def send(self, data: bytes) -> None:
        """PACKET_INs (new flows, announcements): to the connections that should get them."""
        for k in self.roles.packet_in_to(OFPR_ACTION):
            self.conns[k].send(data)

    def seen(self, key: tuple[object, object], req: Pending, bit: int) -> None:
        """As `EmuSwitch.seen`; a correct completion is credited to the master member."""
        before = self.gen.tally.correct
        super().seen(key, req, bit)
        if self.gen.tally.correct > before:
            for k in self.roles.masters():
                self.cgen.setups_by_member[k] += 1


class ClusterGenerator(Generator):
    """`switches` emulated switches, each connected to every address of `members` (one epoll
    loop); measurement, probing and verification are `Generator`'s."""

    def __init__(self, members: list[tuple[str, int]], scenario: Scenario, kind: str) -> None:
        self.members = len(members)
        self.slave_writes: Counter[int] = Counter()
        self.equal_writes: Counter[int] = Counter()
        self.role_requests: Counter[int] = Counter()
        self.stale_refused: Counter[int] = Counter()
        # (time, member, dpid, message type) of every write refused to a slave, and with the
        # type negated of every FLOW_MOD or PACKET_OUT of an EQUAL connection (not checked)
        self.odd_writes: list[tuple[float, int, int, int]] = []
        self.setups_by_member: Counter[int] = Counter()
        super().__init__("", 0, Scenario(0, scenario.clients, scenario.dsid, scenario.dport,
                                         scenario.idle_timeout), kind)
        # Generator.__init__ connected no switch (0 of them): the real scenario and ours now
        self.sc = scenario
        self.verifier = Verifier(kind, scenario)
        self.cswitches: list[ClusterSwitch] = []
        for s in range(scenario.switches):
            sw = ClusterSwitch(self, s, len(members))
            for k, (host, port) in enumerate(members):
                sock = socket.create_connection((host, port), timeout=5)
                sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
                sock.setblocking(False)
                conn = MemberConn(self, sw, k, sock)
                sw.conns.append(conn)
                self.by_fd[sock.fileno()] = conn
                self.ep.register(sock.fileno(), select.EPOLLIN)
                conn.send(ofgen.hello())
            self.cswitches.append(sw)
        self.connected_at = time.time()
        self.switches = list(self.cswitches)

    def close(self) -> None:
        for conn in self.by_fd.values():
            with contextlib.suppress(OSError, ValueError):
                self.ep.unregister(conn.sock.fileno())
            conn.sock.close()
        self.ep.close()

    def master_members(self) -> dict[int, list[int]]:
        """Each switch's dpid -> the members (indexes) it holds as MASTER."""
        return {sw.dpid: sw.roles.masters() for sw in self.cswitches}

    def master_changes(self) -> int:
        return sum(sw.roles.master_changes for sw in self.cswitches)
