"""The store: records survive a round trip; batches collapse; deletes delete."""

from __future__ import annotations

from pathlib import Path

from apps.store import Store
from tests.helpers import figure2_core, report, tcp_frame


def test_round_trip_restores_services_instances_and_bindings(tmp_path: Path) -> None:
    """What the core queued for the store comes back as equal values after a restart."""
    core = figure2_core()
    for dbid in ("10.0.0.21", "10.0.0.31"):
        report(core, dbid, 1.0, sessions=3)
    core.put_service(core.catalogue.services["svc2"], create=False, now=1.0)
    core.packet_in(1, 1, tcp_frame("00:00:00:00:00:01", "02:dc:00:00:00:01", "10.0.0.1",
                                   "10.0.100.1", 40000, 8000), 1.0)
    store = Store(f"sqlite:///{tmp_path / 'db.sqlite'}")
    assert store.apply(core.drain_writes()) > 0
    store.close()
    snap = Store(f"sqlite:///{tmp_path / 'db.sqlite'}").load()
    assert [s.name for s in snap.services] == ["svc2"]
    assert snap.services[0] == core.catalogue.services["svc2"]
    by_dbid = {i.dbid: i for i in snap.instances}
    assert by_dbid.keys() == core.catalogue.instances.keys()
    assert by_dbid["10.0.0.21"].metrics == core.catalogue.instances["10.0.0.21"].metrics
    (binding,) = snap.bindings
    live = core.bindings.all()[0]
    assert (binding.key, binding.dbid, binding.ingress) == (live.key, live.dbid, live.ingress)


def test_delete_removes_the_record() -> None:
    """A withdrawal queued after a registration leaves no instance record."""
    core = figure2_core()
    core.withdraw("10.0.0.21", 1.0)
    store = Store("sqlite:///:memory:")
    store.apply(core.drain_writes())
    assert "10.0.0.21" not in {i.dbid for i in store.load().instances}


def test_restart_restores_state_and_configured_services_win(tmp_path: Path) -> None:
    """A restarted core gets stored instances and bindings back; a service in the config file
    wins over a stored one of the same name, and stored-only services come back too."""
    from dataclasses import replace

    from controller.config import ControllerConfig
    from controller.core import Core
    from tests.helpers import SVC1, SVC2

    core = figure2_core()
    core.put_service(replace(SVC2, port=9000), create=False, now=1.0)
    core.put_service(replace(SVC1, name="svc9", dsid="10.0.100.9"), create=True, now=1.0)
    core.packet_in(1, 1, tcp_frame("00:00:00:00:00:01", "02:dc:00:00:00:01", "10.0.0.1",
                                   "10.0.100.1", 40000, 8000), 1.0)
    store = Store(f"sqlite:///{tmp_path / 'db.sqlite'}")
    store.apply(core.drain_writes())
    snap = store.load()
    restarted = Core(ControllerConfig(services=(SVC1, SVC2)))
    restarted.restore(snap.services, snap.instances, snap.bindings)
    assert restarted.catalogue.services["svc2"].port == 8000  # the file's version
    assert "svc9" in restarted.catalogue.services
    assert restarted.catalogue.instances.keys() == core.catalogue.instances.keys()
    assert [b.dbid for b in restarted.bindings.all()] == [b.dbid for b in core.bindings.all()]
