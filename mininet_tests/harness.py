"""The Mininet test harness: one `Lab` per test, holding everything the test started.

Boundary: a `Lab` creates the controller process, the Mininet network, management veth links
and processes inside hosts, and records each by name or pid. `Lab.close()` dumps the flow
tables, removes exactly what was recorded (processes by pid, bridges and links by name),
checks that none of it is left and returns the problems, including controller errors, for the
fixture to fail the test with. Nothing here kills by process name or cleans up what it did not
create (never Mininet's own broad cleanup).
"""

from __future__ import annotations

import contextlib
import fcntl
import os
import re
import secrets
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Callable, Sequence
from functools import partial
from pathlib import Path
from typing import Any

import pytest

from mininet_tests.flowdump import dump_flows, dump_flows_text
from mininet_tests.processes import (
    ARTIFACTS,
    REPO,
    ControllerProcess,
    HostProcess,
    artifacts_for,
    bin_path,
    free_port,
    http_json,
    pid_alive,
    run,
    stop_pid,
    terminate_all,
    wait_until,
)

OVS_CTL = "/usr/share/openvswitch/scripts/ovs-ctl"
OVS_SEND_BUFFER = 16 * 1024 * 1024  # room for every shaped queue (raise_send_buffer_default)
ICMP_PING = Path(__file__).with_name("icmp_ping.py")  # the machine has no `ping`
MGMT_NET = "10.254.{n}.{i}"  # management link n: root side .1, host side .2, /24
BUILD_ATTEMPTS = 2  # a failed net.build() is cleaned up and tried once more (the error is kept)
# Bridge names (r1...) and management addresses are global on a machine, so Labs of different
# pytest runs must not overlap: each holds this lock from creation to close().
LOCK_PATH = Path(os.environ.get("DYNCAST_MININET_LOCK", "/run/lock/dyncast-mininet.lock"))
LOCK_WAIT_S = float(os.environ.get("DYNCAST_MININET_LOCK_WAIT", "900"))

__all__ = ["ARTIFACTS", "REPO", "ControllerProcess", "HostProcess", "Lab", "dump_flows",
           "free_port", "http_json", "require_root_and_ovs", "wait_until"]


def require_root_and_ovs() -> None:
    """Skip unless root; start Open vSwitch (userspace datapath) if `ovs-vsctl show` fails."""
    if os.geteuid() != 0:
        pytest.skip("Mininet tests need root (run them with sudo)")
    if run(["ovs-vsctl", "-t", "2", "show"]).returncode == 0:
        return
    raise_send_buffer_default()
    started = run([OVS_CTL, "start", "--system-id=random", "--no-monitor"], timeout=60)
    if run(["ovs-vsctl", "-t", "5", "show"]).returncode != 0:
        pytest.skip(f"Open vSwitch is not running and `{OVS_CTL} start` failed: "
                    f"{(started.stdout + started.stderr).strip()[-500:]}")


def raise_send_buffer_default() -> None:
    """Raise net.core.wmem_default to OVS_SEND_BUFFER before Open vSwitch starts: the
    userspace datapath sends on every port through one raw packet socket created with it, and
    packets waiting in shaped links' queues are charged to that socket (scripts/setup.sh)."""
    path = Path("/proc/sys/net/core/wmem_default")
    with contextlib.suppress(OSError):  # not allowed here: tests still run, shaped links lose
        if int(path.read_text()) < OVS_SEND_BUFFER:
            path.write_text(str(OVS_SEND_BUFFER))


def ovs_send_buffer() -> int:
    """The send buffer of ovs-vswitchd's raw packet sockets (the smallest), or, until its
    first send creates them, the net.core.wmem_default they will get."""
    sizes = [int(found.group(1)) for line in run(["ss", "-0", "-m", "-p"]).stdout.splitlines()
             if "ovs-vswitchd" in line and (found := re.search(r"\btb(\d+)", line))]
    # the smallest: its per-port receive sockets may be younger than the one it sends through
    return min(sizes, default=int(Path("/proc/sys/net/core/wmem_default").read_text()))


def take_machine_lock(owner: str, timeout: float = LOCK_WAIT_S) -> int:
    """Wait for the machine-wide Mininet test lock and return its fd (closing it releases it)."""
    fd = os.open(LOCK_PATH, os.O_RDWR | os.O_CREAT, 0o644)
    deadline = time.monotonic() + timeout
    while True:
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            break
        except BlockingIOError:
            if time.monotonic() >= deadline:
                holder = LOCK_PATH.read_text(errors="replace").strip()
                os.close(fd)
                pytest.fail(f"another Mininet test run holds {LOCK_PATH} ({holder}) for more "
                            f"than {timeout:g} s", pytrace=False)
            time.sleep(0.5)
    os.ftruncate(fd, 0)
    os.write(fd, f"pid {os.getpid()}: {owner}\n".encode())
    return fd


def root_links() -> set[str]:
    """Names of the network interfaces in the root namespace."""
    out = run(["ip", "-o", "link", "show"]).stdout
    return {line.split(":")[1].strip().split("@")[0] for line in out.splitlines() if ":" in line}


def _delete_root_links(names: Sequence[str]) -> None:
    """Delete those of `names` that exist in the root namespace."""
    links = root_links()
    for name in names:
        if name in links:
            run(["ip", "link", "del", name])


def ovs_bridges() -> set[str]:
    """Names of the bridges in the OVS database."""
    return set(run(["ovs-vsctl", "list-br"]).stdout.split())


def namespace_pids(pid: int) -> list[int]:
    """Live processes other than `pid` in the network namespace of `pid`, unless that is ours."""
    try:
        ns = os.stat(f"/proc/{pid}/ns/net").st_ino
        if ns == os.stat("/proc/self/ns/net").st_ino:  # our own namespace is the root one
            return []
    except OSError:
        return []
    found = []
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit() and int(entry.name) != pid:
            try:
                if os.stat(entry / "ns" / "net").st_ino == ns and pid_alive(int(entry.name)):
                    found.append(int(entry.name))
            except OSError:
                continue
    return found


class Lab:
    """One test's network, controller and processes, and the names and pids it created."""

    def __init__(self, test_name: str) -> None:
        self.lock_fd = take_machine_lock(test_name)
        self.artifacts = artifacts_for(test_name)
        self.run_id = secrets.token_hex(3)
        self.controller: ControllerProcess | None = None
        self.net: Any = None
        self.graph: Any = None  # the topology's networkx description, when there is one
        self.bridges: list[str] = []
        self.links: list[str] = []  # interface names in the root namespace
        self.procs: list[HostProcess] = []
        self.mgmt: dict[str, str] = {}  # host -> address of the root side of its management link
        self.closed = False

    # ---- starting things ------------------------------------------------------------------

    def start_controller(self, config: Path | None = None,
                         command: Sequence[str] | None = None,
                         timeout: float = 30.0) -> ControllerProcess:
        """Start the controller process and wait until its REST API answers."""
        self.controller = ControllerProcess(self.artifacts, config, command=command)
        self.controller.start(timeout)
        return self.controller

    def stop_controller(self, sig: int = signal.SIGKILL, timeout: float = 15.0) -> int | None:
        """End the controller with `sig` by pid and wait for it; the network stays up."""
        assert self.controller is not None and self.controller.popen is not None
        popen = self.controller.popen
        popen.send_signal(sig)
        return popen.wait(timeout)

    def restart_controller(self, timeout: float = 30.0) -> float:
        """Start the controller again with the same config, store (its working directory) and
        ports, after stop_controller(); return the time (time.time) its REST API answered."""
        old = self.controller
        assert old is not None and old.popen is not None and old.popen.poll() is not None
        self.controller = ControllerProcess(old.artifacts, old.config, framework=old.framework,
                                            command=old.command, ofp_port=old.ofp_port,
                                            rest_port=old.rest_port, creds=old.creds,
                                            owners=old.owners)
        self.controller.start(timeout)
        return time.time()

    def fast_reconnect(self, bridges: Sequence[str] | None = None) -> None:
        """Make `bridges` (default: all of ours) retry their controller connection every
        second: OVS otherwise backs off up to 8 s, which a restart test would only measure."""
        for bridge in bridges or self.bridges:
            uuids = run(["ovs-vsctl", "get", "Bridge", bridge, "controller"]).stdout
            for uuid in re.findall(r"[0-9a-f-]{36}", uuids):
                done = run(["ovs-vsctl", "set", "Controller", uuid, "max_backoff=1000"])
                if done.returncode != 0:
                    raise RuntimeError(f"{bridge}: max_backoff: {done.stderr.strip()}")

    def drop_control(self, bridge: str) -> list[str]:
        """Cut `bridge`'s controller connection, its flow table kept: point it at a port where
        nothing listens (`ovs-vsctl del-controller` would not do: OVS flushes a bridge's flows
        when its controller set becomes empty). Return its targets for restore_control()."""
        assert self.controller is not None
        targets = run(["ovs-vsctl", "get-controller", bridge]).stdout.split()
        ours = f"tcp:127.0.0.1:{self.controller.ofp_port}"
        if ours not in targets:
            raise RuntimeError(f"{bridge}: controller targets {targets} lack {ours}")
        elsewhere = [f"tcp:127.0.0.1:{free_port()}" if t == ours else t for t in targets]
        done = run(["ovs-vsctl", "set-controller", bridge, *elsewhere])
        if done.returncode != 0:
            raise RuntimeError(f"{bridge}: set-controller: {done.stderr.strip()}")
        self.fast_reconnect([bridge])
        return targets

    def restore_control(self, bridge: str, targets: Sequence[str]) -> None:
        """Give `bridge` its controller targets back, reconnecting fast (fast_reconnect)."""
        done = run(["ovs-vsctl", "set-controller", bridge, *targets])
        if done.returncode != 0:
            raise RuntimeError(f"{bridge}: set-controller: {done.stderr.strip()}")
        self.fast_reconnect([bridge])
        self.net[bridge].controllerUUIDs(update=True)  # connected() reads a cached list

    @staticmethod
    def empty_switch(bridge: str) -> None:
        """Delete every entry of `bridge`'s flow tables behind the controller's back."""
        done = run(["ovs-ofctl", "-O", "OpenFlow13", "del-flows", bridge])
        if done.returncode != 0:
            raise RuntimeError(f"{bridge}: del-flows: {done.stderr.strip()}")

    def build_net(self, topo: Any, controller_port: int | None, fail_mode: str = "secure",
                  configure: Callable[[Any], None] | None = None, ipv6: bool = False) -> Any:
        """Build and start Mininet on `topo`: userspace OVS, OpenFlow 1.3, TCLink.

        controller_port None means no controller (use fail_mode="standalone"). Before start,
        every host interface gets checksum offload off and, unless `ipv6`, hosts lose IPv6;
        `configure(net)` runs after start. `self.graph` is taken from `topo.graph` if unset.
        """
        from mininet.link import TCLink
        from mininet.net import Mininet
        from mininet.node import OVSSwitch

        if self.graph is None:
            self.graph = getattr(topo, "graph", None)  # GraphTopo keeps its description
        self.bridges += [s for s in topo.switches() if s not in self.bridges]
        for u, v, info in topo.links(sort=True, withKeys=False, withInfo=True):
            self.links += [f"{u}-eth{info['port1']}", f"{v}-eth{info['port2']}"]
        switch = partial(OVSSwitch, datapath="user", protocols="OpenFlow13", failMode=fail_mode)
        failures: list[str] = []
        while True:
            self.net = Mininet(topo=topo, switch=switch, controller=None, link=TCLink,
                               autoSetMacs=False, build=False, waitConnected=False)
            if controller_port is not None:
                self.net.addController("ctl", controller=_remote_controller(), ip="127.0.0.1",
                                       port=controller_port)
            try:
                self.net.build()
                break
            except Exception as exc:  # one retry, then every error in one line
                failures.append(self._discard_build(exc, len(failures) + 1))
                if len(failures) == BUILD_ATTEMPTS:
                    raise RuntimeError("building the Mininet network failed "
                                       f"{len(failures)} times: " + " | ".join(failures)) from None
                print(f"harness: {failures[-1]}; removed what it made, building again",
                      file=sys.stderr, flush=True)
        for host in self.net.hosts:
            prepare_host(host, ipv6)
        self.net.start()
        if configure is not None:
            configure(self.net)
        if controller_port is not None:
            self.wait_connected()
        return self.net

    def _discard_build(self, exc: Exception, attempt: int) -> str:
        """After a failed net.build(): save the interfaces seen, end the nodes' shells (their
        namespaces go with them) and delete our root-namespace links by name; describe `exc`.

        Building makes no bridges (net.start does), so shells and veths are all there is."""
        what = f"net.build() attempt {attempt}: {type(exc).__name__}: {str(exc).strip()}"
        (self.artifacts / f"build-failure-{attempt}.txt").write_text(
            what + "\n\n" + run(["ip", "-o", "link", "show"]).stdout)
        net, self.net = self.net, None
        for node in [*net.hosts, *net.switches, *net.controllers]:
            with contextlib.suppress(Exception):
                node.terminate()
        _delete_root_links(self.links)
        return what

    def wait_connected(self, timeout: float = 20.0) -> None:
        """Wait until every switch has a connection to its controller: the lab's controller
        lists it as connected in GET /topology, or OVS's database says so. (OVS writes
        `is_connected` up to about 5 s late, so the controller's word usually comes first.)"""
        def unconnected() -> list[str]:
            seen = self._connected_dpids()
            return [s.name for s in self.net.switches
                    if int(s.dpid, 16) not in seen and not s.connected()]
        wait_until(lambda: not unconnected(), timeout,
                   lambda: f"switches not connected to the controller: {unconnected()}")

    def _connected_dpids(self) -> set[int]:
        """The datapath ids the lab's controller has a live channel with (empty when there is
        no such controller, or it does not answer)."""
        if self.controller is None or self.controller.popen is None \
                or self.controller.popen.poll() is not None or self.controller.command:
            return set()
        try:
            code, body = self.rest("GET", "/topology")
        except (OSError, ValueError):
            return set()
        if code != 200 or not isinstance(body, dict):
            return set()
        return {s["dpid"] for s in body.get("switches", []) if s.get("connected")}

    def wait_topology(self, timeout: float = 20.0) -> None:
        """Wait until the controller's GET /topology shows every switch-to-switch link of the
        graph (as {"src": {"dpid", "port"}, "dst": {...}} entries)."""
        expected = switch_links(self.graph)

        def missing() -> set[frozenset[tuple[int, int]]]:
            links = self.rest("GET", "/topology")[1]["links"]
            seen = {frozenset(((k["src"]["dpid"], k["src"]["port"]),
                               (k["dst"]["dpid"], k["dst"]["port"]))) for k in links}
            return expected - seen
        wait_until(lambda: not missing(), timeout,
                   lambda: f"controller has not discovered links {sorted(map(sorted, missing()))}")

    def add_mgmt_link(self, host: str, n: int) -> str:
        """Link `host` to the root namespace (10.254.n.1 here, .2 in the host); return .1."""
        root_ip, host_ip = MGMT_NET.format(n=n, i=1), MGMT_NET.format(n=n, i=2)
        taken = run(["ip", "-o", "addr", "show", "to", f"{root_ip}/32"]).stdout.strip()
        if taken:
            raise RuntimeError(f"{root_ip} is already used in the root namespace, left from an "
                               f"earlier run? Delete that interface by name: {taken}")
        node = self.net[host]
        name = f"dm{self.run_id}{n}"
        self.links.append(name)
        for argv in (["ip", "link", "add", name, "type", "veth", "peer", "name", f"{name}p",
                      "netns", str(node.pid)],
                     ["ip", "addr", "add", f"{root_ip}/24", "dev", name],
                     ["ip", "link", "set", name, "up"]):
            done = run(argv)
            if done.returncode != 0:
                raise RuntimeError(f"{' '.join(argv)}: {done.stderr.strip()}")
        intf = f"{host}-mgmt"
        for cmd in (f"ip link set {name}p name {intf}", f"ip addr add {host_ip}/24 dev {intf}",
                    f"ip link set {intf} up", f"ethtool -K {intf} tx off rx off"):
            out = node.cmd(cmd + " 2>&1 || echo FAILED")
            if "FAILED" in out:
                raise RuntimeError(f"{host}: {cmd}: {out.strip()}")
        self.mgmt[host] = root_ip
        return root_ip

    def popen(self, host: str, argv: Sequence[str], name: str, ready: str | None = None,
              ready_count: int = 1, timeout: float = 15.0) -> HostProcess:
        """Run `argv` in `host` (log: <host>-<name>.log); wait for `ready_count` lines matching
        the regex `ready`, failing at once if the process exits first."""
        log_path = self.artifacts / f"{host}-{name}.log"
        with open(log_path, "ab") as log:
            offset = log.tell()
            popen = self.net[host].popen(list(argv), stdout=log, stderr=subprocess.STDOUT,
                                         stdin=subprocess.DEVNULL, cwd=self.artifacts,
                                         env={**os.environ, "PYTHONUNBUFFERED": "1"})
        proc = HostProcess(host, name, popen, log_path, offset)
        self.procs.append(proc)
        if ready is not None:
            pattern = re.compile(ready, re.MULTILINE)

            def is_ready() -> bool:
                if len(pattern.findall(proc.log())) >= ready_count:
                    return True
                if popen.poll() is not None:
                    pytest.fail(f"{host} {name} exited with {popen.returncode} before "
                                f"printing {ready!r}:\n{proc.log()[-2000:]}", pytrace=False)
                return False
            wait_until(is_ready, timeout, lambda: f"{host} {name} did not print {ready!r} "
                       f"{ready_count} time(s); log:\n{proc.log()[-2000:]}")
        return proc

    def start_demo_service(self, host: str, dbid: str, name: str | None = None,
                           capacity: int = 4, service_ms: float = 20.0,
                           port: int = 8000) -> HostProcess:
        """Run `dyncast-demo-service` on `host` bound to `dbid` and wait until it serves."""
        name = name or f"{host}-{dbid.rsplit('.', 1)[1]}"
        argv = self.demo_service_argv(dbid, name, capacity, service_ms, port)
        return self.popen(host, argv, f"service-{dbid}", ready=r"^serving ")

    def start_dma(self, host: str, bindings: dict[str, str], interval: float = 1.0,
                  extra: Sequence[str] = (), port: int = 8000,
                  stats_on_dsid: bool = False) -> HostProcess:
        """Run `dyncast-dma` on `host` for bindings {D-SID: D-BID}; wait until all registered.
        stats_on_dsid: the instances listen on their D-SID (overlay), so read their stats there."""
        assert self.controller is not None, "start the controller first"
        url = f"http://{self.mgmt[host]}:{self.controller.rest_port}"
        assert self.controller.creds is not None
        key = self.controller.creds.key_file(f"dma-{host}")
        argv = [bin_path("dyncast-dma"), "--controller", url, "--name", f"dma-{host}",
                "--key-file", str(key), "--interval", str(interval), "--cpu-source", "instance",
                *extra]
        for dsid, dbid in bindings.items():
            argv += ["--instance",
                     f"{dsid}={dbid}@http://{dsid if stats_on_dsid else dbid}:{port}/stats"]
        return self.popen(host, argv, "dma", ready=r"^registered ", ready_count=len(bindings))

    def start_edge(self, host: str, **service_opts: Any) -> list[HostProcess]:
        """Start the graph's instances on edge `host` (a demo service per D-BID), then its D-MA."""
        data = self.graph.nodes[host]
        services = self.graph.graph["services"]
        procs = [self.start_demo_service(host, dbid, name=f"{svc}@{host}", **service_opts)
                 for svc, dbid in sorted(data["dbids"].items())]
        bindings = {services[svc]: dbid for svc, dbid in sorted(data["dbids"].items())}
        return [*procs, self.start_dma(host, bindings)]

    def demo_service_argv(self, dbid: str, name: str, capacity: int = 4,
                          service_ms: float = 20.0, port: int = 8000) -> list[str]:
        """The command line of a `dyncast-demo-service` bound to `dbid`."""
        return [bin_path("dyncast-demo-service"), "--bind", dbid, "--port", str(port),
                "--name", name, "--capacity", str(capacity), "--service-ms", str(service_ms)]

    def move_host(self, host: str, switch: str, port: int) -> None:
        """Move `host` to `switch` port `port` keeping its address and MAC: a new link comes
        up there and the old interface goes down (its switch sees the port go down)."""
        node, target = self.net[host], self.net[switch]
        old = node.defaultIntf()
        ip, mac = old.IP(), old.MAC()
        prefix = self.graph.graph.get("prefixlen", 16) if self.graph is not None else 16
        switch_intf = f"{switch}-eth{port}"
        self.links.append(switch_intf)
        link = self.net.addLink(node, target, port2=port)
        target.vsctl("add-port", switch, switch_intf, "--", "set", "Interface", switch_intf,
                     f"ofport_request={port}")
        target.cmd(f"ip link set {switch_intf} up")
        new = link.intf1
        for cmd in (f"ip addr flush dev {old}", f"ip link set {old} down",
                    f"ip link set {new} address {mac}", f"ip addr add {ip}/{prefix} dev {new}",
                    f"ethtool -K {new} tx off rx off", f"ip link set {new} up"):
            out = node.cmd(cmd + " 2>&1 || echo FAILED")
            if "FAILED" in out:
                raise RuntimeError(f"{host}: {cmd}: {out.strip()}")

    def stop_process(self, proc: HostProcess, timeout: float = 5.0) -> int | None:
        """End one host process by pid (SIGTERM, then SIGKILL); return its exit code."""
        return stop_pid(proc.popen, timeout)

    def rest(self, method: str, path: str, body: Any = None) -> tuple[int, Any]:
        """Call the controller's REST API (path relative to /dyncast/v1)."""
        assert self.controller is not None, "no controller in this lab"
        return self.controller.rest(method, path, body)

    def ping(self, src: str, dst: str, timeout: float = 1.0) -> float | None:
        """One ICMP echo from host `src` to address `dst`: the round trip in ms, or None."""
        out = self.host_cmd(src, f"{sys.executable} {ICMP_PING} {dst} {timeout}")
        found = re.search(r"^reply from \S+ in ([0-9.]+) ms", out, re.MULTILINE)
        return float(found.group(1)) if found else None

    def host_cmd(self, host: str, cmd: str) -> str:
        """Run a shell command in `host` and return its output."""
        return str(self.net[host].cmd(cmd))

    # ---- tearing down ---------------------------------------------------------------------

    def close(self) -> list[str]:
        """Remove everything this lab created; return problems (leftovers, controller errors)."""
        if self.closed:
            return []
        self.closed = True
        notes: list[str] = []
        try:
            problems = self._teardown(notes)
        finally:
            os.close(self.lock_fd)  # releases the machine-wide lock
        (self.artifacts / "teardown.txt").write_text("\n".join(notes + problems) + "\n")
        return problems

    def _teardown(self, notes: list[str]) -> list[str]:
        """Dump flows, stop processes, controller and Mininet, delete by name, check leftovers."""
        problems: list[str] = []

        def step(what: str, action: Callable[[], Any]) -> None:
            try:
                action()
            except Exception as exc:  # teardown goes on; the problem is reported
                problems.append(f"teardown: {what}: {exc!r}")

        existing = ovs_bridges()
        for bridge in self.bridges:
            if bridge in existing:
                step(f"dump {bridge}", lambda b=bridge: (self.artifacts / f"flows-{b}.txt")
                     .write_text(dump_flows_text(b, names=True)))
        step("signal processes", lambda: terminate_all([p.popen for p in self.procs]))
        for proc in reversed(self.procs):  # all told at once, so their exits overlap
            step(f"stop {proc.host} {proc.name}", lambda p=proc: notes.append(
                f"{p.host} {p.name} pid {p.popen.pid} exit {self.stop_process(p)}"))
        pids = self._node_pids()
        step("stray processes", lambda: notes.extend(self._kill_strays()))
        if self.controller is not None:
            ctl = self.controller

            def stop_controller() -> None:
                code = ctl.stop()
                notes.append(f"controller pid {ctl.popen.pid if ctl.popen else None} exit {code}")
                if code != 0:  # SIGTERM must close the apps cleanly (store flushed), exit 0
                    problems.append(f"controller did not exit cleanly on SIGTERM: exit {code}")
            step("stop controller", stop_controller)
        if self.net is not None:
            step("net.stop", self.net.stop)
            for node in self.net.controllers:  # RemoteController.stop() leaves its shell running
                step(f"terminate {node.name}", node.terminate)
        step("remove and check", lambda: problems.extend(self._remove_and_check(pids)))
        if self.controller is not None and (errors := self.controller.log_errors()):
            problems.append("controller log has errors:\n  " + "\n  ".join(errors[:50]))
        return problems

    def _node_pids(self) -> list[int]:
        """Pids of the shells of Mininet's hosts, switches and controller nodes."""
        if self.net is None:
            return []
        nodes = [*self.net.hosts, *self.net.switches, *self.net.controllers]
        return [n.shell.pid for n in nodes if getattr(n, "shell", None) is not None]

    def _kill_strays(self) -> list[str]:
        """End processes left in our hosts' namespaces that were not started through popen()."""
        notes = []
        for host in self.net.hosts if self.net is not None else []:
            if host.shell is None:
                continue
            for pid in namespace_pids(host.shell.pid):
                try:
                    cmdline = Path(f"/proc/{pid}/cmdline").read_bytes().replace(b"\0", b" ")
                    os.kill(pid, signal.SIGKILL)
                    notes.append(f"killed stray pid {pid} in {host.name}: {cmdline.decode()}")
                except OSError:
                    continue
        return notes

    def _remove_and_check(self, pids: list[int]) -> list[str]:
        """Delete recorded bridges and links by name; report any that, or any process, remains."""
        problems = []
        for bridge in self.bridges:
            run(["ovs-vsctl", "--if-exists", "del-br", bridge])
        _delete_root_links([*self.bridges, *self.links])  # userspace bridges leave a tap
        if left := sorted(set(self.bridges) & ovs_bridges()):
            problems.append(f"bridges left behind: {left}")
        if left := sorted((set(self.links) | set(self.bridges)) & root_links()):
            problems.append(f"links left behind: {left}")
        procs = [p.popen.pid for p in self.procs]
        if self.controller is not None and self.controller.popen is not None:
            procs.append(self.controller.popen.pid)
        if left := [pid for pid in procs + pids if pid_alive(pid)]:
            problems.append(f"processes left behind: {left}")
            for pid in left:
                with contextlib.suppress(OSError):
                    os.kill(pid, signal.SIGKILL)
        return problems


def switch_links(graph: Any) -> set[frozenset[tuple[int, int]]]:
    """The graph's switch-to-switch links as {(dpid, port), (dpid, port)} sets."""
    nodes = graph.nodes
    return {frozenset(((nodes[u]["dpid"], d["ports"][u]), (nodes[v]["dpid"], d["ports"][v])))
            for u, v, d in graph.edges(data=True) if "dpid" in nodes[u] and "dpid" in nodes[v]}


def prepare_host(host: Any, ipv6: bool) -> None:
    """Checksum offload off on every interface of `host` (needed for TCP through userspace OVS
    with address rewriting); IPv6 off unless `ipv6`."""
    for intf in host.intfList():
        if intf.name != "lo":
            out = host.cmd(f"ethtool -K {intf.name} tx off rx off 2>&1 || echo FAILED")
            if "FAILED" in out:
                raise RuntimeError(f"{host.name}: ethtool -K {intf.name}: {out.strip()}")
    if not ipv6:
        host.cmd("sysctl -qw net.ipv6.conf.all.disable_ipv6=1 net.ipv6.conf.default.disable_ipv6=1"
                 " net.ipv6.conf.lo.disable_ipv6=1")


def _remote_controller() -> type:
    """Mininet's RemoteController without its probe: `checkListening` runs `telnet` to the
    OpenFlow port in a shell and decodes what comes back as UTF-8, and when the controller's
    binary HELLO (a random xid) arrives before telnet quits, the decode raises
    UnicodeDecodeError in the middle of building the network (one CI run in many). A plain
    connect says the same without reading anything."""
    from mininet.node import RemoteController

    class ConnectCheckedController(RemoteController):  # type: ignore[misc]
        def checkListening(self) -> None:
            try:
                socket.create_connection((self.ip, self.port), timeout=5).close()
            except OSError as err:
                raise RuntimeError(f"controller not listening at {self.ip}:{self.port}: "
                                   f"{err}") from err

    return ConnectCheckedController
