"""`dyncast-client`: a client of the demo service that reports which instance served it.

Boundary: runs inside a client host; speaks HTTP to a D-SID and prints one JSON summary on
stdout. Used by the demo, the Mininet tests and the benchmarks, so that every one of them
judges by what a client actually observed: the instance named in each reply and the address
the TCP connection was really talking to.

    dyncast-client --url http://10.0.100.1:8000/ --requests 20 [--concurrency 4]
    dyncast-client --url http://10.0.100.1:8000/ --hold 30   # one long-lived connection
"""

from __future__ import annotations

import argparse
import json
import socket
import statistics
import sys
import threading
import time
from collections import Counter
from typing import Any
from urllib.parse import urlsplit


def _request(host: str, port: int, path: str,
             timeout: float) -> tuple[str, str, float, int]:
    """One request on a fresh connection: (instance, peer address, latency in ms, the
    connection's own source port)."""
    start = time.monotonic()
    with socket.create_connection((host, port), timeout=timeout) as sock:
        peer, source = sock.getpeername()[0], sock.getsockname()[1]
        sock.sendall(f"GET {path} HTTP/1.1\r\nHost: {host}\r\nConnection: close\r\n\r\n".encode())
        data = b""
        while chunk := sock.recv(65536):
            data += chunk
    latency = (time.monotonic() - start) * 1000.0
    head, _, body = data.partition(b"\r\n\r\n")
    if not head.startswith(b"HTTP/1.1 200"):
        raise OSError(f"bad reply: {head[:60]!r}")
    return str(json.loads(body)["instance"]), peer, latency, source


def run_requests(url: str, count: int, concurrency: int, timeout: float) -> dict[str, Any]:
    """Make `count` requests, each on a new connection, `concurrency` at a time."""
    parts = urlsplit(url)
    host, port, path = parts.hostname or "", parts.port or 80, parts.path or "/"
    served: Counter[str] = Counter()
    peers: Counter[str] = Counter()
    latencies: list[float] = []
    sources: set[int] = set()
    errors: list[str] = []
    lock = threading.Lock()
    todo = iter(range(count))

    def worker() -> None:
        for _ in todo:
            try:
                instance, peer, ms, source = _request(host, port, path, timeout)
            except (OSError, ValueError, KeyError) as exc:
                with lock:
                    errors.append(str(exc))
                continue
            with lock:
                served[instance] += 1
                peers[peer] += 1
                latencies.append(ms)
                sources.add(source)

    threads = [threading.Thread(target=worker) for _ in range(max(1, concurrency))]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    # source_ports: the kernel may give a later connection the port of one that has closed,
    # so a run's connections can share 5-tuples (and a switch's entries for them)
    return {"served": dict(served), "peers": dict(peers), "source_ports": len(sources),
            "errors": len(errors),
            "first_error": errors[0] if errors else None, "latency_ms": _summary(latencies)}


def _summary(values: list[float]) -> dict[str, float] | None:
    """Mean and percentiles of latencies."""
    if not values:
        return None
    ordered = sorted(values)
    pick = lambda q: ordered[min(len(ordered) - 1, int(q * len(ordered)))]  # noqa: E731
    return {"mean": round(statistics.fmean(ordered), 3), "p50": round(pick(0.5), 3),
            "p95": round(pick(0.95), 3), "p99": round(pick(0.99), 3)}


def hold(url: str, seconds: float, timeout: float) -> dict[str, Any]:
    """Keep one connection open on /hold, printing each streamed line's instance as it comes."""
    parts = urlsplit(url)
    host, port = parts.hostname or "", parts.port or 80
    seen: Counter[str] = Counter()
    with socket.create_connection((host, port), timeout=timeout) as sock:
        peer = sock.getpeername()[0]
        sock.sendall(f"GET /hold?seconds={seconds} HTTP/1.1\r\nHost: {host}\r\n"
                     "Connection: close\r\n\r\n".encode())
        buf = b""
        while chunk := sock.recv(65536):
            buf += chunk
            while b"\n" in buf:
                line, buf = buf.split(b"\n", 1)
                line = line.strip()
                if line.startswith(b"{"):
                    instance = json.loads(line)["instance"]
                    seen[instance] += 1
                    print(json.dumps({"line": instance}), flush=True)
    return {"served": dict(seen), "peers": {peer: 1}}


def main(argv: list[str] | None = None) -> int:
    """Parse arguments, run, print the JSON summary."""
    ap = argparse.ArgumentParser(prog="dyncast-client", description=__doc__.splitlines()[0])
    ap.add_argument("--url", required=True, help="e.g. http://10.0.100.1:8000/")
    ap.add_argument("--requests", type=int, default=10, help="requests, one connection each")
    ap.add_argument("--concurrency", type=int, default=1)
    ap.add_argument("--hold", type=float, default=None, metavar="SECONDS",
                    help="instead: keep one connection open this long")
    ap.add_argument("--timeout", type=float, default=10.0)
    args = ap.parse_args(argv)
    if args.requests < 0 or args.concurrency < 1:
        ap.error("--requests must be >= 0 and --concurrency >= 1")
    try:
        if args.hold is not None:
            result = hold(args.url, args.hold, args.timeout)
        else:
            result = run_requests(args.url, args.requests, args.concurrency, args.timeout)
    except (OSError, ValueError) as exc:
        print(json.dumps({"error": str(exc)}), flush=True)
        return 1
    print(json.dumps({"summary": result}), flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
