"""pytest fixtures for the Mininet tests: `lab` (an empty Lab), `fig2` (Figure 2 + controller)
and `ring` (topologies/ring.py + controller).

All fail the test at teardown if anything was left behind or the controller logged an
exception or an OpenFlow error. Tests marked `sanity` run first.
"""

from __future__ import annotations

import os
import signal
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from mininet_tests.harness import Lab, require_root_and_ovs

FIG2_CONFIG = Path(__file__).with_name("fig2.toml")
FIG2_DEFAULTS: dict[str, Any] = {"config": FIG2_CONFIG, "bw": None, "extra_clients": 0,
                                 "edges": False, "wait_links": True, "third_site": False,
                                 "overlay": False}
RING_CONFIG = Path(__file__).with_name("ring.toml")
RING_DEFAULTS: dict[str, Any] = {"config": RING_CONFIG, "bw": None, "size": 4, "edges": False,
                                 "wait_links": True}


def pytest_configure(config: pytest.Config) -> None:
    """Register our markers; turn SIGTERM into KeyboardInterrupt so teardown still runs."""
    config.addinivalue_line("markers", "sanity: fast checks that run before the other tests")
    config.addinivalue_line("markers", "heavy: long variants of a test another variant covers "
                            "(a second framework's run may leave them out: -m 'not heavy')")
    config.addinivalue_line("filterwarnings",  # Debian's Mininet 2.3 on Python 3.11
                            "ignore:distutils Version classes are deprecated:DeprecationWarning")
    if os.geteuid() == 0 and signal.getsignal(signal.SIGTERM) is signal.SIG_DFL:
        signal.signal(signal.SIGTERM, _interrupt)


def _interrupt(signum: int, frame: Any) -> None:
    """Raise KeyboardInterrupt (pytest then tears the fixtures down)."""
    raise KeyboardInterrupt(f"signal {signum}")


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    """Run the `sanity` tests first, keeping the order otherwise."""
    items.sort(key=lambda item: item.get_closest_marker("sanity") is None)


def _finish(lab: Lab) -> None:
    """Close the lab and fail the test with whatever it left behind or the controller logged."""
    problems = lab.close()
    if problems:
        pytest.fail(f"teardown of {lab.artifacts.name} (artefacts in {lab.artifacts}):\n"
                    + "\n".join(problems), pytrace=False)


@pytest.fixture
def lab(request: pytest.FixtureRequest) -> Iterator[Lab]:
    """An empty Lab (artefact folder, nothing started); closed and checked at teardown."""
    require_root_and_ovs()
    the_lab = Lab(request.node.name)
    yield the_lab
    _finish(the_lab)


def _options(request: pytest.FixtureRequest, defaults: dict[str, Any],
             fixture: str) -> dict[str, Any]:
    """The fixture's options: `defaults` updated by the test's indirect parameter, if any."""
    opts = {**defaults, **getattr(request, "param", {})}
    if unknown := set(opts) - set(defaults):
        raise ValueError(f"unknown {fixture} options: {sorted(unknown)}")
    return opts


def _running(request: pytest.FixtureRequest, graph: Any, topo: Any, opts: dict[str, Any],
             configure: Callable[[Any], None] | None = None) -> Lab:
    """A Lab with `topo` (described by `graph`) under the controller: switches connected,
    management links to the edge hosts up, then as `opts` say (config, wait_links, edges)."""
    from topologies.figure2 import hosts_of

    require_root_and_ovs()
    the_lab = Lab(request.node.name)
    try:
        the_lab.graph = graph
        controller = the_lab.start_controller(opts["config"])
        the_lab.build_net(topo, controller.ofp_port, configure=configure)
        for host in hosts_of(the_lab.graph, "edge"):
            the_lab.add_mgmt_link(host, the_lab.graph.nodes[host]["mgmt"])
        if opts["wait_links"]:
            the_lab.wait_topology()
        if opts["edges"]:
            for host in hosts_of(the_lab.graph, "edge"):
                the_lab.start_edge(host)
    except BaseException:
        the_lab.close()
        raise
    return the_lab


@pytest.fixture
def fig2(request: pytest.FixtureRequest) -> Iterator[Lab]:
    """Figure 2 running under the Dyncast controller, switches connected, management links up.

    Options via `@pytest.mark.parametrize("fig2", [{...}], indirect=True)`: config (TOML path,
    default mininet_tests/fig2.toml), bw (Mbit/s on every link), extra_clients, edges (True:
    start both demo services and the D-MA on e2 and e3), wait_links (default True: wait until
    the controller has discovered the three switch-to-switch links), third_site (True: add
    edge host e4 at r1, nothing started on it), overlay (True: the edge hosts also hold the
    D-SIDs on their loopback).
    """
    from topologies.figure2 import Figure2Topo, configure, figure2_graph

    opts = _options(request, FIG2_DEFAULTS, "fig2")
    topo = Figure2Topo(bw=opts["bw"], extra_clients=opts["extra_clients"],
                       third_site=opts["third_site"])
    graph = figure2_graph(opts["extra_clients"], opts["third_site"])
    the_lab = _running(request, graph, topo, opts,
                       lambda net: configure(net, graph, opts["overlay"]))
    yield the_lab
    _finish(the_lab)


@pytest.fixture
def ring(request: pytest.FixtureRequest) -> Iterator[Lab]:
    """The ring (topologies/ring.py) under the Dyncast controller, as `fig2` does Figure 2.

    Options via `@pytest.mark.parametrize("ring", [{...}], indirect=True)`: config (default
    mininet_tests/ring.toml), bw (Mbit/s on every link), size (switches in the ring, default 4),
    edges (True: start the demo service and D-MA on e2 and e3), wait_links (default True).
    """
    from topologies.ring import RingTopo, ring_graph

    opts = _options(request, RING_DEFAULTS, "ring")
    topo = RingTopo(size=opts["size"], bw=opts["bw"])
    the_lab = _running(request, ring_graph(opts["size"]), topo, opts)
    yield the_lab
    _finish(the_lab)
