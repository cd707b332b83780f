"""What HTTP keep-alive saves the REST server: single-report POSTs to the real server
(apps/restserver.py, in its own process, pinned to one CPU, the client on the other), each on
a new connection (what the D-MA sent before agents/httpconn.py) against all on one kept-alive
connection, rounds interleaved.

    .venv/bin/python bench/rest_keepalive.py           # 5 rounds of 5,000 POSTs each way
    .venv/bin/python bench/rest_keepalive.py --quick   # 2 rounds of 500 (the smoke test)

The server runs with the default limits (`ServerSettings()`: 1,000 requests a connection). The
app behind it answers at once with a fixed 60-byte JSON, so the figures are the
web server's own work per request (accept, TCP set-up and teardown, the green thread, the
parse): the server's CPU time per POST (/proc/<pid>/stat, all threads; robust against other
load on the machine, unlike wall time) and one sequential client's POSTs per second.
"""

from __future__ import annotations

import argparse
import http.client
import statistics
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from agents.httpconn import Connection  # noqa: E402
from bench.cbench import cpus, loadavg, proc_cpu  # noqa: E402

RESULTS = ROOT / "bench" / "results"
BODY = b'{"dbid": "i1", "cpu": 0.5, "sessions": 3, "queue": 0, "capacity": 8, "active": true}'
HEADERS = {"Content-Type": "application/json"}
SERVER = """
import sys
from apps import compat
compat.monkey_patch(thread=True)
compat.wsgi_nodelay()
from apps.restserver import RestServer, ServerSettings
from controller.channel import Listen

REPLY = b'{"accepted": 1, "commands": [], "refused": [], "dropped": 0}'

def app(environ, start_response):
    environ["wsgi.input"].read()
    start_response("200 OK", [("Content-Type", "application/json"),
                              ("Content-Length", str(len(REPLY)))])
    return [REPLY]

server = RestServer(app, Listen("127.0.0.1", 0), ServerSettings())
print(server.port, flush=True)
server.serve_forever()
"""


def kept_alive(port: int, n: int) -> None:
    """`n` POSTs on one kept-alive connection, as the D-MA sends them (agents/httpconn.py: a
    new one after the server's `max_requests_per_connection`, 1,000 by default)."""
    link = Connection(f"http://127.0.0.1:{port}/dyncast/v1", 10.0)
    for _ in range(n):
        status, _ = link.request("POST", "/metrics", BODY, lambda: HEADERS)
        assert status == 200
    assert link.opened <= n // 1000 + 1, link.opened  # kept alive, or the figure means nothing
    link.close()


def new_each(port: int, n: int) -> None:
    """`n` POSTs, each on a new connection closed after its answer."""
    for _ in range(n):
        conn = http.client.HTTPConnection("127.0.0.1", port, timeout=10)
        conn.request("POST", "/dyncast/v1/metrics", BODY, {**HEADERS, "Connection": "close"})
        response = conn.getresponse()
        response.read()
        assert response.status == 200
        conn.close()


def measure(way: object, port: int, n: int, server_cpu: object) -> tuple[float, float]:
    """(server CPU us per POST, POSTs per second) for `n` POSTs sent `way`."""
    cpu0, t0 = server_cpu(), time.perf_counter()  # type: ignore[operator]
    way(port, n)  # type: ignore[operator]
    wall = time.perf_counter() - t0
    return (server_cpu() - cpu0) / n * 1e6, n / wall  # type: ignore[operator]


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="2 rounds of 500 POSTs each way")
    parser.add_argument("--output", type=Path, default=None,
                        help="results file (default bench/results/rest_keepalive.txt; "
                             "--quick writes none)")
    args = parser.parse_args()
    rounds, n = (2, 500) if args.quick else (5, 5000)
    mine = cpus()
    server_cpu_id, client_cpu_id = (mine[0], mine[1]) if len(mine) > 1 else (None, None)
    cmd = [sys.executable, "-c", SERVER]
    pin = None if server_cpu_id is None else ["taskset", "-c", str(server_cpu_id)]
    load_before = Path("/proc/loadavg").read_text().split()[:3]
    proc = subprocess.Popen((pin or []) + cmd, stdout=subprocess.PIPE, text=True, cwd=ROOT,
                            env={"PYTHONPATH": str(ROOT), "PATH": "/usr/bin:/bin"})
    try:
        assert proc.stdout is not None
        port = int(proc.stdout.readline())
        if client_cpu_id is not None:
            import os
            os.sched_setaffinity(0, {client_cpu_id})
        server_cpu = proc_cpu(proc.pid)
        kept_alive(port, n // 10)
        new_each(port, n // 10)  # warm up
        rows = []
        for _ in range(rounds):
            rows.append((measure(new_each, port, n, server_cpu),
                         measure(kept_alive, port, n, server_cpu)))
    finally:
        proc.terminate()
        proc.wait(10)
    lines = [f"# bench/rest_keepalive.py ({time.strftime('%Y-%m-%d %H:%M UTC', time.gmtime())}, "
             f"load average {' '.join(load_before)} before, {loadavg()} after)",
             f"POST /dyncast/v1/metrics, single report, {rounds} rounds of {n} each way "
             "(server pinned to one CPU, client on another)",
             "round  new conn: server CPU us/POST  POSTs/s | kept alive: server CPU us/POST  "
             "POSTs/s | kept/new CPU  POSTs/s"]
    for k, ((cpu_new, rate_new), (cpu_ka, rate_ka)) in enumerate(rows, 1):
        lines.append(f"{k:5d}  {cpu_new:30.1f} {rate_new:8.0f} | {cpu_ka:32.1f} {rate_ka:8.0f} "
                     f"| {cpu_ka / cpu_new:12.2f} {rate_ka / rate_new:8.2f}")
    cpu_ratio = [ka[0] / new[0] for new, ka in rows]
    rate_ratio = [ka[1] / new[1] for new, ka in rows]
    lines.append(f"kept/new server CPU per POST: median {statistics.median(cpu_ratio):.2f} "
                 f"(range {min(cpu_ratio):.2f}-{max(cpu_ratio):.2f}); POSTs/s of one client: "
                 f"median {statistics.median(rate_ratio):.2f} "
                 f"(range {min(rate_ratio):.2f}-{max(rate_ratio):.2f})")
    text = "\n".join(lines) + "\n"
    print(text, end="")
    if not args.quick:
        out = args.output or RESULTS / "rest_keepalive.txt"
        out.write_text(text)
        print(f"(written to {out})")
    return 0


if __name__ == "__main__":
    sys.exit(main())
