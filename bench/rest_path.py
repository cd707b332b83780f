"""What one REST request costs between the web server and the app's `api_call`: the gate in
front of the framework's WSGI context, the long way (webob, Routes, a controller per request)
against the short way (apps/fastpath.py), in one process, rounds interleaved.

    .venv/bin/python bench/rest_path.py            # 5 rounds of 20,000 requests each way
    .venv/bin/python bench/rest_path.py --quick    # 2 rounds of 2,000 (the smoke test)

The app behind it answers at once (tests/test_fastpath.py's scripted app), so the figure is the
web layer alone: the server's own parsing, accept and socket work are not in it (they are the
same both ways), nor is the core's intake. Auth is off, as in bench/control_plane.py.
"""

from __future__ import annotations

import argparse
import io
import logging
import statistics
import sys
import time
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from apps.security import Gate  # noqa: E402
from tests.test_fastpath import framework_context, gates  # noqa: E402

BODY = b'{"dbid": "i1", "cpu": 0.5, "sessions": 3, "queue": 0, "capacity": 8, "active": true}'


def per_request_us(gate: Gate, n: int) -> float:
    """Mean microseconds for one single-report POST /metrics through `gate`."""
    def start_response(*_: Any) -> None:
        return None

    t = time.perf_counter()
    for _ in range(n):
        environ = {"REQUEST_METHOD": "POST", "PATH_INFO": "/dyncast/v1/metrics",
                   "SCRIPT_NAME": "", "QUERY_STRING": "", "SERVER_NAME": "127.0.0.1",
                   "SERVER_PORT": "8080", "SERVER_PROTOCOL": "HTTP/1.1",
                   "wsgi.url_scheme": "http", "wsgi.input": io.BytesIO(BODY),
                   "CONTENT_LENGTH": str(len(BODY)), "CONTENT_TYPE": "application/json"}
        b"".join(gate(environ, start_response))
    return (time.perf_counter() - t) / n * 1e6


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="2 rounds of 2,000 requests")
    args = parser.parse_args()
    rounds, n = (2, 2000) if args.quick else (5, 20000)
    logging.disable(logging.WARNING)  # the gate warns that auth is off at every install

    long_gate = gates(framework_context, fast=False)[0]
    short_gate = gates(framework_context, fast=True)[0]
    per_request_us(long_gate, n // 10), per_request_us(short_gate, n // 10)  # warm up
    longs, shorts = [], []
    for _ in range(rounds):
        longs.append(per_request_us(long_gate, n))
        shorts.append(per_request_us(short_gate, n))
    ratios = [s / lg for s, lg in zip(shorts, longs, strict=True)]
    print(f"POST /dyncast/v1/metrics through the gate, {rounds} rounds of {n}, us per request")
    print(f"  long way (framework):  median {statistics.median(longs):6.1f} "
          f"(range {min(longs):.1f}-{max(longs):.1f})")
    print(f"  short way (fastpath):  median {statistics.median(shorts):6.1f} "
          f"(range {min(shorts):.1f}-{max(shorts):.1f})")
    print(f"  short/long per round:  {', '.join(f'{r:.2f}' for r in ratios)}")
    if not all(x > 0 for x in longs + shorts):
        sys.exit("a figure is missing")


if __name__ == "__main__":
    main()
