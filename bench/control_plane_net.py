"""The world bench/control_plane.py puts around the controller: a ring of emulated switches that
time their echoes, and D-MAs posting metric reports over HTTP at a paced rate.

The switches are bench/emuswitch.py's (one epoll loop, struct-built messages), run in a thread
of their own: they answer the controller, carry its LLDP frames to the next switch of the ring
(so it sees the links), present the instances' hosts with gratuitous ARPs (so every instance is
located) and send an ECHO_REQUEST every `ECHO_EVERY_S`, timing the reply: the worst delay is the
longest the controller's event loop was held. The D-MAs are processes (`post_reports`), each
with one keep-alive HTTP connection, sending their bodies on a fixed schedule.
"""

from __future__ import annotations

import errno
import json
import queue
import socket
import struct
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from agents.httpconn import Connection
from bench import ofgen
from bench.emuswitch import EmuSwitch, Generator, Scenario

HOST_PORT = 1  # where each switch's instances are; ports 2 and 3 join the ring
ECHO_EVERY_S = 0.02
ETH_TYPE_LLDP = b"\x88\xcc"
SO_TIMESTAMPNS = 35  # Linux: each read's kernel receive time (CLOCK_REALTIME) as a cmsg
_TIMESPEC = struct.Struct("@qq")
_STAMP = struct.Struct("!d")  # an echo request's data: when it was sent (wall clock)
SLOW_S = 0.05  # echoes slower than this are listed (Echoes.slow)


@dataclass(frozen=True)
class Layout:
    """`instances` instances in services of `per_service`, spread over `switches` switches."""

    instances: int
    switches: int = 4
    per_service: int = 100

    @property
    def services(self) -> int:
        return -(-self.instances // self.per_service)

    def service(self, k: int) -> tuple[str, str]:
        """Name and D-SID of service `k`."""
        return f"svc{k}", f"10.0.{100 + k // 250}.{k % 250 + 1}"

    def instance(self, i: int) -> tuple[str, str, int, int]:
        """D-BID, MAC, switch index and service index of instance `i`."""
        return (f"10.2.{i >> 8}.{i & 255}", f"02:02:00:00:{i >> 8:02x}:{i & 255:02x}",
                i % self.switches, i // self.per_service)


class RingSwitch(EmuSwitch):
    """An emulated switch that also forwards LLDP around the ring and times its echoes; it
    keeps a flow table (bench/emutable.py), so the controller's periodic table reads find what
    it installed, as with a real switch, and repair only what differs."""

    gen: Ring
    keeps_table = True
    rx_at = 0.0  # when the kernel received the bytes being handled (wall clock), 0 unknown

    def receive(self) -> bytes | None:
        """Read as EmuSwitch does, noting when the kernel received the read's last bytes
        (SO_TIMESTAMPNS): an echo reply's arrival, whatever this thread was doing then."""
        try:
            data, anc, _, _ = self.sock.recvmsg(1 << 18, socket.CMSG_SPACE(_TIMESPEC.size))
        except BlockingIOError:
            return None
        except OSError as exc:
            if exc.errno not in (errno.ECONNRESET, errno.EPIPE):
                raise
            return b""
        self.rx_at = 0.0
        for level, kind, raw in anc:
            if level == socket.SOL_SOCKET and kind == SO_TIMESTAMPNS:
                sec, nsec = _TIMESPEC.unpack_from(raw)
                self.rx_at = sec + nsec / 1e9
        return data

    def handle(self, msg_type: int, xid: int, msg: bytes) -> None:
        if msg_type == ofgen.OFPT_ECHO_REPLY:
            self.gen.echo_back(xid, self.rx_at)
        elif msg_type == ofgen.OFPT_PACKET_OUT:
            self.gen.packet_out(self, msg)
        elif msg_type == ofgen.OFPT_FLOW_MOD:  # into the table; nothing to verify here
            assert self.table is not None
            if gone := self.table.flow_mod(msg, time.monotonic()):
                self.send(b"".join(gone))
        else:
            super().handle(msg_type, xid, msg)


@dataclass
class Echoes:
    """Echo round trips seen by the switches (seconds): `delays` until the switches' thread
    read the reply, `arrived` until the kernel received it (the reply's bytes on the switch's
    socket: what the controller took, without this thread's own lateness), and `gap`, the
    longest this thread went without polling its sockets (its lateness, which `delays`
    include: the bench's CPU is shared with its D-MAs and prober)."""

    delays: list[float] = field(default_factory=list)
    arrived: list[float] = field(default_factory=list)
    out: dict[int, tuple[float, float]] = field(default_factory=dict)  # xid -> when sent
    # (time.perf_counter(), time.time())
    gap: float = 0.0
    slow: list[tuple[int, float, float, float]] = field(default_factory=list)  # over SLOW_S:
    # (xid, sent, reached the socket, read), wall clock: to line up with a controller's log

    def worst(self, now: float) -> float:
        """The longest round trip, counting echoes still unanswered as waiting until now."""
        waiting = [now - t for t, _ in self.out.values()]
        return max(self.delays + waiting, default=0.0)

    def worst_arrived(self, now: float) -> float:
        """The longest until the reply reached the socket, unanswered echoes counted as
        waiting until now (`now` from time.time())."""
        waiting = [now - t for _, t in self.out.values()]
        return max(self.arrived + waiting, default=0.0)


class Ring(Generator):
    """The emulated switches in a ring, polled by a thread of their own."""

    switch_class = RingSwitch

    def __init__(self, port: int, switches: int) -> None:
        super().__init__("127.0.0.1", port, Scenario(switches, clients=1), "dyncast")
        self.echoes = Echoes()
        self.forwarded = 0
        self._xid = 0x70000000
        self._todo: queue.Queue[Callable[[], None]] = queue.Queue()
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._loop, name="switches", daemon=True)

    def start(self) -> None:
        self._thread.start()

    def stop(self) -> None:
        self._stop.set()
        self._thread.join(5.0)
        self.close()

    def do(self, work: Callable[[], None]) -> None:
        """Run `work` in the switches' thread."""
        self._todo.put(work)

    def measure_echoes(self) -> Echoes:
        """Start a new echo tally (from the switches' thread); return the one that ends."""
        done: queue.Queue[Echoes] = queue.Queue()

        def swap() -> None:
            old, self.echoes = self.echoes, Echoes()
            done.put(old)

        self.do(swap)
        return done.get(timeout=10.0)

    # --- in the switches' thread ----------------------------------------------------------
    def _loop(self) -> None:
        next_echo = next_expiry = last = time.perf_counter()
        for sw in self.switches:
            sw.sock.setsockopt(socket.SOL_SOCKET, SO_TIMESTAMPNS, 1)
        while not self._stop.is_set():
            self.poll(0.002)
            polled = time.perf_counter()
            self.echoes.gap = max(self.echoes.gap, polled - last - 0.002)
            last = polled
            while not self._todo.empty():
                self._todo.get()()
            now = time.perf_counter()
            if now >= next_expiry:  # idle and hard timeouts, once a second
                next_expiry = now + 1.0
                for sw in self.switches:
                    if sw.table is not None and not sw.closed and (
                            gone := sw.table.expire(time.monotonic())):
                        sw.send(b"".join(gone))
            if now >= next_echo and all(sw.features_done for sw in self.switches):
                next_echo = now + ECHO_EVERY_S
                for sw in self.switches:
                    self._xid += 1
                    wall = time.time()
                    self.echoes.out[self._xid] = (time.perf_counter(), wall)
                    sw.send(ofgen.message(ofgen.OFPT_ECHO_REQUEST, self._xid,
                                          _STAMP.pack(wall)))

    def echo_back(self, xid: int, rx_at: float = 0.0) -> None:
        """An echo reply read now, its bytes received by the kernel at `rx_at` (wall clock;
        0: unknown, then when read)."""
        sent = self.echoes.out.pop(xid, None)
        if sent is not None:
            read, arrived = time.perf_counter() - sent[0], (rx_at or time.time()) - sent[1]
            self.echoes.delays.append(read)
            self.echoes.arrived.append(arrived)
            if read > SLOW_S:
                self.echoes.slow.append((xid, sent[1], sent[1] + arrived, sent[1] + read))

    def packet_out(self, sw: EmuSwitch, msg: bytes) -> None:
        """An LLDP frame sent out of a ring port arrives at the next (or previous) switch."""
        po = ofgen.decode_packet_out(msg)
        if po.data[12:14] != ETH_TYPE_LLDP:
            return
        n = len(self.switches)
        for name, port in po.actions:
            if name != "output" or not isinstance(port, int) or port not in (2, 3) or n < 2:
                continue
            peer = (sw.index + (1 if port == 3 else -1)) % n
            self.switches[peer].send(ofgen.packet_in(0, 5 - port, po.data))
            self.forwarded += 1

    def announce_hosts(self, layout: Layout) -> None:
        """Every instance's host says where it is (from its switch's host port)."""
        frames: dict[int, list[bytes]] = {}
        for i in range(layout.instances):
            dbid, mac, s, _ = layout.instance(i)
            arp = ofgen.arp_announce(ofgen.mac(mac), ofgen.ip(dbid))
            frames.setdefault(s, []).append(ofgen.packet_in(0, HOST_PORT, arp))
        for s, msgs in frames.items():
            self.switches[s].send(b"".join(msgs))


# --- HTTP -------------------------------------------------------------------------------------
class Http:
    """One kept-alive connection to the controller's REST API (agents/httpconn.py: a new one
    when the controller closed it, idle or at its request limit)."""

    def __init__(self, port: int, timeout: float = 60.0) -> None:
        self.link = Connection(f"http://127.0.0.1:{port}/dyncast/v1", timeout,
                               max_answer=1 << 30)

    def call(self, method: str, path: str, body: bytes | None = None,
             decode: bool = True) -> tuple[int, Any, float]:
        """(status, decoded JSON or, without `decode`, its length, seconds taken). The probes
        do not decode: json.loads holds the GIL, and the switches' thread times the echoes."""
        t = time.perf_counter()
        status, data = self.link.request(method, "/" + path, body, _json_headers)
        took = time.perf_counter() - t
        return status, (json.loads(data) if decode and data else len(data)), took


def _json_headers() -> dict[str, str]:
    return {"Content-Type": "application/json"}


def report_body(dbids: list[str], round_: int) -> bytes:
    """One POST /metrics body: a single report, or a batch of several (load varies by round)."""
    reports = [{"dbid": d, "cpu": round(0.05 + (round_ + k) % 10 * 0.08, 2),
                "sessions": (round_ + k) % 8, "queue": 0, "capacity": 8, "active": True}
               for k, d in enumerate(dbids)]
    return json.dumps(reports[0] if len(reports) == 1 else {"reports": reports}).encode()


def post_reports(port: int, bodies: list[tuple[bytes, int]], posts_per_s: float,
                 duration: float, out: Any) -> None:
    """A D-MA process: POST `bodies` (each with its report count) in turn, one every
    1/posts_per_s s (at once when behind), for `duration` s; put (reports accepted, refused
    posts, post latencies) on `out`."""
    http = Http(port)
    accepted, refused, latencies = 0, 0, []
    start = time.perf_counter()
    j = 0
    while (now := time.perf_counter()) < start + duration:
        due = start + j / posts_per_s
        if due > now:
            time.sleep(min(due - now, start + duration - now))
            continue
        body, count = bodies[j % len(bodies)]
        status, value, took = http.call("POST", "metrics", body)
        latencies.append(took)
        if status == 200 and value.get("accepted") == count:
            accepted += count
        else:
            refused += 1
        j += 1
    out.put((accepted, refused, latencies, time.perf_counter() - start))
