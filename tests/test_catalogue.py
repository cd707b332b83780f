"""The catalogue's instances of one service, against a scan of every instance, through any
sequence of services and instances coming and going (and a restore that moves a D-BID)."""

from __future__ import annotations

import random

from hypothesis import given, settings
from hypothesis import strategies as st

from controller.errors import Conflict, NotFound
from controller.instances.catalogue import Catalogue
from controller.model import Instance, Service

NAMES = ("a", "b", "c")
DBIDS = tuple(f"10.0.1.{n}" for n in range(1, 7))


def scanned(cat: Catalogue, name: str) -> list[Instance]:
    """The instances of `name`, found by looking at every instance."""
    return sorted((i for i in cat.instances.values() if i.service == name), key=lambda i: i.dbid)


@settings(max_examples=200, deadline=None)
@given(st.integers(0, 10_000), st.integers(1, 40))
def test_instances_of_a_service_are_those_a_scan_finds(seed: int, steps: int) -> None:
    """After any mix of services created and deleted, instances registered, withdrawn and
    restored (one D-BID restored under another service replaces the one held), each service's
    instances are exactly those that name it, by D-BID; a deleted service's are gone."""
    rng = random.Random(seed)
    cat = Catalogue()
    for _ in range(steps):
        name, dbid = rng.choice(NAMES), rng.choice(DBIDS)
        op = rng.choice(["service", "delete", "register", "withdraw", "restore"])
        try:
            if op == "service":
                cat.put_service(Service(name, f"10.9.0.{NAMES.index(name) + 1}"), create=True)
            elif op == "delete":
                _, gone = cat.delete_service(name)
                assert all(i.service == name for i in gone)
                assert not any(i.dbid in cat.instances for i in gone)
            elif op == "register":
                cat.register(f"10.9.0.{NAMES.index(name) + 1}", dbid, "dma", True, 1.0)
            elif op == "withdraw":
                cat.withdraw(dbid)
            else:
                cat.restore([], [Instance(service=name, dbid=dbid)])
        except (Conflict, NotFound):
            pass
        for each in NAMES:
            assert [id(i) for i in cat.of_service(each)] == [id(i) for i in scanned(cat, each)]
