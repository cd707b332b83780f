"""The steering benchmark's failure kinds and what a failure did to the flows (issue 22).

Boundary: pure except `switch_side`, `set_link` and `failover_groups`, which read Mininet's
objects and run `ip` and `ovs-ofctl`; bench/steering.py calls them. No controller import.

Failure kinds (`--fail-kind`): `process` kills the site's service and D-MA at T/2 behind a live
link (the host's kernel refuses the next SYN with a RST); `link` takes the switch-side end of
the site's access link down at T/2 (what a dead host, NIC or cable looks like to the switch)
and up again after the clients stop. A policy named `P+failover` runs P with the service's
`failover = true` (switch-local fast-failover groups, docs/dataplanes.md).

Recovery, per run, from the clients' records (bench/loadgen.py; `t` is a request's start,
`ms` its time, or `err_ms` the time until it failed):
- new flows: the fresh-connection requests started after the failure that failed or took
  at least SYN_RTO_MS (their first SYN was lost: TCP sends it again after 1 s), how many and
  when the last of them started; the same count in as long a window before the failure
  is the run's own noise;
- flows that had the failed site: each keep-alive connection whose last answer before the
  failure came from the failed instance, the time from its first request after the failure
  until that request came back (answered, or reset by a live host: either way its packets
  reached a live instance; a timeout is the packets going nowhere), and until its first
  answered request.
"""

from __future__ import annotations

import re
import subprocess
import time
from typing import Any

from bench.steering_stall import notes as stall_notes
from bench.steering_stall import verdict as stall_verdict

FAIL_KINDS = ("process", "link")
FAILOVER_SUFFIX = "+failover"
SYN_RTO_MS = 1000.0  # Linux's initial retransmission timeout: a lost SYN costs a request this
WINDOW_S = 5.0  # new flows are looked at this long after (and before) the failure

Record = dict[str, Any]


def split_policy(name: str) -> tuple[str, bool]:
    """`dyncast+failover` -> ("dyncast", True); `p2c` -> ("p2c", False)."""
    if name.endswith(FAILOVER_SUFFIX):
        return name[: -len(FAILOVER_SUFFIX)], True
    return name, False


def _took(r: Record) -> float | None:
    """How long a request took, answered or not (None: an old record without `err_ms`)."""
    return r["ms"] if r["ms"] is not None else r.get("err_ms")


def _disrupted(r: Record) -> bool:
    took = _took(r)
    return bool(r["err"]) or (took is not None and took >= SYN_RTO_MS)


def new_flows(records: list[Record], fail_at: float, window: float = WINDOW_S) -> dict[str, Any]:
    """Fresh-connection requests disrupted (failed, or a lost SYN) in `window` s after
    `fail_at`, and in as long before it; when the last disrupted one after it started."""
    fresh = [r for r in records if "conn" not in r]
    after = [r for r in fresh if fail_at <= r["t"] < fail_at + window and _disrupted(r)]
    before = [r for r in fresh if fail_at - window <= r["t"] < fail_at and _disrupted(r)]
    last = max((r["t"] for r in after), default=None)
    in_flight = [r for r in fresh if r["t"] < fail_at and r["err"]
                 and r["t"] + (r.get("err_ms") or 0.0) / 1000 >= fail_at]
    failed = [r["t"] for r in fresh if r["t"] >= fail_at and r["err"]]
    until = max(failed, default=fail_at)
    started = sum(1 for r in fresh if fail_at <= r["t"] <= until)
    return {"disrupted": len(after), "disrupted_before": len(before),
            "in_flight_failed": len(in_flight),
            # of the new flows started from the failure to the last failed one, the share that
            # failed: how much of them the policy went on placing on the failed instance
            "share_failed": round(len(failed) / started, 3) if started else None,
            "failed_after": sum(1 for r in fresh if r["t"] >= fail_at and r["err"]),
            "last_disrupted_ms": None if last is None else round(1000 * (last - fail_at), 1)}


def bound_flows(records: list[Record], fail_at: float, failed: str) -> dict[str, Any]:
    """Keep-alive connections on instance `failed` when it failed: those with a request in
    flight then (`in_flight`: it failed), and per other connection, ms from its first request
    after `fail_at` until that request came back (`reached`: answered or reset; None if it
    timed out) and until its first answered request (`served`)."""
    by_conn: dict[tuple[str, int], list[Record]] = {}
    for r in records:
        if "conn" in r:
            by_conn.setdefault((r.get("src", ""), r["conn"]), []).append(r)
    reached: list[float | None] = []
    served: list[float | None] = []
    in_flight = 0
    for rows in by_conn.values():
        rows.sort(key=lambda r: r["seq"])
        before = [r for r in rows if r["t"] < fail_at and r["inst"] is not None]
        after = [r for r in rows if r["t"] >= fail_at]
        if not before or before[-1]["inst"] != failed or not after:
            continue
        if any(r["err"] and r["t"] < fail_at <= r["t"] + (r.get("err_ms") or 0.0) / 1000
               for r in rows):
            in_flight += 1  # its answer was lost with the instance: the client's timeout
            continue
        first = after[0]
        took = _took(first)
        timed_out = bool(first["err"]) and "timed out" in first["err"]
        reached.append(None if timed_out or took is None else round(took, 1))
        ok = next((r for r in after if r["ms"] is not None), None)
        served.append(None if ok is None else
                      round(1000 * (ok["t"] - first["t"]) + ok["ms"], 1))
    return {"connections": len(reached) + in_flight, "in_flight": in_flight,
            "reached_ms": reached, "served_ms": served}


def summary(records: list[Record], fail_at: float, failed: str) -> dict[str, Any]:
    """What the failure at `fail_at` (s after the clients' start) of `failed` did."""
    return {"fail_at_s": round(fail_at, 3), "new": new_flows(records, fail_at),
            "bound": bound_flows(records, fail_at, failed),
            "share_before": share_on(records, failed, fail_at - 3.0, fail_at)}


def share_on(records: list[Record], inst: str, start: float, end: float) -> float | None:
    """The share of the answered fresh-connection requests started in [`start`, `end`) that
    `inst` served: how much of the new flows a policy was giving it."""
    served = [r["inst"] for r in records
              if "conn" not in r and r["inst"] is not None and start <= r["t"] < end]
    return round(served.count(inst) / len(served), 3) if served else None


def line(s: dict[str, Any]) -> str:
    """The failure's numbers on one line of the log."""
    new, bound = s["new"], s["bound"]

    def most(values: list[float | None]) -> str:
        if not values:
            return "-"
        return "never" if None in values else f"{max(v for v in values if v is not None):.0f}"
    return (f"new: in flight failed {new['in_flight_failed']}, "
            f"disrupted {new['disrupted']} (before {new['disrupted_before']}) failed "
            f"{new['failed_after']} (share {new.get('share_failed')}) last "
            f"{new['last_disrupted_ms']} ms; bound "
            f"{bound['connections']} ({bound.get('in_flight', 0)} in flight): reached max "
            f"{most(bound['reached_ms'])} ms, served max {most(bound['served_ms'])} ms; "
            f"its share of new flows in the 3 s before {s.get('share_before')}")


# ---- preconditions (Mininet) -------------------------------------------------------------------

def switch_side(net: Any, host: str, switch: str) -> str:
    """The switch-side interface name of `host`'s link to `switch` (not its management link)."""
    for intf in net[host].intfList():
        link = intf.link
        if link is None:
            continue
        for end in (link.intf1, link.intf2):
            if end.node.name == switch:
                return str(end.name)
    raise LookupError(f"no link from {host} to {switch}")


def set_link(intf: str, up: bool) -> None:
    """Take a switch port's link up or down, as a cable, NIC or host would."""
    subprocess.run(["ip", "link", "set", "dev", intf, "up" if up else "down"], check=True,
                   capture_output=True, text=True)


FF_GROUP = re.compile(r"group_id=(\d+),type=ff\b")


def ff_groups(dump: str) -> list[int]:
    """The fast-failover group ids in `ovs-ofctl dump-groups` output."""
    return sorted(int(g) for g in FF_GROUP.findall(dump))


def group_flows(bridge: str) -> list[str]:
    """The flow entries of `bridge` whose actions send to a group."""
    out = subprocess.run(["ovs-ofctl", "-O", "OpenFlow13", "dump-flows", bridge],
                         capture_output=True, text=True, check=True).stdout
    return [x.strip() for x in out.splitlines() if "group:" in x]


def failover_groups(bridge: str) -> list[int]:
    """The fast-failover groups switch `bridge` holds."""
    out = subprocess.run(["ovs-ofctl", "-O", "OpenFlow13", "dump-groups", bridge],
                         capture_output=True, text=True, check=True).stdout
    return ff_groups(out)


def _switch_of(bench_net: Any, host: str) -> str:
    return str(bench_net.graph.nodes[host]["switch"])


def wait_groups(bench_net: Any, failover: bool, timeout: float = 10.0) -> str:
    """Wait until every site's switch holds two fast-failover groups per site on it (with
    `failover`) or neither a group nor a flow entry sending to one (without: the controller
    deletes a service's groups with their entries when failover is turned off); "" when so,
    else what the switches hold."""
    expected: dict[str, int] = {}
    for site in bench_net.sites:
        switch = _switch_of(bench_net, site.host)
        expected[switch] = expected.get(switch, 0) + (2 if failover else 0)
    deadline = time.monotonic() + timeout
    while True:
        held = {sw: failover_groups(sw) if failover else
                [*map(str, failover_groups(sw)), *group_flows(sw)] for sw in sorted(expected)}
        wrong = {sw: g for sw, g in held.items()
                 if (len(g) < expected[sw] if failover else g)}
        if not wrong:
            return ""
        if time.monotonic() > deadline:
            if not failover:
                return f"without failover, groups or entries sending to them stay: {wrong}"
            return (f"fast-failover groups (ovs-ofctl dump-groups) with failover {failover}: "
                    f"expected {expected}, the switches hold {wrong}")
        time.sleep(0.2)


def link_down(mn: Any, bench_net: Any, host: str) -> float:
    """Take `host`'s access link down at its switch; returns when (epoch s)."""
    intf = switch_side(mn, host, _switch_of(bench_net, host))
    at = time.time()
    set_link(intf, False)
    return at


def link_up(lab: Any, bench_net: Any, host: str) -> None:
    """Bring `host`'s access link up again and have the host send a packet through it (an
    ARP for another site), so that the controller sees the instance there again."""
    set_link(switch_side(lab.net, host, _switch_of(bench_net, host)), True)
    other = next(s.dbid for s in bench_net.sites if s.host != host)
    lab.host_cmd(host, f"ping -c 1 -W 1 {other} >/dev/null")


# ---- the results page's section ------------------------------------------------------------

COMMAND = ("sudo .venv/bin/python bench/steering.py --networks {network} --scenarios failure "
           "--policies dyncast p2c least-loaded dyncast+failover --no-reference "
           "--fail-kind {kind} --tag failover-{tag}")
TAGS = ("link", "link-abilene", "link-stall", "process",
        "process-abilene")  # bench/results/steering-failover-*
TARGET_FAILED = 0.5  # issue 22: requests failed <= 0.5x the controller-driven move
TARGET_RECOVERY_MS = 100.0  # ... and recovery <= 100 ms for flows with a backup


def _ms(values: list[float | None]) -> str:
    """The largest of per-connection times, `never` if one never came."""
    if not values:
        return "-"
    if None in values:
        return f"never ({values.count(None)} of {len(values)})"
    top = max(v for v in values if v is not None)
    return f"{top:.1f}" if top < 10 else f"{top:.0f}"


def failure_table(runs: list[dict[str, Any]]) -> list[str]:
    """One row per policy of a failure run."""
    md = ["| policy | requests | failed | in flight at the failure, failed | failed after "
          "| new flows disrupted after (before) "
          "| last disrupted, ms after | bound connections (in flight) "
          "| reached a live host, ms (max) "
          "| answered, ms (max) | failed site's share of new flows, 3 s before | p95 ms |",
          "| --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: "
          "| ---: |"]
    for r in runs:
        f = r.get("failure")
        if f is None:
            continue
        new, bound = f["new"], f["bound"]
        last = new["last_disrupted_ms"]
        p95 = "-" if r["p95_ms"] is None else f"{r['p95_ms']:.0f}"
        md.append(f"| {r['policy']} | {r['requests']} | {r['errors']} "
                  f"| {new.get('in_flight_failed', '-')} | {new['failed_after']} "
                  f"| {new['disrupted']} ({new['disrupted_before']}) "
                  f"| {'-' if last is None else f'{last:.0f}'} | {bound['connections']} "
                  f"({bound.get('in_flight', 0)}) "
                  f"| {_ms(bound['reached_ms'])} | {_ms(bound['served_ms'])} "
                  f"| {f.get('share_before', '-')} | {p95} |")
    return md


def verdict(runs: list[dict[str, Any]]) -> list[str]:
    """Issue 22's failover targets against one link-failure run, in words."""
    by = {r["policy"]: r for r in runs if r.get("failure")}
    ff, move = by.get("dyncast" + FAILOVER_SUFFIX), by.get("dyncast")
    if ff is None or move is None:
        return []

    def lost(r: dict[str, Any]) -> tuple[int, int]:
        """(failed fresh-connection requests, of which in flight at the failure: no network
        move saves those)"""
        return r["errors"], r["failure"]["new"].get("in_flight_failed", 0)
    (ff_all, ff_flight), (mv_all, mv_flight) = lost(ff), lost(move)
    ff_rest, mv_rest = ff_all - ff_flight, mv_all - mv_flight
    ratio = ff_rest / mv_rest if mv_rest else None
    failed = (f"{ff_all} against {mv_all} ({ff_flight} and {mv_flight} of them in flight at "
              f"the failure); the others, {ff_rest} against {mv_rest}"
              + ("" if ratio is None else f" ({ratio:.2f}x)"))
    met_failed = ff_rest == 0 or (ratio is not None and ratio <= TARGET_FAILED)
    trivially = ff_rest == 0 and mv_rest == 0
    reached = ff["failure"]["bound"]["reached_ms"]
    last = ff["failure"]["new"]["last_disrupted_ms"]
    met_rec = (None not in reached and all(v <= TARGET_RECOVERY_MS for v in reached
                                           if v is not None)
               and (last is None or last <= TARGET_RECOVERY_MS))
    return [f"- requests failed, failover against the controller-driven move: {failed}: "
            f"target <= {TARGET_FAILED}x {'met' if met_failed else '**not met**'}"
            + (", but only trivially: neither lost a request that was not in flight (the "
               "controller hears of the port at once and moves flows as fast as the switch)"
               if trivially else ""),
            f"- recovery with failover: the {len(reached)} bound connection(s) not in flight "
            f"reached a live host within {_ms(reached)} ms, the last disrupted new flow started "
            f"{'-' if last is None else f'{last:.0f}'} ms after the failure: target <= "
            f"{TARGET_RECOVERY_MS:.0f} ms {'met' if met_rec else '**not met**'}"]


def failover_section(saved: dict[str, dict[str, Any]]) -> list[str]:
    """The section for the failure runs in `saved` (tag in TAGS -> saved results)."""
    md = ["## Failover: an access link down against a killed process", "",
          "Figure 2's failure scenario two ways: `link` takes e2's access link down at its "
          "switch half-way (a dead host, NIC or cable as the switch sees it) and up after the "
          "clients stop; `process` kills e2's service and D-MA behind a live link (as above). "
          "`dyncast+failover` is dyncast with the service's `failover = true` (switch-local "
          "fast-failover groups at e2's switch, [dataplanes.md](../dataplanes.md#switch-local-"
          "failover)); the bench checks with `ovs-ofctl dump-groups` that every site's switch "
          "holds its two groups before a failover run and none before the others. The "
          "dataplane is `reactive` for every policy (each decides per flow; a `bucket` service "
          "would leave p2c and least-loaded nothing to decide). Same seed and arrivals in every "
          "run. *Disrupted* new flows: fresh-connection requests started within 5 s after the "
          "failure that failed or took 1 s or more (a lost SYN, sent again after TCP's 1 s "
          "timeout); in brackets the same count in the 5 s before (the run's own noise). "
          "*Bound connections*: keep-alive connections whose last answer before the failure "
          "came from e2; per connection, how long its first request after the failure took "
          "to come back answered or reset (its packets reached a live host; *never*: it timed "
          "out), and until its first answer (a reset connection opens a new one a second "
          "later).", ""]
    for tag in TAGS:
        if tag not in saved:
            continue
        runs = saved[tag]["runs"]
        kind, network = tag.split("-")[0], saved[tag]["networks"][0]
        stall = next((r["failure"]["stall"]["stall_s"] for r in runs
                      if r.get("failure", {}).get("stall")), None)
        if stall is not None:  # steering_stall.py: the controller stopped at the failure
            md += [*stall_section(network, tag, stall, saved[tag]), *failure_table(runs), "",
                   *stall_notes(runs, stall), ""]
            continue
        where = "" if network == "figure2" else (
            f", {network} (the failed site: {failed_site(network)}, not e2)")
        md += [f"### `{kind}`{where}", "",
               f"`{COMMAND.format(network=network, kind=kind, tag=tag)}` "
               f"(`bench/results/steering-failover-{tag}.txt`, `.json`; settings: "
               f"{saved[tag]['settings']}).", "", *failure_table(runs), ""]
        if kind == "link":
            md += ["Issue 22's failover targets:", "", *verdict(runs), ""]
        else:
            md += [*killed(runs), ""]
    return md


def stall_section(network: str, tag: str, stall: float, saved: dict[str, Any]) -> list[str]:
    """The heading, command and verdict of a run with the controller stopped at the failure."""
    command = COMMAND.format(network=network, kind="link", tag=tag) + (
        f" --controller-stall {stall:g}")
    return [f"### `link`, the controller stopped {stall:g} s at the failure", "",
            f"`{command}` (`bench/results/steering-failover-{tag}.txt`, `.json`; settings: "
            f"{saved['settings']}). At the failure the bench stops the controller's process "
            f"group (SIGSTOP: `/proc` state `T`, checked) for {stall:g} s, then continues it, "
            "under Open vSwitch's inactivity probe (checked before the run; after it, that no "
            "switch reconnected): a busy or partitioned controller. Issue 22's failover "
            "targets:", "", *stall_verdict(saved["runs"], stall), ""]


def failed_site(network: str) -> str:
    """The host of the site `network`'s failure scenario fails."""
    from bench.steering_net import NETWORKS

    return str(NETWORKS[network]().scenario("failure").fail)


def killed(runs: list[dict[str, Any]]) -> list[str]:
    """Why a killed process costs each policy what it does, and what would bound it."""
    rows = [r for r in runs if r.get("failure")]
    if not rows:
        return []
    each = "; ".join(f"{r['policy']} {r['failure']['new']['failed_after']} after, share "
                     f"{r['failure'].get('share_before')} before, "
                     f"{r['failure']['new'].get('share_failed')} after" for r in rows)
    return [
        "(In this table a bound connection's reset comes from e2's own kernel, not from "
        "another instance.)", "",
        "**Why a killed process costs what it does.** e2's kernel refuses every new "
        "connection at once (a RST to the SYN), so every new flow a policy places on e2 fails "
        "until the controller stops placing them there: when e2's metrics are stale "
        "(`stale_after_s` 2 s) and its liveness probe unanswered (`probe_timeout_s` 1 s), "
        "about 2 s (*recover* in the tables above). What a policy loses is the share of new "
        "flows it places on e2 in that window (requests failed after the failure; e2's share "
        "of the new flows in the 3 s before; the share that failed from the failure to the "
        f"last failure: {each}). With the same seed, dyncast and dyncast+failover differ here "
        "by the detection time alone (*recover*): the policies are within the run-to-run "
        "noise of one another, and switch-local failover changes nothing (no port goes down; "
        "the groups watch ports). Runs before this section's killed the service, waited for "
        "it to exit, then killed the D-MA: a D-MA that polled in between reported the "
        "instance not serving and the controller moved at once (a least-loaded run lost no "
        "request that way); the failure-scenario rows above come from such runs, so part of "
        "their spread (17 to 35 failed) is that race, not the policies.",
        "",
        "**What bounds it: passive health** (next section): e2's own switch copies its "
        "resets to the controller, which ejects e2 for new flows after three refusals."]


# ---- passive health against the controller's own detection (the `process` kind) ----------

HEALTH_COMMAND = ("sudo .venv/bin/python bench/steering.py --networks figure2 --scenarios "
                  "failure --policies dyncast p2c least-loaded --no-reference --fail-kind "
                  "process --tag {tag}{flag}")
HEALTH_TAGS = {"health": " --health", "health-off": " --no-health"}  # results/steering-TAG.*


def health_section(saved: dict[str, dict[str, Any]]) -> list[str]:
    """Passive health on against off, from the runs in `saved` (HEALTH_TAGS -> results; when
    "health-off" is missing, the `process` failover run, "failover-process", is the off one
    if it ran with health off: before issue 22 made it the default, or `--no-health`)."""
    off_tag = "health-off" if "health-off" in saved else "failover-process"
    if ("health" not in saved or off_tag not in saved
            or "passive health on" in saved[off_tag].get("settings", "")):
        return []
    on = {r["policy"]: r for r in saved["health"]["runs"] if r.get("failure")}
    off = {r["policy"]: r for r in saved[off_tag]["runs"] if r.get("failure")}
    md = ["## Passive health: a killed process", "",
          "The `process` failure (e2's service and D-MA killed half-way, its link up) with "
          "passive health off and on (the default since issue 22; "
          "[decisions.md](../decisions.md#passive-health)): e2's switch copies e2's resets to "
          "the controller through their own meter, and three refusals (RST+ACK, sequence 0) "
          "within a second eject e2 for new flows, whatever the policy, until a report comes "
          "after 2 s. Same seed and arrivals; `reactive` dataplane.", ""]
    commands = [("health", HEALTH_COMMAND.format(tag="health", flag=HEALTH_TAGS["health"]),
                 "steering-health")]
    if off_tag == "health-off":
        commands.append((off_tag, HEALTH_COMMAND.format(tag=off_tag, flag=HEALTH_TAGS[off_tag]),
                         "steering-health-off"))
    else:
        commands.append((off_tag, COMMAND.format(network="figure2", kind="process",
                                                 tag="process"), "steering-failover-process"))
    for tag, command, name in commands:
        loads = [r["loadavg"] for r in saved[tag]["runs"] if r.get("loadavg") is not None]
        load = f"; load average {min(loads):g}-{max(loads):g}" if loads else ""
        md.append(f"- {'on' if tag == 'health' else 'off'}: `{command}` "
                  f"(`bench/results/{name}.txt`, `.json`; settings: "
                  f"{saved[tag]['settings']}{load})")
    if off_tag != "health-off":
        md += ["", "The off run is the `process` run of the section above, taken earlier (its "
               "dyncast+failover row left out): the on/off ratios below cross two runs."]
    md += ["", "| policy | failed after, off | failed after, on | on / off | last failed, ms "
           "after (off / on) | in flight at the failure, failed (off / on) | e2's share of "
           "new flows before (off / on) | p95 ms (off / on) |",
           "| --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: |"]
    verdicts = []
    for policy in (p for p in off if p in on):
        a, b = off[policy], on[policy]
        fa, fb = a["failure"]["new"], b["failure"]["new"]
        ratio = fb["failed_after"] / fa["failed_after"] if fa["failed_after"] else None

        def last(n: dict[str, Any]) -> str:
            v = n["last_disrupted_ms"]
            return "-" if v is None else f"{v:.0f}"

        def p95(r: dict[str, Any]) -> str:
            return "-" if r["p95_ms"] is None else f"{r['p95_ms']:.0f}"
        md.append(f"| {policy} | {fa['failed_after']} | {fb['failed_after']} "
                  f"| {'-' if ratio is None else f'{ratio:.2f}'} | {last(fa)} / {last(fb)} "
                  f"| {fa.get('in_flight_failed', '-')} / {fb.get('in_flight_failed', '-')} "
                  f"| {a['failure'].get('share_before')} / {b['failure'].get('share_before')} "
                  f"| {p95(a)} / {p95(b)} |")
        met = ratio is not None and ratio <= TARGET_FAILED
        verdicts.append(f"{policy} {fb['failed_after']} against {fa['failed_after']} "
                        f"({'-' if ratio is None else f'{ratio:.2f}'}x: "
                        f"{'met' if met else '**not met**'})")
    md += ["", f"Issue 22's target (requests failed <= {TARGET_FAILED}x the controller-driven "
           "move), new-connection requests failed after the failure with passive health on "
           "against off: " + "; ".join(verdicts) + ". Ejection does not depend on the policy "
           "(it takes e2 out of every policy's candidates), so p2c and least-loaded gain as "
           "much as dyncast: what is left is the refusals the threshold needs (`consecutive`, "
           "3), what any policy places on e2 in the controller's round trip after them, and "
           "the requests in flight at the kill, which no controller saves. Passive health "
           "changes nothing before the failure; p95s of runs at different load averages are "
           "not comparable.", ""]
    return md
