"""The binding table's indexes (per ingress, per client, per instance) answer what a walk over
every binding would."""

from __future__ import annotations

from hypothesis import given, settings
from hypothesis import strategies as st

from controller.dataplane.affinity import Binding, BindingTable, FlowKey

OPS = st.lists(st.tuples(st.sampled_from(("add", "remove", "move", "restore", "rebind")),
                         st.integers(0, 11), st.integers(1, 4)), max_size=60)


def _key(n: int) -> FlowKey:
    return FlowKey("s", f"10.0.0.{n % 3}", "10.0.100.1", 6, 40000 + n, 8000)  # 3 clients


@settings(max_examples=150, deadline=None)
@given(OPS)
def test_bindings_at_a_switch_are_those_whose_ingress_it_is(ops: list[tuple[str, int, int]]
                                                            ) -> None:
    """After any adds, removals, moves, restores and rebinds, `at(dpid)` lists exactly the
    bindings whose ingress is `dpid`, `of_client` and `of_instance` those of a client and of
    an instance, oldest first; every binding is found by key and identifier."""
    table = BindingTable()
    for op, n, dpid in ops:
        live = table.all()
        if op == "add" and table.get(_key(n)) is None:
            table.add(_key(n), f"10.0.1.{dpid % 2}", dpid, 0.0)
        elif op == "remove" and live:
            table.remove(live[n % len(live)].ident)
        elif op == "move" and live:
            table.move(live[n % len(live)], dpid)
        elif op == "restore" and live:  # the same binding restored at another switch
            b = live[n % len(live)]
            table.restore(Binding(b.ident, b.key, f"10.0.1.{n % 3}", dpid, b.created_at))
        elif op == "rebind" and live:  # its instance died: another takes the flow
            table.rebind(live[n % len(live)], f"10.0.1.{dpid % 3}", 1.0)
    for dpid in range(1, 5):
        assert table.at(dpid) == [b for b in table.all() if b.ingress == dpid]
    assert sum(len(table.at(d)) for d in range(1, 5)) == len(table.all())
    for n in range(3):
        assert table.of_client(f"10.0.0.{n}") == [b for b in table.all()
                                                  if b.key.src == f"10.0.0.{n}"]
        dbid = f"10.0.1.{n}"
        assert table.of_instance(dbid) == [b for b in table.all() if b.dbid == dbid]
        assert table.count_of(dbid) == len(table.of_instance(dbid))
    for b in table.all():  # and each is found by its key and its identifier
        assert table.get(b.key) is b and table.by_ident(b.ident) is b
    assert len(table) == len(table.all())
    assert table.next_ident > max((b.ident for b in table.all()), default=0)
