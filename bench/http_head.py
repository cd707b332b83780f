"""What reading one request's header fields costs the REST server: the stdlib's
`http.client.parse_headers` (the `email` feed parser, what eventlet's server used) against
apps/httphead.py, in one process, rounds interleaved.

    .venv/bin/python bench/http_head.py            # 5 rounds of 20,000 heads each way
    .venv/bin/python bench/http_head.py --quick    # 2 rounds of 2,000 (the smoke test)

Each head is what a signed single-report POST from `dyncast-dma` carries (8 fields), read from
a buffer; each way then answers the `get`s eventlet's server makes per request (Content-Length,
Transfer-Encoding, Content-Type, Connection twice, Expect) and lists the fields as its
`get_environ` does. Process CPU time (`time.process_time`), so other load on the machine
changes the figures less than it would wall time.
"""

from __future__ import annotations

import argparse
import http.client
import io
import statistics
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from apps.httphead import read_fields  # noqa: E402

HEAD = (b"Host: 127.0.0.1:8080\r\nAccept-Encoding: identity\r\nContent-Length: 86\r\n"
        b"Content-Type: application/json\r\nX-Dyncast-Agent: dma-1\r\nX-Dyncast-Seq: 12345\r\n"
        b"X-Dyncast-Timestamp: 1733333333.123\r\nX-Dyncast-Signature: " + b"a" * 64 +
        b"\r\n\r\n")
GETS = ("content-length", "transfer-encoding", "content-type", "Connection", "Connection",
        "Expect")


def stdlib(n: int) -> float:
    """CPU us per head through `http.client.parse_headers`."""
    t = time.process_time()
    for _ in range(n):
        fields = http.client.parse_headers(io.BytesIO(HEAD))
        for name in GETS:
            fields.get(name)
        list(fields.items())
    return (time.process_time() - t) / n * 1e6


def ours(n: int) -> float:
    """CPU us per head through `apps.httphead.read_fields`."""
    t = time.process_time()
    for _ in range(n):
        fields = read_fields(io.BytesIO(HEAD).readline)
        for name in GETS:
            fields.get(name)
        list(fields.fields)
    return (time.process_time() - t) / n * 1e6


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="2 rounds of 2,000 heads")
    args = parser.parse_args()
    rounds, n = (2, 2000) if args.quick else (5, 20000)
    stdlib(n // 10), ours(n // 10)  # warm up
    theirs, mine = [], []
    for _ in range(rounds):
        theirs.append(stdlib(n))
        mine.append(ours(n))
    ratios = [m / t for m, t in zip(mine, theirs, strict=True)]
    print(f"one signed single-report POST's header fields, {rounds} rounds of {n}, CPU us per head")
    print(f"  stdlib (email parser): median {statistics.median(theirs):6.1f} "
          f"(range {min(theirs):.1f}-{max(theirs):.1f})")
    print(f"  apps/httphead.py:      median {statistics.median(mine):6.1f} "
          f"(range {min(mine):.1f}-{max(mine):.1f})")
    print(f"  ours/stdlib per round: {', '.join(f'{r:.2f}' for r in ratios)}")
    if not all(x > 0 for x in theirs + mine):
        sys.exit("a figure is missing")


if __name__ == "__main__":
    main()
