"""Time a GET /metrics scrape (apps/metrics.py) with N instances in 10 services, each with a
metrics report: `.venv/bin/python bench/scrape.py [N]` prints size, median and worst of 20."""

from __future__ import annotations

import json
import sys
import time

from apps.metrics import Metrics
from controller.api import Api
from controller.config import ControllerConfig
from controller.core import Core


def main(n: int = 1000) -> None:
    """Build the state, then scrape 20 times."""
    core = Core(ControllerConfig())
    api = Api(core)
    now = time.time()
    for s in range(10):
        body = {"name": f"s{s}", "dsid": f"10.0.100.{s + 1}", "protocol": "tcp", "port": 80}
        api.handle("POST", "/dyncast/v1/services", json.dumps(body).encode(), now)
    for i in range(n):
        dsid, dbid = f"10.0.100.{i % 10 + 1}", f"10.1.{i // 250}.{i % 250 + 1}"
        api.handle("POST", "/dyncast/v1/instances",
                   json.dumps({"dsid": dsid, "dbid": dbid}).encode(), now)
        api.handle("POST", "/dyncast/v1/metrics", json.dumps(
            {"dbid": dbid, "cpu": 0.5, "sessions": 1, "queue": 0, "capacity": 10}).encode(), now)
    metrics = Metrics(core)
    times = []
    for _ in range(20):
        start = time.perf_counter()
        out = metrics.scrape()
        times.append(time.perf_counter() - start)
    times.sort()
    print(f"instances {len(core.catalogue.instances)}: {len(out)} bytes, median "
          f"{times[10] * 1e3:.1f} ms, worst {times[-1] * 1e3:.1f} ms")


if __name__ == "__main__":
    main(int(sys.argv[1]) if len(sys.argv) > 1 else 1000)
