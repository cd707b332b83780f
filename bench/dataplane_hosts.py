"""The dataplane benchmark's host programs: a near-free instance server and the two clients.

Boundary: run inside Mininet hosts by bench/dataplane.py; standard library only, JSON on stdout.

    dataplane_hosts.py serve --bind 10.0.0.21 --name i1   # reply '<name>\\n' to 'G', close
    dataplane_hosts.py latency [--n 100] [--gap 0.005]    # connect()-to-first-byte times
    dataplane_hosts.py rate [--seconds 3] [--inflight 64] # new connections per second
"""

from __future__ import annotations

import argparse
import errno
import json
import selectors
import socket
import struct
import sys
import time
from collections import Counter
from typing import Any

DSID, PORT = "10.0.100.1", 8000
CLIENT = "10.0.0.1"  # c1 in Figure 2: the rate client binds its source ports here


def serve(bind: str, port: int, name: str) -> None:
    """Reply '<name>\\n' to a request and close; one epoll loop, so the service costs next to
    nothing beside the network."""
    sel = selectors.DefaultSelector()
    lsock = socket.socket()
    lsock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    lsock.bind((bind, port))
    lsock.listen(4096)
    lsock.setblocking(False)
    sel.register(lsock, selectors.EVENT_READ, None)
    reply = f"{name}\n".encode()
    print(f"serving {name} on {bind}:{port}", flush=True)
    while True:
        for key, _ in sel.select():
            if key.data is None:  # the listening socket: accept what is waiting
                for _ in range(256):
                    try:
                        conn, _ = lsock.accept()
                    except (BlockingIOError, InterruptedError):
                        break
                    conn.setblocking(False)
                    sel.register(conn, selectors.EVENT_READ, True)
                continue
            conn = key.fileobj
            sel.unregister(conn)
            try:
                if conn.recv(64):
                    conn.send(reply)
            except OSError:
                pass
            conn.close()


def _rst_socket() -> socket.socket:
    """A socket that closes with RST (no TIME-WAIT left behind)."""
    sock = socket.socket()
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
    return sock


def latency(n: int, gap: float) -> dict[str, Any]:
    """N sequential connections `gap` s apart: connect(), send 'G', time to the first byte of
    the reply; the times of those answered and the errors of the others by kind."""
    times: list[float] = []
    errors: Counter[str] = Counter()
    for _ in range(n):
        sock = _rst_socket()
        sock.settimeout(3)
        start = time.perf_counter()
        try:
            sock.connect((DSID, PORT))
            sock.sendall(b"G\n")
            if not sock.recv(64):
                raise OSError("empty reply")
            times.append(time.perf_counter() - start)
        except OSError as exc:
            errors[type(exc).__name__ + ":" + str(exc)[:40]] += 1
        finally:
            sock.close()
        time.sleep(gap)
    return {"times": times, "errors": dict(errors)}


def rate(seconds: float, inflight: int, first_port: int = 1024) -> dict[str, Any]:
    """Keep `inflight` connections open at once for `seconds` (each: connect, send 'G', read
    the reply, close with RST); count completed ones per serving instance. Source ports are
    bound explicitly from `first_port` up, so none is reused within a run."""
    sel = selectors.EpollSelector()
    ports = iter(range(first_port, 65536))
    done = errors = 0
    served: Counter[str] = Counter()
    started: dict[socket.socket, float] = {}

    def start_one() -> None:
        for p in ports:
            sock = _rst_socket()
            sock.setblocking(False)
            try:
                sock.bind((CLIENT, p))
            except OSError:
                sock.close()
                continue
            if sock.connect_ex((DSID, PORT)) not in (0, errno.EINPROGRESS):
                sock.close()
                continue
            started[sock] = time.perf_counter()
            sel.register(sock, selectors.EVENT_WRITE, "connecting")
            return

    def finish(sock: socket.socket) -> None:
        sel.unregister(sock)
        del started[sock]
        sock.close()
        if time.perf_counter() < stop:
            start_one()

    stop = time.perf_counter() + seconds
    for _ in range(inflight):
        start_one()
    while started:
        for key, _ in sel.select(0.2):
            sock = key.fileobj
            if key.data == "connecting":
                try:
                    if sock.getsockopt(socket.SOL_SOCKET, socket.SO_ERROR) != 0:
                        raise OSError("connect failed")
                    sock.send(b"G\n")
                    sel.modify(sock, selectors.EVENT_READ, "reading")
                    continue
                except OSError:
                    errors += 1
            else:
                try:
                    data = sock.recv(64)
                except OSError:
                    data = b""
                if data:
                    done += 1
                    served[data.decode().strip()] += 1
                else:
                    errors += 1
            finish(sock)
        now = time.perf_counter()
        for sock in [s for s, began in started.items() if now - began > 3]:
            errors += 1  # give up on connections older than 3 s
            finish(sock)
    return {"done": done, "errors": errors, "rate": done / seconds, "served": dict(served)}


def main(argv: list[str] | None = None) -> int:
    """Run one host program."""
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    sub = ap.add_subparsers(dest="cmd", required=True)
    srv = sub.add_parser("serve")
    srv.add_argument("--bind", required=True)
    srv.add_argument("--name", required=True)
    lat = sub.add_parser("latency")
    lat.add_argument("--n", type=int, default=100)
    lat.add_argument("--gap", type=float, default=0.005)
    rt = sub.add_parser("rate")
    rt.add_argument("--seconds", type=float, default=3.0)
    rt.add_argument("--inflight", type=int, default=64)
    args = ap.parse_args(argv)
    if args.cmd == "serve":
        serve(args.bind, PORT, args.name)
    elif args.cmd == "latency":
        print(json.dumps(latency(args.n, args.gap)))
    else:
        print(json.dumps(rate(args.seconds, args.inflight)))
    return 0


if __name__ == "__main__":
    sys.exit(main())
