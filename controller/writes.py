"""The store writes the core queues: records to persist or delete, handed to the shell as values.

Boundary: a queue of `StoreWrite` values and nothing else; the shell (`apps/store.py`) applies
them off the packet path, and puts them back at the front if applying failed.
"""

from __future__ import annotations

from typing import Any

from controller.intents import StoreWrite

_KIND, _KEY, _VALUE = (getattr(StoreWrite, name).__set__ for name in ("kind", "key", "value"))


def store_write(kind: str, key: str, value: dict[str, Any] | None) -> StoreWrite:
    """`StoreWrite(kind, key, value)`, equal to it, made without its __init__ (which sets each
    field through `object.__setattr__`)."""
    write: StoreWrite = object.__new__(StoreWrite)
    _KIND(write, kind)
    _KEY(write, key)
    _VALUE(write, value)
    return write


class Writes:
    """Store writes waiting for the shell, the last one per record only (a burst of reports
    for one instance is one write), in the order of each record's last write."""

    def __init__(self) -> None:
        self._queue: dict[tuple[str, str], StoreWrite] = {}

    def __len__(self) -> int:
        return len(self._queue)

    def put(self, kind: str, key: str, record: dict[str, Any]) -> None:
        """Persist `record` as the `kind` record named `key` (replacing any earlier one). One
        per new flow (its binding): the write is made past the frozen dataclass's __init__."""
        self._last(store_write(kind, key, record))

    def delete(self, kind: str, key: str) -> None:
        """Delete the `kind` record named `key`."""
        self._last(StoreWrite(kind, key, None))

    def _last(self, write: StoreWrite) -> None:
        """Queue `write` as its record's last, dropping an earlier one still waiting."""
        self._queue.pop((write.kind, write.key), None)
        self._queue[(write.kind, write.key)] = write

    def keys(self) -> set[tuple[str, str]]:
        """The (kind, key) of every record with a write waiting."""
        return set(self._queue)

    def drain(self) -> list[StoreWrite]:
        """Hand every queued write to the shell."""
        out, self._queue = list(self._queue.values()), {}
        return out

    def requeue(self, writes: list[StoreWrite]) -> None:
        """Writes the shell could not apply go back in front of the newer ones (a record
        written since keeps its newer write)."""
        older = {(w.kind, w.key): w for w in writes if (w.kind, w.key) not in self._queue}
        self._queue = {**older, **self._queue}
