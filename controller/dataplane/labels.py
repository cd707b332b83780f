"""Instance labels: the number by which the switches know an instance.

Boundary: pure bookkeeping. A label is what `learn`/`bucket` entries load into reg0, what an
overlay pushes as its MPLS label, and part of cookie identifiers (16 bits). Entries the switches
learned keep the number, so it must mean the same instance after a controller restart: a label
is derived from the D-BID (its low 16 bits, placed above the 16 reserved MPLS labels); two
D-BIDs that map to one number take the next free one, and every assignment is handed out
(`take_assigned`) for the instance's stored record, from which `restore` takes it back.
"""

from __future__ import annotations

from collections.abc import Iterable

FIRST_LABEL = 16  # MPLS labels 0-15 are reserved
LABEL_LIMIT = 1 << 16  # labels are 16 bits in cookie identifiers
SPAN = LABEL_LIMIT - FIRST_LABEL


def preferred(dbid: str) -> int:
    """The label a D-BID gets unless another instance holds it."""
    parts = dbid.split(".")
    low = (int(parts[2]) << 8 | int(parts[3])) & 0xFFFF if len(parts) == 4 else 0
    return FIRST_LABEL + low % SPAN


class Labels:
    """D-BID <-> label, stable across restarts."""

    def __init__(self) -> None:
        self._label: dict[str, int] = {}
        self._dbid: dict[int, str] = {}
        self._assigned: list[tuple[str, int]] = []

    def __contains__(self, dbid: object) -> bool:
        return dbid in self._label

    def __getitem__(self, dbid: str) -> int:
        return self._label[dbid]

    def get(self, dbid: str) -> int | None:
        """The instance's label if it has one."""
        return self._label.get(dbid)

    def restore(self, dbid: str, label: int) -> bool:
        """Take back a stored label; False (ignored) when it is out of range or taken."""
        if not FIRST_LABEL <= label < LABEL_LIMIT or self._dbid.get(label, dbid) != dbid:
            return False
        self._label[dbid] = label
        self._dbid[label] = dbid
        return True

    def restore_all(self, pairs: Iterable[tuple[str, int | None]]) -> None:
        """Take back the stored labels of instances (None: it has none yet)."""
        for dbid, label in pairs:
            if label is not None:
                self.restore(dbid, label)

    def of(self, dbid: str) -> int:
        """The instance's label, assigned on first use."""
        label = self.find(dbid)
        if label is None:
            raise RuntimeError("every instance label is in use")
        return label

    def find(self, dbid: str) -> int | None:
        """The instance's label, assigned on first use; None when every label is in use (a
        label is never given back while the controller runs: `SPAN` D-BIDs at most)."""
        label = self._label.get(dbid)
        if label is not None:
            return label
        label = preferred(dbid)
        for _ in range(SPAN):
            if label not in self._dbid:
                break
            label = FIRST_LABEL + (label + 1 - FIRST_LABEL) % SPAN
        else:
            return None
        self.restore(dbid, label)
        self._assigned.append((dbid, label))
        return label

    def dbid_of(self, label: int) -> str | None:
        """The instance a label stands for."""
        return self._dbid.get(label)

    def take_assigned(self) -> list[tuple[str, int]]:
        """Labels assigned since the last call (to be stored with their instances)."""
        out, self._assigned = self._assigned, []
        return out
