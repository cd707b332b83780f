"""The store writes the core queues: records to persist or delete, handed to the shell as values.

Boundary: a queue of `StoreWrite` values and nothing else; the shell (`apps/store.py`) applies
them off the packet path, and puts them back at the front if applying failed.
"""

from __future__ import annotations

from typing import Any

from controller.intents import StoreWrite


class Writes:
    """Store writes waiting for the shell, in the order the core made them."""

    def __init__(self) -> None:
        self._queue: list[StoreWrite] = []

    def __len__(self) -> int:
        return len(self._queue)

    def put(self, kind: str, key: str, record: dict[str, Any]) -> None:
        """Persist `record` as the `kind` record named `key` (replacing any earlier one)."""
        self._queue.append(StoreWrite(kind, key, record))

    def delete(self, kind: str, key: str) -> None:
        """Delete the `kind` record named `key`."""
        self._queue.append(StoreWrite(kind, key, None))

    def drain(self) -> list[StoreWrite]:
        """Hand every queued write to the shell."""
        out, self._queue = self._queue, []
        return out

    def requeue(self, writes: list[StoreWrite]) -> None:
        """Writes the shell could not apply go back in front of the newer ones."""
        self._queue[:0] = writes
