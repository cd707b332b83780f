"""Held connections: N long-lived TCP connections to a D-SID, watched line by line.

Boundary: runs inside a Mininet client host, stdlib only, one thread. It opens N connections
to the demo service's `GET /hold` (a chunked line naming the instance every 0.2 s) and records,
per connection, which instance answered, whether another one ever did (moved), whether it broke
(reset, EOF before the hold ended, connect failure) and the longest gap between two lines.
It prints `ready N` once every connection answered (or failed); on SIGUSR1 it writes the
report to --report (with an increasing `seq`), and at exit (SIGTERM, SIGINT or hold over) it
writes it there and prints it as the last line.

    python holdconns.py --dsid 10.0.100.1 --count 200 --report held.json [--seconds 900]
"""

from __future__ import annotations

import argparse
import errno
import json
import os
import selectors
import signal
import socket
import sys
import time
from dataclasses import dataclass, field
from types import FrameType
from typing import Any

CONNECT_TIMEOUT_S = 10.0  # a connection that has not seen its first line by then failed
OPEN_PER_TICK = 20  # connections started per 50 ms, so that SYNs do not arrive all at once


@dataclass
class Held:
    """One held connection and what its client observed."""

    ident: int
    sock: socket.socket | None = None
    sport: int = 0
    opened_at: float = 0.0
    instance: str | None = None  # the first instance that answered
    instances: set[str] = field(default_factory=set)
    lines: int = 0
    last_line_at: float | None = None  # wall clock (time.time), comparable across hosts
    max_gap_s: float = 0.0
    max_gap_end: float | None = None  # when the longest gap ended (wall clock)
    state: str = "connecting"  # connecting, open, done (the hold ended cleanly), broken
    reason: str | None = None
    buf: bytes = b""
    ended: bool = False  # the server sent the last chunk

    def report(self) -> dict[str, Any]:
        """This connection as JSON."""
        return {"id": self.ident, "sport": self.sport, "instance": self.instance,
                "moved": len(self.instances) > 1, "instances": sorted(self.instances),
                "lines": self.lines, "last_line_at": self.last_line_at,
                "max_gap_s": round(self.max_gap_s, 3), "max_gap_end": self.max_gap_end,
                "state": self.state,
                "reason": self.reason}


class Watcher:
    """Opens the connections and reads them with one selector."""

    def __init__(self, dsid: str, port: int, count: int, seconds: float) -> None:
        self.addr = (dsid, port)
        self.seconds = seconds
        self.conns = [Held(i) for i in range(count)]
        self.sel = selectors.DefaultSelector()
        self.seq = 0
        self.started = time.time()

    def open_some(self) -> None:
        """Start up to OPEN_PER_TICK connections that have no socket yet."""
        todo = [c for c in self.conns if c.sock is None and c.state == "connecting"]
        for conn in todo[:OPEN_PER_TICK]:
            sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
            sock.setblocking(False)
            code = sock.connect_ex(self.addr)
            if code not in (0, errno.EINPROGRESS):
                self.fail(conn, f"connect: {os.strerror(code)}")
                sock.close()
                continue
            conn.sock, conn.opened_at = sock, time.time()
            self.sel.register(sock, selectors.EVENT_WRITE, conn)

    def fail(self, conn: Held, reason: str) -> None:
        """Mark a connection broken (first reason wins) and close it."""
        if conn.state in ("connecting", "open"):
            conn.state, conn.reason = "broken", reason
        if conn.sock is not None:
            self.sel.unregister(conn.sock)
            conn.sock.close()
            conn.sock = None

    def on_event(self, conn: Held, mask: int) -> None:
        """Finish a connect (send the request) or read what arrived."""
        assert conn.sock is not None
        if mask & selectors.EVENT_WRITE:
            code = conn.sock.getsockopt(socket.SOL_SOCKET, socket.SO_ERROR)
            if code:
                self.fail(conn, f"connect: {os.strerror(code)}")
                return
            conn.sport = conn.sock.getsockname()[1]
            conn.sock.sendall(f"GET /hold?seconds={self.seconds:g} HTTP/1.1\r\nHost: "
                              f"{self.addr[0]}\r\nConnection: close\r\n\r\n".encode())
            self.sel.modify(conn.sock, selectors.EVENT_READ, conn)
            return
        try:
            data = conn.sock.recv(65536)
        except OSError as exc:  # ECONNRESET above all
            self.fail(conn, f"recv: {exc.strerror or exc}")
            return
        if not data:
            if conn.ended and conn.state == "open":
                conn.state = "done"
            self.fail(conn, "EOF before the hold ended")
            return
        conn.buf += data
        self.read_lines(conn)

    def read_lines(self, conn: Held) -> None:
        """Account for every complete JSON line in the connection's buffer."""
        while b"\n" in conn.buf:
            line, conn.buf = conn.buf.split(b"\n", 1)
            line = line.strip()
            if line == b"0":  # a chunk of size 0: the last one
                conn.ended = True
            if not line.startswith(b"{"):
                continue
            now = time.time()
            name = str(json.loads(line)["instance"])
            if conn.last_line_at is not None and now - conn.last_line_at > conn.max_gap_s:
                conn.max_gap_s, conn.max_gap_end = now - conn.last_line_at, now
            conn.last_line_at = now
            conn.lines += 1
            conn.instances.add(name)
            if conn.instance is None:
                conn.instance, conn.state = name, "open"

    def expire_connects(self) -> None:
        """Fail connections that saw no line within CONNECT_TIMEOUT_S of opening."""
        now = time.time()
        for conn in self.conns:
            if conn.state == "connecting" and conn.sock is not None \
                    and now - conn.opened_at > CONNECT_TIMEOUT_S:
                self.fail(conn, f"no answer within {CONNECT_TIMEOUT_S:g} s")

    def settled(self) -> bool:
        """True once no connection is still connecting."""
        return all(c.state != "connecting" for c in self.conns)

    def report(self) -> dict[str, Any]:
        """The summary and every connection."""
        states: dict[str, int] = {}
        served: dict[str, int] = {}
        for conn in self.conns:
            states[conn.state] = states.get(conn.state, 0) + 1
            if conn.instance is not None:
                served[conn.instance] = served.get(conn.instance, 0) + 1
        self.seq += 1
        return {"seq": self.seq, "at": time.time(), "count": len(self.conns), "states": states,
                "served": served, "moved": sum(len(c.instances) > 1 for c in self.conns),
                "connections": [c.report() for c in self.conns]}


def write_report(path: str, report: dict[str, Any]) -> None:
    """Write the report atomically (readers never see half of it)."""
    tmp = f"{path}.tmp"
    with open(tmp, "w") as out:
        json.dump(report, out)
    os.replace(tmp, path)


def main(argv: list[str] | None = None) -> int:
    """Open the connections, watch them until told to stop, report."""
    ap = argparse.ArgumentParser(prog="holdconns", description=__doc__.splitlines()[0])
    ap.add_argument("--dsid", required=True)
    ap.add_argument("--port", type=int, default=8000)
    ap.add_argument("--count", type=int, default=200)
    ap.add_argument("--seconds", type=float, default=900.0, help="hold length asked for")
    ap.add_argument("--report", required=True, help="file the JSON report is written to")
    args = ap.parse_args(argv)
    watcher = Watcher(args.dsid, args.port, args.count, args.seconds)
    flags = {"report": False, "stop": False}

    def on_signal(signum: int, frame: FrameType | None) -> None:
        flags["stop" if signum != signal.SIGUSR1 else "report"] = True

    for sig in (signal.SIGUSR1, signal.SIGTERM, signal.SIGINT):
        signal.signal(sig, on_signal)
    ready = False
    while not flags["stop"]:
        watcher.open_some()
        for key, mask in watcher.sel.select(timeout=0.05):
            watcher.on_event(key.data, mask)
        watcher.expire_connects()
        if not ready and watcher.settled():
            ready = True
            print(f"ready {sum(c.state == 'open' for c in watcher.conns)}", flush=True)
        if flags["report"]:
            flags["report"] = False
            write_report(args.report, watcher.report())
        if ready and all(c.state in ("done", "broken") for c in watcher.conns):
            break
    final = watcher.report()
    write_report(args.report, final)
    print(json.dumps({k: v for k, v in final.items() if k != "connections"}), flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
