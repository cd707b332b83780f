"""The steering benchmark's report: docs/results/steering.md and its PNG plots.

Boundary: results (the summaries bench/steering.py collected) in, files out; no Mininet.
"""

from __future__ import annotations

from pathlib import Path
from statistics import median
from typing import Any

from bench.steering_net import LINK_MBPS, BenchNet

TARGET_SCENARIOS = ("hot-site", "load-step")  # dyncast p95 <= 0.7 x the best other policy
TARGET_RATIO = 0.7
NEVER_WORSE = 1.05  # dyncast p95 <= 1.05 x the best other policy, in every scenario


def _ms(value: float | None) -> str:
    """Milliseconds for a table cell."""
    return "-" if value is None else f"{value:.0f}"


def _pct(value: float | None) -> str:
    """A share as a percentage."""
    return "-" if value is None else f"{100 * value:.1f} %"


def _by(results: list[dict[str, Any]]) -> dict[tuple[str, str], list[dict[str, Any]]]:
    """Runs grouped by (network, scenario), in run order."""
    out: dict[tuple[str, str], list[dict[str, Any]]] = {}
    for r in results:
        out.setdefault((r["network"], r["scenario"]), []).append(r)
    return out


def targets(results: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """Per network and scenario: dyncast's p95 against the best other policy's, and against
    the scenario's reference run where it has one (a reference is not a policy: it is never
    the best other)."""
    rows = []
    for (network, scenario), runs in _by(results).items():
        mine = next((r for r in runs if r["policy"] == "dyncast"), None)
        others = [r for r in runs if r["policy"] != "dyncast" and not r.get("reference")
                  and r["p95_ms"] is not None]
        if mine is None or mine["p95_ms"] is None or not others:
            continue
        best = min(others, key=lambda r: r["p95_ms"])
        ratio = mine["p95_ms"] / best["p95_ms"]
        limit = TARGET_RATIO if scenario in TARGET_SCENARIOS else NEVER_WORSE
        ref = next((r for r in runs if r.get("reference") and r["p95_ms"] is not None), None)
        rows.append({"network": network, "scenario": scenario, "dyncast": mine["p95_ms"],
                     "best": best["policy"], "best_p95": best["p95_ms"], "ratio": ratio,
                     "limit": limit, "met": ratio <= limit,
                     "reference": None if ref is None else ref["policy"],
                     "reference_p95": None if ref is None else ref["p95_ms"]})
    return rows


def _reference_cells(t: dict[str, Any]) -> str:
    """The targets table's reference cells: its p95 (and name), dyncast's against it."""
    if t["reference_p95"] is None:
        return "- | -"
    return (f"{t['reference_p95']:.0f} ({t['reference']}) | "
            f"{t['dyncast'] / t['reference_p95']:.2f}")


def affinity_ok(results: list[dict[str, Any]]) -> bool:
    """No keep-alive connection changed instance or broke outside the failure scenario."""
    return all(not (r["affinity"]["changed"] or r["affinity"]["broken"])
               for r in results if r["scenario"] != "failure")


def _after(r: dict[str, Any]) -> str:
    """The after-the-event cell: load step (react / late) or failure (recover / late)."""
    def sec(v: float | None) -> str:
        return "-" if v is None else f"{v:.1f}"
    if r["scenario"] == "load-step":
        return f"react {sec(r['react_s'])}, late {sec(r['late_s'])}"
    if r["scenario"] == "failure":
        return f"recover {sec(r['recover_s'])}, late {sec(r['late_s'])}"
    return ""


def results_table(results: list[dict[str, Any]], network: str) -> list[str]:
    """The markdown table of one network's runs."""
    lines = ["| scenario | policy | requests | errors | mean ms | p95 ms | p99 ms | deadline met "
             "| util max / mean | keep-alive moved / broken | after the event (s) |",
             "| --- | --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | --- |"]
    for r in (r for r in results if r["network"] == network):
        aff = r["affinity"]
        lines.append(
            f"| {r['scenario']} | {r['policy']} | {r['requests']} | {r['errors']} "
            f"| {_ms(r['mean_ms'])} | {_ms(r['p95_ms'])} | {_ms(r['p99_ms'])} "
            f"| {_pct(r['deadline'])} | {r['util_max']:.2f} / {r['util_mean']:.2f} "
            f"| {aff['changed']} / {aff['broken']} of {aff['connections']} | {_after(r)} |")
    return lines


def plot_p95(results: list[dict[str, Any]], networks: list[str], path: Path) -> None:
    """Grouped bars: p95 per scenario and policy, one panel per network."""
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(1, len(networks), figsize=(6.5 * len(networks), 4.2), squeeze=False)
    for ax, network in zip(axes[0], networks, strict=True):
        runs = [r for r in results if r["network"] == network]
        scenarios = list(dict.fromkeys(r["scenario"] for r in runs))
        policies = list(dict.fromkeys(r["policy"] for r in runs))
        width = 0.8 / max(1, len(policies))
        for k, policy in enumerate(policies):
            values = [next((r["p95_ms"] or 0 for r in runs if r["scenario"] == s
                            and r["policy"] == policy), 0) for s in scenarios]
            ax.bar([i + k * width for i in range(len(scenarios))], values, width, label=policy)
        ax.set_xticks([i + width * (len(policies) - 1) / 2 for i in range(len(scenarios))],
                      scenarios)
        ax.set_yscale("log")
        ax.set_ylabel("p95 response time (ms, log scale)")
        ax.set_title(network)
        ax.legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


def plot_timeline(results: list[dict[str, Any]], networks: list[str], scenario: str,
                  path: Path) -> None:
    """Per-second p95 over the run of `scenario`, one line per policy, one panel per network."""
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(1, len(networks), figsize=(6.5 * len(networks), 4.0), squeeze=False)
    for ax, network in zip(axes[0], networks, strict=True):
        for r in (r for r in results if r["network"] == network and r["scenario"] == scenario):
            pts = [(w["t"], w["p95_ms"]) for w in r["windows"] if w["p95_ms"] is not None]
            ax.plot([t for t, _ in pts], [v for _, v in pts], label=r["policy"], lw=1.3)
            ax.axvline(r["duration_s"] / 2, color="grey", ls=":", lw=1)
        ax.set_xlabel("seconds (dotted: the step / failure)")
        ax.set_ylabel("p95 per second (ms; a failed request counts 5 s)")
        ax.set_title(f"{network}: {scenario}")
        ax.set_yscale("log")
        ax.legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


CONGESTED_WHEN = {"standing": "in every scenario", "hot-site": "in the hot-site scenario only"}


def setup_section(nets: list[BenchNet], when: str, load: float = 1.0) -> list[str]:
    """What ran: networks, sites, clients (rates times `load`), scenarios (`when`: when the
    path is congested)."""
    lines = []
    for net in nets:
        lines += [f"**{net.name}**: {net.text}. Congested path: {net.congestion}, {when}. "
                  f"Deadline {net.deadline_ms:g} ms.", "",
                  "| site | where | capacity (requests at once) | service time | max rate |",
                  "| --- | --- | ---: | ---: | ---: |"]
        for s in net.sites:
            lines.append(f"| {s.host} ({s.dbid}) | {s.label} | {s.capacity} | "
                         f"{s.service_ms:g} ms | {1000 * s.capacity / s.service_ms:.0f}/s |")
        rates = ", ".join(f"{c.label} {c.rate * load:g}/s" for c in net.clients)
        lines += ["", f"Clients (Poisson, fresh connection per request): {rates}; plus two "
                      "keep-alive connections per client, one request a second each, each "
                      "connection at its own (seeded) phase.", "",
                  "| scenario | what |", "| --- | --- |"]
        lines += [f"| {sc.name} | {sc.text} |" for sc in net.scenarios]
        lines.append("")
    return lines


def defaults_table(results: list[dict[str, Any]], defaults: list[dict[str, Any]]) -> list[str]:
    """dyncast and least-loaded under the settings above against the controller's defaults."""
    def p95(runs: list[dict[str, Any]], net: str, sc: str, policy: str) -> str:
        found = [r["p95_ms"] for r in runs if (r["network"], r["scenario"], r["policy"])
                 == (net, sc, policy)]
        return _ms(found[0]) if found else "-"
    lines = ["| network | scenario | dyncast p95, settings above | dyncast p95, defaults "
             "| least-loaded p95, settings above | least-loaded p95, defaults |",
             "| --- | --- | ---: | ---: | ---: | ---: |"]
    for net, sc in dict.fromkeys((r["network"], r["scenario"]) for r in defaults):
        lines.append(f"| {net} | {sc} | {p95(results, net, sc, 'dyncast')} "
                     f"| {p95(defaults, net, sc, 'dyncast')} "
                     f"| {p95(results, net, sc, 'least-loaded')} "
                     f"| {p95(defaults, net, sc, 'least-loaded')} |")
    return lines


def ratios_table(results: list[dict[str, Any]], other: list[dict[str, Any]],
                 labels: tuple[str, str]) -> list[str]:
    """dyncast's p95 against the best other policy's, in this run and in `other` (`labels`:
    what each is), for the cells `other` has."""
    theirs = {(t["network"], t["scenario"]): t for t in targets(other)}
    lines = [f"| network | scenario | {labels[0]}: dyncast / best other | ratio "
             f"| {labels[1]}: dyncast / best other | ratio |",
             "| --- | --- | --- | ---: | --- | ---: |"]
    for t in targets(results):
        o = theirs.get((t["network"], t["scenario"]))
        if o is None:
            continue
        lines.append(f"| {t['network']} | {t['scenario']} | {t['dyncast']:.0f} / "
                     f"{t['best_p95']:.0f} ({t['best']}) | {t['ratio']:.2f} | "
                     f"{o['dyncast']:.0f} / {o['best_p95']:.0f} ({o['best']}) | "
                     f"{o['ratio']:.2f} |")
    return lines


def seeds_table(results: list[dict[str, Any]],
                repeats: dict[int, list[dict[str, Any]]]) -> list[str]:
    """The target cells (hot site, load step) over seeds: seed 1 is `results`, the others
    `repeats` (seed -> its runs). Per cell, dyncast's p95 against the best other policy of
    each seed's runs, and against the reference where the cell has one; the median over the
    seeds that ran the cell, and in how many of them the target was met."""
    by_seed = {1: targets(results), **{n: targets(runs) for n, runs in sorted(repeats.items())}}
    seeds = list(by_seed)
    found = {(n, t["network"], t["scenario"]): t for n, rows in by_seed.items() for t in rows}
    lines = ["| network | scenario | dyncast p95 against | "
             + " | ".join(f"seed {n}" for n in seeds) + " | median | target met |",
             "| --- | --- | --- | " + " | ".join("---:" for _ in seeds) + " | ---: | --- |"]
    for t in by_seed[1]:
        if t["scenario"] not in TARGET_SCENARIOS:
            continue
        cells = [found.get((n, t["network"], t["scenario"])) for n in seeds]
        ratios = [c["ratio"] if c else None for c in cells]
        ran = [r for r in ratios if r is not None]
        lines.append(f"| {t['network']} | {t['scenario']} | the best other policy | "
                     + " | ".join("-" if r is None else f"{r:.2f}" for r in ratios)
                     + f" | {median(ran):.2f} | {sum(r <= t['limit'] for r in ran)} of "
                       f"{len(ran)} |")
        refs = [c["dyncast"] / c["reference_p95"] if c and c["reference_p95"] else None
                for c in cells]
        if any(r is not None for r in refs):
            have = [r for r in refs if r is not None]
            name = next(c["reference"] for c in cells if c and c["reference"])
            lines.append(f"| {t['network']} | {t['scenario']} | the reference ({name}) | "
                         + " | ".join("-" if r is None else f"{r:.2f}" for r in refs)
                         + f" | {median(have):.2f} | |")
    return lines


def write_report(saved: dict[str, Any], nets: list[BenchNet], docs_dir: Path,
                 defaults: list[dict[str, Any]] | None = None,
                 heavy: list[dict[str, Any]] | None = None,
                 repeats: dict[int, list[dict[str, Any]]] | None = None,
                 extra: list[str] | None = None) -> None:
    """Write docs/results/steering.md and its plots from a saved run (`runs`, `settings`,
    `controller`: the tables under test), with the controller-defaults runs, the runs at
    the heavier load and the target cells' runs with other seeds, if given; `extra`: more
    sections (bench/steering_baselines.py) before the caveats."""
    results, settings, controller_toml = saved["runs"], saved["settings"], saved["controller"]
    when = CONGESTED_WHEN[saved["congestion"]]
    docs_dir.mkdir(parents=True, exist_ok=True)
    networks = [n.name for n in nets]
    plot_p95(results, networks, docs_dir / "steering_p95.png")
    for scenario in ("load-step", "failure"):
        if any(r["scenario"] == scenario for r in results):
            plot_timeline(results, networks, scenario, docs_dir / f"steering_{scenario}.png")
    rows = targets(results)
    tuned = " --tuned" if controller_toml else ""  # the settings before issue 22
    md = ["# Steering quality: dyncast against simpler selection policies", "",
          f"Produced by `sudo .venv/bin/python bench/steering.py{tuned}` (raw numbers: "
          "`bench/results/steering.json`, log: `bench/results/steering.txt`); every section "
          "below that uses other runs names their command. `.venv/bin/python bench/steering.py "
          "--report-only` rewrites this page and its plots from the saved results. What the "
          "benchmark asserts before it measures, and a summary: "
          "[benchmarks.md](../benchmarks.md).", "",
          "## Set-up", "",
          f"Mininet with Open vSwitch (userspace datapath); every switch-to-switch link shaped to "
          f"{LINK_MBPS:g} Mbit/s with a 100-packet FIFO (about 0.12 s when full), host links "
          "unshaped; no emulated propagation delay (no netem here), so the network difference "
          "between paths is real queueing behind a bulk TCP transfer (iperf3) that keeps one "
          f"path congested {when}. Each site runs "
          "`dyncast-demo-service` (at most *capacity* requests at once, each taking the service "
          "time times one plus its extra load) and a D-MA (`--cpu-source instance`). The "
          f"controller reads port statistics every second and knows the links' {LINK_MBPS:g} "
          f"Mbit/s. Settings under test: {settings}. Every policy sees the same seeded arrivals; "
          "the policy is switched with `PUT /services/web` between runs on the same network, "
          "after every instance has finished the previous run's requests.", ""]
    if controller_toml:
        md += ["The controller tables under test, added to each network's configuration:", "",
               "```toml", controller_toml.strip(), "```", ""]
    md += setup_section(nets, when, saved["load"])
    md += ["Measured per run: response time of fresh-connection requests (from the scheduled "
           "arrival to the last byte; failed requests are errors, excluded from the percentiles "
           "and counted as deadline misses); the share meeting the deadline; per-instance "
           "utilisation (requests served x service time / capacity x run time); keep-alive "
           "connections whose instance changed while open / that were reset or refused (a "
           "keep-alive request that timed out on an overloaded instance is neither); after the "
           "load step, *react* = seconds until the mix of instances serving the stepped clients "
           "made half of its eventual change (- : it did not change), and after the step or the "
           "failure, *late* = seconds whose p95 missed the deadline and *recover* = seconds "
           "until the last failed request.", "", "## Results", ""]
    for name in networks:
        md += [f"### {name}", "", *results_table(results, name), ""]
    md += ["## Targets", "",
           f"dyncast's p95 against the best other policy's: at most {TARGET_RATIO} x in "
           f"{' and '.join(TARGET_SCENARIOS)}, at most {NEVER_WORSE} x everywhere.", "",
           "| network | scenario | dyncast p95 | best other | its p95 | ratio | target | met "
           "| reference p95 | dyncast / reference |",
           "| --- | --- | ---: | --- | ---: | ---: | ---: | --- | ---: | ---: |"]
    md += [f"| {t['network']} | {t['scenario']} | {t['dyncast']:.0f} | {t['best']} "
           f"| {t['best_p95']:.0f} | {t['ratio']:.2f} | {t['limit']} | "
           f"{'yes' if t['met'] else '**no**'} | {_reference_cells(t)} |" for t in rows]
    if any(t["reference_p95"] is not None for t in rows):
        md += ["", REFERENCE_TEXT]
    if repeats:
        ran = sorted({r["policy"] for runs in repeats.values() for r in runs
                      if r["policy"] != "dyncast" and not r.get("reference")})
        best = sorted({t["best"] for t in rows if t["scenario"] in TARGET_SCENARIOS})
        md += ["", "### The target cells with other seeds", "",
               "One run per cell settles nothing within about 0.1 of a target (see Caveats). "
               "The hot-site and load-step cells, run again with other seeds' arrivals "
               f"(`sudo .venv/bin/python bench/steering.py{tuned} --scenarios "
               f"{' '.join(TARGET_SCENARIOS)} --policies "
               f"dyncast {' '.join(ran)} --seed N --tag seedN`, N = "
               f"{', '.join(str(n) for n in sorted(repeats))}; `bench/results/steering-seedN.txt`"
               f"; the best other policy of these cells in the run above: {', '.join(best)}). "
               "dyncast's p95 over the best other's of each run, seed 1 being the run above:",
               "", *seeds_table(results, repeats)]
    md += ["", "Keep-alive connections outside the failure scenario: "
           + ("none changed instance or broke." if affinity_ok(results) else
              "**some changed instance or broke** (see the tables)."), "",
           "![p95 per scenario and policy](steering_p95.png)", "",
           "![load step over time](steering_load-step.png)", "",
           "![instance failure over time](steering_failure.png)", ""]
    if defaults:
        md += ["## The same runs with the controller's defaults", "",
               "`sudo .venv/bin/python bench/steering.py --policies dyncast least-loaded "
               "--duration 16 --tag defaults` (selection spread 0.3, sharpness 4, hysteresis "
               "0.15; the default compute estimate; placed flows counted, as by default; 16 s "
               "runs; `bench/results/steering-defaults.txt`):", "",
               *defaults_table(results, defaults), ""]
    if heavy:
        md += ["## Figure 2 at a heavier load", "",
               f"`sudo .venv/bin/python bench/steering.py{tuned} --networks figure2 --load "
               "1.333 --tag heavy` (`bench/results/steering-heavy.txt`): every client's rate "
               "x1.333, 12 requests a second instead of 9, everything else as above. At the load"
               " step's peak the clients send 48 requests a second, 74 % of the three sites' "
               "capacity (65 a second) and 96 % of what the two sites off the congested path can"
               " serve (50 a second); in the hot site, with e4 slowed, e2 taking every request "
               "would run at 80 %. Every policy then has to queue or use the slowed site or the "
               "congested path. dyncast's p95 against the best other policy's, at both loads:",
               "",
               *ratios_table(results, heavy, ("9/s per client (above)", "12/s per client")),
               ""]
    md += list(extra or ()) + NOTES
    (docs_dir / "steering.md").write_text("\n".join(md) + "\n")


REFERENCE_TEXT = (
    "A *reference* run (`e2 only`) is not a policy: for its scenario the other instances are "
    "drained through the controller's API (`POST /dyncast/v1/instances/{dbid}/drain`), so "
    "every new flow goes to the site(s) an operator who knew the scenario would pick, here the "
    "one site neither slowed nor behind the congested path. It shows how much the network's "
    "capacity leaves any policy to gain: every other site is slowed or behind the congested "
    "path, so a request moved off e2 costs about as much as the longest waits at e2 "
    "(300 ms or more).")

NOTES: list[str] = [
    "## Reading the results", "",
    "- **The network difference is there in every scenario.** There is no netem here for "
    "propagation delays, so what makes paths differ is a bulk transfer that keeps one path "
    "congested (its 100-packet queue full, about 0.12 s per crossing; a fresh connection "
    "crosses it twice before its request is served: the SYN, then the request).",
    "- **Balanced.** `least-loaded`, `round-robin` and `random` send a share of new flows "
    "across the congested path (to e3 in Figure 2, Atlanta in Abilene) and pay about 0.25 s for "
    "each; `nearest` overloads the site beside the busiest ingress. dyncast prices the path "
    "and keeps flows off it. In Abilene the congested site is one of four and the others have "
    "room, so least-loaded, which goes there only when it looks least loaded, and dyncast make "
    "nearly the same choices there: their p95s are close, and the difference between them is "
    "within the run-to-run noise (Caveats).",
    "- **Hot site.** c1's nearest site e4 (Sunnyvale's in Abilene) is slowed to 3x its service "
    "time: 300 ms a request, the deadline. dyncast keeps new flows on the sites that still "
    "answer in time and off the congested path; least-loaded avoids the slowed site too but "
    "not the congested path; nearest, round-robin and random keep sending to the slowed site. "
    "In Figure 2 that leaves one good site: the reference run sends every new flow to e2, which "
    "then runs at three quarters of its capacity, and e2's own queueing in bursts sets its p95. "
    "dyncast stays close to it (the seeds table): it sends a few per cent of the flows to e4 or "
    "across the congested path when e2's queue builds, each about as slow as waiting at e2 "
    "would have been. In this network at this load no policy can do much better, and whether "
    "the cell meets 0.7x rests on least-loaded's p95 as much as on dyncast's.",
    "- **Load step.** The stepped clients' flows spread over the sites with room; dyncast "
    "reacts within one metric report. `nearest` sends the crowd to its one site, which falls "
    "behind until requests time out (5 s); `round-robin` and `random` overload the smallest "
    "sites.",
    "- **Failure.** Every policy sends requests to the dead instance until the controller "
    "notices (metrics stale after 2 s, then 1 s of unanswered liveness probes): those "
    "requests are refused (errors); keep-alive connections to it are reset (*broken*) and "
    "their bindings move. In Figure 2 the failed site is e2, the largest, so the rest of the "
    "run has e4 and the congested e3 only.", "",
    "## The settings under test", "",
    "The benchmark configures a CATS metric normalisation for instances with several workers "
    "(the `[controller.scoring]` table above: sessions, the queue and the instance's own delay, "
    "the worst category counting), and least-loaded gets the same compute cost. Its selection "
    "is the controller's default sharpness with spread 0.1: only instances within 10 % of the "
    "best share new flows, the others' share coming from the placements counted between two "
    "reports. The section on the controller's defaults runs dyncast and least-loaded without "
    "either table.", "",
    "## Precondition: Open vSwitch's send buffer", "",
    "The benchmark refuses to run (exit 1, before building a network) when Open vSwitch's packet "
    "socket has a send buffer under 16 MB. The userspace datapath sends on every port through "
    "that one socket, and packets waiting in a shaped link's queue are charged to its send "
    "buffer (208 KB with the kernel's default `net.core.wmem_default`): one full 100-packet "
    "queue uses it up, sends on every other port fail (`error sending Ethernet packet ... "
    "Resource temporarily unavailable` in OVS's log), and clients' SYNs, instances' SYN-ACKs "
    "and the controller's packet-outs are lost and resent after TCP's 1 s timeout, on paths "
    "that do not cross the congested link too. `scripts/setup.sh` (and the test harness) raise "
    "`net.core.wmem_default` to 16 MB before starting Open vSwitch. OVS's "
    "`datapath_drop_userspace_action_error` counter grows during a run; it is not a loss: it "
    "counts every packet a cached slow-path flow hands to the controller.", "",
    "## Caveats", "",
    "- One run per cell, on a 2-core machine that also runs OVS, the controller, every "
    "instance, D-MA and client. Repeated runs of the same cell differ by 20 % and more in p95, "
    "so a ratio within 0.1 of a target is not settled by one run: the target cells are run "
    "again with other seeds (Targets).",
    "- No propagation delay: a hop costs 1 ms in the controller and nearly nothing on the "
    "wire; the only network delay that differs between paths is queueing behind the bulk "
    "transfer.",
    "- An overloaded demo service goes on serving requests whose clients gave up; every run "
    "starts only when all instances are idle again.",
    "- Keep-alive connections stay with the instance chosen when they opened (that is the "
    "point): in the hot-site and load-step runs they go on loading it whatever the policy.",
    "",
]
