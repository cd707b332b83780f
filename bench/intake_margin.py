"""The intake margin: the highest rate of single-report POSTs a controller sustains with N
instances (issue 15's target: >= 2,000 reports/s with 1,000 instances).

The world is bench/control_plane.py's (its controller, ring of emulated switches and set-up,
preconditions asserted). Then steps of `--duration` s at rising offered rates, one report per
POST from `--dmas` D-MA processes (one kept-alive connection and one request in flight each,
as `dyncast-dma`), the GET probes running throughout: a step *holds* when the reports accepted
per second are within `--tolerance` (2 %) of those offered and no POST was refused. The rate
rises by `--factor` while steps hold (falls by it until one does, if the first does not),
then the gap between the highest that held and the lowest that did not is halved `--refine`
times. The margin is the highest offered rate that held, as a
multiple of the target's 2,000/s. Per step: accepted/s, the controller's CPU share, POST and
GET /decisions/{service} p99, the worst echo (until the reply reached the switch's socket),
and the accepted rate per core (accepted/s over the controller's CPU share, the probes' and
echoes' CPU included: what it would take on a core of its own if its cost per report held).

    .venv/bin/python bench/intake_margin.py          # 1,000 instances, from 2,000/s (~2 min)
    .venv/bin/python bench/intake_margin.py --quick  # smoke: 100 instances, 2 s steps; exit 1
                                                     # on a failure or a missing figure

The D-MAs share the bench's CPU with the switches and the prober: a step that does not hold
may be the clients' limit, not the controller's; the controller's CPU share at that step says
which (near 1.0: the controller's).
"""

from __future__ import annotations

import argparse
import sys
import tempfile
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from bench.cbench import loadavg, machine, proc_cpu  # noqa: E402
from bench.control_plane import (  # noqa: E402
    Phase,
    Running,
    checked,
    pin,
    probe,
    publish,
    q,
    run_dmas,
    running,
)
from bench.control_plane_net import report_body  # noqa: E402

RESULTS = ROOT / "bench" / "results"
TARGET_RATE = 2000.0


@dataclass(frozen=True)
class Step:
    """One step of the search: offered and accepted reports/s, and whether it held."""

    offered: float
    accepted: float
    refused: int = 0
    tolerance: float = 0.02

    @property
    def held(self) -> bool:
        return not self.refused and self.accepted >= (1.0 - self.tolerance) * self.offered


def search(measure: Callable[[float], Step], start: float, factor: float, top: float,
           refine: int, floor: float = 0.0) -> list[Step]:
    """Every step measured: from `start`, times `factor` while steps hold (up to `top`); if
    the first does not hold, divided by `factor` until one does (down to `floor`, default
    `start` / 8); then `refine` halvings of the gap between the highest that held and the
    lowest that did not."""
    floor = floor or start / 8.0
    steps = [measure(start)]
    rate = start
    if steps[0].held:
        while steps[-1].held and rate < top:
            rate = min(rate * factor, top)
            steps.append(measure(rate))
    else:
        while not steps[-1].held and rate > floor:
            rate = max(round(rate / factor), floor)
            steps.append(measure(rate))
    for _ in range(refine):
        held = max((s.offered for s in steps if s.held), default=0.0)
        failed = min((s.offered for s in steps if not s.held), default=0.0)
        if not failed or not held:
            break
        steps.append(measure(round((held + failed) / 2.0)))
    return steps


def best(steps: list[Step]) -> float:
    """The highest offered rate that held (0 if none)."""
    return max((s.offered for s in steps if s.held), default=0.0)


def single_step(run: Running, rate: float, dmas: int, duration: float,
                tolerance: float) -> tuple[Step, Phase]:
    """`rate` single reports/s from `dmas` D-MAs for `duration` s, probes and echoes timed."""
    layout = run.layout
    ph = Phase(f"{rate:.0f}/s", layout.instances, target=rate)
    dbids = [layout.instance(i)[0] for i in range(layout.instances)]
    done = threading.Event()
    prober = threading.Thread(target=probe, args=(run.ws_port, layout, done, ph), daemon=True)
    cpu = proc_cpu(run.proc.pid)
    run.ring.measure_echoes()
    cpu0, t0 = cpu(), time.perf_counter()
    prober.start()
    run_dmas(ph, run.ws_port, [
        ([(report_body([d], r), 1) for r in (1, 2) for d in dbids[w::dmas]], rate / dmas)
        for w in range(dmas)], duration)
    done.set()
    prober.join(30.0)
    ph.cpu = (cpu() - cpu0) / (time.perf_counter() - t0)
    echoes = run.ring.measure_echoes()
    ph.wire_worst_s, ph.echoes = echoes.worst_arrived(time.time()), len(echoes.delays)
    return Step(rate, ph.rate, ph.refused, tolerance), ph


HEADER = (f"{'offered/s':>9} {'accepted/s':>10} {'held':>4} {'CPU':>5} {'per core/s':>10} "
          f"{'POST p99 ms':>11} {'GET svc p99 ms':>14} {'echo worst ms':>13}")


def line(step: Step, ph: Phase) -> str:
    per_core = step.accepted / ph.cpu if ph.cpu else 0.0
    return (f"{step.offered:9.0f} {step.accepted:10.0f} {'yes' if step.held else 'no':>4} "
            f"{ph.cpu:5.2f} {per_core:10.0f} {q(ph.post_s, .99):11.1f} "
            f"{q(ph.get_svc_s, .99):14.1f} "
            f"{ph.wire_worst_s * 1000:13.1f}")


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--quick", action="store_true", help="100 instances, 2 s steps, no file")
    ap.add_argument("--instances", type=int, default=1000)
    ap.add_argument("--start", type=float, default=TARGET_RATE, help="first offered rate/s")
    ap.add_argument("--factor", type=float, default=1.25, help="rate growth while steps hold")
    ap.add_argument("--top", type=float, default=12000.0, help="highest rate offered")
    ap.add_argument("--refine", type=int, default=2, help="halvings after the first miss")
    ap.add_argument("--dmas", type=int, default=8, help="D-MA processes")
    ap.add_argument("--tolerance", type=float, default=0.02)
    ap.add_argument("--duration", type=float, default=6.0, help="seconds per step")
    ap.add_argument("--framework", choices=("ryu", "os-ken"), default="ryu")
    ap.add_argument("--output", type=Path, default=None,
                    help="results file (default bench/results/intake_margin.txt; none with "
                         "--quick)")
    args = ap.parse_args()
    if args.quick:
        args.instances, args.duration, args.refine, args.top = 100, 2.0, 0, args.start * 1.25
    if not (0.0 < args.tolerance < 1.0 and args.factor > 1.0 and args.start > 0
            and args.dmas >= 1 and args.duration > 0):
        ap.error("--tolerance in (0, 1), --factor > 1, --start, --dmas, --duration > 0")
    ctl_cpu, pinning = pin()
    failures: list[str] = []
    rows: list[tuple[Step, Phase]] = []
    load0, t0 = loadavg(), time.monotonic()
    with tempfile.TemporaryDirectory(prefix="intake-margin-") as tmp:
        try:
            with running(args.instances, args, Path(tmp), ctl_cpu) as run:
                print(HEADER, flush=True)

                def measure(rate: float) -> Step:
                    step, ph = single_step(run, rate, args.dmas, args.duration,
                                           args.tolerance)
                    rows.append((step, ph))
                    print(line(step, ph), flush=True)
                    return step

                search(measure, args.start, args.factor, args.top, args.refine)
                checked(run, [ph for _, ph in rows], failures)
        except RuntimeError as exc:
            failures.append(str(exc))
    steps = [s for s, _ in rows]
    top = best(steps)
    if not steps:
        failures.append("no step measured")
    cmd = "bench/intake_margin.py" + (" --quick" if args.quick else "")
    lines = [f"# {cmd} ({time.strftime('%Y-%m-%d %H:%M UTC', time.gmtime())}, "
             f"{time.monotonic() - t0:.0f} s)", f"machine: {machine()}",
             f"{pinning}; load average {load0} before, {loadavg()} after",
             f"{args.instances} instances in services of 100 on 4 switches in a ring; single "
             f"reports from {args.dmas} D-MAs (one request in flight each); steps of "
             f"{args.duration:g} s from {args.start:g}/s, x{args.factor:g} while they hold (/ "
             f"{args.factor:g} until one does) "
             f"(accepted within {args.tolerance:.0%} of offered, none refused), then "
             f"{args.refine} halvings; GET probes every 50 ms; echo worst: until the reply "
             f"reached the switch's socket; per core/s: accepted/s over the controller's CPU share",
             "", HEADER, *(line(s, p) for s, p in rows), "",
             f"highest rate held: {top:.0f} reports/s ({top / TARGET_RATE:.2f}x the target's "
             f"{TARGET_RATE:.0f}/s{'; the top offered' if top >= args.top else ''})",
             "", "failures:" if failures else "failures: none", *failures]
    publish("\n".join(lines) + "\n",
            args.output or (None if args.quick else RESULTS / "intake_margin.txt"))
    return 1 if failures else 0


if __name__ == "__main__":
    sys.exit(main())
