"""Store writes a stop could not store, kept in a local file and stored at the next start.

Boundary: shell (one local file). At stop, what a failing store still refuses when the last
flush gives up (apps/storeflush.py) is written to `[controller] unstored_path`: one JSON object
a line, `{"kind", "key", "value"}` (value null: a delete), merged with what the file already
holds (a newer write of a record replaces the older one), and the file is replaced atomically
(written beside it, flushed to disk, renamed over it). At the next start, before the store is
read, `replay` stores the file's writes in one batch and then removes the file, so a service
created through the API while the store was down outlives a restart.

While the store is failing, every failed batch (the whole queue then) is written to the file as
well, replacing what it held, and the file is removed when a batch lands again: a controller
killed (SIGKILL) during an outage loses at most the writes queued since the last flush.

Only a controller not in a [cluster] keeps them: it has its store to itself while it runs
(apps/storeclaim.py), so what it could not store is the newest state of those records. A
cluster member's store is shared: another member may write a record after this one stopped, and
replaying the older write would undo it (its lost writes are logged as lost, as before).

A file that cannot be read stops the start with one line naming `controller.unstored_path` and
the line; a store that refuses the batch stops it naming `controller.store_url`. Either way the
file stays for the next start.
"""

from __future__ import annotations

import json
import logging
import os
from pathlib import Path
from typing import Any

from apps.store import TABLES, Store
from apps.storeflush import reason
from controller.config import ControllerConfig
from controller.errors import ConfigError
from controller.intents import StoreWrite
from controller.writes import store_write

MAX_LINE = 1 << 20  # a record longer than this is not one the controller wrote
FIELD = "controller.unstored_path"
LOG = logging.getLogger("dyncast")


def keep(path: str, writes: list[StoreWrite], replace: bool = False) -> int:
    """Add `writes` to the file at `path` (a record's newer write replacing an older one), or
    with `replace` make the file hold `writes` alone; return how many records the file holds.
    OSError when it cannot be written."""
    target = Path(path)
    held: dict[tuple[str, str], StoreWrite] = {}
    if target.exists() and not replace:
        for w in _parse(target, "(at stop)"):
            held[(w.kind, w.key)] = w
    for w in writes:
        held.pop((w.kind, w.key), None)
        held[(w.kind, w.key)] = w
    part = target.with_name(target.name + ".part")
    with open(part, "w", encoding="utf-8") as f:
        for w in held.values():
            f.write(json.dumps({"kind": w.kind, "key": w.key, "value": w.value},
                               sort_keys=True) + "\n")
        f.flush()
        os.fsync(f.fileno())
    os.replace(part, target)
    return len(held)


def discard(path: str) -> None:
    """Remove the file at `path`, if there is one: every write it held has been stored."""
    Path(path).unlink(missing_ok=True)


def replay(store: Store, config: ControllerConfig, source: str) -> int:
    """Store the writes a stop kept at `unstored_path` (if any; not in a cluster) and remove
    the file; how many. A ConfigError (one line at start) when the file cannot be read or the
    store refuses them."""
    path = config.unstored_path
    target = Path(path)
    if config.cluster.enabled or not path or not target.exists():
        return 0
    writes = _parse(target, source)
    try:
        store.apply(writes)
    except Exception as exc:  # (the start ends with this line; the file stays)
        raise ConfigError(source, "controller.store_url", f"cannot store the {len(writes)} "
                          f"writes kept in {path} at the last stop: {reason(exc)}") from None
    target.unlink()
    LOG.warning("dyncast: stored the %d writes the last run kept in %s", len(writes), path)
    return len(writes)


def _parse(target: Path, source: str) -> list[StoreWrite]:
    """The writes in the file; a ConfigError naming `controller.unstored_path`, the file and
    the line when one is not a write this module made."""
    out: list[StoreWrite] = []
    try:
        lines = target.read_text(encoding="utf-8").splitlines()
    except (OSError, UnicodeDecodeError) as exc:
        raise ConfigError(source, FIELD, f"cannot read {target}: {exc}") from None
    for number, line in enumerate(lines, 1):
        why = _check(line)
        if isinstance(why, str):
            raise ConfigError(source, FIELD, f"{target} line {number} {why}; fix or delete "
                              "that line (it holds a record the last stop could not store)")
        out.append(why)
    return out


def _check(line: str) -> StoreWrite | str:
    """The write a line holds, or why it holds none."""
    if len(line) > MAX_LINE:
        return f"is longer than {MAX_LINE} characters"
    try:
        row: Any = json.loads(line)
    except ValueError as exc:
        return f"is not JSON ({exc})"
    if not isinstance(row, dict) or set(row) != {"kind", "key", "value"}:
        return "is not an object with exactly kind, key and value"
    kind, key, value = row["kind"], row["key"], row["value"]
    if kind not in TABLES:
        return f"has kind {kind!r}, not one of {', '.join(sorted(TABLES))}"
    if not isinstance(key, str) or not key:
        return "has a key that is not a non-empty string"
    if value is not None and not isinstance(value, dict):
        return "has a value that is neither an object nor null"
    return store_write(kind, key, value)
