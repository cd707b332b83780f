"""The `[security]` table of the controller's TOML file.

    [security]
    auth = true                  # false turns every check off (a loud warning at each start)
    agents_file = "agents.toml"  # the agent table (relative to the configuration file)
    tokens_file = "tokens.toml"  # the operator token table (digests only)
    open_reads = false           # true: GET and HEAD need no token
    max_skew_s = 30.0            # how far an agent's timestamp may be from the controller's clock
    max_instances_per_agent = 64 # an agent's instance quota, unless its table entry sets one
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from controller.errors import ValidationError
from controller.validate import check_integer, check_number, check_path, reject_unknown


@dataclass(frozen=True, slots=True)
class SecuritySettings:
    """Authentication on or off, where the tables are, and the checks' bounds."""

    auth: bool = True
    agents_file: str = ""
    tokens_file: str = ""
    open_reads: bool = False
    max_skew_s: float = 30.0
    max_instances_per_agent: int = 64


def security_from_dict(data: Any) -> SecuritySettings:
    """Parse and validate the [security] table (absent: the defaults, auth on)."""
    if not isinstance(data, Mapping):
        raise ValidationError("security", "must be a table")
    reject_unknown(data, {"auth", "agents_file", "tokens_file", "open_reads", "max_skew_s",
                          "max_instances_per_agent"}, "security")
    d = SecuritySettings()
    flags = {}
    for key in ("auth", "open_reads"):
        flags[key] = data.get(key, getattr(d, key))
        if not isinstance(flags[key], bool):
            raise ValidationError(f"security.{key}", "must be true or false")
    files = {}
    for key in ("agents_file", "tokens_file"):
        files[key] = check_path(data.get(key, ""), f"security.{key}")
    return SecuritySettings(
        auth=flags["auth"], agents_file=files["agents_file"], tokens_file=files["tokens_file"],
        open_reads=flags["open_reads"],
        max_skew_s=check_number(data.get("max_skew_s", d.max_skew_s), "security.max_skew_s",
                                1.0, 3600.0),
        max_instances_per_agent=check_integer(
            data.get("max_instances_per_agent", d.max_instances_per_agent),
            "security.max_instances_per_agent", 0, 1_000_000))
