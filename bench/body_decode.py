"""How long the event loop is held while a 10,000-report batch (1 MB) is decoded on it: the
depth pre-check of controller/jsonbody.py the general way (a regular expression over the whole
body, main before branch i15g) against the short way round strings, rounds interleaved. A
green thread beats every 2 ms; the worst lateness of a beat is how long the decode held the
loop. CPU time is the figure to compare on a shared machine (wall time includes the scheduler).

    .venv/bin/python bench/body_decode.py [--rounds 5]
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from collections.abc import Callable
from pathlib import Path

import eventlet

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from controller import jsonbody
from controller.jsonbody import _NOT_BRACKET, _STRING, loads

BEAT_S = 0.002


def general(body: bytes, max_depth: int) -> bool:
    """The depth check as it was: strings removed by the expression, then every bracket."""
    level = 0
    for c in _STRING.sub(b"", body).translate(None, _NOT_BRACKET):
        level += 1 if c in b"[{" else -1
        if level > max_depth:
            return True
    return False


def batch(n: int) -> bytes:
    """A metrics batch of `n` reports, as a D-MA posts it."""
    return json.dumps({"reports": [{
        "dbid": f"10.2.{k // 250}.{k % 250}", "dsid": "10.1.0.1", "cpu": 0.1 + k % 7 / 10,
        "sessions": k % 10, "queue": 0, "capacity": 10} for k in range(n)]}).encode()


def once(body: bytes, check: Callable[[bytes, int], bool]) -> tuple[float, float, float]:
    """Decode `body` on the loop with `check` as the depth check: wall s, CPU s, worst beat
    lateness s."""
    jsonbody.too_deep = check
    worst, stop = [0.0], [False]

    def beat() -> None:
        last = time.monotonic()
        while not stop[0]:
            eventlet.sleep(BEAT_S)
            now = time.monotonic()
            worst[0] = max(worst[0], now - last - BEAT_S)
            last = now

    thread = eventlet.spawn(beat)
    eventlet.sleep(0.02)
    t, c = time.monotonic(), time.process_time()
    loads(body, 1 << 30, 64)
    took, cpu = time.monotonic() - t, time.process_time() - c
    eventlet.sleep(0.02)
    stop[0] = True
    thread.wait()
    return took, cpu, worst[0]


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--rounds", type=int, default=5)
    args = ap.parse_args()
    short = jsonbody.too_deep
    body = batch(10_000)
    assert short(body, 3) == general(body, 3) is False
    print(f"# bench/body_decode.py ({time.strftime('%Y-%m-%d %H:%M')} UTC): {len(body)} bytes, "
          f"10,000 reports; load average {' '.join(Path('/proc/loadavg').read_text().split()[:3])}")
    for r in range(args.rounds):
        for name, check in (("general", general), ("short", short)):
            took, cpu, worst = once(body, check)
            print(f"round {r} {name:7s} jsonbody.loads {took * 1000:5.1f} ms wall "
                  f"{cpu * 1000:5.1f} ms CPU; loop held up to {worst * 1000:5.1f} ms")
    return 0


if __name__ == "__main__":
    sys.exit(main())
