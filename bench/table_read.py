"""The periodic read of one switch's table at 5,000 instances, in-process: what the event loop
pays for it, step by step.

The controller's core learns 5,000 instance hosts on 4 switches in a ring (services of 100, as
bench/control_plane.py lays them out); switch 1's flow table (bench/emutable.py) is fed every
flow-mod the core sent it, then read back as a switch answers (replies under 64 KB). Timed
(CPU, garbage collection off, median of `--rounds`): the framework's parse of those replies
with `entry_of` on every entry, against apps/flowstats.py's; and the core's audit of what was
read, with its caches emptied first (every host route and signature made again, as each audit
did before them) and as every later audit runs, and the most CPU one of its steps takes (the
shell lets the event loop run between two). It asserts the audit finds nothing to repair.

    .venv/bin/python bench/table_read.py    # writes bench/results/table_read.txt (~1 min)
"""

from __future__ import annotations

import argparse
import gc
import importlib
import statistics
import struct
import sys
import time
from pathlib import Path
from types import SimpleNamespace
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from apps import flowstats  # noqa: E402
from apps.flowread import entry_of  # noqa: E402
from apps.ofmsg import Unsupported, encode, to_message  # noqa: E402
from bench.cbench import loadavg, machine  # noqa: E402
from bench.emutable import OFPMP_FLOW, FlowTable  # noqa: E402
from controller.config import ControllerConfig  # noqa: E402
from controller.core import Core  # noqa: E402
from controller.dataplane import audit as audit_module  # noqa: E402
from controller.dataplane.audit import joined  # noqa: E402
from controller.intents import COOKIE_APP, COOKIE_MASK_APP, FlowMod, Intent  # noqa: E402
from controller.model import AffinityPolicy, Service  # noqa: E402
from controller.network.packet import ARP_REQUEST, BROADCAST, build_arp  # noqa: E402

RESULTS = ROOT / "bench" / "results" / "table_read.txt"
SWITCHES = 4


def build(n: int, dp: Any) -> tuple[Core, FlowTable]:
    """A core with `n` instances located and registered; switch 1's table as it was sent."""
    svcs = tuple(Service(f"svc{k}", f"10.0.{100 + k // 250}.{k % 250 + 1}", "tcp", 8000,
                         AffinityPolicy("5-tuple", 30, 0)) for k in range(-(-n // 100)))
    core = Core(ControllerConfig(services=svcs, stale_after_s=1e9))
    table = FlowTable()

    def send(intents: list[Intent]) -> None:
        for fm in intents:
            if isinstance(fm, FlowMod) and fm.dpid == 1:
                try:
                    raw = encode(fm, 1)
                except Unsupported:
                    msg = to_message(dp, fm)
                    msg.set_xid(1)
                    msg.serialize()
                    raw = bytes(msg.buf)
                table.flow_mod(raw, 0.0)

    for d in range(1, SWITCHES + 1):
        send(core.switch_connected(d))
        send(core.switch_ports(d, {1, 2, 3}, 0.0))
    for d in range(1, SWITCHES + 1):
        nxt = d % SWITCHES + 1
        core.topology.link_seen((d, 3), (nxt, 2), 0.0)
        core.topology.link_seen((nxt, 2), (d, 3), 0.0)
    send(core.tick(0.0))
    for i in range(n):
        dbid, mac = f"10.2.{i >> 8}.{i & 255}", f"02:02:00:00:{i >> 8:02x}:{i & 255:02x}"
        arp = build_arp(ARP_REQUEST, mac, dbid, BROADCAST, "10.9.9.9")
        send(core.packet_in(i % SWITCHES + 1, 1, arp, 0.0))
    for i in range(n):
        send(core.register(svcs[i // 100].dsid, f"10.2.{i >> 8}.{i & 255}", "bench", True,
                           0.0)[1])
    send(core.tick(1.0))
    return core, table


def read_request() -> bytes:
    """OFPMP_FLOW for every entry with our cookie (apps/flowread.read_request's)."""
    body = struct.pack("!HH4xB3xII4xQQ", OFPMP_FLOW, 0, 0xFF, 0xFFFFFFFF, 0xFFFFFFFF,
                       COOKIE_APP << 56, COOKIE_MASK_APP) + struct.pack("!HH4x", 1, 4)
    return struct.pack("!BBHI", 4, 18, 8 + len(body), 7) + body


def cpu_ms(action: Any, rounds: int) -> list[float]:
    """CPU ms of each of `rounds` runs of `action` (garbage collection off meanwhile)."""
    out = []
    for _ in range(rounds):
        gc.collect()
        gc.disable()
        t = time.process_time()
        action()
        out.append((time.process_time() - t) * 1000.0)
        gc.enable()
    return out


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--instances", type=int, default=5000)
    ap.add_argument("--rounds", type=int, default=7)
    ap.add_argument("--framework", choices=("ryu", "os_ken"), default="ryu")
    ap.add_argument("--output", type=Path, default=RESULTS)
    args = ap.parse_args()
    parser_mod = importlib.import_module(f"{args.framework}.ofproto.ofproto_v1_3_parser")
    ofproto = importlib.import_module(f"{args.framework}.ofproto.ofproto_v1_3")
    dp = SimpleNamespace(ofproto=ofproto, ofproto_parser=parser_mod, id=1)
    load0 = loadavg()
    core, table = build(args.instances, dp)
    replies = table.flow_stats(read_request(), 5.0)
    current = parser_mod._MSG_PARSERS[flowstats.OFPT_MULTIPART_REPLY]
    own = getattr(current, "framework", current)
    fast = flowstats._fast(parser_mod.OFPFlowStatsReply, own)

    def parse_all(parser: Any) -> list[Any]:
        out = []
        for raw in replies:
            length, xid = struct.unpack_from("!HI", raw, 2)
            msg = parser(dp, 4, raw[1], length, xid, bytearray(raw))
            out += [entry_of(s, ofproto) for s in msg.body]
        return out

    slow_entries, fast_entries = parse_all(own), parse_all(fast)
    if slow_entries != fast_entries:
        print("the fast path read other entries than the framework", file=sys.stderr)
        return 1
    entries = fast_entries

    def audit() -> None:
        if joined(core.switch_table_steps(1, entries, [], 5.0, 5.0)):
            raise SystemExit("the audit found something to repair in a table it sent")

    def cold() -> None:
        core.forwarding._audited.clear()  # the caches this bench measures
        getattr(core.audit, "_signatures", {}).clear()
        audit()

    def steps_ms() -> list[float]:
        """CPU ms of each step of one audit (Core.switch_table_steps; garbage collection
        off), the step that ends the walk included."""
        gc.collect()
        gc.disable()
        out, steps = [], core.switch_table_steps(1, entries, [], 5.0, 5.0)
        while True:
            t = time.process_time()
            step = next(steps, None)
            out.append((time.process_time() - t) * 1000.0)
            if step is None:
                break
            if step:
                raise SystemExit("the audit found something to repair in a table it sent")
        gc.enable()
        return out

    audit()
    results = {}
    for name, action in (("framework parse", lambda: parse_all(own)),
                         ("fast parse", lambda: parse_all(fast)),
                         ("audit, caches emptied", cold), ("audit", audit)):
        results[name] = cpu_ms(action, args.rounds)
    walks = [steps_ms() for _ in range(args.rounds)]
    results["audit, most in one step"] = [max(w) for w in walks]
    worst = max(len(r) for r in replies)
    lines = [f"# bench/table_read.py ({time.strftime('%Y-%m-%d %H:%M')} UTC)",
             f"machine: {machine()}; load average {load0} before, {loadavg()} after",
             f"{args.instances} instances on {SWITCHES} switches; switch 1 holds {len(table)}"
             f" entries, read as {len(replies)} replies (largest {worst} bytes); "
             f"framework {args.framework}; CPU ms, median [min-max] of {args.rounds} rounds",
             ""]
    for name, ms in results.items():
        lines.append(f"{name:24} {statistics.median(ms):8.1f} [{min(ms):.1f}-{max(ms):.1f}]"
                     f"  per reply {statistics.median(ms) / len(replies):.1f}"
                     if "parse" in name else
                     f"{name:24} {statistics.median(ms):8.1f} [{min(ms):.1f}-{max(ms):.1f}]")
    med = {k: statistics.median(v) for k, v in results.items()}
    ratio = med["fast parse"] / med["framework parse"]
    lines += ["", f"fast parse / framework parse: {ratio:.2f}x",
              f"audit / audit with caches emptied: "
              f"{med['audit'] / med['audit, caches emptied']:.2f}x",
              f"audit, most CPU in one step / audit: "
              f"{med['audit, most in one step'] / med['audit']:.2f}x "
              f"({len(walks[0]) - 1} steps of up to {audit_module.AUDIT_SLICE} entries)"]
    text = "\n".join(lines) + "\n"
    print(text, end="")
    args.output.write_text(text)
    print(f"(written to {args.output})")
    return 0


if __name__ == "__main__":
    sys.exit(main())
