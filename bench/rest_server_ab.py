"""The REST server's CPU per kept-alive single-report POST: this tree's server against the one of
another checkout (`--base DIR`, e.g. a copy of main), rounds interleaved.

    .venv/bin/python bench/rest_server_ab.py --base DIR            # 6 rounds of 3,000 POSTs each
    .venv/bin/python bench/rest_server_ab.py --base . --quick      # 2 rounds of 300 (the smoke)

Each tree's server (apps/restserver.py with the default limits and bench/rest_keepalive.py's
trivial app behind it) runs in its own process, both pinned to one CPU, the client on the
other; the client sends single-report POSTs on one kept-alive connection, as `dyncast-dma`
does (agents/httpconn.py). The figure is the server process's CPU time per POST
(/proc/<pid>/stat, all threads), which other load on the machine changes less than wall time.
"""

from __future__ import annotations

import argparse
import os
import statistics
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from bench.cbench import cpus, loadavg, proc_cpu  # noqa: E402
from bench.rest_keepalive import SERVER, kept_alive, measure  # noqa: E402


def start(tree: Path, cpu: int | None) -> tuple[subprocess.Popen[str], int]:
    """`tree`'s REST server with the trivial app; (process, port)."""
    pin = [] if cpu is None else ["taskset", "-c", str(cpu)]
    proc = subprocess.Popen([*pin, sys.executable, "-c", SERVER], stdout=subprocess.PIPE,
                            stderr=subprocess.DEVNULL, text=True, cwd=tree,
                            env={"PYTHONPATH": str(tree), "PATH": "/usr/bin:/bin"})
    assert proc.stdout is not None
    return proc, int(proc.stdout.readline())


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--base", type=Path, required=True, help="the other checkout's root")
    parser.add_argument("--quick", action="store_true", help="2 rounds of 300 POSTs")
    args = parser.parse_args()
    if not (args.base / "apps" / "restserver.py").is_file():
        print(f"--base: {args.base} has no apps/restserver.py", file=sys.stderr)
        return 2
    rounds, n = (2, 300) if args.quick else (6, 3000)
    mine = cpus()
    server_cpu, client_cpu = (mine[0], mine[1]) if len(mine) > 1 else (None, None)
    load_before = loadavg()
    servers = {"base": start(args.base.resolve(), server_cpu), "this": start(ROOT, server_cpu)}
    try:
        if client_cpu is not None:
            os.sched_setaffinity(0, {client_cpu})
        clocks = {name: proc_cpu(proc.pid) for name, (proc, _) in servers.items()}
        for _, port in servers.values():
            kept_alive(port, n // 10)  # warm up
        cpu: dict[str, list[float]] = {"base": [], "this": []}
        for _ in range(rounds):
            for name, (_, port) in servers.items():
                cpu[name].append(measure(kept_alive, port, n, clocks[name])[0])
    finally:
        for proc, _ in servers.values():
            proc.terminate()
            proc.wait(10)
    ratios = [t / b for t, b in zip(cpu["this"], cpu["base"], strict=True)]
    print(f"# bench/rest_server_ab.py --base {args.base} "
          f"({time.strftime('%Y-%m-%d %H:%M UTC', time.gmtime())}, load average {load_before} "
          f"before, {loadavg()} after)")
    print(f"server CPU us per kept-alive single-report POST, {rounds} rounds of {n}")
    for name, label in (("base", f"base ({args.base})"), ("this", "this tree")):
        print(f"  {label}: {', '.join(f'{x:.0f}' for x in cpu[name])} "
              f"(median {statistics.median(cpu[name]):.0f})")
    print(f"  this/base per round: {', '.join(f'{r:.2f}' for r in ratios)} "
          f"(median {statistics.median(ratios):.2f})")
    return 0 if all(x > 0 for x in cpu["base"] + cpu["this"]) else 1


if __name__ == "__main__":
    sys.exit(main())
