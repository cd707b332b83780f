"""The store's writes as the shell applies them: what a failing store is told to the operator,
and the last flush at stop.

Boundary: shell. `StoreHealth` keeps whether the store's batches are failing and logs the
outage once when it starts and once when a batch lands again (a store down for a minute was
60 tracebacks at the default `store_flush_s`, one a batch); `/readyz` reads it, so a store
that answers queries but refuses writes (a role without rights, a full disk) is not ready
either. At stop, `wait_idle` waits for the batch a worker thread may still be applying, and
`flush_at_stop` retries the rest for a bounded time before saying, in one line, what could
not be stored.
"""

from __future__ import annotations

import logging
import time
from collections import Counter
from collections.abc import Callable
from typing import Any

from apps import logs
from controller.intents import StoreWrite

STOP_FLUSH_S = 10.0  # how long the stop's last flush retries a failing store
STOP_RETRY_S = 0.5  # and how often
LOG = logging.getLogger("dyncast")


def reason(exc: BaseException) -> str:
    """The first line of an exception, short (a driver's message can run to many lines)."""
    text = (str(exc).strip().splitlines() or [type(exc).__name__])[0]
    return f"{type(exc).__name__}: {text[:300]}"


class StoreHealth:
    """Whether the store's batches fail: since when, how many; logged at the edges only."""

    def __init__(self) -> None:
        self.failing_since: float | None = None
        self.failed_batches = 0

    @property
    def failing(self) -> bool:
        """True from a batch that failed until one lands."""
        return self.failing_since is not None

    def failed(self, exc: BaseException, waiting: int, now: float) -> None:
        """A batch failed (its writes are kept): the first of an outage is logged, with its
        traceback; the ones after it only counted."""
        self.failed_batches += 1
        if self.failing_since is not None:
            return
        self.failing_since = now
        logs.event("store", "store_writes_failing", logging.ERROR, reason=reason(exc),
                   waiting=waiting)
        LOG.error("dyncast: store writes failing (kept, retried at every flush; logged once "
                  "until a batch lands)", exc_info=exc)

    def landed(self, written: int, now: float) -> None:
        """A batch landed: the end of an outage, if there was one, is logged."""
        if self.failing_since is None:
            return
        logs.event("store", "store_writes_landed", logging.WARNING, written=written,
                   failing_s=round(now - self.failing_since, 3),
                   failed_batches=self.failed_batches)
        self.failing_since, self.failed_batches = None, 0


class Unstored:
    """Which bindings of this process the store holds, so that a failing store's queue does
    not grow with every flow that ends: the delete of a binding this process numbered (its
    identifier at or above `born`) that never landed in the store is dropped from a failed
    batch instead of retried (the store never had the row). Without it an hour's outage at
    1,000 flows a second ending queued 3.6 million deletes (228 bytes each). Off in a
    cluster, where another member may have stored a binding numbered above our `born`. A
    batch that landed but was reported failed (the connection lost during the commit) can
    leave a row behind: a binding restored at the next start that the switch does not hold,
    which the audit retires."""

    def __init__(self, born: int, enabled: bool) -> None:
        self.born = born
        self.enabled = enabled
        self.stored: set[str] = set()  # our bindings the store holds, by key

    def _ours(self, w: StoreWrite) -> bool:
        return w.kind == "binding" and int(w.key) >= self.born

    def landed(self, writes: list[StoreWrite]) -> None:
        """A batch landed: note which of our bindings the store now holds, and which not."""
        if self.enabled:
            for w in writes:
                if self._ours(w):
                    if w.value is None:
                        self.stored.discard(w.key)
                    else:
                        self.stored.add(w.key)

    def needed(self, writes: list[StoreWrite]) -> list[StoreWrite]:
        """The writes of a failed batch worth retrying: all but the deletes of our bindings
        the store never held."""
        if not self.enabled:
            return writes
        return [w for w in writes
                if w.value is not None or not self._ours(w) or w.key in self.stored]


def wait_idle(busy: Callable[[], bool], sleep: Callable[[float], Any]) -> float:
    """Wait (at most STOP_FLUSH_S) until no batch is being applied; return the stop's deadline
    (time.monotonic()). Called before the flusher is killed: killed while it waits for its
    worker thread, the batch it had drained would be neither requeued nor known to land, and
    one written after it at stop could then be overwritten by it."""
    deadline = time.monotonic() + STOP_FLUSH_S
    while busy() and time.monotonic() < deadline:
        sleep(0.05)
    return deadline


def flush_at_stop(apply: Callable[[list[StoreWrite]], Any], writes: list[StoreWrite],
                  sleep: Callable[[float], Any], deadline: float,
                  keep: Callable[[list[StoreWrite]], str | None] = lambda w: None) -> int:
    """Apply the writes queued at stop, retried every STOP_RETRY_S until `deadline`
    (time.monotonic()); return how many were stored. What still cannot be stored goes to
    `keep`, which returns the file it kept them in (apps/storespill.py: the next start stores
    them) or None; one line says which, with the count by kind. Writes neither stored nor kept
    are lost (a service created through the API is then gone; bindings are adopted from the
    switches, instances register again)."""
    while writes:
        try:
            apply(writes)
            return len(writes)
        except Exception as exc:  # the store is down: retry until the deadline
            if time.monotonic() + STOP_RETRY_S > deadline:
                _unstored(writes, reason(exc), keep)
                return 0
            sleep(STOP_RETRY_S)
    return 0


def _unstored(writes: list[StoreWrite], why: str,
              keep: Callable[[list[StoreWrite]], str | None]) -> None:
    """Keep what the stop could not store, or say it is lost; one line either way."""
    kinds = dict(sorted(Counter(w.kind for w in writes).items()))
    counted = ", ".join(f"{k} {n}" for k, n in kinds.items())
    try:
        kept = keep(writes)
    except Exception as exc:  # (a disk full or read-only: they are lost, and we say why)
        why = f"{why}; and not kept: {reason(exc)}"
        kept = None
    if kept is not None:
        logs.event("store", "store_writes_kept", logging.WARNING, reason=why, kept=len(writes),
                   kinds=kinds, path=kept)
        LOG.warning("dyncast: stopping: %d store writes could not be stored (%s) and are kept "
                    "in %s for the next start to store: %s", len(writes), counted, kept, why)
        return
    logs.event("store", "store_writes_lost", logging.ERROR, reason=why, lost=len(writes),
               kinds=kinds)
    LOG.error("dyncast: stopping: %d store writes could not be stored and are lost (%s): %s",
              len(writes), counted, why)
