"""Observability on a real network (issue 19): GET /metrics counters move with real traffic,
a SIGHUP reload that changes the service a connection is held to applies without breaking it,
and a bad file is refused (HTTP and SIGHUP) with the running configuration kept.

Figure 2 with both sites serving; the controller's config is a copy of fig2.toml the test
rewrites. The fixture fails the test on any controller exception or OpenFlow error.
"""

from __future__ import annotations

import signal
import tempfile
import urllib.request
from collections.abc import Iterator
from pathlib import Path

import pytest
from prometheus_client.parser import text_string_to_metric_families

from mininet_tests.conftest import FIG2_CONFIG, FIG2_DEFAULTS, _finish, _running
from mininet_tests.harness import Lab
from mininet_tests.processes import wait_until
from mininet_tests.test_fig2 import (
    INSTANCE_OF,
    R1,
    SVC1,
    assert_held_to_the_end,
    client,
    start_hold,
    wait_shares,
)

HOLD_S = 15.0
BOTH = {"10.0.0.21", "10.0.0.31"}


@pytest.fixture
def lab(request: pytest.FixtureRequest) -> Iterator[tuple[Lab, Path]]:
    """Figure 2 under the controller, reading a copy of fig2.toml; edges not started."""
    from topologies.figure2 import Figure2Topo, configure, figure2_graph

    folder = Path(tempfile.mkdtemp(prefix="dyncast-obs-"))
    config = folder / "dyncast.toml"
    config.write_text(FIG2_CONFIG.read_text())
    opts = {**FIG2_DEFAULTS, "config": config}
    graph = figure2_graph(0, False)
    the_lab = _running(request, graph, Figure2Topo(bw=None, extra_clients=0, third_site=False),
                       opts, lambda net: configure(net, graph, False))
    assert the_lab.controller is not None
    # the file the controller runs: the copy plus the harness's [security] table
    yield the_lab, the_lab.controller.secured_config
    _finish(the_lab)
    config.unlink(missing_ok=True)
    folder.rmdir()


def scrape(lab: Lab) -> dict[tuple[str, tuple[tuple[str, str], ...]], float]:
    """GET /metrics, parsed: (name, labels) -> value."""
    assert lab.controller is not None
    assert lab.controller.creds is not None
    req = urllib.request.Request(f"{lab.controller.url}/metrics", headers={
        "Authorization": f"Bearer {lab.controller.creds.admin_token}"})
    with urllib.request.urlopen(req, timeout=10) as resp:
        assert resp.headers["Content-Type"].startswith("text/plain")
        text = resp.read().decode()
    return {(s.name, tuple(sorted(s.labels.items()))): s.value
            for family in text_string_to_metric_families(text) for s in family.samples}


def value(got: dict[tuple[str, tuple[tuple[str, str], ...]], float], name: str,
          **labels: str) -> float:
    """One sample (0 if absent)."""
    return got.get((name, tuple(sorted(labels.items()))), 0.0)


def total(got: dict[tuple[str, tuple[tuple[str, str], ...]], float], name: str,
          **labels: str) -> float:
    """The sum of a metric's samples whose labels include `labels`."""
    return sum(v for (n, ls), v in got.items()
               if n == name and set(labels.items()) <= set(ls))


def test_metrics_move_and_a_sighup_reload_keeps_a_held_connection(
        lab: tuple[Lab, Path]) -> None:
    """Counters move with real flows; SIGHUP applies a changed svc1 and a new svc3 while a
    connection to svc1 is held; a bad file is refused by HTTP and by SIGHUP."""
    net, config = lab
    assert net.controller is not None and net.controller.popen is not None
    for host in ("e2", "e3"):
        net.start_edge(host)
    wait_shares(net, "svc1", R1, BOTH)
    before = scrape(net)
    assert value(before, "dyncast_switches_connected") == 4
    assert value(before, "dyncast_switch_connections_total") >= 4
    holder, first = start_hold(net, HOLD_S)
    seen = client(net, "c1", SVC1, requests=6)
    assert seen["errors"] == 0, seen
    after = scrape(net)
    assert (value(after, "dyncast_packet_ins_total", reason="service_flow")
            > value(before, "dyncast_packet_ins_total", reason="service_flow"))
    assert (total(after, "dyncast_flow_setups_total")
            >= total(before, "dyncast_flow_setups_total") + 7)
    assert total(after, "dyncast_new_flows_total", service="svc1") >= 7
    assert total(after, "dyncast_bindings", service="svc1") >= 1
    assert value(after, "dyncast_service_usable_instances", service="svc1") == 2
    assert value(after, "dyncast_flow_mods_sent_total") > value(before,
                                                                "dyncast_flow_mods_sent_total")
    held = INSTANCE_OF[first]
    assert value(after, "dyncast_bindings", service="svc1", instance=held) >= 1

    # svc1 changed (its weights), svc3 added, a tunable changed: SIGHUP
    text = FIG2_CONFIG.read_text()
    changed = text.replace("weights = { network = 1.0, compute = 1.0 }",
                           "weights = { network = 1.0, compute = 2.0 }", 1)
    assert changed != text
    security = net.controller.creds.security_section() if net.controller.creds else ""
    config.write_text(changed.replace("[controller]\n", "[controller]\nstats_interval_s = 3.0\n")
                      + '\n[[service]]\nname = "svc3"\ndsid = "10.0.100.3"\nprotocol = "tcp"\n'
                        'port = 8000\n' + security)
    net.controller.popen.send_signal(signal.SIGHUP)
    wait_until(lambda: net.rest("GET", "/services/svc3")[0] == 200, 10,
               "SIGHUP did not add svc3")
    status, svc1 = net.rest("GET", "/services/svc1")
    assert status == 200 and svc1["weights"]["compute"] == 2.0, svc1
    reloaded = scrape(net)
    assert value(reloaded, "dyncast_config_reloads_total", result="success") == 1
    assert value(reloaded, "dyncast_switches_connected") == 4
    assert value(reloaded, "dyncast_switch_connections_total") == value(
        after, "dyncast_switch_connections_total")  # no switch reconnected
    assert value(reloaded, "dyncast_bindings", service="svc1", instance=held) >= 1

    # a bad file: refused over HTTP (400 naming the key) and by SIGHUP; nothing changes
    config.write_text(changed.replace("[controller]\n", "[controller]\nstats_interval_s = -1\n")
                      + security)
    status, body = net.rest("POST", "/config/reload")
    assert status == 400 and body["field"] == "controller.stats_interval_s", body
    net.controller.popen.send_signal(signal.SIGHUP)
    wait_until(lambda: value(scrape(net), "dyncast_config_reloads_total",
                             result="failure") == 2, 10, "SIGHUP with a bad file not refused")
    assert net.rest("GET", "/services/svc3")[0] == 200
    assert_held_to_the_end(holder, first, HOLD_S)
    seen = client(net, "c1", SVC1, requests=4)
    assert seen["errors"] == 0, seen
    assert net.controller.popen.poll() is None
