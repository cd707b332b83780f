"""Quotas and input bounds of the REST API: the `[limits]` table of the controller's TOML file.

Every limit is explicit here, with its default; the API checks a request against them before
it changes anything, and answers 429 naming the limit when a quota is full.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, fields
from typing import Any

from controller.errors import ValidationError
from controller.validate import check_integer, reject_unknown


@dataclass(frozen=True, slots=True)
class Limits:
    """How much the API takes: body size and depth, services, instances, reports a batch; and
    how many affinity bindings an ingress holds (controller/dataplane/overflow.py)."""

    max_body_bytes: int = 1 << 20
    max_json_depth: int = 32
    max_services: int = 256
    max_instances_per_service: int = 1024
    max_instances: int = 10_000
    max_reports_per_batch: int = 10_000
    affinity_per_ingress: int = 100_000  # reactive bindings an ingress holds; then stateless


# (lowest, highest) accepted for each key of [limits]
BOUNDS: dict[str, tuple[int, int]] = {
    "max_body_bytes": (1024, 64 << 20),
    "max_json_depth": (4, 512),
    "max_services": (1, 100_000),
    "max_instances_per_service": (1, 1_000_000),
    "max_instances": (1, 1_000_000),
    "max_reports_per_batch": (1, 1_000_000),
    "affinity_per_ingress": (1, 10_000_000),
}


def limits_from_dict(data: Any) -> Limits:
    """Parse and validate the [limits] table (absent: the defaults)."""
    if not isinstance(data, Mapping):
        raise ValidationError("limits", "must be a table")
    reject_unknown(data, set(BOUNDS), "limits")
    d = Limits()
    values = {f.name: check_integer(data.get(f.name, getattr(d, f.name)), f"limits.{f.name}",
                                    *BOUNDS[f.name]) for f in fields(Limits)}
    return Limits(**values)
