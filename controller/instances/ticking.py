"""The tick's walk over every instance, in bounded slices.

Boundary: pure. At 5,000 instances one walk (probe the stale, notice state changes, probe the
unlocated) took 60-100 ms of CPU in one go, mostly logging state changes at set-up. An
`InstanceWalk` does the same work a slice of at most `size` instances at a time: each of its
phases is a generator that yields one slice's intents, so the shell can let its event loop
run between two slices. The phases run in the order one whole tick runs them, each over every
instance, so a full round of slices gives exactly what the walk all at once gives; an instance
withdrawn (or replaced) between two slices is skipped.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator

from controller.instances.catalogue import Catalogue
from controller.instances.liveness import Liveness
from controller.intents import Intent
from controller.model import Instance

TICK_SLICE = 250  # instances walked a step (5,000 in one go held the event loop 60-100 ms)


class InstanceWalk:
    """One tick's walk over the instances registered when each phase starts, `size` a step."""

    def __init__(self, catalogue: Catalogue, liveness: Liveness,
                 saw: Callable[[Instance], str | None], now: float,
                 size: int = TICK_SLICE) -> None:
        if size < 1:
            raise ValueError("size must be at least 1")
        self.catalogue = catalogue
        self.liveness = liveness
        self.saw = saw  # the state the decisions last saw the instance in
        self.now = now
        self.size = size
        self.changed: set[str] = set()  # services with an instance whose state changed

    def _slices(self) -> Iterator[list[Instance]]:
        """The instances registered now, a slice at a time; one withdrawn or replaced before
        its slice comes is left out of it."""
        insts = list(self.catalogue.instances.values())
        for i in range(0, len(insts), self.size):
            yield [x for x in insts[i:i + self.size]
                   if self.catalogue.instances.get(x.dbid) is x]

    def probes(self) -> Iterator[list[Intent]]:
        """Liveness probes for located instances whose metrics are stale, a slice a step."""
        for part in self._slices():
            yield [i for inst in part for i in self.liveness.probe(inst, self.now)]

    def observe(self) -> Iterator[list[Intent]]:
        """Fire the events the facts imply; note the services whose instances changed state
        (or whose decisions saw another state), in `changed`."""
        for part in self._slices():
            self.changed.update(
                inst.service for inst in part
                if self.liveness.observe(inst, self.now) or self.saw(inst) != inst.state)
            yield []

    def unlocated(self) -> Iterator[list[Intent]]:
        """ARP probes for instances whose location is unknown, a slice a step."""
        for part in self._slices():
            yield [i for inst in part
                   for i in self.liveness.probe_if_unknown(inst.dbid, self.now)]
