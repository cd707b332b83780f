"""Steering quality: the same workload under every selection policy, in Mininet, real traffic.

For each network (the draft's Figure 2, Topology Zoo's Abilene) one Mininet network runs under
the real controller, with a demo-service instance and a D-MA per edge site (unequal capacities)
and every switch-to-switch link shaped to 10 Mbit/s, one path of which a bulk transfer keeps
congested (there is no netem here for propagation delays). Each scenario (balanced, hot site, load
step, instance failure) runs once per policy (dyncast, nearest, least-loaded, round-robin,
random, p2c, least-inflight, consistent-hash; switched with PUT /services/web), with the same
seeded open-loop Poisson arrivals from clients at several ingresses (bench/loadgen.py: a fresh
TCP connection per request, plus keep-alive connections that check affinity). A scenario may
name a reference: one more run in which every new flow goes to the sites it names (the other
instances drained through the controller's API), what an operator who knew the scenario would
choose; it shows how much the network's capacity leaves any policy to gain.
Results: bench/results/steering.{txt,json}, docs/results/steering.md and its PNG plots.

    sudo .venv/bin/python bench/steering.py   # full: both networks, 8 policies (~20 min for 5)
    sudo .venv/bin/python bench/steering.py --quick   # smoke: Figure 2, 2 scenarios x 2 policies
    .venv/bin/python bench/steering.py --report-only  # rewrite the report from saved results

Exit status 1 when the benchmark did not work: the controller ignored a policy, dyncast lost
requests outside a failure, a keep-alive connection changed instance or was reset outside a
failure, or no policy got requests through. The performance targets are reported, not enforced.
"""

from __future__ import annotations

import argparse
import json
import os
import re
import signal
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from bench.steering_failover import (  # noqa: E402
    FAIL_KINDS,
    FAILOVER_SUFFIX,
    link_down,
    link_up,
    split_policy,
    wait_groups,
)
from bench.steering_failover import line as failure_line  # noqa: E402
from bench.steering_failover import summary as failure_summary  # noqa: E402
from bench.steering_net import (  # noqa: E402
    DSID,
    NETWORKS,
    PORT,
    PREFIX_LEN,
    SERVICE,
    BenchNet,
    Client,
    Scenario,
    Site,
    controller_config,
    service_body,
)
from bench.steering_stall import Stall, check_stall, inactivity_probe_ms  # noqa: E402
from bench.steering_stats import Capacity, summarise  # noqa: E402
from mininet_tests.harness import OVS_SEND_BUFFER, ovs_send_buffer  # noqa: E402
from mininet_tests.processes import bin_path  # noqa: E402

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
LOADGEN = ROOT / "bench" / "loadgen.py"
RESULTS = ROOT / "bench" / "results"
DOCS = ROOT / "docs" / "results"


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
    health: bool = False  # [controller.health] enabled: passive health (docs/decisions.md)

    def controller_extra(self) -> str:
        """The [controller.selection] and [controller.scoring] tables under test."""
        table = "".join(f"{k} = {_toml(v)}\n" for k, v in self.selection.items())
        health = "[controller.health]\nenabled = true\n" if self.health else ""
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
        kind += "; passive health on" if self.health else ""
        return (f"selection {sel}; {compute}; D-MA {dma}; congestion {self.congestion}{load}"
                f"{kind}")

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


def _topo(graph: Any) -> Any:
    """A Mininet Topo built from `graph` by topologies/graph.py (links carry their `bw`)."""
    from mininet.topo import Topo

    from topologies.graph import add_graph

    class BenchTopo(Topo):  # type: ignore[misc]
        """The benchmark network."""

        def build(self, graph: Any) -> None:  # type: ignore[override]
            """Add the graph's switches, hosts and links."""
            self.graph = graph
            add_graph(self, graph, PREFIX_LEN)

    return BenchTopo(graph=graph)


class Bench:
    """One network under the controller, its sites and the runs made on it."""

    def __init__(self, net: BenchNet, lab: Any, plan: Plan) -> None:
        self.net = net
        self.plan = plan
        self.lab = lab
        self.site_procs: dict[str, list[Any]] = {}
        self.starts = 0  # names processes uniquely (each gets a fresh log)
        self.stall: Stall | None = None  # the controller's stall at this run's failure

    # ---- bringing the network up -------------------------------------------------------------

    def start(self) -> None:
        """Controller, Mininet, management links, queues, sites; wait until all are active."""
        lab, net = self.lab, self.net
        lab.graph = net.graph
        config = lab.artifacts / "dyncast.toml"
        config.write_text(controller_config(net, extra=self.plan.controller_extra()))
        controller = lab.start_controller(config)
        lab.build_net(_topo(net.graph), controller.ofp_port)
        for site in net.sites:
            lab.add_mgmt_link(site.host, net.graph.nodes[site.host]["mgmt"])
        lab.wait_topology(timeout=60)
        if self.plan.stall_s:
            problem = check_stall(self.plan.stall_s, inactivity_probe_ms(lab.bridges))
            if problem:
                raise BenchError(problem)
        self.bound_queues()
        for site in net.sites:
            self.start_site(site)
        self.wait_active({s.dbid for s in net.sites})

    def bound_queues(self, packets: int = 100) -> None:
        """Give every shaped switch port a FIFO of `packets` (Linux's default is 1000, 1.2 s
        at 10 Mbit/s): a full queue then costs a crossing packet about 0.12 s."""
        switches = set(self.lab.net.switches)
        for link in self.lab.net.links:
            for intf in (link.intf1, link.intf2):
                if intf.node in switches and intf.params.get("bw"):
                    out = intf.tc(f"%s qdisc add dev %s parent 5:1 handle 10: pfifo limit "
                                  f"{packets}")
                    if out.strip():
                        raise BenchError(f"tc on {intf}: {out.strip()}")

    def start_site(self, site: Site) -> None:
        """Start the site's demo service, then its D-MA (fresh logs each time)."""
        lab = self.lab
        self.starts += 1
        service = lab.popen(site.host, lab.demo_service_argv(
            site.dbid, site.host, site.capacity, site.service_ms, PORT),
            f"service-{self.starts}", ready=r"^serving ")
        url = f"http://{lab.mgmt[site.host]}:{lab.controller.rest_port}"
        dma = lab.popen(site.host, [
            bin_path("dyncast-dma"), "--controller", url, "--name", f"dma-{site.host}",
            "--key-file", str(lab.controller.creds.key_file(f"dma-{site.host}")),
            *self.plan.dma_args(),
            "--instance", f"{DSID}={site.dbid}@http://{site.dbid}:{PORT}/stats"],
            f"dma-{self.starts}", ready=r"^registered ")
        self.site_procs[site.host] = [service, dma]

    def kill_site(self, host: str) -> None:
        """Crash a site: SIGKILL its D-MA and service at once, then reap them (no withdrawal;
        killing and reaping one at a time let the D-MA see its service gone and report it
        not serving first, in some runs and not others)."""
        procs = [p for p in reversed(self.site_procs.pop(host, [])) if p.popen.poll() is None]
        for proc in procs:
            os.kill(proc.popen.pid, signal.SIGKILL)
        for proc in procs:
            proc.popen.wait(timeout=5)

    def wait_active(self, dbids: set[str], timeout: float = 30.0) -> None:
        """Wait until the controller has every instance in `dbids` active and located."""
        deadline = time.monotonic() + timeout
        while True:
            rows = self.lab.rest("GET", "/instances")[1]
            ready = {r["dbid"] for r in rows if r.get("state") == "active" and r.get("location")}
            if dbids <= ready:
                return
            if time.monotonic() > deadline:
                raise BenchError(f"instances not active and located: {sorted(dbids - ready)}; "
                                 f"controller says {[(r['dbid'], r.get('state')) for r in rows]}")
            time.sleep(0.2)

    # ---- one run -----------------------------------------------------------------------------

    def set_policy(self, policy: str) -> None:
        """PUT the service with `policy` (`P+failover`: P with switch-local failover); wait
        until every decision shows it and, with failover, every site's switch holds its
        fast-failover groups."""
        policy, failover = split_policy(policy)
        status, body = self.lab.rest("PUT", f"/services/{SERVICE}",
                                     service_body(self.net, policy, failover))
        if status != 200:
            raise BenchError(f"PUT /services/{SERVICE} with policy {policy}: {status} {body}")
        self.wait_decisions(
            lambda rows: all(r.get("policy") == policy for r in rows),
            lambda rows: f"the controller's decisions do not show policy {policy!r} (does "
                         f"controller/core.py pass the service's policy to the engine?): "
                         f"{[r.get('policy') for r in rows]}")
        problem = wait_groups(self.net, failover)
        if problem:
            raise BenchError(f"policy {policy}: {problem}")

    def fail(self, host: str) -> float:
        """Fail the site on `host` the plan's way (steering_failover.py), the controller
        stopped first for `stall_s` (steering_stall.py) if asked; returns when."""
        if self.plan.stall_s:
            ctl = self.lab.controller
            assert ctl is not None and ctl.popen is not None
            self.stall = Stall(ctl.popen.pid, self.plan.stall_s, list(self.lab.bridges))
            self.stall.start()
        if self.plan.fail_kind == "link":
            return link_down(self.lab.net, self.net, host)
        at = time.time()
        self.kill_site(host)
        return at

    def restore(self, host: str) -> None:
        """Undo `fail`; wait until the site's instance is active and located again."""
        if self.plan.fail_kind == "link":
            link_up(self.lab, self.net, host)
        else:
            self.start_site(self.net.site(host))
        self.wait_active({self.net.site(host).dbid})

    def wait_decisions(self, ok: Callable[[list[dict[str, Any]]], bool],
                       failure: Callable[[list[dict[str, Any]]], str],
                       timeout: float = 5.0) -> None:
        """Poll the service's decisions until there are some and `ok` holds for them; after
        `timeout` s, BenchError with `failure` of the last ones."""
        deadline = time.monotonic() + timeout
        while True:
            rows = self.lab.rest("GET", f"/decisions/{SERVICE}")[1]
            if rows and ok(rows):
                return
            if time.monotonic() > deadline:
                raise BenchError(failure(rows))
            time.sleep(0.1)

    def restrict(self, only: tuple[str, ...]) -> list[str]:
        """Drain every instance but those of the sites on the hosts in `only` (the
        controller's operator drain), then wait until every decision gives new flows to those
        alone. Returns the drained D-BIDs, for `release`."""
        hosts = {s.host for s in self.net.sites}
        if not only or set(only) - hosts:
            raise BenchError(f"a reference names no site or an unknown one: {only} "
                             f"(sites: {sorted(hosts)})")
        keep = {self.net.site(h).dbid for h in only}
        drained = [s.dbid for s in self.net.sites if s.dbid not in keep]
        for dbid in drained:
            status, body = self.lab.rest("POST", f"/instances/{dbid}/drain")
            if status != 200:
                raise BenchError(f"POST /instances/{dbid}/drain: {status} {body}")

        def given(rows: list[dict[str, Any]]) -> set[str]:
            return {c["dbid"] for r in rows for c in r["candidates"] if c["share"] > 0}

        self.wait_decisions(
            lambda rows: bool(given(rows)) and given(rows) <= keep,
            lambda rows: f"after draining {drained}, the decisions still give new flows to "
                         f"{sorted(given(rows) - keep) or 'no instance'}")
        return drained

    def release(self, drained: list[str]) -> None:
        """Undrain what `restrict` drained; wait until those instances are active again."""
        for dbid in drained:
            status, body = self.lab.rest("POST", f"/instances/{dbid}/undrain")
            if status != 200:
                raise BenchError(f"POST /instances/{dbid}/undrain: {status} {body}")
        self.wait_active(set(drained))

    def set_load(self, host: str, extra_load: float) -> None:
        """Set a site's synthetic extra load through its demo service."""
        dbid = self.net.site(host).dbid
        out = self.lab.host_cmd(host, f"curl -s -m 3 -X POST -d '{{\"extra_load\": "
                                      f"{extra_load}}}' http://{dbid}:{PORT}/load")
        if "extra_load" not in out:
            raise BenchError(f"{host}: POST /load failed: {out!r}")

    def wait_idle(self, timeout: float = 90.0) -> None:
        """Wait until no site has a request in progress or queued (an overloaded run leaves
        a backlog: the demo service still serves requests whose clients gave up)."""
        deadline = time.monotonic() + timeout
        for site in self.net.sites:
            while True:
                out = self.lab.host_cmd(site.host, f"curl -s -m 2 http://{site.dbid}:{PORT}"
                                                   f"/stats")
                try:
                    stats = json.loads(out)
                    if stats["sessions"] == 0 and stats["queue"] == 0:
                        break
                except (ValueError, KeyError):
                    pass
                if time.monotonic() > deadline:
                    raise BenchError(f"{site.host} still busy after {timeout:g} s: {out!r}")
                time.sleep(0.5)

    def start_bulk(self, seconds: float) -> list[Any]:
        """A bulk transfer from the bulk host to the congested site's host that keeps the
        access link's FIFO full: TCP with four streams."""
        self.starts += 1
        sink = self.net.site(self.net.congested)
        server = self.lab.popen(sink.host, ["iperf3", "-s", "-B", sink.dbid, "-p", "5201", "-1",
                                           "--forceflush"],
                                f"iperf3-server-{self.starts}", ready=r"listening")
        client = self.lab.popen(self.net.bulk_host, [
            "iperf3", "-c", sink.dbid, "-p", "5201", "-t", f"{seconds:.0f}", "-P", "4",
            "--forceflush"], f"iperf3-{self.starts}", ready=r"connected to")
        return [client, server]

    def run(self, scenario: Scenario, policy: str, duration: float, seed: int,
            only: tuple[str, ...] = ()) -> dict[str, Any]:
        """One scenario under one policy, or with `only` the sites on those hosts taking
        every new flow (a reference run: the others drained); returns its summary."""
        net, lab = self.net, self.lab
        self.wait_idle()
        self.set_policy(policy)
        drained = self.restrict(only) if only else []
        for site in net.sites:
            self.set_load(site.host, scenario.extra_load.get(site.host, 0.0))
        bulk = self.start_bulk(duration + SETTLE_S + 3) if self.plan.bulk_in(scenario) else []
        time.sleep(SETTLE_S)
        tag = f"{scenario.name}-{policy}"
        start_at = time.time() + 1.0
        clients = []
        for k, client in enumerate(net.clients):
            argv = [sys.executable, str(LOADGEN), "--url", f"http://{DSID}:{PORT}/",
                    "--rate", str(self.plan.rate(client)), "--duration", str(duration),
                    "--keepalive", str(KEEPALIVE), "--ka-interval", f"{KA_INTERVAL:g}",
                    "--ka-timeout", "10",
                    "--start-at", f"{start_at:.3f}",
                    "--seed", str(seed * 100 + k), "--out", str(lab.artifacts / f"{tag}-"
                                                                f"{client.host}.jsonl")]
            if client.host in scenario.step:
                argv += ["--step-at", str(duration / 2),
                         "--step-rate", str(self.plan.rate(client) * scenario.step[client.host])]
            clients.append(lab.popen(client.host, argv, f"loadgen-{tag}"))
        load = os.getloadavg()[0]
        if scenario.fail is not None:
            time.sleep(max(0.0, start_at + duration / 2 - time.time()))
            failed_at = self.fail(scenario.fail) - start_at
        for proc in clients:
            if proc.popen.wait(timeout=duration + 60) != 0:
                raise BenchError(f"{proc.host} loadgen exited {proc.popen.returncode}: "
                                 f"{proc.log()[-500:]}")
        load = max(load, os.getloadavg()[0])
        stall, self.stall = self.stall, None
        if stall is not None and stall.wait():
            raise BenchError(f"{tag}: {stall.problem}")
        for proc in bulk:
            lab.stop_process(proc)
        if scenario.fail is not None:
            self.restore(scenario.fail)
        if drained:
            self.release(drained)
        records = []
        for client in net.clients:
            path = lab.artifacts / f"{tag}-{client.host}.jsonl"
            records += [{**json.loads(line), "src": client.host}
                        for line in path.read_text().splitlines()]
        capacities = {s.host: Capacity(s.capacity, s.service_ms,
                                       1.0 + scenario.extra_load.get(s.host, 0.0))
                      for s in net.sites}
        step_at = duration / 2 if scenario.step or scenario.fail else None
        out = summarise(records, capacities, duration, net.deadline_ms, step_at,
                        set(scenario.step) or None)
        out.update(network=net.name, scenario=scenario.name,
                   policy=reference_label(only) if only else policy,
                   duration_s=duration, loadavg=round(load, 2))
        if only:
            out["reference"] = list(only)
        if scenario.fail is not None:
            out["failure"] = {"kind": self.plan.fail_kind, **failure_summary(
                records, failed_at, scenario.fail)}  # loadgen names the instance's host
            if stall is not None:
                out["failure"]["stall"] = stall.record()
        return out


def reference_label(only: tuple[str, ...]) -> str:
    """How a reference run is named in the results: `e2 only`."""
    return "+".join(only) + " only"


def run_network(name: str, plan: Plan, log: Any) -> list[dict[str, Any]]:
    """Bring one network up, run every scenario under every policy, tear it down."""
    from mininet_tests.harness import Lab

    net = NETWORKS[name]()
    lab = Lab(f"steering-{name}")
    bench = Bench(net, lab, plan)
    results = []
    try:
        began = time.monotonic()
        bench.start()
        log(f"{name}: network up in {time.monotonic() - began:.0f} s")
        for sc_name in plan.scenarios:
            scenario = net.scenario(sc_name)
            for policy, only in plan.runs(scenario):
                began = time.monotonic()
                summary = bench.run(scenario, policy, plan.durations[sc_name], plan.seed, only)
                results.append(summary)
                log(f"{name:8s} {sc_name:10s} {summary['policy']:12s} " + _line(summary)
                    + f"  [{time.monotonic() - began:.0f} s]")
                if "failure" in summary:
                    log(f"{'':8s} {sc_name:10s} {summary['policy']:12s} "
                        + failure_line(summary["failure"]))
    finally:
        problems = lab.close()
        if problems:
            log(f"{name}: teardown problems (artefacts in {lab.artifacts}):\n  "
                + "\n  ".join(problems))
    return results


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


WORD_SETTINGS = {"pick"}  # [controller.selection] settings whose value is a word


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


def main(argv: list[str] | None = None) -> int:
    """Run the benchmark, write the results and the report."""
    ap = argparse.ArgumentParser(prog="steering", description=__doc__.splitlines()[0])
    ap.add_argument("--quick", action="store_true", help="Figure 2, two scenarios, two policies")
    ap.add_argument("--networks", nargs="+", choices=sorted(NETWORKS))
    ap.add_argument("--scenarios", nargs="+")
    ap.add_argument("--policies", nargs="+",
                    choices=[*POLICIES, *(p + FAILOVER_SUFFIX for p in POLICIES)],
                    help="P+failover: P with the service's switch-local failover")
    ap.add_argument("--fail-kind", choices=FAIL_KINDS, default="process",
                    help="the failure scenario: process (default): the site's service and "
                         "D-MA are killed; link: its access link goes down (the switch's port)")
    ap.add_argument("--controller-stall", type=_positive, default=0.0, metavar="S",
                    help="stop the controller (SIGSTOP) for S s at the failure, then SIGCONT: "
                         "a busy or partitioned controller (under OVS's inactivity probe)")
    ap.add_argument("--health", action="store_true",
                    help="turn passive health on ([controller.health] enabled = true)")
    ap.add_argument("--duration", type=float, default=None, help="seconds per run")
    ap.add_argument("--seed", type=int, default=1)
    ap.add_argument("--selection", nargs="+", default=[], metavar="KEY=VALUE",
                    help="[controller.selection] settings (spread, sharpness, hysteresis)")
    ap.add_argument("--congestion", choices=CONGESTION, default="standing",
                    help="standing (default): the bulk transfer congests one path in every "
                         "scenario; hot-site: only in the hot-site scenario")
    ap.add_argument("--tuned", action="store_true",
                    help="the settings of the runs before issue 22 (spread 0.1, the bench's "
                         "multi-worker scoring) instead of the controller's defaults")
    ap.add_argument("--load", type=_positive, default=1.0,
                    help="multiply every client's request rate by this (default 1)")
    ap.add_argument("--dma", nargs="+", default=[], metavar="KEY=VALUE",
                    help="D-MA reporting (interval, min-interval, threshold)")
    ap.add_argument("--no-reference", action="store_true",
                    help="skip the reference runs (every new flow to a scenario's best sites)")
    ap.add_argument("--no-report", action="store_true", help="do not rewrite docs/results")
    ap.add_argument("--tag", default="", help="write bench/results/steering-TAG.* (no report)")
    ap.add_argument("--report-only", action="store_true",
                    help="rewrite docs/results from bench/results/steering.json")
    args = ap.parse_args(argv)
    if args.report_only:
        report(RESULTS / "steering.json")
        return 0
    if os.geteuid() != 0:
        print("steering: needs root (Mininet)", file=sys.stderr)
        return 2
    networks = args.networks or (["figure2"] if args.quick else ["figure2", "abilene"])
    scenarios = args.scenarios or (["hot-site", "failure"] if args.quick else
                                   ["balanced", "hot-site", "load-step", "failure"])
    policies = args.policies or (["dyncast", "round-robin"] if args.quick else list(POLICIES))
    base = args.duration or (10.0 if args.quick else 18.0)
    durations = {s: base * (1.0 if s in ("balanced", "hot-site") else 1.25) for s in scenarios}
    base_selection = SELECTION if args.tuned else {}
    dma = {k: float(v) for k, v in _pairs(args.dma, booleans=False).items()}
    plan = Plan(scenarios, policies, durations, args.seed,
                {**base_selection, **_pairs(args.selection)},
                SCORING if args.tuned else "", {**DMA, **dma},
                args.congestion, args.load, not args.no_reference, args.fail_kind,
                stall_s=args.controller_stall, health=args.health)
    began = time.monotonic()
    lines: list[str] = []

    def log(text: str) -> None:
        print(text, flush=True)
        lines.append(text)

    log(f"{plan.describe()}; durations {plan.durations}")
    send_buffer = ovs_send_buffer()
    if send_buffer < OVS_SEND_BUFFER:
        log(f"steering: Open vSwitch's packet socket has a {send_buffer}-byte send "
            "buffer; packets queued at shaped links would block sends on every port. Stop "
            "Open vSwitch and run scripts/setup.sh (it raises net.core.wmem_default first).")
        return 1

    signal.signal(signal.SIGTERM, lambda *_: sys.exit(143))  # tear the network down
    results: list[dict[str, Any]] = []
    try:
        for name in networks:
            results += run_network(name, plan, log)
    except BenchError as exc:
        log(f"steering: {exc}")
        return 1
    log(f"total {time.monotonic() - began:.0f} s")
    problems = check(results)
    for p in problems:
        log(f"PROBLEM {p}")
    suffix = f"-{args.tag}" if args.tag else "-quick" if args.quick else ""
    RESULTS.mkdir(parents=True, exist_ok=True)
    (RESULTS / f"steering{suffix}.txt").write_text("\n".join(lines) + "\n")
    saved = {"networks": networks, "settings": plan.describe(), "congestion": plan.congestion,
             "load": plan.load,
             "controller": plan.controller_extra(), "runs": results}
    (RESULTS / f"steering{suffix}.json").write_text(json.dumps(saved, indent=1) + "\n")
    if not (args.quick or args.no_report or args.tag):
        report(RESULTS / "steering.json")
    return 1 if problems else 0


def report(path: Path) -> None:
    """Write docs/results/steering.md and its plots from saved results."""
    from bench.steering_report import write_report

    saved = json.loads(path.read_text())
    defaults_path = path.with_name("steering-defaults.json")
    defaults = json.loads(defaults_path.read_text())["runs"] if defaults_path.exists() else None
    heavy_path = path.with_name("steering-heavy.json")
    heavy = json.loads(heavy_path.read_text())["runs"] if heavy_path.exists() else None
    repeats = {}
    for seed_path in sorted(path.parent.glob("steering-seed*.json")):
        found = re.fullmatch(r"steering-seed(\d+)\.json", seed_path.name)
        if found and int(found.group(1)) != 1:
            repeats[int(found.group(1))] = json.loads(seed_path.read_text())["runs"]
    extra = None
    baselines_path = path.with_name("steering-baselines.json")
    if baselines_path.exists():
        from bench.steering_baselines import baselines_section

        extra = baselines_section(json.loads(baselines_path.read_text()), saved["networks"])
    sweep_path = path.with_name("steering-sweep.json")
    if sweep_path.exists():
        from bench.steering_sweep_report import sweep_section

        sweep = json.loads(sweep_path.read_text())
        extra = [*(extra or []), *sweep_section(sweep, DOCS)]
        queueing_path = path.with_name("steering-sweep-queueing.json")
        if queueing_path.exists():
            from bench.steering_sweep_report import queueing_section

            extra += queueing_section(json.loads(queueing_path.read_text()), sweep)
        perflow_path = path.with_name("steering-sweep-perflow.json")
        perflow_base = path.with_name("steering-sweep-perflow-defaults.json")
        if perflow_path.exists() and perflow_base.exists():
            from bench.steering_perflow_report import perflow_section

            extra += perflow_section(json.loads(perflow_path.read_text()),
                                     json.loads(perflow_base.read_text()))
    from bench.steering_failover import HEALTH_TAGS, TAGS, failover_section, health_section

    failover = {tag: json.loads(p.read_text()) for tag in TAGS
                if (p := path.with_name(f"steering-failover-{tag}.json")).exists()}
    if failover:
        extra = [*(extra or []), *failover_section(failover)]
    health = {tag: json.loads(p.read_text()) for tag in HEALTH_TAGS
              if (p := path.with_name(f"steering-{tag}.json")).exists()}
    if "process" in failover:
        health["failover-process"] = failover["process"]
    extra = [*(extra or []), *health_section(health)]
    write_report(saved, [NETWORKS[n]() for n in saved["networks"]], DOCS, defaults, heavy,
                 repeats, extra)


if __name__ == "__main__":
    sys.exit(main())
