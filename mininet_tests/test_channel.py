"""The OpenFlow channel end to end: TLS with a CA the test makes, the switch allowlist, the meter.

Figure 2's switches reach the controller over `ssl:` (OVS's global SSL settings name the
switch's key, certificate and the test CA; the controller's come from `[channel]`), traffic is
steered as usual; a rogue bridge with an unlisted datapath id, holding a valid certificate,
is refused and gets nothing. OVS's SSL settings are removed at the end.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from mininet_tests.conftest import FIG2_CONFIG
from mininet_tests.harness import Lab, require_root_and_ovs
from mininet_tests.processes import run, wait_until
from mininet_tests.test_fig2 import SVC1, client, wait_shares
from tests.test_restserver import make_ca

R1 = 1
ROGUE_DPID = 0xBAD


def _ok(argv: list[str]) -> str:
    """Run a command; fail the test with its stderr if it fails."""
    done = run(argv)
    assert done.returncode == 0, f"{' '.join(argv)}: {done.stderr.strip()}"
    return done.stdout


def _connect_over_tls(lab: Lab, bridges: list[str], port: int) -> None:
    """Point `bridges` at the controller's TLS port and wait until all are connected."""
    for bridge in bridges:
        _ok(["ovs-vsctl", "set-controller", bridge, f"ssl:127.0.0.1:{port}"])
    lab.fast_reconnect(bridges)


@pytest.fixture
def tls_lab(request: pytest.FixtureRequest) -> Iterator[Lab]:
    """Figure 2 under a controller that speaks OpenFlow only over TLS, D-MAs and services up."""
    from mininet_tests.conftest import _finish
    from topologies.figure2 import Figure2Topo, configure, figure2_graph, hosts_of

    require_root_and_ovs()
    lab = Lab(request.node.name)
    try:
        pki = make_ca(lab.artifacts, ("controller", "switch"))
        config = lab.artifacts / "channel.toml"
        config.write_text(FIG2_CONFIG.read_text() + f"""
[channel]
openflow_cert = "{pki['controller']}"
openflow_key = "{pki['controller_key']}"
openflow_ca = "{pki['ca']}"
switches = [1, 2, 3, 4]
""")
        ctl = lab.start_controller(config)
        _ok(["ovs-vsctl", "set-ssl", str(pki["switch_key"]), str(pki["switch"]), str(pki["ca"])])
        graph = figure2_graph()
        lab.graph = graph
        lab.build_net(Figure2Topo(), None, fail_mode="secure",
                      configure=lambda net: configure(net, graph, False))
        _connect_over_tls(lab, list(lab.bridges), ctl.ofp_port)
        for sw in lab.net.switches:
            sw.controllerUUIDs(update=True)
        lab.wait_connected(timeout=30)
        for host in hosts_of(graph, "edge"):
            lab.add_mgmt_link(host, graph.nodes[host]["mgmt"])
        lab.wait_topology()
        for host in hosts_of(graph, "edge"):
            lab.start_edge(host)
    except BaseException:
        lab.close()
        run(["ovs-vsctl", "del-ssl"])
        raise
    try:
        yield lab
    finally:
        try:
            _finish(lab)
        finally:
            run(["ovs-vsctl", "del-ssl"])


def _tls_only(lab: Lab, port: int) -> bool:
    """True if the controller's OpenFlow port refuses to speak plain OpenFlow (no HELLO)."""
    import socket

    with socket.create_connection(("127.0.0.1", port), timeout=3) as sock:
        sock.settimeout(2)
        try:
            data = sock.recv(8)
        except TimeoutError:
            return True
    return not data.startswith(b"\x04\x00") and not data.startswith(b"\x01\x00")


def test_tls_channel_steers_traffic_and_a_rogue_switch_gets_nothing(tls_lab: Lab) -> None:
    """Over TLS the switches get the pipeline (with the punt meter) and a client's flows are
    steered to both instances; a bridge with an unlisted datapath id that connects with a valid
    certificate is refused, disconnected, and holds no flow and no meter."""
    lab = tls_lab
    assert lab.controller is not None
    port = lab.controller.ofp_port
    def channels() -> str:
        return _ok(["ovs-vsctl", "--columns=target,is_connected", "list", "Controller"])
    # OVS's own record of each channel (written up to about 5 s after the controller saw it)
    wait_until(lambda: "false" not in channels(), 10, channels)
    assert f"ssl:127.0.0.1:{port}" in channels(), channels()
    assert _tls_only(lab, port), "the OpenFlow port answered plain TCP with an OpenFlow HELLO"
    meters = _ok(["ovs-ofctl", "-O", "OpenFlow13", "dump-meters", "r1"])
    assert "meter=1" in meters and "rate=1000" in meters, meters

    wait_shares(lab, "svc1", R1, {"10.0.0.21", "10.0.0.31"})
    seen = client(lab, "c1", SVC1, requests=4)
    assert seen["errors"] == 0 and seen["peers"] == {SVC1: 4}, seen
    assert set(seen["served"]) == {"svc1@e2", "svc1@e3"}, seen

    rogue = f"rg{lab.run_id}"
    lab.bridges.append(rogue)  # deleted by name at teardown
    _ok(["ovs-vsctl", "add-br", rogue, "--", "set", "bridge", rogue, "datapath_type=netdev",
         "protocols=OpenFlow13", "fail_mode=secure",
         f"other-config:datapath-id={ROGUE_DPID:016x}"])
    _connect_over_tls(lab, [rogue], port)
    wait_until(lambda: lab.rest("GET", "/stats")[1].get("switches_refused", 0) >= 1, 20,
               lambda: f"rogue switch not refused; log tail:\n{lab.controller.log_tail()}")
    log = Path(lab.controller.log_path).read_text(errors="replace")
    assert f"switch {ROGUE_DPID:016x} refused" in log
    flows = _ok(["ovs-ofctl", "-O", "OpenFlow13", "dump-flows", rogue]).splitlines()
    assert [f for f in flows if "priority" in f] == [], flows
    assert "meter=" not in _ok(["ovs-ofctl", "-O", "OpenFlow13", "dump-meters", rogue])
    switches = {s["dpid"] for s in lab.rest("GET", "/topology")[1]["switches"]}
    assert ROGUE_DPID not in switches and {1, 2, 3, 4} <= switches, switches
    seen = client(lab, "c1", SVC1, requests=2)  # the others are unaffected
    assert seen["errors"] == 0, seen
