"""The core's store-write queue: the last write per record, in the order of each record's last
write; its writes made past the frozen dataclass's __init__ equal the plain ones."""

from __future__ import annotations

from controller.intents import StoreWrite
from controller.writes import Writes, store_write


def test_store_write_equals_the_dataclass_made_one() -> None:
    """Field for field, in equality and in hash; still frozen."""
    for kind, key, value in (("binding", "7", {"id": 7}), ("instance", "10.0.0.21", None)):
        fast, plain = store_write(kind, key, value), StoreWrite(kind, key, value)
        assert (fast.kind, fast.key, fast.value) == (kind, key, value)
        assert fast == plain and hash((fast.kind, fast.key)) == hash((plain.kind, plain.key))
    try:
        fast.key = "other"  # type: ignore[misc]
    except AttributeError:
        pass
    else:
        raise AssertionError("a StoreWrite must stay frozen")


def test_the_last_write_of_a_record_wins_and_goes_last() -> None:
    """A record written again replaces its earlier write and moves behind the records written
    since; a deletion is a write too."""
    w = Writes()
    w.put("binding", "1", {"id": 1})
    w.put("binding", "2", {"id": 2})
    w.put("instance", "1", {"dbid": "1"})  # same key, another kind: another record
    w.put("binding", "1", {"id": 1, "again": True})
    w.delete("binding", "2")
    assert len(w) == 3
    assert w.drain() == [StoreWrite("instance", "1", {"dbid": "1"}),
                         StoreWrite("binding", "1", {"id": 1, "again": True}),
                         StoreWrite("binding", "2", None)]
    assert w.drain() == []
