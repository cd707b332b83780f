"""Which of two members' writes to one shared record stands: the last accepted, everywhere.

Members share operator and agent writes as the requests themselves (`changes.py`), each
applied where it arrives, in arrival order. Two writes to one record accepted at two members
at about the same time arrive in opposite orders at the two, so applying each on arrival
leaves the members swapped (each holds the other's service) or disagreeing (one drained, one
not). Here every write names the record it writes (`record_of`) and carries when and where it
was accepted (`Change.at`, `Change.member`); a member remembers, per record, the stamp
(accept time, member) of the write that stands, its own writes included, and applies another
member's write only when its stamp is later (`RecordClocks.admit`): last writer wins, by
accept time, ties by member id, and every member ends on the same write whatever the order.

The records: a service (created, replaced, deleted: one record, so a replacement later than
a deletion brings it back and an earlier one does not), an instance's registration (register,
withdraw) and an instance's operator state (drain, undrain, deactivate, activate; another
record: a drain later than the withdrawal elsewhere does not bring the instance back).
Metric reports have their own order (controller/instances/intake.py); the rest is not shared.

A later write is applied as what it makes the record (`as_applied`): a service created at
another member under a name created here first replaces this one (a PUT), and a replacement
of a service deleted here earlier creates it (a POST). Some writes change other records too:
a withdrawal ends the instance's state, a service's deletion withdraws its instances. Where
the write's own record has a later write here, those parts are still applied, each ordered
on its own record (`still_applied`): a withdrawal left out here (the instance was registered
again later elsewhere) still ends a drain older than it, and a deletion left out (the service
was replaced later) still withdraws the instances registered before it, as it did where it
was made. A registration refused here because its service is gone (deleted here while it was
made elsewhere) is kept (`Parked`) and applied again if the service is created again.

A change without a stamp (an older member's, or one a catch-up made from the store) is
applied as before, on arrival, and stamps nothing. Deletions are remembered too (so that an
earlier write arriving late does not bring the record back), up to `limit` records: past it
the records written longest ago are forgotten first.

Clock skew between members shifts which of two concurrent writes wins, not whether the
members agree; and a write made at a member after it made or applied one stamped as late or
later (another member's clock runs ahead) is stamped just after it (`accepted`: a Lamport
clock over the accept times), so that what happened after, here, is later everywhere.

Boundary: pure. Requests and stamps in; verdicts and requests out.
"""

from __future__ import annotations

import json
from collections import OrderedDict
from collections.abc import Callable, Collection, Iterable, Mapping, Sequence

from controller.cluster.changes import PREFIX, Change

Stamp = tuple[float, str]  # (accept time, member id)
STATE_VERBS = ("drain", "undrain", "deactivate", "activate")
LIMIT = 100_000  # records whose stamp is remembered (each ~200 bytes)
PARKED = 1000  # other members' registrations kept until their service exists here
STEP = 1e-3  # s: a write made here after a later-stamped one is stamped this much after it


def record_of(method: str, path: str, body: str) -> str | None:
    """The record a shared write writes (`service:NAME`, `instance:DBID`, `state:DBID`), or
    None for one without a record order (a metric report, anything unknown)."""
    if not path.startswith(PREFIX):
        return None
    parts = [p for p in path[len(PREFIX):].split("/") if p]
    if not parts:
        return None
    kind, args = parts[0], parts[1:]
    if kind == "services":
        name = args[0] if args else body_field(body, "name")
        return None if name is None or len(args) > 1 else f"service:{name}"
    if kind == "instances":
        if not args and method == "POST":
            dbid = body_field(body, "dbid")
            return None if dbid is None else f"instance:{dbid}"
        if len(args) == 1 and method == "DELETE":
            return f"instance:{args[0]}"
        if len(args) == 2 and method == "POST" and args[1] in STATE_VERBS:
            return f"state:{args[0]}"
    return None


def also_written(method: str, path: str, body: str) -> tuple[str, ...]:
    """The records a write changes besides its own (`record_of`): an instance's withdrawal
    ends its operator state too (registered again, it starts undrained); a service's deletion
    is remembered as such (`deleted:NAME`: a registration made before it is void, even where
    the service was created again after)."""
    record = record_of(method, path, body)
    if method != "DELETE" or record is None:
        return ()
    kind, name = record.split(":", 1)
    return (f"state:{name}",) if kind == "instance" else (f"deleted:{name}",)


def still_applied(change: Change, services: Mapping[str, Sequence[str]],
                  draining: Collection[str]) -> list[Change]:
    """What of another member's `change`, left out here because a later write to its record
    stands, still applies to the records it writes besides (each then ordered on its own, as
    a change of that member at the same time): a withdrawn instance's state is ended (undrain,
    when it is draining here: `draining`); a deleted service's instances are withdrawn (those
    here: `services` maps a service to its D-BIDs)."""
    record = record_of(change.method, change.path, change.body)
    out: list[Change] = []
    if change.method != "DELETE" or record is None:
        return out
    kind, name = record.split(":", 1)
    if kind == "instance" and name in draining:
        out.append(Change(change.member, "POST", f"{PREFIX}instances/{name}/undrain", "{}",
                          change.at))
    elif kind == "service":
        out += [Change(change.member, "DELETE", f"{PREFIX}instances/{dbid}", "", change.at)
                for dbid in services.get(name, ())]
    return out


class Parked:
    """Other members' registrations refused here for want of their service (deleted here,
    while they registered; created again later): each applied again, in order, once a
    service with its D-SID is created here. At most `limit` kept (the oldest go first)."""

    def __init__(self, limit: int = PARKED) -> None:
        self.limit = limit
        self._queue: OrderedDict[int, tuple[str, Change]] = OrderedDict()
        self._serial = 0

    def __len__(self) -> int:
        return len(self._queue)

    def park(self, change: Change) -> None:
        """Keep a registration refused for an unknown D-SID."""
        dsid = body_field(change.body, "dsid")
        if dsid is None:
            return
        self._serial += 1
        self._queue[self._serial] = (dsid, change)
        while len(self._queue) > self.limit:
            self._queue.popitem(last=False)

    def take(self, dsid: str) -> list[Change]:
        """The kept registrations of `dsid`, in the order they were kept (no longer kept)."""
        serials = [k for k, (d, _) in self._queue.items() if d == dsid]
        return [self._queue.pop(k)[1] for k in serials]


def body_field(body: str, name: str) -> str | None:
    """A string field of a JSON object body (None: not one)."""
    try:
        data = json.loads(body)
    except ValueError:
        return None
    value = data.get(name) if isinstance(data, dict) else None
    return value if isinstance(value, str) else None


def as_applied(change: Change, exists: Callable[[str], bool]) -> Change:
    """`change` as this member applies it, given which services it holds (`exists`): a
    service created elsewhere under a name held here replaces it (PUT); a replacement of one
    not held here creates it (POST). Anything else as it is."""
    record = record_of(change.method, change.path, change.body)
    if record is None or not record.startswith("service:"):
        return change
    name = record[len("service:"):]
    if change.method == "POST" and exists(name):
        return Change(change.member, "PUT", f"{PREFIX}services/{name}", change.body, change.at)
    if change.method == "PUT" and not exists(name):
        try:
            data = json.loads(change.body)
        except ValueError:
            return change
        if not isinstance(data, dict):
            return change  # (refused as it is: a 400 naming the body)
        body = json.dumps({**data, "name": name}, sort_keys=True)
        return Change(change.member, "POST", f"{PREFIX}services", body, change.at)
    return change


class RecordClocks:
    """Per shared record, the stamp of the write that stands at this member (and, for an
    instance's state, the write itself: `standing`)."""

    def __init__(self, limit: int = LIMIT) -> None:
        self.limit = limit
        self._stamps: OrderedDict[str, Stamp] = OrderedDict()
        self._states: dict[str, Change] = {}  # state record -> the drain etc. that stands
        self.latest = float("-inf")  # the latest accept time noted

    def __len__(self) -> int:
        return len(self._stamps)

    def stamp(self, record: str) -> Stamp | None:
        """The stamp of the write that stands for `record` (None: none remembered)."""
        return self._stamps.get(record)

    def standing(self, dbid: str) -> Change | None:
        """The operator's write (drain, deactivate, ...) that stands for the instance's state;
        None when none does (or a withdrawal later than it ended it). An instance withdrawn
        here and registered again starts without it: apply it again (a withdrawal that an
        earlier drain was made after, elsewhere, must not end it)."""
        return self._states.get(f"state:{dbid}")

    def accepted(self, method: str, path: str, body: str, at: float, member: str) -> float:
        """This member accepted a write at `at` and applied it: it stands. Its accept time as
        the others are told it: `at`, or just after the latest write this member made or
        applied when that one is not earlier (another member's clock runs ahead, or two writes
        here in one tick of the clock): a write made after another, here, is later
        everywhere."""
        if record_of(method, path, body) is None:
            return at
        if at <= self.latest:  # (a Lamport clock: later than all this member wrote or saw)
            at = self.latest + STEP
        self._note(Change(member, method, path, body, at))
        return at

    def admit(self, change: Change, service: str | None = None) -> bool:
        """True if another member's `change` is to be applied here: it has no record order or
        no stamp, or it is later than the write that stands (and, a registration for
        `service`, later than that service's last deletion). (Note it with `applied` once it
        is.)"""
        if change.at is None:
            return True
        record = record_of(change.method, change.path, change.body)
        if record is None:
            return True
        stamp = (change.at, change.member)
        held = self._stamps.get(record)
        gone = None if service is None or change.method != "POST" or not record.startswith(
            "instance:") else self._stamps.get(f"deleted:{service}")
        return (held is None or stamp > held) and (gone is None or stamp > gone)

    def applied(self, change: Change) -> None:
        """Another member's admitted `change` was applied here: it stands. Also when it was
        refused: a withdrawal of what is gone here already leaves the record as the change
        makes it, and an earlier write arriving after it must not be applied either (a
        refusal for a reason of this member's own leaves it holding what it held)."""
        if change.at is not None and record_of(change.method, change.path,
                                               change.body) is not None:
            self._note(change)

    def withdrew(self, change: Change, dbids: Iterable[str]) -> None:
        """`change` (a service's deletion, made here or applied) withdrew these instances
        here: each withdrawal stands at its stamp, where that is later, for the instance's
        registration and its state (an operator's drain of it then no longer stands)."""
        if change.at is None:
            return
        for dbid in dbids:
            self._note(Change(change.member, "DELETE", f"{PREFIX}instances/{dbid}", "",
                              change.at))

    def left_out(self, change: Change) -> None:
        """Another member's `change` was left out (a later write to its record stands); what it
        writes besides (a withdrawal: the instance's state) stands where it is later, whether
        or not anything was left to change here (`still_applied`)."""
        if change.at is not None and record_of(change.method, change.path,
                                               change.body) is not None:
            self._note(change, own=False)

    def _note(self, change: Change, own: bool = True) -> None:
        """Remember the stamp of `change` (at) for each record it writes (`own`: its own record
        too), where it is later than the one held; forget the oldest past the limit."""
        assert change.at is not None
        stamp = (change.at, change.member)
        first = record_of(change.method, change.path, change.body)
        others = also_written(change.method, change.path, change.body)
        for record in (first, *others) if own else others:
            assert record is not None
            held = self._stamps.pop(record, None)
            later = held is None or stamp > held
            self._stamps[record] = stamp if later or held is None else held
            if later and record.startswith("state:"):
                if record == first:
                    self._states[record] = change
                else:
                    self._states.pop(record, None)  # (a withdrawal ends it)
        self.latest = max(self.latest, stamp[0])
        while len(self._stamps) > self.limit:
            self._states.pop(self._stamps.popitem(last=False)[0], None)
