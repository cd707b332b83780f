"""The [controller.logging] table: log level per component, and how many rejected-input lines
a minute are written before the rest are only counted and summarised.

Boundary: parsing and validation only; apps/logs.py applies it to Python's logging.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from controller.errors import ValidationError
from controller.validate import check_number, reject_unknown

LEVELS = ("DEBUG", "INFO", "WARNING", "ERROR", "CRITICAL")
# the components a level can be set for (logger "dyncast.<component>")
COMPONENTS = ("decisions", "instances", "input", "reconcile", "config", "switches", "store")


@dataclass(frozen=True, slots=True)
class LogConfig:
    """Levels (the default, and per component) and the rejected-input line budget."""

    level: str = "INFO"
    components: tuple[tuple[str, str], ...] = ()  # (component, level), sorted
    rejected_per_minute: int = 20
    json: bool = True  # one JSON object a line; false: plain text

    def level_of(self, component: str) -> str:
        """The level a component logs at."""
        return dict(self.components).get(component, self.level)


def _level(value: Any, where: str) -> str:
    """A level name, upper-cased, or a ValidationError naming `where`."""
    if not isinstance(value, str) or value.upper() not in LEVELS:
        raise ValidationError(where, f"must be one of {', '.join(LEVELS)}")
    return value.upper()


def logging_from_dict(data: Any) -> LogConfig:
    """Parse [controller.logging]: `level`, `json`, `rejected_per_minute` and a `components`
    table of component = level."""
    where = "controller.logging"
    if not isinstance(data, Mapping):
        raise ValidationError(where, "must be a table")
    reject_unknown(data, {"level", "components", "rejected_per_minute", "json"}, where)
    d = LogConfig()
    comps = data.get("components", {})
    if not isinstance(comps, Mapping):
        raise ValidationError(f"{where}.components", "must be a table of component = level")
    reject_unknown(comps, set(COMPONENTS), f"{where}.components")
    as_json = data.get("json", d.json)
    if not isinstance(as_json, bool):
        raise ValidationError(f"{where}.json", "must be true or false")
    return LogConfig(
        level=_level(data.get("level", d.level), f"{where}.level"),
        components=tuple(sorted((k, _level(v, f"{where}.components.{k}"))
                                for k, v in comps.items())),
        rejected_per_minute=int(check_number(
            data.get("rejected_per_minute", d.rejected_per_minute),
            f"{where}.rejected_per_minute", 0, 100000)),
        json=as_json,
    )
