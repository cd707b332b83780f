"""An open-loop Poisson load client for the steering benchmark (runs inside a Mininet host).

Boundary: HTTP to one D-SID, records to one JSON-lines file; no Dyncast logic. Requests arrive
as a Poisson process (seeded, so a run can be repeated), each on a fresh TCP connection, and
are timed from their *scheduled* arrival, so a client that falls behind cannot hide the delay
(no coordinated omission). A few keep-alive connections issue requests repeatedly and record
which instance served each one: on one connection the instance must never change.

    loadgen.py --url http://10.0.100.1:8000/ --rate 10 --duration 30 --out c1.jsonl
               [--step-at 15 --step-rate 30] [--keepalive 2 --ka-interval 0.5]
               [--start-at EPOCH] [--seed 1] [--timeout 5] [--ka-timeout 30]

Record fields: `t` (scheduled start, s after the start), `ms` (response time, None on error),
`inst` (instance name in the reply), `err`; keep-alive records also carry `conn` (its index),
`epoch` (counts reconnections after failures) and `seq` (request number).
"""

from __future__ import annotations

import argparse
import http.client
import json
import math
import random
import socket
import sys
import threading
import time
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from typing import Any
from urllib.parse import urlsplit

MAX_WORKERS = 256  # concurrent fresh-connection requests; past this, arrivals wait (and count)


def arrivals(rate: float, duration: float, seed: int, step_at: float | None = None,
             step_rate: float | None = None) -> Iterator[float]:
    """Poisson arrival times in [0, duration): `rate` per second, `step_rate` from `step_at`.

    Exponential gaps at the rate in force; a gap that would cross the step is cut there and the
    process restarts at the new rate (memorylessness makes that exact).
    """
    rng = random.Random(seed)
    t = 0.0
    while True:
        stepped = step_at is not None and t >= step_at
        current = step_rate if stepped and step_rate is not None else rate
        gap = rng.expovariate(current) if current > 0 else math.inf
        if step_at is not None and not stepped and t + gap >= step_at:
            t = step_at
            continue
        t += gap
        if t >= duration:
            return
        yield t


def fresh_request(host: str, port: int, path: str, timeout: float) -> str:
    """One GET on a new connection; the serving instance's name. Raises OSError/ValueError."""
    with socket.create_connection((host, port), timeout=timeout) as sock:
        sock.sendall(f"GET {path} HTTP/1.1\r\nHost: {host}\r\nConnection: close\r\n\r\n"
                     .encode())
        data = b""
        while chunk := sock.recv(65536):
            data += chunk
    head, _, body = data.partition(b"\r\n\r\n")
    if not head.startswith(b"HTTP/1.1 200"):
        raise ValueError(f"bad reply: {head[:40]!r}")
    return str(json.loads(body)["instance"])


class Recorder:
    """Collects records from many threads."""

    def __init__(self) -> None:
        self.records: list[dict[str, Any]] = []
        self._lock = threading.Lock()

    def add(self, record: dict[str, Any]) -> None:
        """Keep one record."""
        with self._lock:
            self.records.append(record)


def poisson_load(url: str, times: list[float], start: float, timeout: float,
                 rec: Recorder) -> None:
    """Issue one fresh-connection request at each time (seconds after `start`)."""
    parts = urlsplit(url)
    host, port, path = parts.hostname or "", parts.port or 80, parts.path or "/"

    def one(t: float) -> None:
        try:
            inst, err = fresh_request(host, port, path, timeout), None
        except (OSError, ValueError, KeyError) as exc:
            inst, err = None, type(exc).__name__ + ": " + str(exc)[:80]
        done = time.time() - start
        took = round((done - t) * 1000.0, 3)
        rec.add({"t": round(t, 4), "ms": None if err else took, "inst": inst, "err": err,
                 **({"err_ms": took} if err else {})})  # how long a failed one took

    with ThreadPoolExecutor(max_workers=MAX_WORKERS) as pool:
        for t in times:
            delay = start + t - time.time()
            if delay > 0:
                time.sleep(delay)
            pool.submit(one, t)


def keepalive_phase(seed: int, conn_id: int, interval: float) -> float:
    """When, within its first interval, a persistent connection sends its first request: drawn
    per connection (seeded), so that the connections of all the load generators, started
    together, do not send in step (a synchronised burst every interval is not a real load)."""
    return random.Random(f"{seed}-keepalive-{conn_id}").uniform(0.0, interval)


def keepalive(url: str, conn_id: int, start: float, duration: float, interval: float,
              timeout: float, rec: Recorder, phase: float = 0.0) -> None:
    """Requests every `interval` s on one persistent connection, the first `phase` s after
    `start`; reconnect after a failure."""
    parts = urlsplit(url)
    host, port, path = parts.hostname or "", parts.port or 80, parts.path or "/"
    conn: http.client.HTTPConnection | None = None
    seq = epoch = 0
    t = phase
    while t < duration:
        delay = start + t - time.time()
        if delay > 0:
            time.sleep(delay)
        if conn is None:
            conn = http.client.HTTPConnection(host, port, timeout=timeout)
        began = time.time()
        try:
            conn.request("GET", path)
            reply = conn.getresponse()
            body = reply.read()
            inst, err = str(json.loads(body)["instance"]), None
        except (OSError, ValueError, KeyError, http.client.HTTPException) as exc:
            inst, err = None, type(exc).__name__ + ": " + str(exc)[:80]
            conn.close()
            conn = None  # the next request opens a new connection: a new flow
        took = round((time.time() - began) * 1000.0, 3)
        rec.add({"t": round(began - start, 4), "conn": conn_id, "epoch": epoch, "seq": seq,
                 "inst": inst, "ms": None if err else took, "err": err,
                 **({"err_ms": took} if err else {})})
        seq += 1
        epoch += conn is None
        t = max(t + interval, time.time() - start)
    if conn is not None:
        conn.close()


def main(argv: list[str] | None = None) -> int:
    """Run the load, write the records, print a one-line summary."""
    ap = argparse.ArgumentParser(prog="loadgen", description=__doc__.splitlines()[0])
    ap.add_argument("--url", required=True)
    ap.add_argument("--rate", type=float, required=True, help="requests per second")
    ap.add_argument("--duration", type=float, required=True, help="seconds")
    ap.add_argument("--step-at", type=float, default=None, help="seconds after the start")
    ap.add_argument("--step-rate", type=float, default=None, help="rate from --step-at on")
    ap.add_argument("--keepalive", type=int, default=0, help="persistent connections")
    ap.add_argument("--ka-interval", type=float, default=0.5)
    ap.add_argument("--start-at", type=float, default=None, help="wall-clock start (epoch s)")
    ap.add_argument("--seed", type=int, default=1)
    ap.add_argument("--timeout", type=float, default=5.0, help="per fresh-connection request")
    ap.add_argument("--ka-timeout", type=float, default=30.0, help="per keep-alive request")
    ap.add_argument("--out", required=True, help="JSON-lines file for the records")
    args = ap.parse_args(argv)
    if args.rate < 0 or args.duration <= 0 or args.keepalive < 0:
        ap.error("--rate must be >= 0, --duration > 0, --keepalive >= 0")
    times = list(arrivals(args.rate, args.duration, args.seed, args.step_at, args.step_rate))
    start = args.start_at if args.start_at is not None else time.time() + 0.2
    rec = Recorder()
    threads = [threading.Thread(target=keepalive, args=(
                   args.url, k, start, args.duration, args.ka_interval, args.ka_timeout, rec,
                   keepalive_phase(args.seed, k, args.ka_interval)))
               for k in range(args.keepalive)]
    for th in threads:
        th.start()
    poisson_load(args.url, times, start, args.timeout, rec)
    for th in threads:
        th.join()
    with open(args.out, "w", encoding="utf-8") as out:
        for record in sorted(rec.records, key=lambda r: r["t"]):
            out.write(json.dumps(record) + "\n")
    errors = sum(1 for r in rec.records if r["err"])
    print(json.dumps({"done": len(rec.records), "errors": errors}), flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
