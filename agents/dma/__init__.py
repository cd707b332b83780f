"""The D-MA (Dyncast metric agent): registers (D-SID, D-BID) bindings and reports their metrics.

Boundary: it reads `/proc/stat` and each instance's `GET /stats`, and talks to the controller only
through `/dyncast/v1/instances` and `/dyncast/v1/metrics`. The report-timing policy and the report
assembly are pure (time is a parameter); `Agent` and `main` are the I/O shell around them.

Reactivation (draft-du-coordination-for-serivce-ip-in-mec, steps 3-5): an instance given with
`--inactive` is registered and reported as not serving. The controller's answer to a metrics
report may carry commands for it; `reactivate` runs the instance's `--start` command (then the
instance is reported serving as soon as its stats can be read), `deactivate` runs its `--stop`
command or, without one, terminates the process `--start` began, and the instance is reported not
serving again. An instance with a `--start` command and without `--inactive` is started by the
D-MA when it starts; whatever the D-MA started is stopped when it exits.

Modules: `metrics` (pure: bindings, stats, reports, report timing, commands), `wire` (HTTP to
the controller and the instances, bounded), `launcher` (start/stop commands), `agent` (the
loop), `cli` (`dyncast-dma`'s options and `main`). Run as `dyncast-dma` or `python -m
agents.dma`.
"""

from __future__ import annotations

from agents.dma.agent import Agent, Options, Tracked, run
from agents.dma.cli import main, parse_args
from agents.dma.metrics import (
    Binding,
    CpuSample,
    InstanceStats,
    ReportPolicy,
    build_report,
    cpu_fraction,
    parse_binding,
    parse_command_spec,
    parse_commands,
    parse_cpu_line,
    parse_stats,
    report_metrics,
)
from agents.dma.wire import Answer, UnreachableError, call, controller_call, fetch_stats

__all__ = ["Agent", "Answer", "Binding", "CpuSample", "InstanceStats", "Options",
           "ReportPolicy", "Tracked", "UnreachableError", "build_report", "call", "controller_call",
           "cpu_fraction", "fetch_stats", "main", "parse_args", "parse_binding",
           "parse_command_spec", "parse_commands", "parse_cpu_line", "parse_stats",
           "report_metrics", "run"]
