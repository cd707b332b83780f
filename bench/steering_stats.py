"""What the steering benchmark's clients observed, reduced to numbers (pure: records in).

A record is one request as bench/loadgen.py wrote it: `t` (scheduled start, s), `ms` (response
time, None on error), `inst` (serving instance), `err`; keep-alive records also carry `conn`,
`epoch` (a new TCP connection after a failure) and `seq`; `src` names the client host.
"""

from __future__ import annotations

import math
from collections import Counter
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from typing import Any

Record = dict[str, Any]


def percentile(values: Sequence[float], q: float) -> float | None:
    """The nearest-rank `q` quantile (0..1) of `values`, None when empty."""
    if not values:
        return None
    ordered = sorted(values)
    rank = max(1, math.ceil(q * len(ordered)))
    return ordered[rank - 1]


@dataclass(frozen=True)
class Capacity:
    """What an instance can serve: `capacity` requests at once, each `service_ms` long (times
    `slowdown`, its extra load plus one)."""

    capacity: int
    service_ms: float
    slowdown: float = 1.0


def response_times(records: Iterable[Record]) -> dict[str, Any]:
    """Count, errors, mean, p50, p95 and p99 of the fresh-connection requests."""
    fresh = [r for r in records if "conn" not in r]
    times = [r["ms"] for r in fresh if r["ms"] is not None]
    mean = sum(times) / len(times) if times else None
    return {"requests": len(fresh), "errors": len(fresh) - len(times), "mean_ms": mean,
            "p50_ms": percentile(times, 0.50), "p95_ms": percentile(times, 0.95),
            "p99_ms": percentile(times, 0.99)}


def by_instance(records: Iterable[Record]) -> dict[str, dict[str, Any]]:
    """Per serving instance: fresh-connection requests and their median and p95 time."""
    times: dict[str, list[float]] = {}
    for r in records:
        if "conn" not in r and r["inst"] is not None:
            times.setdefault(r["inst"], []).append(r["ms"])
    return {inst: {"n": len(ms), "p50_ms": percentile(ms, 0.5), "p95_ms": percentile(ms, 0.95)}
            for inst, ms in sorted(times.items())}


def deadline_share(records: Iterable[Record], deadline_ms: float) -> float | None:
    """Share of fresh-connection requests answered within the deadline (errors miss it)."""
    fresh = [r for r in records if "conn" not in r]
    if not fresh:
        return None
    return sum(1 for r in fresh if r["ms"] is not None and r["ms"] <= deadline_ms) / len(fresh)


def utilisation(records: Iterable[Record], capacities: dict[str, Capacity],
                duration: float) -> dict[str, float]:
    """Per instance: busy worker-time over available worker-time during the run (every
    request served, keep-alive ones included, holds a worker for its service time)."""
    served = Counter(r["inst"] for r in records if r["inst"] is not None)
    return {name: served[name] * cap.service_ms * cap.slowdown / 1000.0
            / (cap.capacity * duration) for name, cap in capacities.items()}


def affinity(records: Iterable[Record]) -> dict[str, int]:
    """Keep-alive connections (`connections`): `changed` = those whose serving instance
    changed while the connection lasted, `broken` = those reset or refused (their instance
    went away), `timeouts` = those that ended waiting for an answer (an overloaded instance)."""
    seen: dict[tuple[str, int, int], str] = {}
    counts: dict[str, set[tuple[str, int, int]]] = {"changed": set(), "broken": set(),
                                                    "timeouts": set()}
    keys: set[tuple[str, int, int]] = set()
    ordered = sorted((r for r in records if "conn" in r),
                     key=lambda r: (r.get("src", ""), r["conn"], r["seq"]))
    for r in ordered:
        key = (r.get("src", ""), r["conn"], r.get("epoch", 0))
        keys.add(key)
        if r["err"]:
            counts["timeouts" if "timed out" in r["err"] else "broken"].add(key)
        elif seen.setdefault(key, r["inst"]) != r["inst"]:
            counts["changed"].add(key)
    return {"connections": len(keys), **{k: len(v) for k, v in counts.items()}}


def windows(records: Iterable[Record], duration: float, width: float = 1.0,
            fail_ms: float = 5000.0) -> list[dict[str, Any]]:
    """Per window of `width` s: start, request count, p95 (a failed request counting as
    `fail_ms`, the clients' timeout) and the mix of serving instances."""
    fresh = [r for r in records if "conn" not in r]
    out = []
    for k in range(math.ceil(duration / width)):
        lo, hi = k * width, (k + 1) * width
        inside = [r for r in fresh if lo <= r["t"] < hi]
        times = [fail_ms if r["ms"] is None else r["ms"] for r in inside]
        mix = Counter(r["inst"] for r in inside if r["inst"] is not None)
        out.append({"t": lo, "n": len(inside), "p95_ms": percentile(times, 0.95),
                    "mix": dict(mix)})
    return out


def _shares(mix: Counter[str]) -> dict[str, float]:
    """Counts to fractions."""
    total = sum(mix.values())
    return {k: v / total for k, v in mix.items()} if total else {}


def _distance(a: dict[str, float], b: dict[str, float]) -> float:
    """Half the L1 distance between two mixes (0: same, 1: disjoint)."""
    return sum(abs(a.get(k, 0.0) - b.get(k, 0.0)) for k in set(a) | set(b)) / 2


def reaction_time(records: Iterable[Record], step_at: float, duration: float,
                  width: float = 1.0, min_shift: float = 0.1) -> float | None:
    """Seconds from the step until the mix of serving instances has made half of its
    eventual change (the mix in the 8 s before the step against the mix in the last third of
    the run), judged on 1 s windows sliding by 0.25 s and held for two windows in a row.

    None when the mix did not shift by at least `min_shift`: the policy did not react.
    """
    fresh = [r for r in records if "conn" not in r and r["inst"] is not None]

    def mix(lo: float, hi: float) -> dict[str, float]:
        return _shares(Counter(r["inst"] for r in fresh if lo <= r["t"] < hi))

    before = mix(step_at - 8.0, step_at)
    after = mix(duration - (duration - step_at) / 3, duration)
    shift = _distance(before, after)
    if shift < min_shift:
        return None
    starts = [step_at + k * 0.25 for k in range(int((duration - step_at - width) / 0.25) + 1)]
    moved = [_distance(before, mix(t, t + width)) >= shift / 2 for t in starts]
    for k, t in enumerate(starts[:-4]):
        if moved[k] and moved[k + 4]:  # this window and the next disjoint one
            return t + width / 2 - step_at  # the middle of the first window that shows it
    return None


def over_deadline(records: Iterable[Record], step_at: float, duration: float,
                  deadline_ms: float, min_requests: int = 5) -> float:
    """Seconds after `step_at` (whole 1 s windows with at least `min_requests` requests)
    whose p95 missed the deadline, counting failed requests as misses."""
    fresh = [r for r in records if "conn" not in r]
    seconds = 0.0
    t = step_at
    while t + 1.0 <= duration + 1e-9:
        inside = [r for r in fresh if t <= r["t"] < t + 1.0]
        times = [math.inf if r["ms"] is None else r["ms"] for r in inside]
        worst = percentile(times, 0.95)
        if len(inside) >= min_requests and worst is not None and worst > deadline_ms:
            seconds += 1.0
        t += 1.0
    return seconds


def recovery_time(records: Iterable[Record], event_at: float) -> float | None:
    """Seconds from `event_at` (a failure) to the start of the last failed fresh request;
    0 when none failed after it."""
    late = [r["t"] for r in records if "conn" not in r and r["err"] and r["t"] >= event_at]
    return max(late) - event_at if late else 0.0


def offered_rate(records: Iterable[Record], start: float, end: float) -> float:
    """Requests a second that arrived in [`start`, `end`): fresh and keep-alive, answered or
    not (the load the clients offered, whatever the policy did with it)."""
    if end <= start:
        raise ValueError(f"empty window [{start}, {end})")
    return sum(1 for r in records if start <= r["t"] < end) / (end - start)


def summarise(records: list[Record], capacities: dict[str, Capacity], duration: float,
              deadline_ms: float, step_at: float | None = None,
              stepped: set[str] | None = None) -> dict[str, Any]:
    """Everything the report shows about one run. With `step_at`: the reaction of the mix
    serving the clients in `stepped` (all when None) and the recovery from failed requests."""
    util = utilisation(records, capacities, duration)
    out = response_times(records)
    out["deadline"] = deadline_share(records, deadline_ms)
    out["util"] = util
    out["util_max"] = max(util.values()) if util else None
    out["util_mean"] = sum(util.values()) / len(util) if util else None
    out["by_instance"] = by_instance(records)
    out["affinity"] = affinity(records)
    mine = [r for r in records if stepped is None or r.get("src") in stepped]
    out["react_s"] = None if step_at is None else reaction_time(mine, step_at, duration)
    out["recover_s"] = None if step_at is None else recovery_time(records, step_at)
    out["late_s"] = None if step_at is None else over_deadline(records, step_at, duration,
                                                               deadline_ms)
    out["windows"] = windows(records, duration)
    out["offered_rate"] = offered_rate(records, 0.0, duration)
    if step_at is not None:
        out["offered_rate_after"] = offered_rate(records, step_at, duration)
    return out
