"""A cluster member taking a switch over keeps every flow its previous master had bound there,
stored or not (Figure 2 over fake switches, the real store on SQLite): the bindings the old
master made after its last store flush are adopted from the switch's entries, not removed."""

from __future__ import annotations

from pathlib import Path

import pytest

from apps.store import Store
from controller.config import ControllerConfig
from controller.core import Core
from controller.views import stats_view
from tests.helpers import PORTS, SVC2
from tests.test_pipelines import FLOWS, NEW_FLOWS, SERVICES, Figure2, connect
from tests.test_reconcile import consistent, reconcile, rediscover


@pytest.fixture
def store(tmp_path: Path) -> Store:
    return Store(f"sqlite:///{tmp_path / 'dyncast.db'}")


@pytest.mark.parametrize("heir_started", [-50.0, 50.0], ids=["heir-older", "heir-newer"])
def test_a_new_master_adopts_the_bindings_its_predecessor_had_not_stored(
        store: Store, heir_started: float) -> None:
    """The old master (started at 100 s on the numbering clock) bound 16 flows and stored
    the first 8; its last flush never ran. The heir (started before it, or after) takes each
    switch over at 200 s as apps/cluster.py does: the stored bindings of the switch, then its
    table. Every flow stays where the old master put it: 8 bindings taken from the store, 8
    adopted from the entries, none removed; the heir's own are numbered above them all."""
    fig = Figure2(SERVICES["reactive"])
    fig.core.flows.restore([], 100.0)  # the old master numbers its bindings from its start
    store.apply(fig.core.drain_writes())
    placed = connect(fig, FLOWS[:8])
    store.apply(fig.core.drain_writes())
    placed |= connect(fig, FLOWS[8:])
    fig.core.drain_writes()  # lost: the old master dies before its next store flush
    heir = Core(ControllerConfig(services=(fig.svc, SVC2)))
    snap = store.load()
    heir.restore(snap.services, snap.instances, [], 100.0 + heir_started)
    fig.core = heir
    taken = 0
    for dpid, ports in PORTS.items():
        fig.apply(heir.switch_connected(dpid, reads_table=True))
        fig.apply(heir.switch_ports(dpid, ports, fig.now))
        taken += len(heir.flows.take_over(store.bindings_at(dpid), 200.0))
        reconcile(fig, dpid)
    assert taken == 8 and stats_view(heir)["bindings_adopted"] == 8
    assert {r["flow"]["sport"]: r["dbid"] for r in heir.flows.view()} == placed
    consistent(fig)  # each binding's two entries, and no entry without its binding
    assert {w.key for w in heir.drain_writes() if w.kind == "binding"} == {
        str(b.ident) for b in heir.bindings.all() if b.key.sport in FLOWS[8:]}  # stored now
    rediscover(fig)
    assert {s: fig.go(s)[0] for s in FLOWS} == placed
    connect(fig, NEW_FLOWS)
    assert min(b.ident for b in heir.bindings.all() if b.key.sport in NEW_FLOWS) > max(
        b.ident for b in heir.bindings.all() if b.key.sport in FLOWS)
    consistent(fig)
