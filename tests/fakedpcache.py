"""Open vSwitch's datapath flow cache in front of a FakeOFTable, as far as `learn` is concerned.

Boundary: tests only; no I/O. OVS runs the OpenFlow tables only for a packet that misses its
datapath cache (an upcall): that run executes `learn`, and its result is cached. A packet that
hits a cached flow gets the cached actions and learns nothing then. When the tables change,
the revalidators translate every cached flow again with the key of the packet that created it:
with packets to account since the last pass, `learn` runs (the same side effects); without, it
does not, and the flow keeps the new actions, unless the new translation needs a field the
cached flow does not match (it is too wide: deleted) or it met a `learn` with a `limit` whose
entry is not in the table (ofproto-dpif-xlate.c sets `avoid_caching`: deleted)
(ofproto-dpif-upcall.c, revalidate_ukey__). Flows idle longer than `max_idle` are deleted.

A cached flow here matches the whole packet except the TCP flags, which it matches only when a
table its translation visited holds an entry matching them (OVS's classifier un-wildcards what
it consults). Exact on the rest: every flow the tests send through a `learn` is exact on its
5-tuple in OVS too (learn un-wildcards what it reads).
"""

from __future__ import annotations

import copy
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from controller.intents import Learn
from tests.fakeoftable import FakeOFTable, Fields, Result

OVS_MAX_IDLE_S = 10.0  # other_config:max-idle's default
Key = tuple[int, frozenset[tuple[str, int | str]]]


@dataclass(slots=True)
class _Flow:
    fields: dict[str, int | str]  # the packet that created it (OVS: the ukey's key)
    result: Result
    flags: bool  # matches the TCP flags
    used: float
    hits: int = 0  # packets since the last revalidation


def _key(fields: Mapping[str, int | str], in_port: int, flags: bool) -> Key:
    return in_port, frozenset((k, v) for k, v in fields.items() if flags or k != "tcp_flags")


def _translate(switch: FakeOFTable, fields: Mapping[str, int | str], in_port: int,
               now: float, side_effects: bool) -> tuple[Result, bool, bool]:
    """Run the packet through the tables: (result, needs the TCP flags, avoid caching).
    Without side effects, on a copy of the tables (its learns are not kept)."""
    target = switch
    if not side_effects:
        target = FakeOFTable.__new__(FakeOFTable)
        target.__dict__.update(switch.__dict__)
        target.tables = copy.deepcopy(switch.tables)
    visited: set[int] = set()
    avoid = False
    run_table, run_learn = target._table, target._learn

    def table(tid: int, *args: Any) -> None:
        visited.add(tid)
        run_table(tid, *args)

    def learn(act: Learn, pkt: Fields, t: float) -> None:
        nonlocal avoid
        old = {(e.fm.priority, tuple(sorted(e.want.items())), e.fm.actions)
               for e in target.tables.get(act.table, [])}
        run_learn(act, pkt, t)
        new = target.tables[act.table][-1]
        if (act.limit and not side_effects and (
                new.fm.priority, tuple(sorted(new.want.items())), new.fm.actions) not in old):
            avoid = True

    target.__dict__.update(_table=table, _learn=learn)
    try:
        result = target.lookup(fields, in_port, now)
    finally:
        del target.__dict__["_table"], target.__dict__["_learn"]
    flags = any("tcp_flags" in dict(e.fm.match) for tid in visited
                for e in target.tables.get(tid, []))
    return result, flags, avoid


class DatapathCache:
    """The datapath of one switch: cached results, and their revalidation."""

    def __init__(self, switch: FakeOFTable, max_idle: float = OVS_MAX_IDLE_S) -> None:
        self.switch = switch
        self.max_idle = max_idle
        self.flows: dict[Key, _Flow] = {}
        self.upcalls = 0

    def send(self, fields: Mapping[str, int | str], in_port: int, now: float) -> Result:
        """A packet arriving on `in_port`: a cached flow's result, or an upcall that runs the
        tables (learning) and caches the result."""
        for flags in (True, False):
            flow = self.flows.get(_key(fields, in_port, flags))
            if flow is not None and flow.flags == flags:
                flow.used, flow.hits = now, flow.hits + 1
                return flow.result
        self.upcalls += 1
        result, flags, _ = _translate(self.switch, fields, in_port, now, side_effects=True)
        self.flows[_key(fields, in_port, flags)] = _Flow(dict(fields), result, flags, now)
        return result

    def revalidate(self, now: float) -> None:
        """One revalidator pass after the tables changed (see the module docstring)."""
        self.switch.expire(now)
        for key, flow in list(self.flows.items()):
            in_port = key[0]
            if now - flow.used > self.max_idle:
                del self.flows[key]
                continue
            result, flags, avoid = _translate(self.switch, flow.fields, in_port, now,
                                              side_effects=bool(flow.hits))
            if avoid or (flags and not flow.flags):
                del self.flows[key]
            else:
                flow.result, flow.hits = result, 0
