"""One network of the steering benchmark under the real controller (bench/steering.py): the
network brought up (controller, Mininet, shaped queues, a demo service and a D-MA per site),
and one scenario run under one policy (`Bench.run`: the policy set, a reference's drains,
loads, the bulk transfer, the clients, the failure, the summary).
"""

from __future__ import annotations

import json
import os
import signal
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from bench.steering_failover import link_down, link_up, split_policy, wait_groups
from bench.steering_failover import summary as failure_summary
from bench.steering_net import (
    DSID,
    PORT,
    PREFIX_LEN,
    SERVICE,
    BenchNet,
    Scenario,
    Site,
    controller_config,
    service_body,
)
from bench.steering_plan import (
    KA_INTERVAL,
    KEEPALIVE,
    SETTLE_S,
    BenchError,
    Plan,
    reference_label,
)
from bench.steering_stall import Stall, check_stall, inactivity_probe_ms
from bench.steering_stats import Capacity, summarise
from bench.steering_trace import Tracer, run_record
from mininet_tests.processes import bin_path

LOADGEN = Path(__file__).resolve().parent / "loadgen.py"


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
        self.trace = False  # poll the controller during each run (bench/steering_trace.py)
        self.traces: list[dict[str, Any]] = []
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
        tracer = (Tracer(lab.rest, {s.dbid: s.host for s in net.sites}, net.base_delay_ms)
                  if self.trace else None)
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
        polls = tracer.stop() if tracer is not None else []
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
        if tracer is not None:
            self.traces.append(run_record({**out, "seed": seed}, polls, start_at, records,
                                          tracer.errors))
        if scenario.fail is not None:
            out["failure"] = {"kind": self.plan.fail_kind, **failure_summary(
                records, failed_at, scenario.fail)}  # loadgen names the instance's host
            if stall is not None:
                out["failure"]["stall"] = stall.record()
        return out
