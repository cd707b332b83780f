"""Two cluster members writing one shared record at once: the app (m1, on PostgreSQL) and m2 (a
core of its own, applying changes as apps/changefeed.py does) each accept a write, then each
applies the other's: both end on the later one (controller/cluster/records.py)."""

from __future__ import annotations

import json
import time
from collections.abc import Iterator

import pytest

from controller.api import Api, Reply
from controller.cluster.changes import PREFIX, Change
from controller.cluster.records import RecordClocks, as_applied
from controller.config import ControllerConfig
from controller.limits import Limits
from tests import test_app_smoke, test_cluster_shell
from tests.helpers import SVC1, SVC2, figure2_core
from tests.test_app_smoke import INSTANCE, Shell

shell = test_app_smoke.shell  # the fixture: the app on each framework
member, pg_url = test_cluster_shell.member, test_cluster_shell.pg_url  # m1 on PostgreSQL


class Peer:
    """Member m2: its own core behind the API; its writes stamped, the others' applied, as the
    shell does."""

    def __init__(self, config: ControllerConfig | None = None) -> None:
        self.api = Api(figure2_core(config))
        self.clocks = RecordClocks()

    def serve(self, method: str, path: str, body: str, remote: bool = False) -> Reply:
        """A request served to its reply."""
        now = time.time()
        steps = self.api.steps(method, PREFIX + path if not path.startswith(PREFIX) else path,
                               body.encode(), now, None, remote)
        step = next(steps)
        while not isinstance(step, Reply):
            step = steps.send(now)
        return step

    def write(self, method: str, path: str, body: object, at: float) -> Change:
        """An operator's write accepted here at `at`: the change the others are told."""
        text = "" if body is None else json.dumps(body)
        assert self.serve(method, path, text).status < 300
        return Change("m2", method, PREFIX + path, text,
                      self.clocks.accepted(method, PREFIX + path, text, at, "m2"))

    def apply(self, change: Change) -> None:
        """Another member's change, as apps/changefeed.py applies it."""
        if self.clocks.admit(change):
            made = as_applied(change, self.api.core.catalogue.services.__contains__)
            self.serve(made.method, made.path, made.body, remote=True)
            self.clocks.applied(change)


def told(shell: Shell) -> list[Change]:
    """The changes m1 queued for the others since the last call."""
    out = list(shell.app._outbox)
    shell.app._outbox.clear()
    return out


def service(holder: object, name: str = "svc1") -> dict[str, object] | None:
    """A member's service record (None: it has none)."""
    core = holder.api.core if isinstance(holder, Peer) else holder.app.core  # type: ignore[attr-defined]
    svc = core.catalogue.services.get(name)
    return None if svc is None else svc.to_dict()


@pytest.mark.parametrize("m2_later", [True, False])
def test_two_replacements_of_one_service_end_the_same_at_both(
        member: str, shell: Shell, m2_later: bool) -> None:
    """m1 and m2 replace svc1 at once (different policies), then each applies the other's:
    both hold the later one (before: each held the other's, swapped)."""
    app, m2 = shell.app, Peer()
    told(shell)
    body = {k: v for k, v in service(shell).items() if k != "name"}  # type: ignore[union-attr]
    assert shell.rest("PUT", "services/svc1", {**body, "policy": "least-loaded"}).status == 200
    (mine,) = told(shell)
    assert mine.at is not None
    theirs = m2.write("PUT", "services/svc1", {**body, "policy": "nearest"},
                      mine.at + (0.5 if m2_later else -0.5))
    app.apply_change(theirs)
    m2.apply(mine)
    expected = "nearest" if m2_later else "least-loaded"
    assert service(shell)["policy"] == service(m2)["policy"] == expected  # type: ignore[index]
    assert app.core.counters["changes_superseded"] == (0 if m2_later else 1)
    assert not told(shell)  # applied or left out, never passed on
    assert app.core.counters["errors"] == 0


def test_a_drain_and_an_undrain_at_once_end_the_same_at_both(member: str, shell: Shell) -> None:
    """An operator drains the instance at m1 while another undrains it at m2 (accepted a
    little earlier): both end draining; then an undrain at m2 after it: both end not."""
    app, m2 = shell.app, Peer()
    shell.register()
    told(shell)
    dbid = INSTANCE[0]
    assert shell.rest("POST", f"instances/{dbid}/drain", {}).status == 200
    (drain,) = told(shell)
    assert drain.at is not None
    m2.write("POST", f"instances/{dbid}/drain", {}, drain.at - 2.0)  # (so it can undrain)
    undrain = m2.write("POST", f"instances/{dbid}/undrain", {}, drain.at - 1.0)
    app.apply_change(undrain)
    m2.apply(drain)
    states = (app.core.catalogue.instances[dbid].draining,
              m2.api.core.catalogue.instances[dbid].draining)
    assert states == (True, True)
    later = m2.write("POST", f"instances/{dbid}/undrain", {}, drain.at + 1.0)
    app.apply_change(later)
    assert not app.core.catalogue.instances[dbid].draining
    assert app.core.counters["errors"] == 0


def test_a_replacement_later_than_a_withdrawal_brings_the_service_back_at_both(
        member: str, shell: Shell) -> None:
    """m1 withdraws svc2 while m2 replaces it a little later: both hold m2's svc2; withdrawn at
    m2 while m1 replaced it later: both hold m1's."""
    app, m2 = shell.app, Peer()
    told(shell)
    body = {k: v for k, v in service(shell, "svc2").items() if k != "name"}  # type: ignore[union-attr]
    assert shell.rest("DELETE", "services/svc2").status == 200
    (gone,) = told(shell)
    assert gone.at is not None
    put = m2.write("PUT", "services/svc2", {**body, "policy": "nearest"}, gone.at + 0.5)
    app.apply_change(put)
    m2.apply(gone)
    assert service(shell, "svc2") == service(m2, "svc2")
    assert service(m2, "svc2")["policy"] == "nearest"  # type: ignore[index]
    assert app.core.counters["errors"] == 0


@pytest.fixture
def three_services(member: str, monkeypatch: pytest.MonkeyPatch) -> Iterator[str]:
    """m1's configuration with [limits] max_services = 3 (its two services and one more)."""
    monkeypatch.setattr(test_app_smoke, "CONFIG",
                        test_app_smoke.CONFIG + "\n[limits]\nmax_services = 3\n")
    yield member


def test_members_at_their_quota_take_each_others_new_service(
        three_services: str, shell: Shell) -> None:
    """m1 and m2 hold two services each with room for one more, and each creates one at once:
    each member applies the other's (the quota is the accepting member's to check), so both
    hold the same four (before: each refused the other's with a 429, and they differed)."""
    app = shell.app
    m2 = Peer(ControllerConfig(services=(SVC1, SVC2), limits=Limits(max_services=3)))
    told(shell)
    assert shell.rest("POST", "services", {"name": "svc3", "dsid": "10.0.100.3"}).status == 201
    (mine,) = told(shell)
    theirs = m2.write("POST", "services", {"name": "svc4", "dsid": "10.0.100.4"}, time.time())
    assert shell.rest("POST", "services", {"name": "svc5", "dsid": "10.0.100.5"}).status == 429
    app.apply_change(theirs)
    m2.apply(mine)
    names = sorted(app.core.catalogue.services), sorted(m2.api.core.catalogue.services)
    assert names[0] == names[1] == ["svc1", "svc2", "svc3", "svc4"]
    assert app.core.counters["changes_refused"] == 0 and app.core.counters["errors"] == 0
