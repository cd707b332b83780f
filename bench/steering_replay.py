"""Replaying a traced steering run's own requests through a model of its sites (issue 22).

Boundary: bench only, no Mininet and no controller. It reads the traces `bench/steering_sweep.py
--trace` saved (`bench/results/steering-trace-TAG.json`: every request's start, answer time,
instance, client and whether it came on a kept-alive connection) and the sweep whose other
policies give each cell's best p95 (`bench/results/steering-sweep-BASE.json`). It asks which
price of an instance's queue, given what the controller can know, could have met issue 22's
0.8x on those very requests, before a Mininet run is spent on it.

The model. Each site is `c` workers serving first come first served, each request holding one
for the site's service time (the scenario's slowdown included). A request joins its site's
queue at its start and is answered after its wait, its service and its path time. A site's
path time is what the model leaves of the run's own answers: the traced assignment is replayed
through the workers, and each answer's time beyond its modelled wait and service is a sample
of the path (the network both ways, the TCP handshake, the time to reach the site), pooled per
site over the scenario's traced runs. A replayed request draws a path time from its site's
pool.

A replayed policy places every fresh request; a kept-alive one goes where it went (its
connection was bound there). It prices each site as the controller does (the network cost the
run's decisions show for the client's ingress, plus the compute cost), from either

- `count`: the requests at the site, as the controller counts them at best (its view was
  found right by bench/steering_trace.py), priced `s * (1 + ahead / c)` (engine.py), or
- `exact`: the time until the site's first worker frees, which the controller cannot know
  (it would need every request's start at the instance),

and chooses as dyncast does (`Decider`): the sites within `spread` of the cheapest share the
new flows in proportion to `(best / cost) ** sharpness`, served in turn, and the shares are
taken anew when a cost moved by more than the hysteresis (the controller's defaults).
`deadline` policies instead take, among the sites that would answer within the deadline, the
one with the slowest service (saving the fast one), else the cheapest, or (`idle_rest`) a site
where no request waits, since a request that misses the deadline anyway should hold no one up;
one is told the run's own target (0.8x the best other's p95 of that seed), which no controller
knows.

Checked against the runs: `lines` prints each cell's traced p95 beside the defaults replayed;
where they differ, the model misses something of those runs. It is a model: requests never fail
or retransmit, a path time does not depend on the policy, and the count is the controller's
at best (its median error was 0, but within one request at only 59-92 % of the polls).

    .venv/bin/python bench/steering_replay.py --tag trace --base queue-model-10
"""

from __future__ import annotations

import argparse
import heapq
import json
import random
import statistics
import sys
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from bench.steering_net import NETWORKS  # noqa: E402
from bench.steering_stats import percentile  # noqa: E402
from bench.steering_trace import RESULTS, answered, trace_path  # noqa: E402
from controller.model import Weights  # noqa: E402
from controller.selection.decisions import SelectionConfig  # noqa: E402
from controller.selection.engine import CandidateInput, Engine  # noqa: E402

ROUNDS = 5  # draws of the path times per run and policy; the median p95 is kept
MIN_POOL = 5  # answers a site needs in a scenario's traces to sample its path time
TARGET = 0.8  # issue 22: dyncast's p95 at most 0.8x the best other's
SHIPPED = SelectionConfig()  # the controller's defaults


@dataclass(frozen=True)
class Policy:
    """How a replayed controller prices and chooses (module docstring)."""

    name: str
    wait: str = "count"  # or "exact"
    spread: float = SHIPPED.spread
    sharpness: float = SHIPPED.sharpness
    allowance: float | None = None  # base delays of waiting priced as they take ...
    price: float = 1.0  # ... and each ms beyond at this many
    deadline_ms: float | None = None
    at_target: bool = False  # the deadline is the run's own target: 0.8x the best other's p95
    idle_rest: bool = False  # a request no site answers within the deadline goes where no
    # request waits (it will miss anyway: it holds no one up there), not to the cheapest

    def wait_cost(self, wait_ms: float, base_ms: float) -> float:
        """The price of `wait_ms` of waiting (allowance.py's, or the wait itself)."""
        if self.allowance is None:
            return wait_ms
        allowed = self.allowance * base_ms
        return min(wait_ms, allowed) + self.price * max(0.0, wait_ms - allowed)


DEFAULTS = Policy("defaults")
POLICIES = (
    DEFAULTS,
    Policy("perfect information, cheapest", wait="exact", spread=0.0),
    *(Policy(f"allowance {a:g}, price {k:g}, spread {s:g}", allowance=a, price=k, spread=s)
      for a in (0.5, 1.0) for k in (2.0, 5.0) for s in (0.0, 0.3)),
    *(Policy(f"deadline {t:g} ms, slowest within it", wait="exact", deadline_ms=t)
      for t in (310.0, 350.0)),
    Policy("deadline at the target, slowest within it", wait="exact", at_target=True),
    Policy("deadline 310 ms, slowest within it, the rest where none waits", wait="exact",
           deadline_ms=310.0, idle_rest=True),
    Policy("deadline at the target, slowest within it, the rest where none waits",
           wait="exact", at_target=True, idle_rest=True),
)


@dataclass(frozen=True)
class Site:
    """One site as the model serves it."""

    workers: int
    service_ms: float


def sites_of(trace: dict[str, Any], hold_ms: float = 0.0) -> dict[str, Site]:
    """The sites of a traced run, its scenario's slowdown included; each request holds its
    worker `hold_ms` beyond the service time (`--hold-ms`)."""
    net = NETWORKS[trace["network"]]()
    extra = next(s.extra_load for s in net.scenarios if s.name == trace["scenario"])
    return {s.host: Site(s.capacity, s.service_ms * (1.0 + extra.get(s.host, 0.0)) + hold_ms)
            for s in net.sites}


def serve(queue: list[float], site: Site, at_ms: float) -> float:
    """A request joining `site` at `at_ms` (`queue`: its workers' free times, a heap): its wait."""
    start = max(at_ms, queue[0])
    heapq.heapreplace(queue, start + site.service_ms)
    return start - at_ms


def path_samples(traces: list[dict[str, Any]], hold_ms: float = 0.0) -> dict[str, list[float]]:
    """Per site, the path times the traced assignments leave (module docstring), pooled."""
    pools: dict[str, list[float]] = {}
    for tr in traces:
        sites = sites_of(tr, hold_ms)
        queues = {name: [0.0] * s.workers for name, s in sites.items()}
        for r in sorted(answered(tr), key=lambda r: r["t"]):
            site = sites[r["inst"]]
            wait = serve(queues[r["inst"]], site, r["t"] * 1000.0)
            pools.setdefault(r["inst"], []).append(max(0.0, r["ms"] - wait - site.service_ms))
    return pools


def network_costs(trace: dict[str, Any]) -> dict[str, dict[str, float]]:
    """Per client, each site's network cost (ms) in the run's decisions for its ingress, the
    median over the polls."""
    g = NETWORKS[trace["network"]]().graph
    out = {}
    for client in {r["src"] for r in trace["requests"]}:
        dpid = g.nodes[g.nodes[client]["switch"]]["dpid"]
        seen: dict[str, list[float]] = {}
        for poll in trace["polls"]:
            for d in poll["decisions"]:
                if d["ingress"] == dpid:
                    for site, (net_ms, _compute, _share) in d["candidates"].items():
                        seen.setdefault(site, []).append(net_ms)
        out[client] = {site: statistics.median(v) for site, v in seen.items()}
    return out


class Decider:
    """One ingress's dyncast decision, kept by the controller's own engine (engine.py): shares
    among the sites within the spread of the cheapest, served in turn (choosers.py), taken
    anew only when a site's cost moved by more than the hysteresis."""

    def __init__(self, policy: Policy) -> None:
        self.engine = Engine(policy.spread, policy.sharpness, SHIPPED.hysteresis)

    def pick(self, costs: dict[str, float]) -> str:
        """The site for the next fresh request, the sites priced `costs` (ms) now."""
        rows = [CandidateInput(site, "active", 0.0, cost) for site, cost in sorted(costs.items())]
        self.engine.update(0, "replay", Weights(), rows, 0.0)
        choice = self.engine.pick(0, "replay")
        assert choice is not None  # (a site is always within the spread of the cheapest)
        return choice


def replay(trace: dict[str, Any], policy: Policy, pools: dict[str, list[float]],
           base_ms: float, rng: random.Random,
           target_ms: float | None = None, hold_ms: float = 0.0) -> tuple[float, dict[str, int]]:
    """One replay of a run's requests under `policy`: its p95 (ms) and the requests per site
    (`rng` draws the path times; `target_ms`: the deadline of an `at_target` policy;
    `hold_ms`: see `sites_of`)."""
    if policy.at_target:
        if target_ms is None:
            raise ValueError(f"{policy.name}: needs the run's target")
        policy = replace(policy, deadline_ms=target_ms)
    sites, net = sites_of(trace, hold_ms), network_costs(trace)
    deciders = {client: Decider(policy) for client in net}
    queues = {name: [0.0] * s.workers for name, s in sites.items()}
    ends: dict[str, list[float]] = {name: [] for name in sites}  # answers not yet given
    times, placed = [], dict.fromkeys(sites, 0)
    for r in sorted(answered(trace), key=lambda r: r["t"]):
        now = r["t"] * 1000.0
        name = r["inst"] if r["ka"] else _pick(policy, sites, queues, ends, net[r["src"]],
                                                now, base_ms, deciders[r["src"]])
        site = sites[name]
        wait = serve(queues[name], site, now)
        heapq.heappush(ends[name], now + wait + site.service_ms)
        times.append(wait + site.service_ms + rng.choice(pools[name]))
        placed[name] += 1
    return percentile(times, 0.95) or 0.0, placed


def _pick(policy: Policy, sites: dict[str, Site], queues: dict[str, list[float]],
          ends: dict[str, list[float]], net: dict[str, float], now: float, base_ms: float,
          decider: Decider) -> str:
    """The site `policy` gives a fresh request at `now`."""
    costs, answer, waits = {}, {}, {}
    for name, site in sites.items():
        while ends[name] and ends[name][0] <= now:
            heapq.heappop(ends[name])
        if policy.wait == "exact":
            wait = max(0.0, queues[name][0] - now)
        else:
            ahead = max(0, len(ends[name]) - site.workers + 1)
            wait = site.service_ms * ahead / site.workers
        costs[name] = net.get(name, 0.0) + site.service_ms + policy.wait_cost(wait, base_ms)
        answer[name], waits[name] = net.get(name, 0.0) + site.service_ms + wait, wait
    if policy.deadline_ms is not None:
        within = [k for k in sorted(sites) if answer[k] <= policy.deadline_ms]
        if within:
            return max(within, key=lambda k: (sites[k].service_ms, -answer[k]))
        if policy.idle_rest:
            return min(sorted(sites), key=lambda k: (waits[k] > 0, answer[k]))
        return min(sorted(sites), key=lambda k: answer[k])
    return decider.pick(costs)


def best_other(base: list[dict[str, Any]], trace: dict[str, Any]) -> float | None:
    """The lowest p95 of a policy other than dyncast in the base sweep's run of the same cell
    and seed, None when there is none."""
    keys = ("network", "scenario", "target_load", "seed")
    p95s = [r["p95_ms"] for r in base if r["policy"] != "dyncast"
            and all(r[k] == trace[k] for k in keys) and r["p95_ms"] is not None]
    return min(p95s) if p95s else None


def problems(traces: list[dict[str, Any]], base: list[dict[str, Any]]) -> list[str]:
    """What makes the traces unfit to replay: a run without a baseline in the base sweep or
    without a decision pricing every site for a client's ingress, or a site with too few
    answers in its scenario's traces to sample its path time."""
    out = []
    for tr in traces:
        if best_other(base, tr) is None:
            out.append(f"{_name(tr)}: no other policy's run in the base sweep")
        for client, costs in sorted(network_costs(tr).items()):
            unpriced = sorted(set(sites_of(tr)) - set(costs))
            if unpriced:
                out.append(f"{_name(tr)}: no decision for {client}'s ingress priced {unpriced}")
    for scenario, group in _by_scenario(traces).items():
        pools = path_samples(group)
        for site in sorted(sites_of(group[0])):
            if len(pools.get(site, ())) < MIN_POOL:
                out.append(f"{scenario}: {len(pools.get(site, ()))} answers from {site} "
                           f"(at least {MIN_POOL} sample its path time)")
    return out


def _name(trace: dict[str, Any]) -> str:
    return f"{trace['scenario']} load {trace['target_load']:g} seed {trace['seed']}"


def _by_scenario(traces: list[dict[str, Any]]) -> dict[str, list[dict[str, Any]]]:
    out: dict[str, list[dict[str, Any]]] = {}
    for tr in traces:
        out.setdefault(f"{tr['network']} {tr['scenario']}", []).append(tr)
    return out


def results(traces: list[dict[str, Any]], base: list[dict[str, Any]],
            policies: tuple[Policy, ...] = POLICIES, rounds: int = ROUNDS,
            hold_ms: float = 0.0) -> list[dict[str, Any]]:
    """Per traced run: the traced p95 and each policy's replayed p95 (the median of `rounds`
    draws) over the best other's, and the share of its requests at the congested site."""
    out = []
    for group in _by_scenario(traces).values():
        pools = path_samples(group, hold_ms)
        for tr in group:
            net = NETWORKS[tr["network"]]()
            best = best_other(base, tr) or 0.0
            traced = percentile([r["ms"] for r in answered(tr)], 0.95) or 0.0
            row: dict[str, Any] = {k: tr[k] for k in ("network", "scenario", "target_load",
                                                      "seed")}
            row.update(best_other_ms=best, traced=traced / best, replayed={})
            for policy in policies:
                draws = [replay(tr, policy, pools, net.base_delay_ms,
                                random.Random(f"{_name(tr)} {k}"), TARGET * best, hold_ms)
                         for k in range(rounds)]
                p95 = statistics.median(p for p, _ in draws)
                congested = statistics.median(d[net.congested] / sum(d.values())
                                              for _, d in draws)
                row["replayed"][policy.name] = {"ratio": p95 / best, "congested": congested}
            out.append(row)
    return out


def lines(rows: list[dict[str, Any]]) -> list[str]:
    """The replay's table: per cell, each policy's ratio, median (range) over the seeds."""
    cells: dict[tuple[str, str, float], list[dict[str, Any]]] = {}
    for row in rows:
        cells.setdefault((row["network"], row["scenario"], row["target_load"]), []).append(row)
    out = ["Per cell: p95 over the best other policy's of the same seed (base sweep), median "
           "(range) over the seeds; the congested site's share of the requests. Met: at most "
           f"{TARGET:g}."]
    for (network, scenario, load), group in sorted(cells.items()):
        seeds = ", ".join(str(r["seed"]) for r in group)
        out.append(f"== {network} {scenario} load {load:g} (seeds {seeds})")
        out.append(f"  traced (the run's own settings): {_spread([r['traced'] for r in group])}")
        for name in group[0]["replayed"]:
            ratios = [r["replayed"][name]["ratio"] for r in group]
            shares = [r["replayed"][name]["congested"] for r in group]
            met = "met" if statistics.median(ratios) <= TARGET else "not met"
            out.append(f"  {name}: {_spread(ratios)} {met}; congested site "
                       f"{min(shares):.0%}-{max(shares):.0%}")
    return out


def _spread(values: list[float]) -> str:
    return f"{statistics.median(values):.2f} ({min(values):.2f}-{max(values):.2f})"


def main(argv: list[str] | None = None) -> int:
    """Replay the traces saved under a tag; print the table and save it beside them."""
    ap = argparse.ArgumentParser(prog="steering_replay", description=__doc__.splitlines()[0])
    ap.add_argument("--tag", required=True, help="the traced sweep's --tag (with --trace)")
    ap.add_argument("--base", required=True, help="the --tag of the sweep with the baselines")
    ap.add_argument("--rounds", type=int, default=ROUNDS, help="draws per run and policy")
    ap.add_argument("--hold-ms", type=float, default=0.0,
                    help="ms each request holds its worker beyond the service time (taken off "
                         "its path time: the answer's time is the run's)")
    args = ap.parse_args(argv)
    path, base_path = trace_path(args.tag), RESULTS / f"steering-sweep-{args.base}.json"
    for arg, p in (("--tag", path), ("--base", base_path)):
        if not p.exists():
            ap.error(f"{arg}: no {p.relative_to(ROOT)}")
    if args.rounds < 1:
        ap.error("--rounds: at least 1")
    if not 0.0 <= args.hold_ms <= 1000.0:
        ap.error("--hold-ms: from 0 to 1000")
    traces = json.loads(path.read_text())["runs"]
    base = json.loads(base_path.read_text())["runs"]
    short = problems(traces, base)
    if short:
        print("steering_replay: not replayed: " + "; ".join(short), file=sys.stderr)
        return 1
    rows = results(traces, base, rounds=args.rounds, hold_ms=args.hold_ms)
    text = lines(rows)
    print("\n".join(text))
    command = (f".venv/bin/python bench/steering_replay.py --tag {args.tag} --base {args.base}"
               + (f" --rounds {args.rounds}" if args.rounds != ROUNDS else "")
               + (f" --hold-ms {args.hold_ms:g}" if args.hold_ms else ""))
    name = f"steering-replay-{args.tag}" + (f"-hold-{args.hold_ms:g}" if args.hold_ms else "")
    (RESULTS / f"{name}.json").write_text(json.dumps({"command": command, "runs": rows},
                                                     indent=1) + "\n")
    (RESULTS / f"{name}.txt").write_text("\n".join([f"== {command}", *text]) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
