"""The packet-in limit: every entry that sends packets to the controller passes a meter first.

Boundary: pure. The switch drops what exceeds the meter's rate (`[channel].punt_pps`), so a
flood at a D-SID costs the controller at most that many packet-ins a second per switch. The
shell installs the meter (OFPMC_ADD) when a switch connects, before any entry that uses it, and
reads its drop count (meter statistics) for GET /stats. A switch without meters refuses the
meter; the shell then leaves it out (`unmetered`): its entries go unmetered, so a flood at it
is limited by nothing at the switch, but it keeps steering (docs/channels.md).
"""

from __future__ import annotations

from dataclasses import replace

from controller.intents import PORT_CONTROLLER, FlowMod, Intent, Output

PUNT_METER = 1  # the meter id every controller-bound entry uses


def sends_to_controller(fm: FlowMod) -> bool:
    """True if the entry's actions output to the controller."""
    for a in fm.actions:  # noqa: SIM110 - any() over a generator costs more (packet-in path)
        if isinstance(a, Output) and a.port == PORT_CONTROLLER:
            return True
    return False


def meter_punts(intents: list[Intent], meter: int = PUNT_METER,
                unmetered: frozenset[int] | set[int] = frozenset()) -> list[Intent]:
    """`intents` with every added controller-bound entry passing `meter`, but at the switches
    of `unmetered` (they refused it); others as they are. The list itself when none is (a new
    flow's intents: on the packet-in path)."""
    out = intents
    for k, intent in enumerate(intents):
        if (isinstance(intent, FlowMod) and intent.command == "add" and intent.meter is None
                and sends_to_controller(intent) and intent.dpid not in unmetered):
            if out is intents:
                out = list(intents)
            out[k] = replace(intent, meter=meter)
    return out
