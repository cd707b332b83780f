"""Reading the switch's connection tracker for `conntrack` services, and setting its per-zone
limits, with `ovs-appctl` where the switch is local ([dataplane.conntrack], docs/dataplanes.md).

Boundary: shell. OpenFlow cannot read a tracker; `ovs-appctl dpctl/dump-conntrack zone=Z` can.
Every `interval_s` the loop names the zones (on the event loop), then one worker OS thread runs
the commands (bounded output, `ovs-appctl --timeout`) and parses them with the pure
`controller.dataplane.tracker.parse_dump`; the loop hands the reads to the core. A failed read
is logged once per cause and shown by the API ("unread", with the reason); never an error.
"""

from __future__ import annotations

import logging
import time
from dataclasses import dataclass, field
from typing import Any

from eventlet import patcher, tpool

from apps.framework import hub
from controller.dataplane.tracker import (
    TrackedConn,
    TrackerConfig,
    limit_changes,
    parse_dump,
    parse_limits,
)
from controller.trackview import tracked_services

LOG = logging.getLogger("dyncast")
subprocess = patcher.original("subprocess")  # run in a worker OS thread, not green
LINE_BYTES = 400  # a dump line's bound (a TCP entry with mark and state is ~230 bytes)
TIMEOUT_S = 5


class ReadError(Exception):
    """ovs-appctl failed (not installed, no datapath, refused, timed out)."""


def appctl(target: str | None, args: list[str], max_bytes: int = 1 << 16) -> tuple[str, bool]:
    """Run `ovs-appctl [-t target] args`: its output (at most `max_bytes`; True when cut)."""
    cmd = ["ovs-appctl", f"--timeout={TIMEOUT_S}", *(["-t", target] if target else []), *args]
    try:
        proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    except OSError as exc:
        raise ReadError(f"{cmd[0]}: {exc.strerror}") from None
    out = proc.stdout.read(max_bytes) if proc.stdout else b""
    cut = len(out) == max_bytes and proc.poll() is None
    if cut:
        proc.kill()
    try:
        _, err = proc.communicate(timeout=TIMEOUT_S + 1)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.communicate()
        raise ReadError(f"{' '.join(args)}: no answer in {TIMEOUT_S} s") from None
    if proc.returncode != 0 and not cut:
        msg = err.decode(errors="replace").strip().splitlines()
        raise ReadError(f"{' '.join(args)}: {msg[-1] if msg else proc.returncode}")
    return out.decode(errors="replace"), cut


@dataclass
class Cycle:
    """One round's work for the worker thread, and what it found."""

    cfg: TrackerConfig
    zones: list[int]
    limits: dict[int, int]  # zone -> the limit it should have
    ours: set[int]  # the zones we limited so far
    reads: dict[int, tuple[list[TrackedConn], bool, float]] = field(default_factory=dict)
    error: str | None = None


def work(c: Cycle) -> Cycle:
    """Bring the zones' limits to what they should be, then dump and parse every zone (in a
    worker OS thread)."""
    try:
        if c.limits or c.ours:
            have = parse_limits(appctl(c.cfg.target, ["dpctl/ct-get-limits"])[0])
            sets, dels = limit_changes(c.limits, have, c.ours)
            if dels:  # ct-del-limits zone=Z1,Z2,...
                appctl(c.cfg.target, ["dpctl/ct-del-limits",
                                      "zone=" + ",".join(str(z) for z in dels)])
            if sets:
                appctl(c.cfg.target, ["dpctl/ct-set-limits",
                                      *(f"zone={z},limit={n}" for z, n in sets.items())])
        for z in c.zones:
            at = time.time()
            text, cut = appctl(c.cfg.target, ["dpctl/dump-conntrack", f"zone={z}"],
                               c.cfg.max_entries * LINE_BYTES)
            entries, more = parse_dump(text, c.cfg.max_entries)
            c.reads[z] = (entries, cut or more, at)
    except ReadError as exc:
        c.error = str(exc)
    return c


class TrackerReader:
    """The reader loop's state: the limits we set, the last failure logged."""

    def __init__(self, app: Any) -> None:
        self.app = app
        self.limited: dict[int, int] = {}  # zone -> the limit we set (and keep set)
        self.logged: str | None = None

    def run(self) -> None:
        """Read every `interval_s` (a reload may change it, or turn the reader off)."""
        while True:
            hub.sleep(self.app.config.conntrack.interval_s)
            try:
                self.cycle()
            except Exception:
                self.app.core.counters["errors"] += 1
                LOG.exception("dyncast: exception reading the connection tracker")

    def cycle(self) -> None:
        """One round: name the zones and limits, run them off the loop, hand the reads over."""
        cfg: TrackerConfig = self.app.config.conntrack
        zones = sorted({s.ct_zone for s in tracked_services(self.app.core)})
        reads = self.app.core.drains.tracker
        reads.keep(set(zones))
        if cfg.reader == "none" or (not zones and not self.limited):
            return
        want = {z: cfg.zone_limit for z in zones} if cfg.zone_limit else {}
        done = tpool.execute(work, Cycle(cfg, zones, want, set(self.limited)))
        if done.error is not None:
            reads.failed(done.error)
            if done.error != self.logged:
                LOG.warning("dyncast: connection tracker not read: %s", done.error)
            self.logged = done.error
            return
        self.limited = want
        self.logged = None
        for z, (entries, truncated, at) in done.reads.items():
            reads.read(z, entries, truncated, at)
