"""The steering benchmark's plan (bench/steering.py): what is run on each network (scenarios,
policies, durations) with which settings under test (selection, scoring, D-MA reporting,
congestion, load, failure kind), how the command line's settings are read, and what says a
benchmark run itself did not work (`check`). No Mininet, no controller.
"""

from __future__ import annotations

import argparse
import re
from dataclasses import dataclass, field
from typing import Any

from bench.steering_net import Client, Scenario

POLICIES = ("dyncast", "nearest", "least-loaded", "round-robin", "random", "p2c", "least-inflight",
            "consistent-hash")
SETTLE_S = 3.0  # before the clients start: metrics, port counters and decisions catch up
DMA = {"interval": 0.5, "min-interval": 0.2, "threshold": 0.25}  # the D-MAs' reporting
# The settings the runs before issue 22 used (`--tuned`; docs/results/steering.md, "The
# settings under test"): a narrow spread (new flows are spread by the placements counted
# between reports, so only instances within 10 % of the best share them) and a compute cost
# tuned to the bench's D-MA, which reports sessions/capacity as cpu. By default the benchmark
# runs the controller's defaults: what a user gets (docs/decisions.md, "Choosing spread and
# the compute estimate"). `--selection` adds to or overrides either.
SELECTION: dict[str, float | bool] = {"spread": 0.1}
CONGESTION = ("standing", "hot-site")
SCORING = """[controller.scoring]
enabled = true
aggregation = "min"         # the worst category sets the compute cost
[controller.scoring.categories.cpu]
weight = 0.0                # the D-MA reports sessions/capacity as cpu: counted once, below
[controller.scoring.categories.sessions]
weight = 1.0                # all workers busy is what makes the next request wait
normaliser = { kind = "sigmoid", midpoint = 1.2, steepness = 4.0 }
[controller.scoring.categories.queue]
weight = 1.0                # queue/capacity 1 doubles the cost
normaliser = { kind = "minmax", best = 0.0, worst = 2.0 }
[controller.scoring.categories.delay]
weight = 1.0                # the instance's own (observed) processing delay
normaliser = { kind = "inverse", best = 1.0 }
"""
KEEPALIVE = 2  # keep-alive connections per client, one request every KA_INTERVAL s each
KA_INTERVAL = 1.0


class BenchError(Exception):
    """The benchmark could not do what it set out to (not a performance shortfall)."""


@dataclass
class Plan:
    """What to run on each network, and the settings under test."""

    scenarios: list[str]
    policies: list[str]
    durations: dict[str, float]
    seed: int = 1
    selection: dict[str, float | bool | str] = field(default_factory=dict)  # {}: the defaults
    scoring: str = ""  # a [controller.scoring] table (SCORING: --tuned), "": the default estimate
    dma: dict[str, float] = field(default_factory=lambda: dict(DMA))
    # "standing": the bulk transfer congests one path in every scenario (the network's
    # difference between paths); "hot-site": only in the scenarios that ask for it
    congestion: str = "standing"
    load: float = 1.0  # every client's request rate is multiplied by this
    references: bool = True  # run each scenario's reference (every new flow to its sites)
    fail_kind: str = "process"  # FAIL_KINDS: what the failure scenario does to its site
    stall_s: float = 0.0  # the controller stopped this long at the failure (steering_stall.py)
    health: bool = True  # [controller.health] enabled: passive health (docs/decisions.md; on
    # by default since issue 22, as in the controller)

    def controller_extra(self) -> str:
        """The [controller.selection] and [controller.scoring] tables under test."""
        table = "".join(f"{k} = {_toml(v)}\n" for k, v in self.selection.items())
        health = "" if self.health else "[controller.health]\nenabled = false\n"
        return (f"[controller.selection]\n{table}" if table else "") + self.scoring + health

    def describe(self) -> str:
        """The settings under test, in words."""
        sel = ", ".join(f"{k} {_toml(v)}" for k, v in self.selection.items()) or "defaults"
        dma = ", ".join(f"{k} {v:g}" for k, v in self.dma.items())
        compute = ("the multi-worker scoring below" if self.scoring else
                   "the default compute estimate")
        load = "" if self.load == 1.0 else f"; client rates x{self.load:g}"
        kind = "" if self.fail_kind == "process" else f"; failure kind {self.fail_kind}"
        if self.stall_s:
            kind += f"; the controller stopped {self.stall_s:g} s at the failure"
        health = "on" if self.health else "off"
        return (f"selection {sel}; {compute}; passive health {health}; D-MA {dma}; congestion "
                f"{self.congestion}{load}{kind}")

    def rate(self, client: Client) -> float:
        """`client`'s base request rate in this plan."""
        return client.rate * self.load

    def runs(self, scenario: Scenario) -> list[tuple[str, tuple[str, ...]]]:
        """The runs of `scenario`, in order: (policy, ()) for each policy under test, then
        ("dyncast", the reference's site hosts) if the scenario has a reference and it is
        wanted (a reference run drains the other instances: the policy does not matter)."""
        runs: list[tuple[str, tuple[str, ...]]] = [(policy, ()) for policy in self.policies]
        if self.references and scenario.reference:
            runs.append(("dyncast", scenario.reference))
        return runs

    def bulk_in(self, scenario: Scenario) -> bool:
        """Whether the bulk transfer runs during `scenario`."""
        return self.congestion == "standing" or scenario.bulk

    def dma_args(self) -> list[str]:
        """The D-MA's reporting options."""
        args = ["--cpu-source", "instance"]
        for key, value in self.dma.items():
            args += [f"--{key}", str(value)]
        return args


def reference_label(only: tuple[str, ...]) -> str:
    """How a reference run is named in the results: `e2 only`."""
    return "+".join(only) + " only"


def _line(s: dict[str, Any]) -> str:
    """One run's numbers on one line."""
    def ms(v: float | None) -> str:
        return "   -  " if v is None else f"{v:6.0f}"
    aff = s["affinity"]
    return (f"n={s['requests']:4d} err={s['errors']:3d} mean={ms(s['mean_ms'])} "
            f"p95={ms(s['p95_ms'])} p99={ms(s['p99_ms'])} ddl={(s['deadline'] or 0):.0%} "
            f"util={s['util_max']:.2f}/{s['util_mean']:.2f} moved={aff['changed']} "
            f"broken={aff['broken']} timeouts={aff['timeouts']} react={s['react_s']} "
            f"recover={s['recover_s']} late={s['late_s']} "
            f"load={s['loadavg']}")


def check(results: list[dict[str, Any]]) -> list[str]:
    """What says the benchmark itself did not work (not how well a policy did)."""
    problems = []
    served: dict[tuple[str, str], int] = {}
    for s in results:
        where = f"{s['network']}/{s['scenario']}/{s['policy']}"
        failure = s["scenario"] == "failure"
        key = (s["network"], s["scenario"])
        served[key] = max(served.get(key, 0), s["requests"] - s["errors"])
        if s["requests"] == 0 or (s["policy"] == "dyncast"
                                  and s["errors"] > (0.2 if failure else 0.02) * s["requests"]):
            problems.append(f"{where}: {s['errors']} of {s['requests']} requests failed")
        aff = s["affinity"]
        if not failure and (aff["changed"] or aff["broken"]):
            problems.append(f"{where}: keep-alive connections lost their instance: {aff}")
        if aff["connections"] == 0:
            problems.append(f"{where}: no keep-alive connection recorded")
    problems += [f"{n}/{sc}: no policy got requests through" for (n, sc), ok in served.items()
                 if ok == 0]
    return problems


WORD_SETTINGS = {"pick", "queue_price"}  # [controller.selection] settings whose value is a word


def _toml(value: float | bool | str) -> str:
    """A setting's value as TOML writes it."""
    if isinstance(value, str):
        return f'"{value}"'
    return str(value).lower() if isinstance(value, bool) else f"{value:g}"


def _pairs(items: list[str], booleans: bool = True) -> dict[str, float | bool | str]:
    """KEY=VALUE arguments as a dict of numbers and, if `booleans`, true/false or, for the
    keys in WORD_SETTINGS, a word (`pick=per-flow`)."""
    out: dict[str, float | bool | str] = {}
    expected = "KEY=NUMBER or KEY=true/false" if booleans else "KEY=NUMBER"
    for item in items:
        key, _, value = item.partition("=")
        if booleans and value in ("true", "false"):
            out[key] = value == "true"
            continue
        try:
            out[key] = float(value)
        except ValueError:
            if booleans and key in WORD_SETTINGS and re.fullmatch(r"[a-z][a-z-]*", value):
                out[key] = value
                continue
            raise SystemExit(f"steering: {item!r}: expected {expected}") from None
    return out


def _positive(text: str) -> float:
    """An argparse type: a finite number > 0."""
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"not a number: {text!r}") from None
    if not 0 < value < float("inf"):
        raise argparse.ArgumentTypeError(f"must be a finite number > 0, got {text}")
    return value
