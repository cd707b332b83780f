"""A switch's repair after its table was read is sent a slice at a time (apps/apploops.py), the
event loop running between two slices: nothing of it is lost, it goes out in order, and what the
app sent that switch meanwhile wins over the repair's entry for the same match."""

from __future__ import annotations

import sys
from typing import Any

import pytest

from controller.intents import FlowMod, Output
from tests import test_app_smoke
from tests.fakes import FakeDatapath
from tests.test_app_smoke import Shell, flow_mods

shell = test_app_smoke.shell  # the fixture: the app on each framework


def _routes(n: int, port: int) -> list[FlowMod]:
    """`n` host routes at switch 1, out of `port`."""
    return [FlowMod(1, 1, 1000, (("eth_type", 0x0800), ("ipv4_dst", f"10.9.{k // 250}.{k % 250}")),
                    (Output(port),)) for k in range(n)]


def _sent_routes(shell: Shell) -> list[tuple[str, int]]:
    """(ipv4_dst, output port) of the flow-mods switch 1 got, in order."""
    out = []
    for fm in flow_mods(shell.sent()):
        match = dict(fm.match.items())
        if "ipv4_dst" in match and fm.priority == 1000:
            out.append((match["ipv4_dst"], fm.instructions[0].actions[0].port))
    return out


@pytest.fixture
def sliced(shell: Shell, monkeypatch: pytest.MonkeyPatch) -> Shell:
    """Switch 1 connected, repairs cut into slices of 3."""
    shell.connect()
    shell.sent()
    monkeypatch.setattr(sys.modules["apps.apploops"], "REPAIR_SLICE", 3)
    return shell


def test_a_large_repair_is_sent_whole_in_order_with_yields_between_slices(
        sliced: Shell, monkeypatch: pytest.MonkeyPatch) -> None:
    yields: list[float] = []
    monkeypatch.setattr(sys.modules["apps.apploops"].hub, "sleep", yields.append)
    repair = _routes(8, 2)
    sliced.app._send_repair(1, repair)
    assert yields == [0, 0, 0]  # 3 + 3 + 2, then one after the last step
    assert _sent_routes(sliced) == [(f"10.9.0.{k}", 2) for k in range(8)]
    assert sliced.app._repairs == {}
    sliced.app._send_repair(1, repair[:3])  # one slice: sent at once, then one pause
    assert len(yields) == 4 and len(_sent_routes(sliced)) == 3


def test_what_the_app_sends_meanwhile_wins_over_the_repair(
        sliced: Shell, monkeypatch: pytest.MonkeyPatch) -> None:
    """A route to 10.9.0.7 sent (out of port 3) while the repair waits between slices is
    newer: the repair's own (port 2), in a later slice, is left out; the rest all goes."""
    app = sliced.app

    def meanwhile(_: float) -> Any:
        if not meanwhile.done:  # type: ignore[attr-defined]
            meanwhile.done = True  # type: ignore[attr-defined]
            app.send([_routes(8, 3)[7]])

    meanwhile.done = False  # type: ignore[attr-defined]
    monkeypatch.setattr(sys.modules["apps.apploops"].hub, "sleep", meanwhile)
    app._send_repair(1, _routes(8, 2))
    assert _sent_routes(sliced) == ([(f"10.9.0.{k}", 2) for k in range(3)] + [("10.9.0.7", 3)]
                                    + [(f"10.9.0.{k}", 2) for k in range(3, 7)])
    assert app.core.counters["errors"] == 0


def test_a_repair_stops_when_the_switch_connection_is_replaced(
        sliced: Shell, monkeypatch: pytest.MonkeyPatch) -> None:
    app = sliced.app
    other = FakeDatapath(sliced.dp.framework.replace("_", "-"))

    def reconnect(_: float) -> None:
        app.datapaths[1] = other

    monkeypatch.setattr(sys.modules["apps.apploops"].hub, "sleep", reconnect)
    app._send_repair(1, _routes(8, 2))
    assert _sent_routes(sliced) == [(f"10.9.0.{k}", 2) for k in range(3)]
    assert not other.sent and app._repairs == {}
