"""bench/control_plane.py's figures: what a phase measured, its line in the results, and the
issue's targets met or not. Boundary: bench code, plain values; no controller, no sockets."""

from __future__ import annotations

from dataclasses import dataclass, field

TARGET_RATE, TARGET_N = 2000.0, 1000  # issue 15: >= 2,000 reports/s with 1,000 instances
TARGET_GET_P99_MS, TARGET_ECHO_MS = 50.0, 100.0


@dataclass
class Phase:
    """What one phase measured."""

    name: str
    instances: int
    seconds: float = 0.0
    target: float = 0.0  # reports/s asked for
    accepted: int = 0
    refused: int = 0
    post_s: list[float] = field(default_factory=list)
    get_svc_s: list[float] = field(default_factory=list)
    get_all_s: list[float] = field(default_factory=list)
    echo_worst_s: float = 0.0  # until the switches' thread read the reply
    echo_p99_s: float = 0.0
    wire_worst_s: float = 0.0  # until the reply reached the switch's socket (kernel time)
    wire_p99_s: float = 0.0
    bench_gap_s: float = 0.0  # the longest the switches' thread did not poll (its lateness)
    echoes: int = 0
    cpu: float = 0.0
    rss_mb: float = 0.0

    @property
    def rate(self) -> float:
        return self.accepted / self.seconds if self.seconds else 0.0


def q(values: list[float], quantile: float) -> float:
    """The quantile of `values`, in ms (nan for none)."""
    if not values:
        return float("nan")
    data = sorted(values)
    return 1000.0 * data[min(len(data) - 1, int(quantile * len(data)))]


def missing(ph: Phase) -> list[str]:
    """What a phase lacks to count: refused posts, or a figure with no sample."""
    out = [f"{ph.refused} posts refused"] if ph.refused else []
    for what, have in (("echo", ph.echoes), ("GET /decisions/{service}", len(ph.get_svc_s)),
                       ("GET /decisions", len(ph.get_all_s)),
                       ("accepted report", ph.accepted or not ph.target)):
        if not have:
            out.append(f"no {what} measured")
    return out


HEADER = (f"{'N':>5} {'phase':7} {'target/s':>8} {'accepted/s':>10} {'POST p50/p99 ms':>16} "
          f"{'GET svc p50/p99 ms':>18} {'GET all p50/p99 ms':>18} {'echo worst/p99 ms':>17} "
          f"{'at socket':>17} {'gap ms':>6} {'CPU':>5} {'RSS MB':>6}")


def row(ph: Phase) -> str:
    return (f"{ph.instances:5} {ph.name:7} {ph.target:8.0f} {ph.rate:10.0f} "
            f"{q(ph.post_s, .5):7.1f}/{q(ph.post_s, .99):<8.1f} "
            f"{q(ph.get_svc_s, .5):8.1f}/{q(ph.get_svc_s, .99):<9.1f} "
            f"{q(ph.get_all_s, .5):8.1f}/{q(ph.get_all_s, .99):<9.1f} "
            f"{ph.echo_worst_s * 1000:8.1f}/{ph.echo_p99_s * 1000:<8.1f} "
            f"{ph.wire_worst_s * 1000:8.1f}/{ph.wire_p99_s * 1000:<8.1f} "
            f"{ph.bench_gap_s * 1000:6.1f} {ph.cpu:5.2f} {ph.rss_mb:6.0f}")


def verdicts(phases: list[Phase]) -> list[str]:
    """The issue's targets, met or not, and the load-vs-idle ratios of the same run."""
    out = []
    by = {(ph.instances, ph.name): ph for ph in phases}
    batch, single = by.get((TARGET_N, "batch")), by.get((TARGET_N, "single"))
    for ph in (batch, single):
        if ph is not None:
            ok = ph.rate >= 0.95 * TARGET_RATE
            out.append(f"{TARGET_N} instances, {ph.name} reports: {ph.rate:.0f} reports/s "
                       f"(target >= {TARGET_RATE:.0f}/s sustained: {'met' if ok else 'NOT met'})")
            p99 = q(ph.get_svc_s, 0.99)
            ok = p99 <= TARGET_GET_P99_MS
            out.append(f"  GET /decisions/{{service}} p99 under it {p99:.1f} ms (target <= "
                       f"{TARGET_GET_P99_MS:.0f} ms: {'met' if ok else 'NOT met'})")
    if phases:
        worst = max(phases, key=lambda ph: ph.echo_worst_s)
        ms = worst.echo_worst_s * 1000
        out.append(f"worst echo delay, any phase: {ms:.1f} ms (N={worst.instances}, "
                   f"{worst.name}; target <= {TARGET_ECHO_MS:.0f} ms: "
                   f"{'met' if ms <= TARGET_ECHO_MS else 'NOT met'})")
        wire = max(phases, key=lambda ph: ph.wire_worst_s)
        ms = wire.wire_worst_s * 1000
        out.append(f"  until the reply reached the switch's socket: {ms:.1f} ms "
                   f"(N={wire.instances}, {wire.name}; target <= {TARGET_ECHO_MS:.0f} ms: "
                   f"{'met' if ms <= TARGET_ECHO_MS else 'NOT met'}); the switches' thread "
                   f"late by up to {max(ph.bench_gap_s for ph in phases) * 1000:.1f} ms")
    for (n, name), ph in sorted(by.items()):
        idle = by.get((n, "idle"))
        if name != "idle" and idle and idle.get_svc_s and ph.get_svc_s:
            r50 = q(ph.get_svc_s, .5) / q(idle.get_svc_s, .5)
            r99 = q(ph.get_svc_s, .99) / q(idle.get_svc_s, .99)
            out.append(f"N={n} {name}: GET /decisions/{{service}} p50 {r50:.1f}x idle, "
                       f"p99 {r99:.1f}x idle")
    return out
