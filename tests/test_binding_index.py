"""The binding table's per-ingress index answers what a walk over every binding would."""

from __future__ import annotations

from hypothesis import given, settings
from hypothesis import strategies as st

from controller.dataplane.affinity import Binding, BindingTable, FlowKey

OPS = st.lists(st.tuples(st.sampled_from(("add", "remove", "move", "restore")),
                         st.integers(0, 11), st.integers(1, 4)), max_size=60)


def _key(n: int) -> FlowKey:
    return FlowKey("s", f"10.0.0.{n}", "10.0.100.1", 6, 40000 + n, 8000)


@settings(max_examples=150, deadline=None)
@given(OPS)
def test_bindings_at_a_switch_are_those_whose_ingress_it_is(ops: list[tuple[str, int, int]]
                                                            ) -> None:
    """After any adds, removals, moves and restores, `at(dpid)` lists exactly the bindings
    whose ingress is `dpid`, oldest first; every binding is found by key and identifier."""
    table = BindingTable()
    for op, n, dpid in ops:
        live = table.all()
        if op == "add" and table.get(_key(n)) is None:
            table.add(_key(n), "10.0.1.1", dpid, 0.0)
        elif op == "remove" and live:
            table.remove(live[n % len(live)].ident)
        elif op == "move" and live:
            table.move(live[n % len(live)], dpid)
        elif op == "restore" and live:  # the same binding restored at another switch
            b = live[n % len(live)]
            table.restore(Binding(b.ident, b.key, b.dbid, dpid, b.created_at))
    for dpid in range(1, 5):
        assert table.at(dpid) == [b for b in table.all() if b.ingress == dpid]
    assert sum(len(table.at(d)) for d in range(1, 5)) == len(table.all())
    for b in table.all():  # and each is found by its key and its identifier
        assert table.get(b.key) is b and table.by_ident(b.ident) is b
    assert len(table) == len(table.all())
    assert table.next_ident > max((b.ident for b in table.all()), default=0)
