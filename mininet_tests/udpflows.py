"""UDP for the Mininet tests: an instance's responder, and a client holding N UDP "flows".

Boundary: runs inside a Mininet host, stdlib only, one thread; no Dyncast logic.

    python udpflows.py serve --bind 10.0.0.22 --port 8000 --name svc2@e2
        answers every datagram to its sender with {"instance": name, "flow": .., "seq": ..};
        prints `serving` once bound.
    python udpflows.py hold --dsid 10.0.100.2 --count 30 --report held.json [--period 0.15]
        N sockets, each bound to its own source port and never connect()ed (so a reply from
        any address is received and recorded), each sending a datagram every `period` s.
        Per flow: the first instance that answered, every instance and every reply source
        (address:port), datagrams sent and answered, the longest gap between two replies.
        Prints `ready N` once every flow got a reply (or 10 s passed); SIGUSR1 writes the
        report to --report (increasing `seq`), SIGTERM/SIGINT writes it and exits.
    python udpflows.py once --dsid 10.0.100.2 --count 16
        N new flows, one datagram each (resent every 0.3 s, 5 tries): prints one JSON line
        {"served": {instance: flows}, "sources": {source: flows}, "failed": flows}.
"""

from __future__ import annotations

import argparse
import contextlib
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

READY_WITHIN_S = 10.0


def serve(bind: str, port: int, name: str) -> int:
    """Answer every datagram with the instance's name and the flow and seq it carried."""
    sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    sock.bind((bind, port))
    print(f"serving {name} on udp {bind}:{port}", flush=True)
    while True:
        data, peer = sock.recvfrom(2048)
        try:
            asked = json.loads(data)
        except ValueError:
            asked = {}
        reply = {"instance": name, "flow": asked.get("flow"), "seq": asked.get("seq")}
        sock.sendto(json.dumps(reply).encode(), peer)


@dataclass
class Flow:
    """One UDP flow (one socket, one source port) and what its client saw."""

    ident: int
    sock: socket.socket
    sport: int
    sent: int = 0
    replies: int = 0
    instance: str | None = None  # the first instance that answered
    instances: set[str] = field(default_factory=set)
    sources: set[str] = field(default_factory=set)
    last_reply_at: float | None = None  # wall clock (time.time)
    max_gap_s: float = 0.0
    max_gap_end: float | None = None

    def received(self, data: bytes, peer: tuple[str, int]) -> None:
        """Account for one reply."""
        now = time.time()
        name = str(json.loads(data).get("instance"))
        if self.last_reply_at is not None and now - self.last_reply_at > self.max_gap_s:
            self.max_gap_s, self.max_gap_end = now - self.last_reply_at, now
        self.last_reply_at = now
        self.replies += 1
        self.instances.add(name)
        self.sources.add(f"{peer[0]}:{peer[1]}")
        if self.instance is None:
            self.instance = name

    def report(self) -> dict[str, Any]:
        """This flow as JSON."""
        return {"id": self.ident, "sport": self.sport, "instance": self.instance,
                "instances": sorted(self.instances), "sources": sorted(self.sources),
                "moved": len(self.instances) > 1, "sent": self.sent, "replies": self.replies,
                "last_reply_at": self.last_reply_at, "max_gap_s": round(self.max_gap_s, 3),
                "max_gap_end": self.max_gap_end}


def open_flows(count: int, sel: selectors.BaseSelector, first: int = 0) -> list[Flow]:
    """`count` sockets, each bound to its own port (ephemeral; or `first`, `first` + 2, ...:
    every other port, so that `count` 16 covers every bucket of a 16-bucket split on the
    source port's bits 1-4), registered for reading."""
    flows = []
    for i in range(count):
        sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        sock.bind(("0.0.0.0", first + 2 * i if first else 0))
        sock.setblocking(False)
        flow = Flow(i, sock, sock.getsockname()[1])
        sel.register(sock, selectors.EVENT_READ, flow)
        flows.append(flow)
    return flows


def send(flow: Flow, addr: tuple[str, int]) -> None:
    """Send the flow's next datagram (a full send buffer just loses it, as the network may)."""
    flow.sent += 1
    with contextlib.suppress(BlockingIOError):
        flow.sock.sendto(json.dumps({"flow": flow.ident, "seq": flow.sent}).encode(), addr)


def drain(sel: selectors.BaseSelector, timeout: float) -> None:
    """Read every reply that arrives within `timeout` s."""
    for key, _ in sel.select(timeout):
        flow: Flow = key.data
        while True:
            try:
                data, peer = flow.sock.recvfrom(2048)
            except (BlockingIOError, ConnectionRefusedError):
                break
            flow.received(data, peer)


def report_of(flows: list[Flow], seq: int) -> dict[str, Any]:
    """The summary and every flow."""
    served: dict[str, int] = {}
    for f in flows:
        if f.instance is not None:
            served[f.instance] = served.get(f.instance, 0) + 1
    return {"seq": seq, "at": time.time(), "count": len(flows), "served": served,
            "unanswered": sum(f.instance is None for f in flows),
            "moved": sum(len(f.instances) > 1 for f in flows),
            "sources": sorted({s for f in flows for s in f.sources}),
            "max_gap_s": max((round(f.max_gap_s, 3) for f in flows), default=0.0),
            "flows": [f.report() for f in flows]}


def write_report(path: str, report: dict[str, Any]) -> None:
    """Write the report atomically (readers never see half of it)."""
    tmp = f"{path}.tmp"
    with open(tmp, "w") as out:
        json.dump(report, out)
    os.replace(tmp, path)


def hold(dsid: str, port: int, count: int, period: float, path: str) -> int:
    """Keep `count` flows sending until SIGTERM; report on SIGUSR1 and at the end."""
    flags = {"report": False, "stop": False}

    def on_signal(signum: int, frame: FrameType | None) -> None:
        flags["stop" if signum != signal.SIGUSR1 else "report"] = True

    for sig in (signal.SIGUSR1, signal.SIGTERM, signal.SIGINT):
        signal.signal(sig, on_signal)
    sel = selectors.DefaultSelector()
    flows = open_flows(count, sel)
    start, seq, ready = time.time(), 0, False
    due = [start + period * i / count for i in range(count)]  # spread over one period
    while not flags["stop"]:
        now = time.time()
        for i, flow in enumerate(flows):
            if now >= due[i]:
                send(flow, (dsid, port))
                due[i] += period
        drain(sel, max(0.0, min(due) - time.time()))
        if not ready and (all(f.instance for f in flows) or now - start > READY_WITHIN_S):
            ready = True
            print(f"ready {sum(f.instance is not None for f in flows)}", flush=True)
        if flags["report"]:
            flags["report"], seq = False, seq + 1
            write_report(path, report_of(flows, seq))
    final = report_of(flows, seq + 1)
    write_report(path, final)
    print(json.dumps({k: v for k, v in final.items() if k != "flows"}), flush=True)
    return 0


def once(dsid: str, port: int, count: int, first: int = 0) -> int:
    """`count` new flows, one answered datagram each (5 tries): print what answered."""
    sel = selectors.DefaultSelector()
    flows = open_flows(count, sel, first)
    for _ in range(5):
        for flow in flows:
            if flow.instance is None:
                send(flow, (dsid, port))
        end = time.time() + 0.3
        while time.time() < end and any(f.instance is None for f in flows):
            drain(sel, max(0.0, end - time.time()))
    served: dict[str, int] = {}
    sources: dict[str, int] = {}
    for f in flows:
        for name in f.instances:
            served[name] = served.get(name, 0) + 1
        for src in f.sources:
            sources[src] = sources.get(src, 0) + 1
    print(json.dumps({"served": served, "sources": sources,
                      "failed": sum(f.instance is None for f in flows)}), flush=True)
    return 0


def main(argv: list[str] | None = None) -> int:
    """Dispatch to serve, hold or once."""
    ap = argparse.ArgumentParser(prog="udpflows", description=__doc__.splitlines()[0])
    sub = ap.add_subparsers(dest="cmd", required=True)
    s = sub.add_parser("serve")
    s.add_argument("--bind", required=True)
    s.add_argument("--name", required=True)
    for p in (sub.add_parser("hold"), sub.add_parser("once")):
        p.add_argument("--dsid", required=True)
        p.add_argument("--count", type=int, default=30)
        if p.prog.endswith("hold"):
            p.add_argument("--period", type=float, default=0.15)
            p.add_argument("--report", required=True)
        else:  # a caller's own source ports: never one an earlier run's tracked flow used
            p.add_argument("--first-sport", type=int, default=0)
    for p in sub.choices.values():
        p.add_argument("--port", type=int, default=8000)
    args = ap.parse_args(argv)
    if args.cmd == "serve":
        return serve(args.bind, args.port, args.name)
    if args.cmd == "hold":
        return hold(args.dsid, args.port, args.count, args.period, args.report)
    return once(args.dsid, args.port, args.count, args.first_sport)


if __name__ == "__main__":
    sys.exit(main())
