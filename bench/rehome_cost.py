"""What moving a lost instance's `learn` flows costs the event loop (relearn.rehomed, REHOME_MAX).

No sockets and no switch: a `learn` service (TCP, 5-tuple key) whose lost instance held `N`
flows at one switch's latest read. Timed, as CPU time (`time.process_time`), median of
`--repeats`: `rehomed` (the forward and reply entries of each flow), `told` (its client's two
nudges, no client located: the key only) and `serialise` (the flow-mods as the app encodes
them for one switch's write, `apps/ofmsg.serialise`, with Ryu's protocol classes for what the
fast encoder does not pack). Prints one line per N.

    .venv/bin/python bench/rehome_cost.py                 # N = 1,000 and 10,000
    .venv/bin/python bench/rehome_cost.py --flows 100 --repeats 3
"""

from __future__ import annotations

import argparse
import importlib
import statistics
import sys
import time
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from apps.ofmsg import serialise  # noqa: E402
from controller.dataplane.relearn import Learned, rehomed, told  # noqa: E402
from controller.model import AffinityPolicy, Service  # noqa: E402

SVC = Service("web", "10.0.100.1", "tcp", 8000, AffinityPolicy("5-tuple", 30, 0),
              dataplane="learn", buckets=64)
LOST, NEW = 16, 17  # the labels


class Datapath:
    """What `serialise` needs of a datapath: Ryu's protocol modules and a transaction id."""

    def __init__(self) -> None:
        self.ofproto = importlib.import_module("ryu.ofproto.ofproto_v1_3")
        self.ofproto_parser = importlib.import_module("ryu.ofproto.ofproto_v1_3_parser")
        self.id, self.xid = 1, 0

    def send(self, buf: bytes) -> bool:
        return True


def read_of(n: int) -> list[Learned]:
    """`n` flows from distinct clients and ports, all learned to the lost instance."""
    return [Learned(1, "learned", LOST, {
        "eth_type": 0x800, "ip_proto": 6, "ipv4_src": f"10.{1 + i // 62500}.{i // 250 % 250}."
        f"{i % 250 + 1}", "ipv4_dst": SVC.dsid, "tcp_src": 1024 + i % 60000, "tcp_dst": 8000},
        3, 1.0) for i in range(n)]


def once(n: int) -> dict[str, float]:
    """One move of `n` flows: each part's CPU seconds."""
    read = read_of(n)
    bucket_map: list[str | None] = ["10.0.0.31"] * SVC.buckets
    t0 = time.process_time()
    entries, _, moved = rehomed(1, read, SVC, LOST, bucket_map, lambda _d: NEW, limit=n)
    t1 = time.process_time()
    told(SVC, moved, {})
    t2 = time.process_time()
    serialise(Datapath(), list(entries))
    t3 = time.process_time()
    assert len(moved) == n and len(entries) == 2 * n, (len(moved), len(entries))
    return {"rehomed": t1 - t0, "told": t2 - t1, "serialise": t3 - t2}


def main(argv: list[str] | None = None) -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--flows", type=int, nargs="+", default=[1000, 10000])
    p.add_argument("--repeats", type=int, default=5)
    args = p.parse_args(argv)
    for n in args.flows:
        runs = [once(n) for _ in range(args.repeats)]
        med: dict[str, Any] = {k: statistics.median(r[k] for r in runs) for k in runs[0]}
        total = sum(med.values())
        print(f"N={n}: " + ", ".join(f"{k} {v * 1e3:.1f} ms" for k, v in med.items())
              + f"; total {total * 1e3:.1f} ms, {total / n * 1e6:.1f} us a flow "
              f"(median of {args.repeats}, CPU time)")


if __name__ == "__main__":
    main()
