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
of a service deleted here earlier creates it (a POST).

A change without a stamp (an older member's, or one a catch-up made from the store) is
applied as before, on arrival, and stamps nothing. Deletions are remembered too (so that an
earlier write arriving late does not bring the record back), up to `limit` records: past it
the records written longest ago are forgotten first.

Clock skew between members shifts which of two concurrent writes wins, not whether the
members agree; and a write made at a member after it applied a write stamped later (another
member's clock runs ahead) is stamped just after that one (`accepted`), so that it stands
everywhere, as it stands here. Boundary: pure. Requests and stamps in; verdicts and requests out.
"""

from __future__ import annotations

import json
from collections import OrderedDict
from collections.abc import Callable

from controller.cluster.changes import PREFIX, Change

Stamp = tuple[float, str]  # (accept time, member id)
STATE_VERBS = ("drain", "undrain", "deactivate", "activate")
LIMIT = 100_000  # records whose stamp is remembered (each ~200 bytes)
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
        name = args[0] if args else _field(body, "name")
        return None if name is None or len(args) > 1 else f"service:{name}"
    if kind == "instances":
        if not args and method == "POST":
            dbid = _field(body, "dbid")
            return None if dbid is None else f"instance:{dbid}"
        if len(args) == 1 and method == "DELETE":
            return f"instance:{args[0]}"
        if len(args) == 2 and method == "POST" and args[1] in STATE_VERBS:
            return f"state:{args[0]}"
    return None


def _field(body: str, name: str) -> str | None:
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
    """Per shared record, the stamp of the write that stands at this member."""

    def __init__(self, limit: int = LIMIT) -> None:
        self.limit = limit
        self._stamps: OrderedDict[str, Stamp] = OrderedDict()

    def __len__(self) -> int:
        return len(self._stamps)

    def stamp(self, record: str) -> Stamp | None:
        """The stamp of the write that stands for `record` (None: none remembered)."""
        return self._stamps.get(record)

    def accepted(self, method: str, path: str, body: str, at: float, member: str) -> float:
        """This member accepted a write at `at` and applied it: it stands. Its accept time as
        the others are told it: `at`, or just after the write that stood here when that one
        is later (another member's clock runs ahead): a write made after another, here, is
        later everywhere."""
        record = record_of(method, path, body)
        if record is None:
            return at
        held = self._stamps.get(record)
        if held is not None and (at, member) <= held:
            at = held[0] + STEP
        self._note(record, (at, member))
        return at

    def admit(self, change: Change) -> bool:
        """True if another member's `change` is to be applied here: it has no record order or
        no stamp, or it is later than the write that stands. (Note it with `applied` once it
        is.)"""
        if change.at is None:
            return True
        record = record_of(change.method, change.path, change.body)
        if record is None:
            return True
        held = self._stamps.get(record)
        return held is None or (change.at, change.member) > held

    def applied(self, change: Change) -> None:
        """Another member's admitted `change` was applied here: it stands. Also when it was
        refused: a withdrawal of what is gone here already leaves the record as the change
        makes it, and an earlier write arriving after it must not be applied either (a
        refusal for a reason of this member's own leaves it holding what it held)."""
        record = record_of(change.method, change.path, change.body)
        if record is not None and change.at is not None:
            self._note(record, (change.at, change.member))

    def _note(self, record: str, stamp: Stamp) -> None:
        """Remember `stamp` for `record` (never an earlier one), forgetting the oldest past the
        limit."""
        held = self._stamps.pop(record, None)
        self._stamps[record] = stamp if held is None or stamp > held else held
        while len(self._stamps) > self.limit:
            self._stamps.popitem(last=False)
