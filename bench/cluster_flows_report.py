"""bench/cluster_flows.py's results: the summary per member count (medians, ranges, ratios to
1 member in the same round), a member's CPU split into master and slave work, and the text of
bench/results/cluster_flows.txt."""

from __future__ import annotations

import os
import statistics
from collections import Counter
from typing import Any

OFPT_NAMES = {13: "PACKET_OUT", 14: "FLOW_MOD", 15: "GROUP_MOD", 29: "METER_MOD"}


def summarise(rows: list[dict[str, Any]]) -> dict[str, Any]:
    """Per member count: medians and ranges over the rounds; ratios to 1 member per round."""
    summary: dict[str, Any] = {}
    ok = [r for r in rows if "setups_per_s" in r]
    for n in (1, 2, 3):
        mine = [r for r in ok if r["members"] == n]
        if not mine:
            continue
        rates = [r["setups_per_s"] for r in mine]
        ratios = [r["setups_per_s"] / b["setups_per_s"] for r in mine for b in ok
                  if b["members"] == 1 and b["round"] == r["round"] and b["setups_per_s"]]
        per = [r["members_cpu_us_per_setup"] for r in mine if r["members_cpu_us_per_setup"]]
        shares = [x for r in mine for x in r["member_cpu_share"]]
        summary[str(n)] = {
            "setups_per_s_median": statistics.median(rates),
            "setups_per_s_range": [min(rates), max(rates)],
            "ratio_to_1_range": [round(min(ratios), 2), round(max(ratios), 2)] if ratios
            else None,
            "member_cpu_share_range": [min(shares), max(shares)],
            "members_cpu_total_share_range": [min(sum(r["member_cpu_share"]) for r in mine),
                                              max(sum(r["member_cpu_share"]) for r in mine)],
            "members_cpu_us_per_setup_median": statistics.median(per) if per else None,
            "members_cpu_us_per_setup_range": [min(per), max(per)] if per else None,
            "generator_cpu_share_range": [min(r["generator_cpu_share"] for r in mine),
                                          max(r["generator_cpu_share"] for r in mine)],
        }
    return summary


def cpu_split(rows: list[dict[str, Any]]) -> dict[str, float] | None:
    """Each member's CPU time while measuring, fitted (least squares, every member of every
    run) as `master_us` per setup it answered plus `slave_us` per new flow's PACKET_IN it only
    observed (another member's switch): what a member costs per flow in either role."""
    pairs = []
    for r in rows:
        if "setups_per_s" not in r or not sum(r["answered_by_member"]):
            continue
        total, setups = sum(r["answered_by_member"]), r["setups"]
        for k, share in enumerate(r["member_cpu_share"]):
            mine = r["answered_by_member"][k] / total * setups
            pairs.append((mine, setups - mine, share * r["seconds"] * 1e6))
    sxx = sum(a * a for a, _, _ in pairs)
    sxy = sum(a * b for a, b, _ in pairs)
    syy = sum(b * b for _, b, _ in pairs)
    det = sxx * syy - sxy * sxy
    if not pairs or det <= 0:
        return None
    sxz = sum(a * z for a, _, z in pairs)
    syz = sum(b * z for _, b, z in pairs)
    return {"master_us": round((sxz * syy - syz * sxy) / det, 1),
            "slave_us": round((sxx * syz - sxy * sxz) / det, 1), "members_fitted": len(pairs)}


def text_report(out: dict[str, Any]) -> str:
    """The results file's text."""
    lines = [f"new-flow setups per second, 1-3 cluster members, {out['switches']} emulated "
             f"switches each connected to every member, {out['window']} new flows in flight "
             f"per switch (bench/cluster_flows.py{' --quick' if out['quick'] else ''}; "
             f"{out['framework']}, {out['date']}; {out['rounds']} rounds, each: warm-up "
             f"{out['warmup']:g} s, {out['loops']} x {out['duration']:g} s; no CPU pinning, "
             f"{os.cpu_count()} CPUs shared by the members, the generator and PostgreSQL)",
             "members  setups/s median (range)  x 1 member  CPU per member   members' CPU  "
             "us CPU/setup  generator CPU"]
    for n, s in out["summary"].items():
        r = s["ratio_to_1_range"] or ["-", "-"]
        rate, each, total = (s["setups_per_s_range"], s["member_cpu_share_range"],
                             s["members_cpu_total_share_range"])
        per, gen = s["members_cpu_us_per_setup_range"] or [0, 0], s["generator_cpu_share_range"]
        lines.append(
            f"{n:>7}  {s['setups_per_s_median']:8.0f} ({rate[0]:.0f}-{rate[1]:.0f})  "
            f"{r[0]}-{r[1]:<9}  {each[0]:.2f}-{each[1]:.2f}        {total[0]:.2f}-"
            f"{total[1]:.2f}     {s['members_cpu_us_per_setup_median'] or 0:6.0f} "
            f"({per[0]:.0f}-{per[1]:.0f})  {gen[0]:.2f}-{gen[1]:.2f}")
    lines.append("(CPU: share of one CPU during the timed loops; us CPU/setup: all members' "
                 "CPU time per correct setup, median (range))")
    split = out.get("cpu_split")
    if split:
        lines.append(f"a member's CPU per new flow (least squares over {split['members_fitted']} "
                     f"members of all runs): {split['master_us']:.0f} us as the master that "
                     f"sets it up, {split['slave_us']:.0f} us as a slave that only observes its "
                     f"PACKET_IN (every member gets every PACKET_IN)")
    setups = [r["setup"] for r in out["rows"] if "setup" in r]
    measured = [r for r in out["rows"] if "setups_per_s" in r]
    kinds = Counter(("slave" if w[3] > 0 else "equal", abs(w[3])) for s in setups
                    for w in s["odd_writes"])
    lines.append(
        f"checked before measuring, {len(measured)} of {len(out['rows'])} runs: one master per "
        f"switch, the rule's; every member knew every switch, host and instance (at its "
        f"place, with metrics) and held a decision at every ingress. Checked while measuring: "
        f"no write from a slave or an equal, no master change, no member error, every setup "
        f"answered correctly by its switch's master (problems below otherwise)")
    lines.append(
        f"while the roles were being given (connect to settled, not measured): "
        f"{sum(s['stale_role_requests'] for s in setups)} role requests refused as stale, "
        f"{sum(s['slave_writes_refused'] for s in setups)} writes refused to slaves, "
        f"{sum(s['writes_as_equal'] for s in setups)} messages sent to a switch whose role for "
        f"the member was still EQUAL (accepted by a real switch; by type: "
        f"{', '.join(f'{k} {OFPT_NAMES.get(t, t)} x{n}' for (k, t), n in kinds.items())}); "
        f"errors the members counted: {sum(sum(s['member_errors']) for s in setups)}")
    lines.append(f"load average {out['load_before']} before, {out['load_after']} after; "
                 f"problems: {out['problems'] or 'none'}")
    return "\n".join(lines) + "\n"
