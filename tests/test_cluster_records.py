"""Two members' writes to one shared record: every member ends on the last accepted one,
whatever order the writes reach it in (controller/cluster/records.py)."""

from __future__ import annotations

import itertools
import json

from hypothesis import given, settings
from hypothesis import strategies as st

from controller.cluster.changes import PREFIX, Change
from controller.cluster.records import RecordClocks, as_applied, record_of

V1 = PREFIX


def test_each_shared_write_names_its_record() -> None:
    """A service's create, replace and delete write one record; an instance's registration and
    withdrawal another; its drains and activations a third; reports and unknown paths none."""
    svc = json.dumps({"name": "s1", "dsid": "10.0.100.9"})
    assert record_of("POST", V1 + "services", svc) == "service:s1"
    assert record_of("PUT", V1 + "services/s1", "{}") == "service:s1"
    assert record_of("DELETE", V1 + "services/s1", "") == "service:s1"
    reg = json.dumps({"dsid": "10.0.100.1", "dbid": "10.0.0.21"})
    assert record_of("POST", V1 + "instances", reg) == "instance:10.0.0.21"
    assert record_of("DELETE", V1 + "instances/10.0.0.21", "") == "instance:10.0.0.21"
    for verb in ("drain", "undrain", "deactivate", "activate"):
        assert record_of("POST", f"{V1}instances/10.0.0.21/{verb}", "{}") == "state:10.0.0.21"
    for method, path, body in (("POST", V1 + "metrics", "{}"), ("POST", V1 + "services", "[]"),
                               ("POST", V1 + "services", "{"), ("POST", "/x/services", svc),
                               ("POST", V1 + "instances/10.0.0.21/kill", "{}"),
                               ("PUT", V1 + "services/a/b", "{}")):
        assert record_of(method, path, body) is None, (method, path, body)


def test_a_later_write_is_applied_as_what_it_makes_the_record() -> None:
    """A service created elsewhere under a name held here replaces it; a replacement of a
    service not held here creates it (with the name from the path); the rest as it is."""
    body = json.dumps({"name": "s1", "dsid": "10.0.100.9"})
    post = Change("m2", "POST", V1 + "services", body, 5.0)
    assert as_applied(post, lambda n: n == "s1") == Change("m2", "PUT", V1 + "services/s1",
                                                            body, 5.0)
    assert as_applied(post, lambda n: False) == post
    put = Change("m2", "PUT", V1 + "services/s1", json.dumps({"dsid": "10.0.100.9"}), 5.0)
    made = as_applied(put, lambda n: False)
    assert (made.method, made.path, made.at) == ("POST", V1 + "services", 5.0)
    assert json.loads(made.body) == {"name": "s1", "dsid": "10.0.100.9"}
    assert as_applied(put, lambda n: True) == put
    bad = Change("m2", "PUT", V1 + "services/s1", "[1]", 5.0)
    assert as_applied(bad, lambda n: False) == bad  # refused where applied: a 400


def test_an_earlier_write_arriving_late_is_left_out() -> None:
    """m1 wrote at 10: m2's write of the same record at 9 is left out, at 11 applied; a write
    with no stamp (an older member's, a catch-up's) and a report always are."""
    clocks = RecordClocks()
    assert clocks.accepted("PUT", V1 + "services/s1", "{}", 10.0, "m1") == 10.0
    early = Change("m2", "PUT", V1 + "services/s1", "{}", 9.0)
    late = Change("m2", "DELETE", V1 + "services/s1", "", 11.0)
    assert not clocks.admit(early)
    assert clocks.admit(late)
    clocks.applied(late)
    assert clocks.stamp("service:s1") == (11.0, "m2")
    assert not clocks.admit(Change("m3", "POST", V1 + "services", '{"name": "s1"}', 10.5))
    assert clocks.admit(Change("m3", "POST", V1 + "services", '{"name": "s1"}', None))
    assert clocks.admit(Change("m3", "POST", V1 + "metrics", "{}", 1.0))
    assert not clocks.admit(Change("m1", "PUT", V1 + "services/s1", "{}", 11.0))  # a tie: ids
    assert clocks.admit(Change("m3", "PUT", V1 + "services/s1", "{}", 11.0))


def test_a_write_after_a_later_stamped_one_is_stamped_after_it() -> None:
    """m2's clock runs ahead: m1 applied its write stamped 20, then an operator wrote here at
    15: the write is told to the others as 20 + a step, so it stands there as it does here."""
    clocks = RecordClocks()
    clocks.applied(Change("m2", "POST", V1 + "instances/10.0.0.21/drain", "{}", 20.0))
    at = clocks.accepted("POST", V1 + "instances/10.0.0.21/undrain", "{}", 15.0, "m1")
    assert at > 20.0 and clocks.stamp("state:10.0.0.21") == (at, "m1")
    assert not clocks.admit(Change("m2", "POST", V1 + "instances/10.0.0.21/drain", "{}", 20.0))


def test_the_stamps_remembered_are_bounded() -> None:
    """Past the limit, the records written longest ago are forgotten first."""
    clocks = RecordClocks(limit=3)
    for k in range(5):
        clocks.accepted("DELETE", f"{V1}services/s{k}", "", float(k), "m1")
    assert len(clocks) == 3
    assert clocks.stamp("service:s0") is None and clocks.stamp("service:s4") == (4.0, "m1")


# --- convergence, on a model of a member's catalogue --------------------------------------
WRITES = (("PUT", "services/s1", {"dsid": "10.0.100.1"}),
          ("PUT", "services/s1", {"dsid": "10.0.100.2"}),
          ("POST", "services", {"name": "s1", "dsid": "10.0.100.3"}),
          ("DELETE", "services/s1", None),
          ("POST", "instances/10.0.0.21/drain", {}),
          ("POST", "instances/10.0.0.21/undrain", {}))


class Member:
    """A member's shared records as the API keeps them (a model: create refused when the
    service exists, replace when it does not, as the API does)."""

    def __init__(self, name: str) -> None:
        self.name = name
        self.clocks = RecordClocks()
        self.services: dict[str, str] = {"s1": "10.0.100.0"}
        self.draining = False

    def serve(self, change: Change) -> bool:
        """The API's answer: True if accepted."""
        body = json.loads(change.body) if change.body else None
        if change.path.endswith("/drain") or change.path.endswith("/undrain"):
            self.draining = change.path.endswith("/drain")
            return True
        if change.method == "POST":
            if body["name"] in self.services:
                return False
            self.services[body["name"]] = body["dsid"]
        elif change.method == "PUT":
            if "s1" not in self.services:
                return False
            self.services["s1"] = body["dsid"]
        else:
            if self.services.pop("s1", None) is None:
                return False
        return True

    def local(self, k: int, at: float) -> Change | None:
        """Write k accepted here at `at`: the change the others are told (None: refused)."""
        method, path, body = WRITES[k]
        change = Change(self.name, method, V1 + path, "" if body is None else json.dumps(body))
        if not self.serve(change):
            return None
        return Change(self.name, method, change.path, change.body,
                      self.clocks.accepted(method, change.path, change.body, at, self.name))

    def remote(self, change: Change) -> None:
        """Another member's change, as apps/changefeed.py applies it."""
        if self.clocks.admit(change):
            self.serve(as_applied(change, self.services.__contains__))
            self.clocks.applied(change)


@settings(max_examples=300, deadline=None)
@given(st.lists(st.tuples(st.integers(0, 2), st.integers(0, len(WRITES) - 1),
                          st.floats(0.0, 10.0)), min_size=1, max_size=8),
       st.randoms(use_true_random=False))
def test_members_end_on_the_same_records_whatever_the_order(
        writes: list[tuple[int, int, float]], rng: object) -> None:
    """Three members each accept some writes (their clocks disagree: any accept times); each
    member then receives the others' changes in its own shuffled order: all three hold the
    same services and the same drain state."""
    members = [Member(f"m{i}") for i in range(3)]
    told: list[list[Change]] = [[], [], []]
    for who, k, at in writes:
        change = members[who].local(k, at)
        if change is not None:
            told[who].append(change)
    for i, member in enumerate(members):
        inbox = list(itertools.chain.from_iterable(t for j, t in enumerate(told) if j != i))
        rng.shuffle(inbox)  # type: ignore[attr-defined]
        for change in inbox:
            member.remote(change)
    assert len({(tuple(sorted(m.services.items())), m.draining) for m in members}) == 1
