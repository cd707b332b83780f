"""The reactive SYN punt (controller/dataplane/modes.py `syn_punt`) in the fake switches: SYNs
and other first packets still reach the controller, and a service that leaves `reactive`
takes the entry with it, so its new mode's entries see every SYN."""

from __future__ import annotations

import dataclasses
from collections import Counter

import pytest

from controller.network.packet import TCP_ACK, TCP_SYN
from tests.test_pipelines import FLOWS, SERVICES, Figure2, connect, to_dsid

E21, E31 = "10.0.0.21", "10.0.0.31"


def test_a_lost_flows_next_packet_still_reaches_the_controller() -> None:
    """Not only SYNs are punted: a bound flow whose entries the switch lost is re-installed on
    its next (non-SYN) packet and keeps its instance."""
    fig = Figure2(SERVICES["reactive"])
    placed = connect(fig, FLOWS[:4])
    fig.advance(fig.now + 2.0)  # past SETTLE_S: a packet now means the entries were lost
    for fm in [f for f in fig.net.switches[1].entries(0) if f.priority == 2000]:
        fig.net.switches[1].apply(dataclasses.replace(fm, command="delete_strict"))
    for sport, dbid in placed.items():
        assert fig.go(sport, TCP_ACK) == (dbid, True)
        assert fig.go(sport, TCP_ACK) == (dbid, False)


@pytest.mark.parametrize("mode", ["learn", "bucket"])
def test_service_leaving_reactive_sends_no_syn_to_the_controller(mode: str) -> None:
    """reactive -> learn/bucket: new connections (SYNs) are steered by the switch alone."""
    fig = Figure2(SERVICES["reactive"])
    assert fig.go(FLOWS[0], TCP_SYN)[1]
    fig.apply(fig.core.put_service(SERVICES[mode], False, fig.now))
    fig.advance(fig.now + 8.0)  # the decision reaches the switches; moves settle
    seen = [fig.go(sport, TCP_SYN) for sport in range(42000, 42032, 2)]
    assert not any(punted for _, punted in seen), seen
    assert Counter(dbid for dbid, _ in seen) == {E21: 8, E31: 8}


def test_service_back_to_reactive_punts_syns_again() -> None:
    """learn -> reactive: SYNs go to the controller again, which binds them."""
    fig = Figure2(SERVICES["learn"])
    fig.apply(fig.core.put_service(SERVICES["reactive"], False, fig.now))
    first = fig.send("c1", to_dsid("c1", 43000, TCP_SYN))
    assert first.to_controller and fig.go(43000)[1] is False
