"""Where a new flow's controller time goes: the packet-in path's parts, timed in-process.

No sockets and no event loop: each part runs many times in a loop and its median cost per
new flow is reported, so the figures are steadier than the end-to-end ones in cbench.txt. The
cost is CPU time (`time.process_time`: the process is one thread here), which other work on
the machine disturbs far less than the wall clock.

- `receive`: the framework parses a PACKET_IN and makes its event (the minimal app pays it);
- `receive_fast`: the same with the Dyncast app's PACKET_IN fast path (apps/packet_in.py);
- `minimal`: the minimal app's handler (OFPMatch + OFPFlowMod, serialised);
- `minimal_struct`: the same flow-mod packed with struct;
- `core`: the Dyncast core's `packet_in` for a new flow (parse, decision, binding, intents),
  every flow's intents kept (the serialise parts encode them: the collector walks them too);
- `core_dropped`: the same on a core of its own, each flow's intents dropped at once (as the
  app does once it has sent them);
- `core_bursts`: the same as `core_dropped` with cbench's scenario and arrivals: 16 switches
  with 8 clients and 2 instances each, new flows in bursts of 24 from one switch at a time,
  12,600 a second (the clock steps with them), each decision change logged as the app logs it
  (to a discarded stream); `core_bursts_redecisions`: the placed-flow re-decisions per new flow
  (controller/selection/redecide.py);
- `core_dropped_health_off`: `core_dropped` with passive health off (`[controller.health]
  enabled = false`; on by default, as in every other figure), their repeats alternated;
  `core_bursts_health_off`: `core_bursts` so, run after it: what health costs a new flow;
- `serialise_framework`: its three messages through the framework's classes (the way the app
  sent them before `ofmsg.serialise`);
- `serialise`: its three messages through `ofmsg.serialise`;
- `store`: `Store.apply` per binding written (SQLite file, the default store), as the app's
  flusher calls it: median of 5 batches of `--flows` bindings (one batch of 400 until
  branch i15x).

    .venv/bin/python bench/handler_cost.py [--framework ryu|os-ken] [--flows N] [--step-us US]
    (JSON out)
"""

from __future__ import annotations

import argparse
import importlib
import json
import os
import socket
import statistics
import struct
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from bench import ofgen
from bench.emuswitch import VIRTUAL_MAC, Scenario


class Datapath:
    """Enough of a datapath for the apps' message code."""

    def __init__(self, framework: str) -> None:
        pkg = "ryu" if framework == "ryu" else "os_ken"
        self.ofproto = importlib.import_module(f"{pkg}.ofproto.ofproto_v1_3")
        self.ofproto_parser = importlib.import_module(f"{pkg}.ofproto.ofproto_v1_3_parser")
        self.id = 1
        self.xid = 0

    def send(self, buf: bytes) -> bool:
        return True


def median_us(run: Callable[[int, int], None], flows: int, repeats: int = 5) -> float:
    """Median over `repeats` of the CPU time per flow of `run(start, count)`, in
    microseconds."""
    samples = []
    for r in range(repeats):
        t = time.process_time()
        run(r * flows, flows)
        samples.append((time.process_time() - t) / flows * 1e6)
    return round(statistics.median(samples), 1)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--framework", choices=("ryu", "os-ken"), default="ryu")
    ap.add_argument("--flows", type=int, default=2000, help="flows per timed repeat (5)")
    ap.add_argument("--step-us", type=float, default=0.0,
                    help="the core's clock advances this much per new flow (0: every flow at "
                         "the same instant; 100: 10,000 new flows a second, placements ageing "
                         "out as they would)")
    args = ap.parse_args()
    os.environ["DYNCAST_FRAMEWORK"] = args.framework
    from apps import compat

    compat.quiet_eventlet_warning()
    from apps.ofmsg import serialise, to_message
    from apps.store import Store
    from bench.minimal_app import raw_flow_mod
    from controller.config import ControllerConfig
    from controller.core import Core
    from controller.instances.health import HealthConfig
    from controller.intents import Intent
    from controller.model import AffinityPolicy, Metrics, Service

    pkg = "ryu" if args.framework == "ryu" else "os_ken"
    ofproto_parser = importlib.import_module(f"{pkg}.ofproto.ofproto_parser")
    ofp_event = importlib.import_module(f"{pkg}.controller.ofp_event")
    dp = Datapath(args.framework)
    parser, ofp = dp.ofproto_parser, dp.ofproto
    n, repeats = args.flows, 5
    sc = Scenario(1)
    frames = [ofgen.tcp_syn(ofgen.mac(sc.client_mac(0, i % 8)), VIRTUAL_MAC,
                            ofgen.ip(sc.client_ip(0, i % 8)), ofgen.ip(sc.dsid),
                            1024 + i // 8, sc.dport) for i in range(n * repeats)]
    pins = [bytearray(ofgen.packet_in(i, 1, f)) for i, f in enumerate(frames)]
    out: dict[str, Any] = {"framework": args.framework, "flows": n,
                           "step_us": args.step_us}

    def receive(start: int, count: int) -> None:
        for buf in pins[start:start + count]:
            version, msg_type, length, xid = ofproto_parser.header(buf)
            msg = ofproto_parser.msg(dp, version, msg_type, length, xid, buf[:length])
            ofp_event.ofp_msg_to_ev(msg)

    ports = struct.Struct("!HH")

    def minimal(start: int, count: int) -> None:
        for data in frames[start:start + count]:
            sport, dport = ports.unpack_from(data, 34)
            match = parser.OFPMatch(in_port=1, eth_type=0x0800,
                                    ipv4_src=socket.inet_ntoa(data[26:30]),
                                    ipv4_dst=socket.inet_ntoa(data[30:34]), ip_proto=6,
                                    tcp_src=sport, tcp_dst=dport)
            inst = [parser.OFPInstructionActions(ofp.OFPIT_APPLY_ACTIONS,
                                                 [parser.OFPActionOutput(2, 0)])]
            msg = parser.OFPFlowMod(datapath=dp, priority=10, idle_timeout=30, match=match,
                                    instructions=inst, buffer_id=ofp.OFP_NO_BUFFER)
            msg.set_xid(1)
            msg.serialize()

    def minimal_struct(start: int, count: int) -> None:
        for data in frames[start:start + count]:
            sport, dport = ports.unpack_from(data, 34)
            raw_flow_mod(1, 1, data[26:30], data[30:34], 6, sport, dport)

    def make_core(health: bool = True) -> Core:
        svc = Service("bench", sc.dsid, "tcp", sc.dport, AffinityPolicy("5-tuple", 30, 0))
        core = Core(ControllerConfig(services=(svc,), stale_after_s=3600,
                                     health=HealthConfig(enabled=health)))
        core.switch_connected(1)
        core.switch_ports(1, {1, 2, 3, 4}, 0.0)
        for k, port in enumerate((2, 3)):
            core.packet_in(1, port, ofgen.arp_announce(ofgen.mac(sc.instance_mac(0, k)),
                                                       ofgen.ip(sc.instance_ip(0, k))), 0.0)
        for k in range(8):
            core.packet_in(1, 1, ofgen.arp_announce(ofgen.mac(sc.client_mac(0, k)),
                                                    ofgen.ip(sc.client_ip(0, k))), 0.0)
        for _, dbid in sc.instances():
            core.register(sc.dsid, dbid, "bench", True, 0.0)
            core.report(dbid, Metrics(cpu=0.1, sessions=0, queue=0, capacity=8), 0.0)
        return core

    core = make_core()
    intents: list[list[Intent]] = []

    step = args.step_us / 1e6

    def core_run(start: int, count: int) -> None:
        for i, data in enumerate(frames[start:start + count], start):
            intents.append(core.packet_in(1, 1, data, 1.0 + i * step))

    out["core"] = median_us(core_run, n, repeats)
    fresh = {True: make_core(), False: make_core(health=False)}  # passive health on, off
    dropped: dict[bool, list[float]] = {True: [], False: []}
    for r in range(repeats):  # on and off alternated, each first in turn (no order bias)
        for health in ((True, False) if r % 2 == 0 else (False, True)):
            core_h, t = fresh[health], time.process_time()
            for i, data in enumerate(frames[r * n:(r + 1) * n], r * n):
                core_h.packet_in(1, 1, data, 1.0 + i * step)
            dropped[health].append((time.process_time() - t) / n * 1e6)
    out["core_dropped"] = round(statistics.median(dropped[True]), 1)
    out["core_dropped_health_off"] = round(statistics.median(dropped[False]), 1)
    if not all(len(i) == 3 for i in intents):
        raise SystemExit("the core did not answer every new flow with 2 flow-mods + 1 packet")

    out["core_bursts"], out["core_bursts_redecisions"] = core_bursts(n, repeats)
    out["core_bursts_health_off"], _ = core_bursts(n, repeats, health=False)

    def serialise_framework(start: int, count: int) -> None:
        for group in intents[start:start + count]:
            for intent in group:
                msg = to_message(dp, intent)
                dp.xid += 1
                msg.set_xid(dp.xid)
                msg.serialize()

    def serialise_struct(start: int, count: int) -> None:
        for group in intents[start:start + count]:
            serialise(dp, group)

    out["receive"] = median_us(receive, n, repeats)
    from apps import packet_in

    packet_in.install(parser)  # what the Dyncast app does when it starts
    out["receive_fast"] = median_us(receive, n, repeats)
    out["minimal"] = median_us(minimal, n, repeats)
    out["minimal_struct"] = median_us(minimal_struct, n, repeats)
    out["serialise_framework"] = median_us(serialise_framework, n, repeats)
    out["serialise"] = median_us(serialise_struct, n, repeats)
    writes = core.drain_writes()
    bindings = [w for w in writes if w.kind == "binding"]
    with tempfile.TemporaryDirectory(prefix="handler-cost-") as tmp:
        store = Store(f"sqlite:///{tmp}/dyncast.db")
        per_binding = []
        for k in range(repeats):  # the app's flusher: a batch a second, here `flows` each
            batch = bindings[k * n:(k + 1) * n]
            t = time.process_time()
            store.apply(batch)
            per_binding.append((time.process_time() - t) / len(batch) * 1e6)
        out["store"] = round(statistics.median(per_binding), 1)
        store.close()
    print(json.dumps(out))


def core_bursts(n: int, repeats: int, switches: int = 16, burst: int = 24,
                rate: float = 12600.0, health: bool = True) -> tuple[float, float]:
    """`core_bursts` (module docstring): the median CPU time per new flow, in us, and the
    placed-flow re-decisions per new flow."""
    import io

    from apps import logs
    from bench.emuswitch import INSTANCE_PORTS
    from controller.config import ControllerConfig, LogConfig
    from controller.core import Core
    from controller.instances.health import HealthConfig
    from controller.model import AffinityPolicy, Metrics, Service

    sc = Scenario(switches)
    svc = Service("bench", sc.dsid, "tcp", sc.dport, AffinityPolicy("5-tuple", 30, 0),
                  base_delay_ms=20)  # as bench/cbench.py's service
    core = Core(ControllerConfig(services=(svc,), stale_after_s=3600,
                                 health=HealthConfig(enabled=health)))
    for s in range(switches):
        core.switch_connected(sc.dpid(s))
        core.switch_ports(sc.dpid(s), {1, *INSTANCE_PORTS}, 0.0)
        for k, port in enumerate(INSTANCE_PORTS):
            core.packet_in(sc.dpid(s), port, ofgen.arp_announce(
                ofgen.mac(sc.instance_mac(s, k)), ofgen.ip(sc.instance_ip(s, k))), 0.0)
        for k in range(sc.clients):
            core.packet_in(sc.dpid(s), 1, ofgen.arp_announce(
                ofgen.mac(sc.client_mac(s, k)), ofgen.ip(sc.client_ip(s, k))), 0.0)
    for _, dbid in sc.instances():
        core.register(sc.dsid, dbid, "bench", True, 0.0)
        core.report(dbid, Metrics(cpu=0.1, sessions=0, queue=0, capacity=8), 0.0)
    core.drain_writes()
    logs.configure(LogConfig(), io.StringIO())  # formatted and written, then discarded
    frames = []
    for i in range(n * repeats):
        s, j = (i // burst) % switches, (i // (burst * switches)) * burst + i % burst
        frames.append((sc.dpid(s), ofgen.tcp_syn(
            ofgen.mac(sc.client_mac(s, j % sc.clients)), VIRTUAL_MAC,
            ofgen.ip(sc.client_ip(s, j % sc.clients)), ofgen.ip(sc.dsid),
            1024 + (j // sc.clients) % 60000, sc.dport)))
    step, log = 1.0 / rate, core.decisions.bases.change_log

    def run(start: int, count: int) -> None:
        for i in range(start, start + count):
            dpid, data = frames[i]
            core.packet_in(dpid, 1, data, 10.0 + i * step)
            if log:
                logs.core_events(core)
            if i % 10000 == 0:
                core.drain_writes()  # as the app's store flusher does

    before = core.counters["placement_redecisions"]
    cost = median_us(run, n, repeats)
    if core.counters["new_flows"] != n * repeats or core.counters["errors"]:
        raise SystemExit("core_bursts: not every new flow was bound, or the core erred")
    return cost, round((core.counters["placement_redecisions"] - before) / (n * repeats), 4)


if __name__ == "__main__":
    main()
