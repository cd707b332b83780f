"""Where a registered instance was found, moved or lost is logged (`instance_located`), with
why: an operator sees where the controller thinks an instance is, and when a packet placed it
at what turned out to be a link port (a restarted controller learns links only as LLDP comes
back). Clients (addresses no instance holds) are not logged."""

from __future__ import annotations

import logging

from controller.network.topology import RELOCATIONS, Topology
from tests import test_app_smoke
from tests.test_app_smoke import CLIENT, INSTANCE, Shell

shell = test_app_smoke.shell  # the fixture: the app on each framework
INST, OTHER = "10.0.0.21", "10.0.0.1"


def topology() -> Topology:
    """Two switches, nothing linked yet; 10.0.0.21 is a registered instance's address."""
    topo = Topology()
    topo.locked = lambda ip: ip == INST
    topo.switch_up(1, {1, 2, 3})
    topo.switch_up(2, {1, 2})
    return topo


def test_each_place_of_an_instance_is_noted_with_why() -> None:
    """First seen; a move refused (not noted: the address stays); a move after its agent
    registered it again; lost when its port turns out to be a link, when its port goes down
    and when its switch goes; a client's places are not noted."""
    topo = topology()
    assert topo.learn_host(INST, "00:00:00:00:00:21", 1, 2)
    assert topo.learn_host(OTHER, "00:00:00:00:00:01", 1, 1)
    assert not topo.learn_host(INST, "00:00:00:00:00:21", 1, 3)  # refused
    topo.let_move(INST)
    assert topo.learn_host(INST, "00:00:00:00:00:21", 1, 3)
    assert topo.link_seen((2, 1), (1, 3), 0.0)  # (1, 3) is a link port after all
    assert INST not in topo.hosts
    assert topo.learn_host(INST, "00:00:00:00:00:21", 1, 2)
    topo.port_down(1, 2)
    assert topo.learn_host(INST, "00:00:00:00:00:21", 2, 2)
    topo.switch_down(2)
    assert list(topo.relocations) == [
        (INST, None, (1, 2), "first seen"),
        (INST, (1, 2), (1, 3), "registered again, seen elsewhere"),
        (INST, (1, 3), None, "learned at what turned out to be a link port"),
        (INST, None, (1, 2), "first seen"),
        (INST, (1, 2), None, "its port went down"),
        (INST, None, (2, 2), "first seen"),
        (INST, (2, 2), None, "its switch is gone")]


def test_the_notes_are_bounded() -> None:
    """Only the last RELOCATIONS are kept between two reads of the log."""
    topo = topology()
    for _ in range(RELOCATIONS):
        topo.learn_host(INST, "00:00:00:00:00:21", 1, 2)
        topo.port_down(1, 2)
        topo.port_up(1, 2)
    assert len(topo.relocations) == RELOCATIONS
    assert topo.relocations[-1][3] == "its port went down"


def test_the_shell_logs_where_an_instance_was_found(shell: Shell) -> None:
    """Registered, then its ARP at switch 1 port 2: one `instance_located` record naming the
    switch and port and why, nothing left queued; the client's ARP logs nothing."""
    records: list[logging.LogRecord] = []
    capture = logging.Handler()
    capture.emit = records.append  # type: ignore[method-assign]
    logging.getLogger("dyncast.instances").addHandler(capture)
    try:
        shell.connect()
        shell.register()
        shell.arp_from(CLIENT)
        shell.arp_from(INSTANCE)
    finally:
        logging.getLogger("dyncast.instances").removeHandler(capture)
    located = [r.fields for r in records  # type: ignore[attr-defined]
               if r.fields["event"] == "instance_located"]  # type: ignore[attr-defined]
    assert [(f["instance"], f["before"], f["after"], f["reason"]) for f in located] == [
        (INSTANCE[0], None, f"{1:016x}:{INSTANCE[2]}", "first seen")], located
    assert not shell.app.core.topology.relocations
    assert shell.app.core.counters["errors"] == 0
