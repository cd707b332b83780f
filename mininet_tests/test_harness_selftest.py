"""Self-test of the harness without the Dyncast controller: L2-learning OVS, a fake controller."""

from __future__ import annotations

import sys
import time
from collections.abc import Callable
from typing import Any

import pytest

from mininet_tests.harness import Lab, dump_flows, ovs_bridges, pid_alive, root_links, wait_until
from mininet_tests.processes import run
from topologies.figure2 import Figure2Topo, configure, figure2_graph, hosts_of
from topologies.zoo import GraphTopo, load_zoo, resolve_zoo_path

pytestmark = pytest.mark.sanity

FAKE_CONTROLLER = r"""
import json, sys
from http.server import BaseHTTPRequestHandler, HTTPServer

class Handler(BaseHTTPRequestHandler):
    def do_GET(self):
        body = json.dumps({"switches": [], "links": [], "hosts": []}).encode()
        self.send_response(200)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def do_POST(self):
        print("Traceback (most recent call last): fake failure", flush=True)
        self.send_response(500)
        self.send_header("Content-Length", "0")
        self.end_headers()

import signal
signal.signal(signal.SIGTERM, lambda *_: sys.exit(0))  # a clean controller exits 0
print("fake controller up", flush=True)
HTTPServer(("127.0.0.1", int(sys.argv[1])), Handler).serve_forever()
"""

FETCH = ("import urllib.request as u; r = u.urlopen('http://{ip}:8000/', timeout=5); "
         "print('STATUS', r.status)")


def test_figure2_forwards_and_leaves_nothing_behind(lab: Lab) -> None:
    """Figure 2 in standalone mode carries ping and TCP, flows dump, and close() removes all."""
    lab.graph = figure2_graph()
    lab.build_net(Figure2Topo(), controller_port=None, fail_mode="standalone",
                  configure=configure)
    for host in hosts_of(lab.graph, "edge"):
        lab.add_mgmt_link(host, lab.graph.nodes[host]["mgmt"])

    wait_until(lambda: lab.ping("c1", "10.0.0.31"), 10, "c1 cannot ping e3 at 10.0.0.31")
    assert lab.ping("c2", "10.0.0.22"), "e2's secondary address 10.0.0.22 does not answer"
    assert lab.ping("e2", "10.254.2.1"), "e2's management link does not reach the root side"
    assert "10.0.0.32/16" in lab.host_cmd("e3", "ip -o addr show dev e3-eth0")
    assert lab.host_cmd("c1", "cat /proc/sys/net/ipv6/conf/all/disable_ipv6").strip() == "1"

    server = lab.popen("e3", [sys.executable, "-m", "http.server", "8000", "--bind", "10.0.0.32"],
                       "http", ready=r"Serving HTTP")
    out = lab.host_cmd("c1", f'{sys.executable} -c "{FETCH.format(ip="10.0.0.32")}"')
    assert "STATUS 200" in out, f"TCP through userspace OVS failed: {out}"
    offload = lab.host_cmd("c1", "ethtool -k c1-eth0")
    assert "tx-checksumming: off" in offload and "rx-checksumming: off" in offload

    flows = dump_flows("r1")
    normal = [f for f in flows if f["actions"] == ["NORMAL"]]
    assert normal and normal[0]["n_packets"] > 0, flows

    bridges, links = list(lab.bridges), list(lab.links)
    pids = [p.popen.pid for p in lab.procs] + lab._node_pids()
    assert server.popen.pid in pids and len(pids) >= 9
    started = time.monotonic()
    assert lab.close() == []
    assert time.monotonic() - started < 30
    assert sorted(bridges) == ["r1", "r2", "r3", "x0"]
    assert not set(bridges) & ovs_bridges()
    assert not (set(links) | set(bridges)) & root_links()
    assert any(name.startswith("dm") for name in links)
    assert not [pid for pid in pids if pid_alive(pid)]
    assert (lab.artifacts / "flows-x0.txt").read_text().strip()


def test_zoo_topology_builds_with_the_graph_port_numbers(lab: Lab) -> None:
    """Abilene builds (secure mode, no controller: nothing forwards, no loop storms) with the
    OpenFlow port numbers its graph promises, and close() removes all of it."""
    try:
        resolve_zoo_path("Abilene.graphml")
    except FileNotFoundError as exc:
        pytest.skip(str(exc))
    lab.build_net(GraphTopo(load_zoo("Abilene.graphml"), hosts_per_switch=1), None)
    graph = lab.graph
    assert graph is not None and len(lab.bridges) == 11
    for u, v, data in graph.edges(data=True):
        for node in (u, v):
            if "dpid" in graph.nodes[node]:
                intf = f"{node}-eth{data['ports'][node]}"
                ofport = run(["ovs-vsctl", "get", "Interface", intf, "ofport"]).stdout.strip()
                assert ofport == str(data["ports"][node]), (intf, ofport)
    bridges, links = list(lab.bridges), list(lab.links)
    assert lab.close() == []
    assert not set(bridges) & ovs_bridges() and not set(links) & root_links()


def _failing_pair(monkeypatch: pytest.MonkeyPatch, fail: Callable[[int], bool]) -> list[str]:
    """Make Mininet's veth creation raise on the calls `fail(n)` picks (n counts from 1);
    return the names of the pairs it did make."""
    import mininet.link

    real = mininet.link.Link.makeIntfPair
    made: list[str] = []

    def pair(intf1: str, intf2: str, *args: Any, **kwargs: Any) -> Any:
        if fail(len(made) + 1):
            made.append("")
            raise Exception(f"Error creating interface pair ({intf1},{intf2}): injected")
        made.append(intf1)
        return real(intf1, intf2, *args, **kwargs)
    monkeypatch.setattr(mininet.link.Link, "makeIntfPair", staticmethod(pair))
    return made


def test_failed_build_is_cleaned_up_and_tried_again(
        lab: Lab, monkeypatch: pytest.MonkeyPatch) -> None:
    """A net.build() that fails after some links exist removes them, says why and builds again."""
    made = _failing_pair(monkeypatch, lambda n: n == 4)
    lab.graph = figure2_graph()
    lab.build_net(Figure2Topo(), controller_port=None, fail_mode="standalone",
                  configure=configure)
    assert made[3] == "" and len([m for m in made if m]) > 3
    failure = (lab.artifacts / "build-failure-1.txt").read_text()
    assert failure.startswith("net.build() attempt 1: Exception: Error creating interface pair")
    assert "injected" in failure.splitlines()[0]
    wait_until(lambda: lab.ping("c1", "10.0.0.31"), 10, "c1 cannot ping e3 after the rebuild")
    bridges, links = list(lab.bridges), list(lab.links)
    assert lab.close() == []
    assert not set(bridges) & ovs_bridges() and not set(links) & root_links()


def test_build_that_keeps_failing_says_why_and_leaves_nothing(
        lab: Lab, monkeypatch: pytest.MonkeyPatch) -> None:
    """Every attempt failing: one RuntimeError naming each failure, no shell or link left."""
    _failing_pair(monkeypatch, lambda n: n % 3 == 0)
    before = root_links()
    with pytest.raises(RuntimeError, match=r"failed 2 times: net.build\(\) attempt 1: .*injected"
                       r" \| net.build\(\) attempt 2: .*injected"):
        lab.build_net(Figure2Topo(), controller_port=None, fail_mode="standalone")
    assert lab.net is None
    assert root_links() <= before
    assert lab.close() == []


def test_controller_process_lifecycle(lab: Lab) -> None:
    """The controller helper waits for the REST API, stops by pid and reports logged errors."""
    ctl = lab.start_controller(command=[sys.executable, "-c", FAKE_CONTROLLER, "{rest_port}"],
                               timeout=10)
    assert lab.rest("GET", "/topology") == (200, {"switches": [], "links": [], "hosts": []})
    assert ctl.log_errors() == []
    status, _ = lab.rest("POST", "/metrics", {"dbid": "10.0.0.21"})
    assert status == 500
    wait_until(ctl.log_errors, 5, "the fake controller's error line was not seen")
    pid = ctl.popen.pid if ctl.popen else -1
    problems = lab.close()
    assert len(problems) == 1 and "fake failure" in problems[0], problems
    assert not pid_alive(pid)


def test_controller_that_needs_sigkill_is_reported(lab: Lab) -> None:
    """A controller that does not exit 0 on SIGTERM fails the teardown."""
    stubborn = FAKE_CONTROLLER.replace("sys.exit(0)", "None")
    lab.start_controller(command=[sys.executable, "-c", stubborn, "{rest_port}"], timeout=10)
    problems = lab.close()
    assert any("did not exit cleanly" in p for p in problems), problems


def test_wait_until_reports_the_last_value() -> None:
    """A timed-out wait names what it waited for and the last value or exception it saw."""
    with pytest.raises(pytest.fail.Exception, match=r"empty .*last seen: \[\]"):
        wait_until(list, 0.2, "empty", interval=0.05)
    with pytest.raises(pytest.fail.Exception, match=r"last seen: ValueError\('state 3'\)"):
        wait_until(_fails, 0.2, lambda: "raises", interval=0.05)


def _fails() -> bool:
    """A predicate that cannot even be evaluated."""
    raise ValueError("state 3")
