"""The reconciler: what we installed per (switch, scope), and the flow-mods to a desired set.

Boundary: pure bookkeeping of `FlowMod` values. It never reads a switch; callers tell it when
a switch's contents became unknown (`forget_switch`).
"""

from __future__ import annotations

from controller.intents import FlowMod, Intent, Match

Key = tuple[int, int, int, Match]


def entry_key(fm: FlowMod) -> Key:
    """What makes two entries the same entry in a switch: table, priority, match."""
    return (fm.dpid, fm.table, fm.priority, fm.match)


class Reconciler:
    """Remembers what we installed per (switch, scope) and turns a desired set into the
    flow-mods that get there: adds for new or changed entries, strict deletes for the rest."""

    def __init__(self) -> None:
        self._installed: dict[tuple[int, str], dict[Key, FlowMod]] = {}

    def apply(self, dpid: int, scope: str, desired: list[FlowMod]) -> list[Intent]:
        """Flow-mods making switch `dpid` hold exactly `desired` for `scope`."""
        want = {entry_key(fm): fm for fm in desired}
        have = self._installed.get((dpid, scope), {})
        out: list[Intent] = [
            FlowMod(dpid, key[1], key[2], key[3], command="delete_strict")
            for key in have if key not in want]
        out += [fm for key, fm in want.items() if have.get(key) != fm]
        if want:
            self._installed[(dpid, scope)] = want
        else:
            self._installed.pop((dpid, scope), None)
        return out

    def adopt(self, dpid: int, scope: str, fm: FlowMod) -> None:
        """An entry found in the switch counts as installed for `scope`; its content is not
        known (`command` "adopted"), so the next desired set re-sends it or deletes it."""
        self._installed.setdefault((dpid, scope), {}).setdefault(entry_key(fm), fm)

    def held(self, dpid: int) -> dict[Key, tuple[str, FlowMod]]:
        """Every entry we hold installed at a switch: key -> (scope, entry)."""
        return {key: (scope, fm) for (d, scope), entries in self._installed.items()
                if d == dpid for key, fm in entries.items()}

    def drop(self, dpid: int, scope: str, key: Key) -> None:
        """An entry the switch no longer holds."""
        entries = self._installed.get((dpid, scope), {})
        entries.pop(key, None)
        if not entries:
            self._installed.pop((dpid, scope), None)

    def forget_switch(self, dpid: int) -> None:
        """A switch (re)connected: what it holds is unknown, so everything is sent again."""
        for key in [k for k in self._installed if k[0] == dpid]:
            del self._installed[key]

    def scopes(self, dpid: int) -> list[str]:
        """The scopes with entries at a switch."""
        return sorted(s for d, s in self._installed if d == dpid)

    def count(self) -> int:
        """How many entries we hold installed, over all switches."""
        return sum(len(v) for v in self._installed.values())
