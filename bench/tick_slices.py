"""The tick and GET /decisions at 5,000 instances, in-process: what one step holds the loop.

The controller's core learns `--instances` instance hosts on 4 switches in a ring (services of
100, as bench/control_plane.py lays them out), every instance reported at t=1. Timed (CPU,
garbage collection off, median and range over `--rounds`, a fresh core each round):
- the tick at t=10, when every instance's metrics went stale (each one changes state, is
  probed, and every service is recomputed): all at once (`Core.tick`), against the most CPU one
  step of `Core.tick_steps` takes (the shell lets the event loop run between two steps);
- GET /decisions: the API's steps plus the reply encoded as main's shell did (`json.dumps` of
  every row, five a step), against the cached bodies (`DecisionViews.row`/`body`): the first
  GET (every row encoded once) and a repeated one with nothing changed.
It asserts that the sliced tick's intents equal the whole tick's and the bodies the rows.

    .venv/bin/python bench/tick_slices.py    # writes bench/results/tick_slices.txt
"""

from __future__ import annotations

import argparse
import gc
import json
import statistics
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from bench.cbench import loadavg, machine  # noqa: E402
from controller.api import Api  # noqa: E402
from controller.config import ControllerConfig  # noqa: E402
from controller.core import Core  # noqa: E402
from controller.intents import Intent  # noqa: E402
from controller.model import AffinityPolicy, Metrics, Service  # noqa: E402
from controller.network.packet import ARP_REQUEST, BROADCAST, build_arp  # noqa: E402
from controller.views import Rows  # noqa: E402

RESULTS = ROOT / "bench" / "results" / "tick_slices.txt"
SWITCHES = 4


def build(n: int) -> Core:
    """A core with `n` instances located, registered and reported at t=1 (stale after 3 s)."""
    svcs = tuple(Service(f"svc{k}", f"10.0.{100 + k // 250}.{k % 250 + 1}", "tcp", 8000,
                         AffinityPolicy("5-tuple", 30, 0)) for k in range(-(-n // 100)))
    core = Core(ControllerConfig(services=svcs, stale_after_s=3.0, probe_timeout_s=2.0))
    for d in range(1, SWITCHES + 1):
        core.switch_connected(d)
        core.switch_ports(d, {1, 2, 3}, 0.0)
    see_links(core, 0.0)
    core.tick(0.0)
    dbids = [f"10.2.{i >> 8}.{i & 255}" for i in range(n)]
    for i, dbid in enumerate(dbids):
        mac = f"02:02:00:00:{i >> 8:02x}:{i & 255:02x}"
        core.packet_in(i % SWITCHES + 1, 1, build_arp(ARP_REQUEST, mac, dbid, BROADCAST,
                                                      "10.9.9.9"), 0.0)
        core.register(svcs[i // 100].dsid, dbid, "bench", True, 0.0)
    core.intake.apply([(d, Metrics(cpu=0.1, sessions=1, capacity=10)) for d in dbids], 1.0)
    core.tick(1.0)
    core.drain_writes()
    see_links(core, 10.0)  # the ring stays up: the tick at t=10 expires no link
    return core


def see_links(core: Core, now: float) -> None:
    """The ring's links, seen both ways at `now`."""
    for d in range(1, SWITCHES + 1):
        nxt = d % SWITCHES + 1
        core.topology.link_seen((d, 3), (nxt, 2), now)
        core.topology.link_seen((nxt, 2), (d, 3), now)


def cpu(action: Callable[[], Any]) -> tuple[float, Any]:
    """CPU ms of `action` (garbage collection off meanwhile), and what it returned."""
    gc.collect()
    gc.disable()
    t = time.process_time()
    out = action()
    ms = (time.process_time() - t) * 1000.0
    gc.enable()
    return ms, out


def steps_cpu(core: Core, now: float) -> tuple[float, float, list[Intent]]:
    """The most CPU one step of `tick_steps` took, their sum, and the intents joined."""
    gc.collect()
    gc.disable()
    worst, total, intents = 0.0, 0.0, []
    steps = core.tick_steps(now)
    while True:
        t = time.process_time()
        step = next(steps, None)
        ms = (time.process_time() - t) * 1000.0
        if step is None:
            break
        worst, total = max(worst, ms), total + ms
        intents += step
    gc.enable()
    return worst, total, intents


def old_encode(value: list[Any]) -> bytes:
    """main's shell: the rows encoded five a step."""
    parts = [json.dumps(value[i:i + 5], sort_keys=True)[1:-1] for i in range(0, len(value), 5)]
    return ("[" + ", ".join(parts) + "]\n").encode()


def get_steps(api: Api, encode: bool) -> tuple[float, bytes]:
    """GET /decisions through the API's steps: the most CPU in one step (the encoding, in
    main's way, counted as steps of five rows), and the body."""
    worst = 0.0
    steps = api.steps("GET", "/dyncast/v1/decisions", b"", 20.0)
    gc.disable()
    while True:
        t = time.process_time()
        step = next(steps)
        worst = max(worst, (time.process_time() - t) * 1000.0)
        if not isinstance(step, list):
            break
    rows = step.body
    assert isinstance(rows, Rows)
    body = rows.body
    if encode:  # as main's shell: five rows a step, then the join
        parts = []
        for i in range(0, len(rows), 5):
            t = time.process_time()
            parts.append(json.dumps(rows[i:i + 5], sort_keys=True)[1:-1])
            worst = max(worst, (time.process_time() - t) * 1000.0)
        t = time.process_time()
        body = ("[" + ", ".join(parts) + "]\n").encode()
        worst = max(worst, (time.process_time() - t) * 1000.0)
    gc.enable()
    return worst, body


def main() -> None:
    """Run the rounds and write the results."""
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--instances", type=int, default=5000)
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--output", type=Path, default=RESULTS)
    args = ap.parse_args()
    before = loadavg()
    rows: dict[str, list[float]] = {}
    for _ in range(args.rounds):
        whole_core, sliced_core = build(args.instances), build(args.instances)
        ms, whole = cpu(lambda c=whole_core: c.tick(10.0))
        worst, total, joined = steps_cpu(sliced_core, 10.0)
        assert joined == whole, "the sliced tick differs from the whole tick"
        assert len(whole) >= args.instances, "not every stale instance was probed"
        rows.setdefault("tick, all at once (Core.tick)", []).append(ms)
        rows.setdefault("tick, most CPU in one step (Core.tick_steps)", []).append(worst)
        rows.setdefault("tick, all its steps", []).append(total)
        api = Api(sliced_core)
        w_old, b_old = get_steps(api, True)
        api = Api(sliced_core)  # nothing cached
        w_first, b_first = get_steps(api, False)
        w_again, b_again = get_steps(api, False)
        assert b_old == b_first == b_again, "the cached body differs from the rows encoded"
        def get(a: Api, encode: bool) -> Any:
            body = a.handle("GET", "/dyncast/v1/decisions", b"", 20.0).body
            return old_encode(list(body)) if encode else body.body

        old_api = Api(sliced_core)
        get(old_api, True)  # views held, as main holds them between two GETs
        full_old, _ = cpu(lambda a=old_api: get(a, True))
        full_again, _ = cpu(lambda a=api: get(a, False))
        rows.setdefault("GET /decisions, main's encoding: most CPU in one step", []).append(w_old)
        rows.setdefault("GET /decisions, cached, first: most CPU in one step", []).append(w_first)
        rows.setdefault("GET /decisions, cached, again: most CPU in one step", []).append(w_again)
        rows.setdefault("GET /decisions, main's encoding: all steps", []).append(full_old)
        rows.setdefault("GET /decisions, cached, again: all steps", []).append(full_again)
    lines = [f"# {time.strftime('%Y-%m-%d %H:%M UTC', time.gmtime())} {machine()}",
             f"# .venv/bin/python bench/tick_slices.py --instances {args.instances} --rounds "
             f"{args.rounds}; load average {before} before, {loadavg()} after",
             f"# CPU ms, median (min-max) of {args.rounds} rounds; body "
             f"{len(b_again) / 1e6:.1f} MB",
             ""]
    for name, vals in rows.items():
        lines.append(f"{name:58s} {statistics.median(vals):8.1f} "
                     f"({min(vals):.1f}-{max(vals):.1f})")
    text = "\n".join(lines) + "\n"
    print(text, end="")
    args.output.write_text(text)


if __name__ == "__main__":
    main()
