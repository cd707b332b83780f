"""A new connection never follows an old binding to an instance that takes no new flows.

Figure 2, `reactive`, over fake switches: a client reusing the ports of a connection still
bound to a drained instance opens a new connection, which gets a fresh decision; the drained
instance's held connections stay where they are.
"""

from __future__ import annotations

from controller.network.packet import TCP_ACK, TCP_SYN
from controller.views import stats_view
from tests.test_pipelines import E21, E31, FLOWS, SERVICES, Figure2, connect
from tests.test_reconcile import consistent


def test_a_reused_port_to_a_drained_instance_gets_a_fresh_decision() -> None:
    fig = Figure2(SERVICES["reactive"])
    placed = connect(fig, FLOWS)
    on_e21 = [s for s, d in placed.items() if d == E21]
    assert len(on_e21) >= 2
    fig.apply(fig.core.drain(E21, None, fig.now)[1])
    reused, held = on_e21[0], on_e21[1:]
    assert all(fig.go(s) == (E21, False) for s in held)  # held ones stay, switch alone
    dbid, punted = fig.go(reused, TCP_SYN)  # the port reused by a new connection
    assert (dbid, punted) == (E31, True)
    assert fig.go(reused, TCP_ACK) == (E31, False)
    assert all(fig.go(s) == (E21, False) for s in held)
    assert stats_view(fig.core)["new_connections_rebound"] == 1
    consistent(fig)


def test_undrained_instance_keeps_its_reused_ports_in_the_switch() -> None:
    """Back to taking new flows: the guards come off and a SYN follows its binding at once."""
    fig = Figure2(SERVICES["reactive"])
    placed = connect(fig, FLOWS)
    on_e21 = [s for s, d in placed.items() if d == E21]
    fig.apply(fig.core.drain(E21, None, fig.now)[1])
    fig.apply(fig.core.undrain(E21, fig.now)[1])
    assert fig.go(on_e21[0], TCP_SYN) == (E21, False)
    guards = [fm for sw in fig.net.switches.values() for fm in sw.entries()
              if (fm.cookie >> 48) & 0xFF == 12]
    assert guards == []
