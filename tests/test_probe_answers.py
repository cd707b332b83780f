"""An instance whose D-MA died, serving on: the controller's liveness probes reach it and its
answers reach the controller as its own, in every dataplane, so it is `unknown` (no new flows)
and keeps its flows, as docs/decisions.md says. Found in Mininet (a D-MA killed beside live
`bucket` and `conntrack` instances): `bucket`'s reply entry gave the answer the D-SID as its
source, so the controller could not tell whose it was, and `conntrack`'s tracker dropped it as
invalid (it never saw the probe's SYN); the instances went `down`, their held connections were
reset (`bucket`) or stalled for good (`conntrack`). Overlay is left out: there the instance
holds the D-SID itself, and answers a probe from it to itself."""

from __future__ import annotations

import dataclasses

import pytest

from controller.instances.liveness import LIVENESS_PORT
from controller.intents import VIRTUAL_MAC
from controller.network.packet import TCP_ACK, TCP_SYN
from tests.helpers import HOSTS
from tests.test_pipelines import ALL, DSID, E21, SERVICES, Figure2, connect

MODES = [m for m in ALL if not m.endswith("-overlay")]
# with switch-local failover each instance is the other's backup, whose replies every switch
# rewrites to the D-SID (dataplane/failover.py); an instance whose metrics are stale is no
# backup, so its probes' answers must find no such rewrite left (`bucket`'s own: as above)
FAILOVER = {f"{m}-failover": dataclasses.replace(SERVICES[m], failover=True)
            for m in ("reactive", "learn", "bucket")}


@pytest.mark.parametrize("mode", MODES + sorted(FAILOVER))
def test_a_live_instance_whose_dma_died_answers_its_probes_and_keeps_its_flows(
        mode: str) -> None:
    fig = Figure2(FAILOVER.get(mode) or SERVICES[mode])
    placed = connect(fig, range(40000, 40032, 2))
    on_e21 = [s for s, d in placed.items() if d == E21]
    assert on_e21, placed
    del fig.load[E21]  # its D-MA is gone: no report from now on
    core = fig.core
    ip, mac, dpid, port = HOSTS["e21"]
    answered = 0
    end = fig.now + core.config.stale_after_s + 4 * core.config.probe_timeout_s
    while fig.now < end:
        fig.now += 1.0
        fig.report()
        out = fig.apply(core.tick(fig.now))
        for hop in out.outputs:
            if not (hop.dpid == dpid and hop.port == port
                    and hop.has(ipv4_dst=ip, tcp_src=LIVENESS_PORT)):
                continue
            assert hop.has(ipv4_src=DSID, tcp_flags=TCP_SYN)
            answer = {"eth_src": mac, "eth_dst": VIRTUAL_MAC, "eth_type": 0x0800,
                      "ipv4_src": ip, "ipv4_dst": DSID, "ip_proto": 6,
                      "tcp_src": int(hop["tcp_dst"]), "tcp_dst": LIVENESS_PORT,
                      "tcp_flags": TCP_SYN | TCP_ACK}
            seen = fig.send("e21", answer)
            assert not seen.outputs, seen.outputs  # the controller's, no one else's
            assert [h.has(ipv4_src=ip) for h in seen.packet_ins] == [True], seen.packet_ins
            answered += 1
        for k, sw in sorted(fig.net.switches.items()):  # (the shell's table-2 poll)
            core.learned_entries(k, sw.flow_stats(2, fig.now), fig.now)
        for s in on_e21:  # the held flows go on, and stay where they were
            assert fig.go(s)[0] == E21
    assert answered >= 3
    inst = core.catalogue.instances[E21]
    assert inst.state == "unknown", (inst.state, core.counters)
    assert core.counters["liveness_answers"] >= answered
