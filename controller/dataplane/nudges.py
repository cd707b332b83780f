"""The segments that tell moved TCP connections' clients they ended, held until the switches
have caught up with the move.

Boundary: pure; a queue of packets with the time each is due. A flow moved off a lost
instance gets new entries at its ingress; Open vSwitch applies them to its tables at once, but
its datapath keeps using the flow's cached entry until its revalidators catch up (about half a
second, docs/dataplanes.md, pitfall 14). A client's answer to a nudge sent with the entries
(`affinity.moved_nudge`) took the cached way, to the lost instance, and was lost: its client
heard nothing more (seen in Mininet). So nudges are sent NUDGE_DELAY_S after the move, by the
tick (`dataplane/drains.py` `honour`), when the client's answer takes the new entries to the
new instance, which resets it.
"""

from __future__ import annotations

from collections import deque

from controller.intents import PacketOut

NUDGE_DELAY_S = 1.0  # as reactive.SETTLE_S: the datapath has caught up with new entries


class Nudges:
    """Nudges waiting for their time, in the order they were made."""

    def __init__(self) -> None:
        self._waiting: deque[tuple[float, list[PacketOut]]] = deque()

    def later(self, packets: list[PacketOut], now: float) -> None:
        """Send `packets` once NUDGE_DELAY_S has passed since `now`."""
        if packets:
            self._waiting.append((now + NUDGE_DELAY_S, packets))

    def due(self, now: float) -> list[PacketOut]:
        """The nudges whose time has come (they are forgotten)."""
        out: list[PacketOut] = []
        while self._waiting and self._waiting[0][0] <= now:
            out += self._waiting.popleft()[1]
        return out
