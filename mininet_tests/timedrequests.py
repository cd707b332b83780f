"""Timed requests: one JSON line per request, with when it started and which instance served it.

Boundary: runs inside a Mininet client host, stdlib only. Three ways to send requests to the
demo service behind a D-SID, each on a fresh TCP connection:

    python timedrequests.py --dsid 10.0.100.1 --workers 8 --seconds 25   # closed loop
    python timedrequests.py --dsid 10.0.100.1 --burst 3 --rounds 10 --start-at EPOCH
    python timedrequests.py --dsid 10.0.100.1 --sports 40001,40002      # chosen source ports

Closed loop: each worker sends its next request as soon as the previous one ended. Bursts: at
`start-at + k * period` (wall clock, so that several clients fire in lock-step) `burst` requests
leave at once. Source ports: one request per port in turn, bound to that port (SO_REUSEADDR).
Each request prints `{"t": wall clock at start, "sport", "instance"}` or `{"t", "sport",
"error"}`; the last line is `{"done": count}`.
"""

from __future__ import annotations

import argparse
import json
import socket
import sys
import threading
import time
from typing import Any

PORT = 8000
LOCK = threading.Lock()


def request(dsid: str, timeout: float, sport: int = 0) -> dict[str, Any]:
    """One GET / on a new connection (from `sport` when non-zero): what the client saw."""
    started = time.time()
    row: dict[str, Any] = {"t": round(started, 3), "sport": sport}
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    try:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        sock.settimeout(timeout)
        if sport:
            sock.bind(("", sport))
        sock.connect((dsid, PORT))
        row["sport"] = sock.getsockname()[1]
        sock.sendall(f"GET / HTTP/1.1\r\nHost: {dsid}\r\nConnection: close\r\n\r\n".encode())
        data = b""
        while chunk := sock.recv(65536):
            data += chunk
        head, _, body = data.partition(b"\r\n\r\n")
        if not head.startswith(b"HTTP/1.1 200"):
            raise OSError(f"bad reply: {head[:60]!r}")
        row["instance"] = json.loads(body)["instance"]
    except (OSError, ValueError, KeyError) as exc:
        row["error"] = str(exc)
    finally:
        sock.close()
    row["ms"] = round((time.time() - started) * 1000.0, 1)
    return row


def emit(row: dict[str, Any]) -> None:
    """Print one line (threads share stdout)."""
    with LOCK:
        print(json.dumps(row), flush=True)


def closed_loop(dsid: str, workers: int, seconds: float, timeout: float) -> int:
    """`workers` threads, each sending requests back to back until `seconds` have passed."""
    deadline = time.monotonic() + seconds
    counts = [0] * workers

    def worker(i: int) -> None:
        while time.monotonic() < deadline:
            emit(request(dsid, timeout))
            counts[i] += 1

    threads = [threading.Thread(target=worker, args=(i,)) for i in range(workers)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    return sum(counts)


def bursts(dsid: str, burst: int, rounds: int, period: float, start_at: float,
           timeout: float) -> int:
    """`rounds` bursts of `burst` simultaneous requests, one every `period` from `start_at`."""
    threads: list[threading.Thread] = []
    for k in range(rounds):
        time.sleep(max(0.0, start_at + k * period - time.time()))
        for _ in range(burst):
            t = threading.Thread(target=lambda: emit(request(dsid, timeout)))
            t.start()
            threads.append(t)
    for t in threads:
        t.join()
    return len(threads)


def main(argv: list[str] | None = None) -> int:
    """Parse arguments, send, print."""
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--dsid", required=True)
    ap.add_argument("--timeout", type=float, default=10.0)
    ap.add_argument("--workers", type=int, default=0)
    ap.add_argument("--seconds", type=float, default=10.0)
    ap.add_argument("--burst", type=int, default=0)
    ap.add_argument("--rounds", type=int, default=10)
    ap.add_argument("--period", type=float, default=1.0)
    ap.add_argument("--start-at", type=float, default=0.0)
    ap.add_argument("--sports", default="")
    args = ap.parse_args(argv)
    print("ready", flush=True)
    if args.workers:
        done = closed_loop(args.dsid, args.workers, args.seconds, args.timeout)
    elif args.burst:
        done = bursts(args.dsid, args.burst, args.rounds, args.period,
                      args.start_at or time.time(), args.timeout)
    else:
        ports = [int(p) for p in args.sports.split(",") if p]
        for port in ports:
            emit(request(args.dsid, args.timeout, port))
        done = len(ports)
    emit({"done": done})
    return 0


if __name__ == "__main__":
    sys.exit(main())
