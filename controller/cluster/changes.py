"""The changes cluster members share: which accepted requests the others must apply too, and
how one travels in a PostgreSQL notification.

A member that accepts a REST call changing the catalogue (services, instances and their
drains, activations, withdrawals) or a metric report tells every other member, which applies
the same request as if it had accepted it itself: the same validation, the same core calls,
its own `now`. The request is the change: the member that accepted it has checked it (body,
authorisation, replay), so the others skip the gate, not the API. A change is applied once by
each member and never passed on (a member ignores its own and publishes nothing it applies), so
there is no loop; applying one twice is harmless (a repeated registration is refused as a
conflict, a repeated report records the same numbers). A change carries when it was accepted
(`at`): a metric report replaces only an older accepted one, so members agree on the latest
metrics whatever order they apply the reports in (controller/instances/intake.py).

A notification's payload is at most 8,000 bytes: a larger change (a batch of reports) goes
into a table and the notification carries its row's id (`Ref`).

Boundary: pure. Requests and payload text in; payload text and `Change`/`Ref` values out.
"""

from __future__ import annotations

import json
import math
from dataclasses import dataclass

from controller.auth.verifier import Signed

PREFIX = "/dyncast/v1/"
SHARED = ("services", "instances", "metrics")  # the resources whose changes every member needs
WRITES = ("POST", "PUT", "DELETE")
PAYLOAD_LIMIT = 7900  # bytes; PostgreSQL refuses a NOTIFY payload of 8,000 or more


@dataclass(frozen=True, slots=True)
class Change:
    """A request that member `member` accepted: apply it here too."""

    member: str
    method: str
    path: str
    body: str
    at: float | None = None  # when `member` accepted it (epoch s); None from an older member
    signed: Signed | None = None  # the agent's signature it was accepted under, if any


@dataclass(frozen=True, slots=True)
class Ref:
    """A change too large to notify, stored as row `id` by `member`."""

    member: str
    id: int


def shared(method: str, path: str, status: int) -> bool:
    """True if an accepted request (`status`) changed state every member must hold."""
    if status >= 400 or method not in WRITES or not path.startswith(PREFIX):
        return False
    return path[len(PREFIX):].split("/", 1)[0] in SHARED


def encode(change: Change, ident: int | None = None) -> str:
    """The notification payload (or stored row) of `change`; `ident`: the id of the row the
    change was also logged as (the listeners note which they heard)."""
    data: dict[str, object] = {"m": change.member, "v": change.method, "p": change.path,
                               "b": change.body}
    if change.at is not None:
        data["a"] = change.at
    if change.signed is not None:
        data["s"] = [change.signed.agent, change.signed.seq, change.signed.key]
    if ident is not None:
        data["i"] = ident
    return json.dumps(data, separators=(",", ":"))


def ident_of(payload: str) -> int | None:
    """The logged row a notification's change is (`encode`'s `ident`, or a `Ref`'s id); None
    if it names none (never raises)."""
    if '"i":' not in payload and '"id":' not in payload:
        return None
    try:
        data = json.loads(payload)
    except ValueError:
        return None
    ident = data.get("i", data.get("id")) if isinstance(data, dict) else None
    return ident if isinstance(ident, int) and not isinstance(ident, bool) else None


def fits(payload: str) -> bool:
    """True if `payload` can travel in a notification."""
    return len(payload.encode()) <= PAYLOAD_LIMIT


def encode_ref(ref: Ref) -> str:
    """The notification payload naming a stored change."""
    return json.dumps({"m": ref.member, "id": ref.id}, separators=(",", ":"))


def decode(payload: str) -> Change | Ref | None:
    """A payload back as a `Change` or a `Ref`; None if it is neither (never raises)."""
    try:
        data = json.loads(payload)
        if not isinstance(data, dict) or not isinstance(data.get("m"), str):
            return None
        if "id" in data:
            return Ref(data["m"], int(data["id"]))
        if all(isinstance(data.get(k), str) for k in ("v", "p", "b")):
            at = data.get("a")
            if isinstance(at, bool) or not isinstance(at, (int, float)) or not math.isfinite(at):
                at = None  # an older member's change (or a bad time): applied as before
            return Change(data["m"], data["v"], data["p"], data["b"],
                          None if at is None else float(at), _signed(data.get("s")))
    except (ValueError, TypeError):
        pass
    return None


def _signed(value: object) -> Signed | None:
    """A payload's signature part back (None if absent or malformed)."""
    if not isinstance(value, list) or len(value) != 3:
        return None
    agent, seq, key = value
    if (not isinstance(agent, str) or isinstance(seq, bool) or not isinstance(seq, int)
            or not (key is None or isinstance(key, str))):
        return None
    return Signed(agent, seq, key)
