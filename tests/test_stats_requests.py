"""The periodic requests each switch gets (apps/apploops.py `_stats_requests`), on each installed
framework: port counters and an echo always; the punt meter's counters only from the member
that made the meter. A cluster member that does not master a switch did not make its meter, and
its request could reach the switch before any master made it: the switch answers that with an
OpenFlow error (OFPMMFC_UNKNOWN_METER; seen in the rolling restart of three members).
"""

from __future__ import annotations

from typing import Any

from tests.test_app_smoke import Shell, shell  # noqa: F401 - the fixture


class Member:
    """A cluster member that masters the switches it is given."""

    def __init__(self, mastered: set[int]) -> None:
        self.mastered = mastered

    def masters(self, dpid: int) -> bool:
        return dpid in self.mastered


def _kinds(shell: Shell) -> list[str]:  # noqa: F811 - the fixture's name
    return [type(m).__name__ for m in shell.app._stats_requests(shell.dp)]


def test_the_punt_meter_is_polled_only_where_this_member_made_it(
        shell: Shell, monkeypatch: Any) -> None:  # noqa: F811 - the fixture
    assert shell.app.punt_pps > 0
    alone = _kinds(shell)
    assert alone == ["OFPPortStatsRequest", "OFPEchoRequest", "OFPMeterStatsRequest"], alone
    monkeypatch.setattr(shell.app, "member", Member({shell.dp.id}))
    assert "OFPMeterStatsRequest" in _kinds(shell)
    monkeypatch.setattr(shell.app, "member", Member(set()))
    assert _kinds(shell) == ["OFPPortStatsRequest", "OFPEchoRequest"]
