"""Emulated OpenFlow 1.3 switches and the cbench-style load generator that drives them.

One process, non-blocking sockets and epoll; every message is built and parsed with
`bench.ofgen`. Each switch answers what a controller asks during and after the handshake
(FEATURES, PORT_DESC, PORT_STATS, ECHO, BARRIER, ROLE) and sends PACKET_INs carrying TCP SYNs
of new flows (distinct client 5-tuples) to the service's D-SID. Every response is parsed and
checked against the request it answers (see `Verifier`); only requests whose every expected
response came back correct are counted. A subclass may keep a flow table (`keeps_table`,
bench/emutable.py): the FLOW_MODs received are applied to it and a flow-statistics request
is answered with what it holds, as a real switch does (the cbench-style runs keep none).

Modes: `throughput` keeps `window` requests outstanding per switch (the pipe stays full) and
counts completed requests per second; `latency` keeps one outstanding per switch and times each
request from its PACKET_IN to its last response.
"""

from __future__ import annotations

import contextlib
import errno
import select
import socket
import statistics
import time
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field

from bench import ofgen
from bench.emutable import OFPMP_FLOW, FlowTable

VIRTUAL_MAC = ofgen.mac("02:dc:00:00:00:01")  # the D-SID's MAC (controller.intents.VIRTUAL_MAC)
COOKIE_APP = 0xDC
KIND_SERVICE, KIND_FWD, KIND_REV = 1, 2, 3
CLIENT_PORT = 1
INSTANCE_PORTS = (2, 3)
PORTS = [1, 2, 3, 4]
FIRST_SPORT = 1024


@dataclass(frozen=True)
class Scenario:
    """Who is where: every switch has `clients` client hosts on port 1 and one service
    instance on each of ports 2 and 3; flows go from the clients to the D-SID."""

    switches: int
    clients: int = 8
    dsid: str = "10.0.100.1"
    dport: int = 8000
    idle_timeout: int = 30

    def dpid(self, s: int) -> int:
        return s + 1

    def client_ip(self, s: int, k: int) -> str:
        return f"10.1.{s}.{k + 1}"

    def client_mac(self, s: int, k: int) -> str:
        return f"02:01:00:{s >> 8:02x}:{s & 0xFF:02x}:{k + 1:02x}"

    def instance_ip(self, s: int, k: int) -> str:
        return f"10.2.{s}.{k + 1}"

    def instance_mac(self, s: int, k: int) -> str:
        return f"02:02:00:{s >> 8:02x}:{s & 0xFF:02x}:{k + 1:02x}"

    def instances(self) -> list[tuple[int, str]]:
        """(switch index, D-BID) of every instance."""
        return [(s, self.instance_ip(s, k)) for s in range(self.switches)
                for k in range(len(INSTANCE_PORTS))]

    def punt_cookie(self) -> int:
        """The cookie of the service's punt entry (what a real switch puts in the PACKET_IN)."""
        ident = int.from_bytes(ofgen.ip(self.dsid), "big")
        return (COOKIE_APP << 56) | (KIND_SERVICE << 48) | ident


@dataclass(slots=True)
class Pending:
    """One request in flight."""

    sent: float
    frame: bytes
    seen: int = 0  # bit mask of the responses seen
    dbid: bytes = b""
    ident: int = -1
    bad: str = ""


@dataclass
class Tally:
    """What came back in one measurement phase."""

    correct: int = 0
    incorrect: int = 0
    unexpected: int = 0  # responses for no request in flight
    other: int = 0  # messages that are not answers (host routes, LLDP, probes, ...)
    fast: int = 0  # answers that matched their expected bytes
    slow: int = 0  # answers checked field by field
    unanswered: int = 0  # requests still without all their answers 10 s after the phase
    answered: int = 0  # correct answers in the whole phase, warm-up and wind-down included
    latencies: list[float] = field(default_factory=list)
    reasons: Counter[str] = field(default_factory=Counter)
    instances: Counter[str] = field(default_factory=Counter)


CLIENT_SENTINEL = b"\xde\xad\xbe\xef"
PORT_SENTINEL = 0xBEEF


class Template:
    """A message with holes: `fill` puts values where the sentinel OXM TLVs' values were."""

    def __init__(self, msg: bytes, holes: list[bytes]) -> None:
        marks = []
        for tlv in holes:
            at = msg.find(tlv)
            if at < 0 or msg.find(tlv, at + 1) >= 0:
                raise ValueError(f"sentinel {tlv.hex()} not found exactly once")
            marks.append((at + 4, len(tlv) - 4))
        self.offsets = [at for at, _ in marks]  # where each hole starts, in `holes` order
        self.order = sorted(range(len(holes)), key=lambda i: marks[i][0])
        self.pieces: list[bytes] = []
        pos = 0
        for i in self.order:
            at, size = marks[i]
            self.pieces.append(msg[pos:at])
            pos = at + size
        self.tail = msg[pos:]

    def fill(self, *values: bytes) -> bytes:
        """The message with `values` (in `holes` order) in the holes."""
        out = []
        for piece, i in zip(self.pieces, self.order, strict=True):
            out.append(piece)
            out.append(values[i])
        out.append(self.tail)
        return b"".join(out)


def minimal_template(sc: Scenario) -> Template:
    """What bench/minimal_app.py sends for a new flow (holes: client address, client port)."""
    msg = ofgen.flow_mod(
        0, [("in_port", CLIENT_PORT), ("eth_type", 0x0800), ("ipv4_src", CLIENT_SENTINEL),
            ("ipv4_dst", ofgen.ip(sc.dsid)), ("ip_proto", 6), ("tcp_src", PORT_SENTINEL),
            ("tcp_dst", sc.dport)],
        [("output", 2)], priority=10, idle_timeout=30, out_port=0, out_group=0)
    return Template(msg, [ofgen.oxm("ipv4_src", CLIENT_SENTINEL),
                          ofgen.oxm("tcp_src", PORT_SENTINEL)])


@dataclass
class InstanceTemplates:
    """What the Dyncast app sends for a new flow bound to one instance: forward and reverse
    entries (holes: client address, client port; the binding id sits in the cookie's low 48
    bits) and the PACKET_OUT up to its data."""

    dbid: bytes
    mac: bytes
    port: int
    fwd: Template
    rev: Template
    packet_out: bytes


def dyncast_templates(sc: Scenario, index: int) -> list[InstanceTemplates]:
    """The templates for each instance at switch `index`."""
    dsid = ofgen.ip(sc.dsid)
    out = []
    for k, port in enumerate(INSTANCE_PORTS):
        dbid, imac = ofgen.ip(sc.instance_ip(index, k)), ofgen.mac(sc.instance_mac(index, k))
        fwd = ofgen.flow_mod(
            0, [("eth_type", 0x0800), ("ipv4_src", CLIENT_SENTINEL), ("ipv4_dst", dsid),
                ("ip_proto", 6), ("tcp_src", PORT_SENTINEL), ("tcp_dst", sc.dport)],
            [("set_field", ("eth_dst", imac)), ("set_field", ("ipv4_dst", dbid))], goto=1,
            cookie=(COOKIE_APP << 56) | (KIND_FWD << 48), priority=2000,
            idle_timeout=sc.idle_timeout, flags=ofgen.OFPFF_SEND_FLOW_REM)
        rev = ofgen.flow_mod(
            0, [("eth_type", 0x0800), ("ipv4_src", dbid), ("ipv4_dst", CLIENT_SENTINEL),
                ("ip_proto", 6), ("tcp_src", sc.dport), ("tcp_dst", PORT_SENTINEL)],
            [("set_field", ("eth_src", VIRTUAL_MAC)), ("set_field", ("ipv4_src", dsid))],
            goto=1, cookie=(COOKIE_APP << 56) | (KIND_REV << 48), priority=2000)
        po = ofgen.packet_out(0, CLIENT_PORT, [("set_field", ("eth_dst", imac)),
                                               ("set_field", ("ipv4_dst", dbid)),
                                               ("output", port)], b"")
        out.append(InstanceTemplates(
            dbid, imac, port,
            Template(fwd, [ofgen.oxm("ipv4_src", CLIENT_SENTINEL),
                           ofgen.oxm("tcp_src", PORT_SENTINEL)]),
            Template(rev, [ofgen.oxm("ipv4_dst", CLIENT_SENTINEL),
                           ofgen.oxm("tcp_dst", PORT_SENTINEL)]),
            po))
    return out


class Verifier:
    """Checks the responses to a new flow's PACKET_IN.

    `dyncast`: a forward affinity FLOW_MOD (cookie kind 2: client 5-tuple to the D-SID,
    rewrite to an instance at this switch, goto table 1, idle timeout, SEND_FLOW_REM), a
    reverse one (kind 3, same binding id: instance to client, rewrite back to the D-SID) and a
    PACKET_OUT of the very frame with the same rewrite out of that instance's port.
    `minimal`: one FLOW_MOD whose match is exactly the packet's in_port and 5-tuple.

    A response is first compared byte for byte with the expected message (all but its xid
    and binding id) built from templates, which is cheap; one that differs (another field
    order, say) is parsed and checked field by field, which decides.
    """

    def __init__(self, kind: str, scenario: Scenario) -> None:
        if kind not in ("dyncast", "minimal"):
            raise ValueError(kind)
        self.kind = kind
        self.sc = scenario
        self.full = 0b111 if kind == "dyncast" else 0b1
        self.dsid = ofgen.ip(scenario.dsid)
        self.templates = [dyncast_templates(scenario, s) for s in range(scenario.switches)]
        # per switch: D-BID -> (MAC, port)
        self.instances: list[dict[bytes, tuple[bytes, int]]] = [
            {t.dbid: (t.mac, t.port) for t in per} for per in self.templates]
        self.minimal = minimal_template(scenario)

    # --- the fast path --------------------------------------------------------------------
    @staticmethod
    def _key(msg: bytes, tmpl: Template) -> tuple[bytes, int, bytes]:
        a, b = tmpl.offsets
        sport = msg[b:b + 2]
        return msg[a:a + 4], int.from_bytes(sport, "big"), sport

    @staticmethod
    def _same(msg: bytes, exp: bytes) -> bool:
        """Equal but for the xid (bytes 4-8) and the cookie's low 48 bits (10-16)."""
        return (len(msg) == len(exp) and msg[16:] == exp[16:] and msg[:4] == exp[:4]
                and msg[8:10] == exp[8:10])

    def _fast_flow_mod(self, sw: EmuSwitch, msg: bytes, kind: int) -> bool:
        per = self.templates[sw.index]
        first = per[0].fwd if kind == KIND_FWD else per[0].rev
        client, sport, raw_sport = self._key(msg, first)
        req = sw.pending.get((client, sport))
        if req is None:
            return False
        for t in per:
            exp = (t.fwd if kind == KIND_FWD else t.rev).fill(client, raw_sport)
            if self._same(msg, exp):
                ident = int.from_bytes(msg[10:16], "big")
                if req.ident not in (-1, ident):
                    req.bad = req.bad or "forward and reverse entries carry different binding ids"
                req.ident = ident
                self._same_instance(req, t.dbid)
                sw.gen.tally.fast += 1
                sw.seen((client, sport), req, 0b01 if kind == KIND_FWD else 0b10)
                return True
        return False

    def _fast_packet_out(self, sw: EmuSwitch, msg: bytes) -> bool:
        if len(msg) < 26:
            return False
        data = msg[24 + int.from_bytes(msg[16:18], "big"):]
        if len(data) < 36:
            return False
        key = (data[26:30], int.from_bytes(data[34:36], "big"))
        req = sw.pending.get(key)
        if req is None or data != req.frame:
            return False
        for t in self.templates[sw.index]:
            po = t.packet_out
            if (len(msg) == len(po) + len(data) and msg[8:len(po)] == po[8:]
                    and msg[:2] == po[:2]):
                self._same_instance(req, t.dbid)
                sw.gen.tally.fast += 1
                sw.seen(key, req, 0b100)
                return True
        return False

    # --- entry points ---------------------------------------------------------------------
    def flow_mod(self, sw: EmuSwitch, msg: bytes) -> None:
        """Account for a FLOW_MOD received by `sw`."""
        if self.kind == "dyncast":
            kind = msg[9]
            if msg[8] != COOKIE_APP or kind not in (KIND_FWD, KIND_REV):
                sw.gen.tally.other += 1
                return
            if self._fast_flow_mod(sw, msg, kind):
                return
            sw.gen.tally.slow += 1
            fm = ofgen.decode_flow_mod(msg)
            m = fm.match
            if kind == KIND_FWD:
                key = (m.get("ipv4_src"), m.get("tcp_src"))
            else:
                key = (m.get("ipv4_dst"), m.get("tcp_dst"))
            req = sw.pending.get(key)
            if req is None:
                sw.gen.tally.unexpected += 1
                return
            self._check_affinity(sw, req, fm, kind, key)
            sw.seen(key, req, 0b01 if kind == KIND_FWD else 0b10)
            return
        client, sport, raw_sport = self._key(msg, self.minimal)
        req = sw.pending.get((client, sport))
        if req is not None and msg[8:] == self.minimal.fill(client, raw_sport)[8:]:
            sw.gen.tally.fast += 1
            sw.seen((client, sport), req, 0b1)
            return
        sw.gen.tally.slow += 1
        fm = ofgen.decode_flow_mod(msg)
        key = (fm.match.get("ipv4_src"), fm.match.get("tcp_src"))
        req = sw.pending.get(key)
        if req is None:
            sw.gen.tally.other += 1
            return
        want = {"in_port": CLIENT_PORT, "eth_type": 0x0800, "ipv4_src": key[0],
                "ipv4_dst": self.dsid, "ip_proto": 6, "tcp_src": key[1],
                "tcp_dst": self.sc.dport}
        if fm.match != want or fm.command != ofgen.OFPFC_ADD or not fm.actions:
            req.bad = req.bad or "minimal flow-mod: wrong match, command or actions"
        sw.seen(key, req, 0b1)

    def packet_out(self, sw: EmuSwitch, msg: bytes) -> None:
        """Account for a PACKET_OUT received by `sw`."""
        if self.kind == "dyncast" and self._fast_packet_out(sw, msg):
            return
        po = ofgen.decode_packet_out(msg)
        tup = ofgen.five_tuple(po.data)
        key = (tup[0], tup[3]) if tup is not None else None
        req = sw.pending.get(key) if key is not None else None
        if req is None or self.kind != "dyncast":
            sw.gen.tally.other += 1  # LLDP, ARP probes and replies, liveness probes
            return
        sw.gen.tally.slow += 1
        acts = po.actions
        dbid = acts[1][1][1] if len(acts) == 3 and isinstance(acts[1][1], tuple) else b""
        inst = self.instances[sw.index].get(dbid)
        ok = (inst is not None and po.buffer_id == ofgen.OFP_NO_BUFFER
              and po.in_port == CLIENT_PORT and po.data == req.frame
              and acts == [("set_field", ("eth_dst", inst[0])),
                           ("set_field", ("ipv4_dst", dbid)), ("output", inst[1])])
        if not ok:
            req.bad = req.bad or "packet-out wrong"
        self._same_instance(req, dbid)
        sw.seen(key, req, 0b100)  # type: ignore[arg-type]

    # --- the slow path --------------------------------------------------------------------
    def _check_affinity(self, sw: EmuSwitch, req: Pending, fm: ofgen.FlowModMsg, kind: int,
                        key: tuple[object, object]) -> None:
        client, sport = key
        ident = fm.cookie & 0xFFFF_FFFF_FFFF
        if req.ident not in (-1, ident):
            req.bad = req.bad or "forward and reverse entries carry different binding ids"
        req.ident = ident
        common = (fm.table_id == 0 and fm.priority == 2000 and fm.goto == 1
                  and fm.command == ofgen.OFPFC_ADD)
        if kind == KIND_FWD:
            want = {"eth_type": 0x0800, "ipv4_src": client, "ipv4_dst": self.dsid,
                    "ip_proto": 6, "tcp_src": sport, "tcp_dst": self.sc.dport}
            acts = fm.actions
            dbid = acts[1][1][1] if len(acts) == 2 and isinstance(acts[1][1], tuple) else b""
            inst = self.instances[sw.index].get(dbid)
            ok = (common and fm.match == want and inst is not None
                  and acts == [("set_field", ("eth_dst", inst[0])),
                               ("set_field", ("ipv4_dst", dbid))]
                  and fm.flags & ofgen.OFPFF_SEND_FLOW_REM
                  and fm.idle_timeout == self.sc.idle_timeout)
            if not ok:
                req.bad = req.bad or "forward affinity entry wrong"
            self._same_instance(req, dbid)
            return
        dbid = fm.match.get("ipv4_src", b"")
        want = {"eth_type": 0x0800, "ipv4_src": dbid, "ipv4_dst": client, "ip_proto": 6,
                "tcp_src": self.sc.dport, "tcp_dst": sport}
        ok = (common and fm.match == want and dbid in self.instances[sw.index]
              and fm.actions == [("set_field", ("eth_src", VIRTUAL_MAC)),
                                 ("set_field", ("ipv4_src", self.dsid))])
        if not ok:
            req.bad = req.bad or "reverse affinity entry wrong"
        self._same_instance(req, dbid)  # type: ignore[arg-type]

    @staticmethod
    def _same_instance(req: Pending, dbid: bytes) -> None:
        if req.dbid and req.dbid != dbid:
            req.bad = req.bad or "responses name different instances"
        req.dbid = dbid


class EmuSwitch:
    """One emulated switch: a TCP connection to the controller and its requests in flight."""

    keeps_table = False  # a subclass keeps a flow table (bench/emutable.py) and answers reads

    def __init__(self, gen: Generator, index: int, sock: socket.socket) -> None:
        self.gen = gen
        self.table = FlowTable() if self.keeps_table else None
        self.index = index
        self.dpid = gen.sc.dpid(index)
        self.sock = sock
        self.rbuf = bytearray()
        self.wbuf = bytearray()
        self.pending: dict[tuple[object, object], Pending] = {}
        self.next_flow = 0
        self.xid = 0x10000000
        self.features_done = False
        self.port_desc_replies = 0
        self.closed = False
        sc = gen.sc
        self.clients = [(ofgen.mac(sc.client_mac(index, k)), ofgen.ip(sc.client_ip(index, k)))
                        for k in range(sc.clients)]
        self.dsid = ofgen.ip(sc.dsid)
        self.cookie = sc.punt_cookie()

    # --- sending ------------------------------------------------------------------------
    def send(self, data: bytes) -> None:
        if self.wbuf:
            self.wbuf += data
            return
        try:
            n = self.sock.send(data)
        except BlockingIOError:
            n = 0
        if n < len(data):
            self.wbuf += data[n:]
            self.gen.want_write(self, True)

    def flush(self) -> None:
        try:
            n = self.sock.send(self.wbuf)
        except BlockingIOError:
            return
        del self.wbuf[:n]
        if not self.wbuf:
            self.gen.want_write(self, False)

    def new_requests(self, count: int, now: float) -> None:
        """Send PACKET_INs for `count` new flows."""
        sc = self.gen.sc
        out = []
        nclients = len(self.clients)
        for _ in range(count):
            i = self.next_flow
            self.next_flow += 1
            k = i % nclients
            sport = FIRST_SPORT + i // nclients
            if sport > 65535:
                raise RuntimeError(f"switch {self.dpid}: out of new 5-tuples")
            cmac, cip = self.clients[k]
            frame = ofgen.tcp_syn(cmac, VIRTUAL_MAC, cip, self.dsid, sport, sc.dport)
            self.xid += 1
            out.append(ofgen.packet_in(self.xid, CLIENT_PORT, frame, self.cookie))
            self.pending[(cip, sport)] = Pending(now, frame)
        self.send(b"".join(out))

    def announce(self) -> None:
        """Gratuitous ARPs from this switch's instances and clients (so the controller learns
        where they are)."""
        sc = self.gen.sc
        msgs = []
        for k, port in enumerate(INSTANCE_PORTS):
            frame = ofgen.arp_announce(ofgen.mac(sc.instance_mac(self.index, k)),
                                       ofgen.ip(sc.instance_ip(self.index, k)))
            msgs.append(ofgen.packet_in(0, port, frame, 0))
        for cmac, cip in self.clients:
            msgs.append(ofgen.packet_in(0, CLIENT_PORT, ofgen.arp_announce(cmac, cip), 0))
        self.send(b"".join(msgs))

    # --- receiving ----------------------------------------------------------------------
    def on_readable(self) -> None:
        data = self.receive()
        if data is not None:
            self.received(data)

    def receive(self) -> bytes | None:
        """What the socket has (b"" once closed; None if nothing yet)."""
        try:
            return self.sock.recv(1 << 18)
        except BlockingIOError:
            return None
        except OSError as exc:
            if exc.errno in (errno.ECONNRESET, errno.EPIPE):
                return b""
            raise

    def received(self, data: bytes) -> None:
        """Handle the messages `data` completes (b"": the controller closed)."""
        if not data:
            self.closed = True
            self.gen.closed(self)
            return
        self.rbuf += data
        msgs, used = ofgen.split(self.rbuf)
        del self.rbuf[:used]
        for msg_type, xid, msg in msgs:
            self.handle(msg_type, xid, msg)

    def handle(self, msg_type: int, xid: int, msg: bytes) -> None:
        ver = self.gen.verifier
        if msg_type == ofgen.OFPT_FLOW_MOD:
            if self.table is not None and (gone := self.table.flow_mod(msg, time.monotonic())):
                self.send(b"".join(gone))
            ver.flow_mod(self, msg)
        elif msg_type == ofgen.OFPT_PACKET_OUT:
            ver.packet_out(self, msg)
        elif msg_type == ofgen.OFPT_ECHO_REQUEST:
            self.send(ofgen.echo_reply(msg))
        elif msg_type == ofgen.OFPT_FEATURES_REQUEST:
            self.send(ofgen.features_reply(xid, self.dpid))
            self.features_done = True
        elif msg_type == ofgen.OFPT_MULTIPART_REQUEST:
            mp = ofgen.multipart_type(msg)
            if mp == ofgen.OFPMP_PORT_DESC:
                self.send(ofgen.port_desc_reply(xid, self.dpid, PORTS))
                self.port_desc_replies += 1
            elif mp == ofgen.OFPMP_PORT_STATS:
                self.send(ofgen.port_stats_reply(xid, PORTS))
            elif mp == OFPMP_FLOW and self.table is not None:
                self.send(b"".join(self.table.flow_stats(msg, time.monotonic())))
            else:
                self.send(ofgen.multipart_reply(xid, mp))
        elif msg_type == ofgen.OFPT_BARRIER_REQUEST:
            self.send(ofgen.barrier_reply(xid))
        elif msg_type == ofgen.OFPT_GET_CONFIG_REQUEST:
            self.send(ofgen.message(ofgen.OFPT_GET_CONFIG_REPLY, xid, b"\x00\x00\xff\xff"))
        elif msg_type == ofgen.OFPT_ROLE_REQUEST:
            self.send(ofgen.message(ofgen.OFPT_ROLE_REPLY, xid, msg[8:]))
        elif msg_type == ofgen.OFPT_ERROR:
            self.gen.tally.reasons["OpenFlow error from the controller"] += 1
        # HELLO, SET_CONFIG and anything else need no answer

    def seen(self, key: tuple[object, object], req: Pending, bit: int) -> None:
        """A response for `req` arrived; complete it when all are in."""
        if req.seen & bit:
            req.bad = req.bad or "duplicate response"
        req.seen |= bit
        if req.seen != self.gen.verifier.full:
            return
        del self.pending[key]
        tally = self.gen.tally
        if req.bad:
            tally.incorrect += 1
            tally.reasons[req.bad] += 1
        else:
            tally.correct += 1
            tally.latencies.append(time.perf_counter() - req.sent)
            if req.dbid:
                tally.instances[socket.inet_ntoa(req.dbid)] += 1
        self.gen.completed(self)


@dataclass
class Phase:
    """Result of one timed measurement."""

    mode: str
    switches: int
    window: int
    loop_rates: list[float]  # correct responses per second in each loop
    latencies_ms: list[float]
    tally: Tally
    seconds: float
    cpu_s: float | None = None  # the controller's CPU time during the timed loops

    @property
    def cpu_share(self) -> float | None:
        """The controller's CPU use during the timed loops (1.0 = one CPU busy)."""
        return None if self.cpu_s is None else self.cpu_s / self.seconds

    @property
    def cpu_us_per_request(self) -> float | None:
        """Controller CPU time per correct response, in microseconds."""
        if self.cpu_s is None or not self.tally.correct:
            return None
        return self.cpu_s / self.tally.correct * 1e6

    @property
    def rate(self) -> float:
        return statistics.mean(self.loop_rates) if self.loop_rates else 0.0

    @property
    def mean_latency(self) -> float:
        """Mean per-request latency in ms."""
        return statistics.mean(self.latencies_ms) if self.latencies_ms else float("nan")

    def latency(self, q: float) -> float:
        """The q-quantile (0..1) of per-request latency in ms."""
        if not self.latencies_ms:
            return float("nan")
        data = sorted(self.latencies_ms)
        return data[min(len(data) - 1, int(q * len(data)))]


class Generator:
    """Many emulated switches connected to one controller, driven by one epoll loop."""

    switch_class: type[EmuSwitch] = EmuSwitch  # a subclass may answer more (control_plane.py)

    def __init__(self, host: str, port: int, scenario: Scenario, kind: str) -> None:
        self.sc = scenario
        self.verifier = Verifier(kind, scenario)
        self.tally = Tally()
        self.ep = select.epoll()
        self.switches: list[EmuSwitch] = []
        self.by_fd: dict[int, EmuSwitch] = {}
        self.window = 0
        self.active: list[EmuSwitch] = []
        self._refill: set[EmuSwitch] = set()
        self.lost: list[str] = []
        for s in range(scenario.switches):
            sock = socket.create_connection((host, port), timeout=5)
            sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
            sock.setblocking(False)
            sw = self.switch_class(self, s, sock)
            self.switches.append(sw)
            self.by_fd[sock.fileno()] = sw
            self.ep.register(sock.fileno(), select.EPOLLIN)
            sw.send(ofgen.hello())

    def close(self) -> None:
        for sw in self.switches:
            with contextlib.suppress(OSError, ValueError):
                self.ep.unregister(sw.sock.fileno())
            sw.sock.close()
        self.ep.close()

    # --- loop ---------------------------------------------------------------------------
    def want_write(self, sw: EmuSwitch, on: bool) -> None:
        mask = select.EPOLLIN | (select.EPOLLOUT if on else 0)
        self.ep.modify(sw.sock.fileno(), mask)

    def closed(self, sw: EmuSwitch) -> None:
        self.lost.append(f"switch {sw.dpid}: the controller closed the connection")
        self.ep.unregister(sw.sock.fileno())

    def completed(self, sw: EmuSwitch) -> None:
        if self.window:
            self._refill.add(sw)

    def poll(self, timeout: float) -> None:
        """Handle what is ready (waiting at most `timeout` s), then top up the windows."""
        for fd, events in self.ep.poll(timeout):
            sw = self.by_fd[fd]
            if events & select.EPOLLOUT:
                sw.flush()
            if events & (select.EPOLLIN | select.EPOLLHUP | select.EPOLLERR):
                sw.on_readable()
        if self._refill:
            now = time.perf_counter()
            for sw in self._refill:
                missing = self.window - len(sw.pending)
                if missing > 0 and not sw.closed:
                    sw.new_requests(missing, now)
            self._refill.clear()

    def run_until(self, done: Callable[[], bool], timeout: float, what: str) -> None:
        """Poll until `done()` or raise TimeoutError naming `what`."""
        end = time.monotonic() + timeout
        while not done():
            if self.lost:
                raise ConnectionError("; ".join(self.lost))
            if time.monotonic() > end:
                raise TimeoutError(f"timed out waiting for {what}")
            self.poll(0.05)

    def pump(self, seconds: float) -> None:
        """Just answer the controller for a while."""
        end = time.monotonic() + seconds
        while time.monotonic() < end:
            self.poll(min(0.05, max(0.0, end - time.monotonic())))

    def handshake(self, port_desc: int = 1, timeout: float = 20.0) -> None:
        """Wait until every switch answered FEATURES and `port_desc` PORT_DESC requests."""
        self.run_until(lambda: all(sw.features_done and sw.port_desc_replies >= port_desc
                                   for sw in self.switches), timeout, "the handshakes")

    def announce(self) -> None:
        for sw in self.switches:
            sw.announce()

    def probe(self, timeout: float = 20.0) -> None:
        """Send one new flow per switch (again every 0.5 s) until every switch has seen a
        correct answer: the controller is ready for all of them."""
        ready: set[int] = set()
        end = time.monotonic() + timeout
        while len(ready) < len(self.switches):
            if self.lost:
                raise ConnectionError("; ".join(self.lost))
            if time.monotonic() > end:
                raise TimeoutError(f"only {len(ready)} of {len(self.switches)} switches got a "
                                   f"correct answer to a new flow; {self.describe()}")
            self.tally = Tally()
            for sw in self.switches:
                if sw.index not in ready:
                    sw.pending.clear()
                    sw.new_requests(1, time.perf_counter())
            step = time.monotonic() + 0.5
            while time.monotonic() < step and len(ready) < len(self.switches):
                self.poll(0.02)
                ready |= {sw.index for sw in self.switches
                          if sw.index not in ready and not sw.pending}
            if self.tally.incorrect:
                raise RuntimeError(f"incorrect answers while probing: {self.describe()}")
        self.pump(0.2)

    def describe(self) -> str:
        t = self.tally
        reasons = ", ".join(f"{r} x{n}" for r, n in t.reasons.most_common(3)) or "none"
        return (f"correct {t.correct}, incorrect {t.incorrect}, unexpected {t.unexpected}, "
                f"in flight {sum(len(sw.pending) for sw in self.switches)}; reasons: {reasons}")

    def measure(self, mode: str, switches: int, window: int, warmup: float, loops: int,
                duration: float, cpu_clock: Callable[[], float] | None = None) -> Phase:
        """Drive `switches` switches with `window` requests in flight each: warm up, then
        count correct completions in `loops` periods of `duration` s (`cpu_clock`, if given,
        reads the controller's CPU seconds so far)."""
        for sw in self.switches:
            sw.pending.clear()
        self.active = self.switches[:switches]
        self.window = window
        self.tally = Tally()
        start = time.perf_counter()
        for sw in self.active:
            sw.new_requests(window, start)
        end = start + warmup
        while time.perf_counter() < end:
            self.poll(0.01)
            self._check()
        warm, self.tally = self.tally, Tally()
        rates = []
        cpu0 = cpu_clock() if cpu_clock else 0.0
        t0 = start = time.perf_counter()
        for _ in range(loops):
            before = self.tally.correct
            end = t0 + duration
            while (now := time.perf_counter()) < end:
                self.poll(min(0.01, end - now))
                self._check()
            t1 = time.perf_counter()
            rates.append((self.tally.correct - before) / (t1 - t0))
            t0 = t1
        elapsed = t0 - start
        cpu_s = cpu_clock() - cpu0 if cpu_clock else None
        tally = self.tally
        # stop sending, and let what is in flight come back (so the next phase starts clean);
        # wrong answers before or after the timed loops still count as wrong
        self.window = 0
        self.tally = Tally()
        end = time.perf_counter() + 10.0
        while any(sw.pending for sw in self.active) and time.perf_counter() < end:
            self.poll(0.05)
        tally.unanswered = sum(len(sw.pending) for sw in self.active)
        tally.answered = tally.correct
        for extra in (warm, self.tally):
            tally.answered += extra.correct
            tally.incorrect += extra.incorrect
            tally.unexpected += extra.unexpected
            tally.reasons.update(extra.reasons)
        self.active = []
        lat = [x * 1000.0 for x in tally.latencies]
        return Phase(mode, switches, window, rates, lat, tally, elapsed, cpu_s)

    def _check(self) -> None:
        if self.lost:
            raise ConnectionError("; ".join(self.lost))
