"""Memory under churn with the collector's freezing (apps/gcpause.py): does RSS level off?

A real controller (started as bench/control_plane.py starts it, with its ring of four emulated
switches and `--instances` instances set up) is kept busy for `--minutes`:
- every second, 5 instances registered on new D-BIDs and the 5 oldest of those withdrawn
  (about 50 come and go at any time); their reports too;
- reports: batches of 50 instances, `--rate` reports/s, loads varying (decisions replaced);
- new client flows of the first service from every switch (`--flows` per switch per second):
  each a PACKET_IN, a binding and its flows, which expire 30 s idle (the switch's table);
- GET /decisions every 5 s.
Every minute: the controller's RSS, its CPU seconds, its longest collection
(/metrics), and the scheduled full walks logged so far with the objects frozen after each.

    .venv/bin/python bench/gc_soak.py --minutes 35 --label on
    DYNCAST_GC_FREEZE_YOUNG=0 .venv/bin/python bench/gc_soak.py --minutes 35 --label off
    .venv/bin/python bench/gc_soak.py --walk-s 86400 --label never   # no walk in the run
"""

from __future__ import annotations

import argparse
import json
import os
import re
import sys
import tempfile
import time
import urllib.request
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from bench import control_plane  # noqa: E402
from bench.cbench import loadavg, proc_cpu  # noqa: E402
from bench.control_plane_net import report_body  # noqa: E402

WALK = re.compile(r"scheduled full garbage collection took ([\d.]+) ms, (\d+) collected, "
                  r"(\d+) objects frozen again")
LONGEST = re.compile(r"^dyncast_gc_longest_pause_seconds (\S+)$", re.M)


def with_walk(walk_s: float | None) -> None:
    """Write `gc_full_walk_s` into the bench's controller configuration (None: the default)."""
    if walk_s is None:
        return
    plain = control_plane.config

    def config(tmp: Path, layout: Any) -> Path:
        path = plain(tmp, layout)
        path.write_text(path.read_text().replace(
            "stale_after_s = 3600\n", f"stale_after_s = 3600\ngc_full_walk_s = {walk_s:g}\n"))
        return path

    control_plane.config = config  # type: ignore[assignment]


def churn_dbid(j: int) -> str:
    return f"10.3.{(j >> 8) & 255}.{j & 255}"


def sample(run: control_plane.Running, cpu: Any, t0: float) -> dict[str, Any]:
    """One minute's figures."""
    with urllib.request.urlopen(f"http://127.0.0.1:{run.ws_port}/metrics", timeout=30) as r:
        metrics = r.read().decode()
    longest = LONGEST.search(metrics)
    walks = WALK.findall(run.log.read_text(errors="replace"))
    return {"min": round((time.monotonic() - t0) / 60.0, 1),
            "rss_mb": round(control_plane.rss_mb(run.proc.pid), 1),
            "cpu_s": round(cpu(), 1),
            "gc_longest_ms": round(float(longest.group(1)) * 1000.0, 1) if longest else None,
            "walks": len(walks),
            "last_walk": ({"ms": float(walks[-1][0]), "collected": int(walks[-1][1]),
                           "frozen": int(walks[-1][2])} if walks else None)}


def soak(args: argparse.Namespace, tmp: Path) -> list[dict[str, Any]]:
    """Run the churn for `args.minutes`; the per-minute samples."""
    samples: list[dict[str, Any]] = []
    with control_plane.running(args.instances, args, tmp, None) as run:
        cpu = proc_cpu(run.proc.pid)
        layout, http, ring = run.layout, run.http, run.ring
        base = [layout.instance(i)[0] for i in range(args.instances)]
        live: list[str] = []
        j = rnd = 0
        t0 = time.monotonic()
        next_sample = t0
        end = t0 + args.minutes * 60.0
        tick = t0
        while (now := time.monotonic()) < end:
            if now >= next_sample:
                next_sample += 60.0
                samples.append(sample(run, cpu, t0))
                print(json.dumps(samples[-1]), flush=True)
            for _ in range(5):  # instances come and go
                dbid = churn_dbid(j)
                j += 1
                status, body, _ = http.call("POST", "instances", control_plane.json_body(
                    {"dsid": layout.service(j % layout.services)[1], "dbid": dbid,
                     "dma": "soak"}))
                assert status == 201, (status, body)
                live.append(dbid)
                if len(live) > 50:
                    status, body, _ = http.call("DELETE", f"instances/{live.pop(0)}")
                    assert status == 200, (status, body)
            status, body, _ = http.call("POST", "metrics", report_body(live[-5:], rnd))
            per_tick = max(1, int(args.rate // 50))
            for k in range(per_tick):  # reports
                start = (rnd * per_tick + k) * 50 % len(base)
                status, body, _ = http.call("POST", "metrics",
                                            report_body(base[start:start + 50], rnd))
                assert status == 200, (status, body)
            flows_now = time.monotonic()
            ring.do(lambda at=flows_now: [sw.new_requests(args.flows, at)
                                          for sw in ring.switches])
            if rnd % 5 == 0:
                http.call("GET", "decisions", decode=False)
            rnd += 1
            tick += 1.0
            time.sleep(max(0.0, tick - time.monotonic()))
        samples.append(sample(run, cpu, t0))
        print(json.dumps(samples[-1]), flush=True)
    return samples


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--minutes", type=float, default=35.0)
    ap.add_argument("--instances", type=int, default=1000)
    ap.add_argument("--rate", type=float, default=200.0, help="reports/s (batches of 50)")
    ap.add_argument("--flows", type=int, default=2, help="new flows per switch per second")
    ap.add_argument("--walk-s", type=float, default=None, help="gc_full_walk_s (default: "
                    "the controller's)")
    ap.add_argument("--label", default="run")
    ap.add_argument("--framework", choices=("ryu", "os-ken"), default="ryu")
    ap.add_argument("--output", type=Path, default=None, help="JSON lines written here")
    ap.add_argument("--log-dir", type=Path, default=None, help="keep the controller's log here")
    args = ap.parse_args()
    with_walk(args.walk_s)
    load_before = loadavg()
    env = {k: v for k, v in os.environ.items() if k.startswith("DYNCAST_GC")}
    if args.log_dir is not None:
        args.log_dir.mkdir(parents=True, exist_ok=True)
        samples = soak(args, args.log_dir)
    else:
        with tempfile.TemporaryDirectory(prefix="gc-soak-") as tmp:
            samples = soak(args, Path(tmp))
    head = {"label": args.label, "env": env, "walk_s": args.walk_s, "instances": args.instances,
            "rate": args.rate, "flows_per_switch_s": args.flows, "minutes": args.minutes,
            "load_before": load_before, "load_after": loadavg(),
            "date": time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime())}
    text = json.dumps(head) + "\n" + "".join(json.dumps(s) + "\n" for s in samples)
    if args.output is not None:
        args.output.write_text(text)
    print(text, end="")
    return 0


if __name__ == "__main__":
    sys.exit(main())
