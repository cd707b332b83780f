"""CATS metric levels: raw metrics (level 0), per-category scores (level 1), one score (level 2).

Boundary: pure functions of a `Metrics` report, the service's base delay and a `ScoringConfig`;
how raw values become scores is configuration (`[controller.scoring]`), applied the same way
everywhere. Scores run from 0 to 10, 10 best; for every category a lower raw value is better.

Default mapping (`DEFAULT_CATEGORIES`, aggregation "weighted-mean"):

| category | raw value (level 0)                           | normaliser              | weight |
| -------- | --------------------------------------------- | ----------------------- | ------ |
| cpu      | `cpu` (0..1)                                  | minmax, best 0, worst 1 | 1.0    |
| sessions | `sessions / capacity`                         | minmax, best 0, worst 1 | 1.0    |
| queue    | `queue / capacity`                            | minmax, best 0, worst 2 | 1.0    |
| delay    | `processing_delay_ms / base_delay_ms`, else 1 | inverse, best 1         | 1.0    |

Normaliser kinds (every parameter is required in a configured normaliser):

- `minmax` (best, worst): `10 * (worst - x) / (worst - best)`, clipped to 0..10.
- `sigmoid` (midpoint, steepness > 0): `10 / (1 + exp(steepness * (x - midpoint)))`; 5 at the
  midpoint, never exactly 0 or 10.
- `inverse` (best > 0): `10 * best / max(x, best)`; 10 up to `best`, halved each time x doubles.

Aggregation: "weighted-mean" of the level-1 scores, or "min" (the worst category). Categories
with weight 0 are ignored everywhere (they are absent from level 1). The engine's cost is in
milliseconds: `compute_ms = base_delay_ms * 10 / max(score, 0.5)`, i.e. the base delay at 10,
twice it at 5, at most 20 times it; with score = 10 * (1 - u) this is the M/M/1 `base / (1 - u)`
(the estimate used when scoring is off, for an instance of one worker).
"""

from __future__ import annotations

import math
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any

from controller.errors import ValidationError
from controller.model import Metrics
from controller.validate import check_number, reject_unknown

MAX_SCORE = 10.0
MIN_SCORE = 0.5  # floor used by compute_ms_from_score: a cost of at most 20 base delays
MAX_WEIGHT = 1000.0
PARAM_LIMIT = 1e6
KINDS: dict[str, tuple[str, ...]] = {  # kind -> its parameters, all required when configured
    "minmax": ("best", "worst"), "sigmoid": ("midpoint", "steepness"), "inverse": ("best",)}
POSITIVE_PARAM = {"sigmoid": "steepness", "inverse": "best"}  # must be > 0 for that kind
AGGREGATIONS = ("weighted-mean", "min")
CATEGORY_NAMES = ("cpu", "sessions", "queue", "delay")


def _clip(score: float) -> float:
    """Return `score` limited to 0..10."""
    return min(MAX_SCORE, max(0.0, score))


def _minmax(n: Normaliser, x: float) -> float:
    """Linear from 10 at `best` to 0 at `worst`, clipped."""
    return _clip(MAX_SCORE * (n.worst - x) / (n.worst - n.best))


def _sigmoid(n: Normaliser, x: float) -> float:
    """Logistic curve falling through 5 at `midpoint`, written to avoid overflow."""
    z = n.steepness * (x - n.midpoint)
    if z > 0:
        return MAX_SCORE * math.exp(-z) / (1.0 + math.exp(-z))
    return MAX_SCORE / (1.0 + math.exp(z))


def _inverse(n: Normaliser, x: float) -> float:
    """10 up to `best`, then inversely proportional to the value."""
    return MAX_SCORE * n.best / max(x, n.best)


@dataclass(frozen=True, slots=True)
class Normaliser:
    """Turns one raw value into a score from 0 to 10 (10 best); each kind reads its parameters."""

    kind: str
    best: float = 0.0
    worst: float = 1.0
    midpoint: float = 0.5
    steepness: float = 10.0

    def __post_init__(self) -> None:
        """Refuse parameters for which `score` would be undefined."""
        if self.kind not in KINDS:
            raise ValueError(f"unknown normaliser kind {self.kind!r}")
        if self.kind == "minmax" and self.best == self.worst:
            raise ValueError("minmax needs best != worst")
        positive = POSITIVE_PARAM.get(self.kind)
        if positive and not getattr(self, positive) > 0:
            raise ValueError(f"{self.kind} needs {positive} > 0")

    def score(self, value: float) -> float:
        """Return the 0..10 score of one raw value."""
        return SCORERS[self.kind](self, value)


SCORERS: dict[str, Callable[[Normaliser, float], float]] = {
    "minmax": _minmax, "sigmoid": _sigmoid, "inverse": _inverse}


@dataclass(frozen=True, slots=True)
class Category:
    """One level-1 category: which raw value, how it is scored, how much it counts."""

    name: str
    weight: float
    normaliser: Normaliser


DEFAULT_CATEGORIES: tuple[Category, ...] = (
    Category("cpu", 1.0, Normaliser("minmax", best=0.0, worst=1.0)),
    Category("sessions", 1.0, Normaliser("minmax", best=0.0, worst=1.0)),
    Category("queue", 1.0, Normaliser("minmax", best=0.0, worst=2.0)),
    Category("delay", 1.0, Normaliser("inverse", best=1.0)),
)


@dataclass(frozen=True, slots=True)
class ScoringConfig:
    """How metric reports become one score; disabled, the engine keeps its default estimate."""

    enabled: bool = False
    aggregation: str = "weighted-mean"
    categories: tuple[Category, ...] = DEFAULT_CATEGORIES

    def __post_init__(self) -> None:
        """Refuse a configuration that `level2` could not evaluate."""
        if self.aggregation not in AGGREGATIONS:
            raise ValueError(f"unknown aggregation {self.aggregation!r}")
        if any(c.name not in CATEGORY_NAMES for c in self.categories):
            raise ValueError(f"categories must be among {CATEGORY_NAMES}")
        if not any(c.weight > 0 for c in self.categories):
            raise ValueError("at least one category needs a weight above 0")


def raw_values(m: Metrics, base_delay_ms: float) -> dict[str, float]:
    """Return each category's raw value from a level-0 report (`base_delay_ms` > 0)."""
    delay = m.processing_delay_ms
    return {"cpu": m.cpu, "sessions": m.sessions / m.capacity, "queue": m.queue / m.capacity,
            "delay": 1.0 if delay is None else delay / base_delay_ms}


def level1(m: Metrics, base_delay_ms: float, cfg: ScoringConfig) -> dict[str, float]:
    """Return the 0..10 score of every category that has a weight above 0."""
    raw = raw_values(m, base_delay_ms)
    return {c.name: c.normaliser.score(raw[c.name]) for c in cfg.categories if c.weight > 0}


def level2(m: Metrics, base_delay_ms: float, cfg: ScoringConfig) -> float:
    """Return the aggregated 0..10 score of a report."""
    scores = level1(m, base_delay_ms, cfg)
    if cfg.aggregation == "min":
        return min(scores.values())
    weights = {c.name: c.weight for c in cfg.categories}
    total = sum(weights[name] for name in scores)
    return _clip(sum(weights[name] * s for name, s in scores.items()) / total)


def compute_ms_from_score(score: float, base_delay_ms: float) -> float:
    """Return the compute delay (ms) the engine uses for a level-2 score."""
    return base_delay_ms * MAX_SCORE / min(MAX_SCORE, max(score, MIN_SCORE))


def _table(value: Any, where: str) -> Mapping[str, Any]:
    """Return `value` if it is a table, else raise naming `where`."""
    if not isinstance(value, Mapping):
        raise ValidationError(where, "must be a table/object")
    return value


def _param(data: Mapping[str, Any], kind: str, name: str, where: str) -> float:
    """Return one required normaliser parameter, checked for its kind."""
    key = f"{where}.{name}"
    if name not in data:
        raise ValidationError(key, f"is required for kind {kind!r}")
    value = check_number(data[name], key, -PARAM_LIMIT, PARAM_LIMIT)
    if POSITIVE_PARAM.get(kind) == name and value <= 0:
        raise ValidationError(key, f"must be above 0, got {value:g}")
    return value


def _normaliser(value: Any, where: str) -> Normaliser:
    """Parse a normaliser table; parameters its kind does not use are unknown keys."""
    data = _table(value, where)
    kind = data.get("kind")
    if not isinstance(kind, str) or kind not in KINDS:
        raise ValidationError(f"{where}.kind", f"must be one of {sorted(KINDS)}, got {kind!r}")
    reject_unknown(data, {"kind", *KINDS[kind]}, where)
    params = {name: _param(data, kind, name, where) for name in KINDS[kind]}
    if kind == "minmax" and params["best"] == params["worst"]:
        raise ValidationError(f"{where}.worst", "must differ from best")
    return Normaliser(kind, **params)


def _category(default: Category, value: Any, where: str) -> Category:
    """Parse one category table over its default; absent keys keep the default."""
    data = _table(value, where)
    reject_unknown(data, {"weight", "normaliser"}, where)
    weight = check_number(data.get("weight", default.weight), f"{where}.weight", 0.0, MAX_WEIGHT)
    normaliser = default.normaliser
    if "normaliser" in data:
        normaliser = _normaliser(data["normaliser"], f"{where}.normaliser")
    return Category(default.name, weight, normaliser)


def scoring_from_dict(data: Mapping[str, Any], where: str = "controller.scoring") -> ScoringConfig:
    """Parse and validate the [controller.scoring] table; errors name the full key."""
    data = _table(data, where)
    reject_unknown(data, {"enabled", "aggregation", "categories"}, where)
    enabled = data.get("enabled", False)
    if not isinstance(enabled, bool):
        raise ValidationError(f"{where}.enabled", f"must be true or false, got {enabled!r}")
    aggregation = data.get("aggregation", "weighted-mean")
    if aggregation not in AGGREGATIONS:
        raise ValidationError(f"{where}.aggregation",
                              f"must be one of {list(AGGREGATIONS)}, got {aggregation!r}")
    tables = _table(data.get("categories", {}), f"{where}.categories")
    reject_unknown(tables, set(CATEGORY_NAMES), f"{where}.categories")
    categories = tuple(
        _category(c, tables[c.name], f"{where}.categories.{c.name}") if c.name in tables else c
        for c in DEFAULT_CATEGORIES)
    if not any(c.weight > 0 for c in categories):
        raise ValidationError(f"{where}.categories", "at least one category needs a weight above 0")
    return ScoringConfig(enabled, aggregation, categories)
