"""The data-plane bench's held-connection step, `conntrack` after another mode's 10,000
(issue 20: why it opened 68 of 100): what the instances hold after their servers' restart
and before the step, c1's connections left in SYN-SENT and what the instances and the tracker
hold for their ports, and the `+inv` drop counters at r2 and r3. A diagnostic: it prints and
writes no results.

    sudo .venv/bin/python bench/dataplane_held.py [bucket|static|learn|reactive]
"""

from __future__ import annotations

import subprocess
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from bench import dataplane as B
from bench.dataplane_hosts import DSID
from mininet_tests.processes import wait_until
from topologies.figure2 import Figure2Topo, configure, figure2_graph


def sh(*argv: str) -> str:
    """A command's output."""
    return subprocess.run(argv, capture_output=True, text=True, timeout=30).stdout


def states(lab: B.Lab, host: str) -> str:
    """The host's sockets on the service port, counted by state."""
    return lab.host_cmd(host, "ss -Htan '( sport = :8000 )' | awk '{print $1}' | sort | uniq -c"
                        ).strip().replace("\n", ";")


def dropped(bridge: str) -> list[str]:
    """Table 2's drop entries (invalid, refused) with their packet counts."""
    out = sh("ovs-ofctl", "-O", "OpenFlow13", "dump-flows", bridge, "table=2")
    return [line.split("priority=")[1].split(" actions")[0] + " n_packets="
            + line.split("n_packets=")[1].split(",")[0]
            for line in out.splitlines() if "priority=104" in line or "priority=105" in line]


def main() -> None:
    """Run the previous mode's 10,000, then conntrack's 100, and print what is in the way."""
    prior = sys.argv[1] if len(sys.argv) > 1 else "bucket"
    B.require_root_and_ovs()
    lab = B.Lab("bench-dataplane-held")
    try:
        config = lab.artifacts / "dataplane.toml"
        config.write_text(B.CONFIG.replace("IDLE", "12"))
        lab.graph = figure2_graph()
        ctl = lab.start_controller(config)
        lab.build_net(Figure2Topo(), ctl.ofp_port, configure=configure)
        lab.wait_topology()
        B.start_servers(lab)
        for dbid, _ in B.INSTANCES.values():
            lab.rest("POST", "/instances", {"dsid": DSID, "dbid": dbid, "dma": "bench"})
            lab.rest("POST", "/metrics", {"dbid": dbid, "cpu": 0.0, "sessions": 0, "queue": 0,
                                          "capacity": 100})
        wait_until(lambda: all(i["location"] and i["state"] == "active"
                               for i in lab.rest("GET", "/instances")[1]), 20, "active")
        B.client(lab, "latency", "--n", "30", "--gap", "0.005")
        B.set_mode(lab, prior, 20)
        print(prior, B.table_size(lab, prior, 10000, 20), flush=True)
        for h in B.INSTANCES:
            print("after the restart", h, states(lab, h), flush=True)
        B.set_mode(lab, "conntrack", 20)
        B.wait_no_per_flow(20)
        for h in B.INSTANCES:
            print("before the step", h, states(lab, h), flush=True)
        print("drops before", dropped("r2"), dropped("r3"), flush=True)
        proc = lab.popen("c1", [sys.executable, "-c", B.HOLD, "100"], "hold")
        time.sleep(6)
        syn = lab.host_cmd("c1", f"ss -Htn state syn-sent dst {DSID}")
        ports = [line.split()[2].rsplit(":", 1)[1] for line in syn.splitlines() if line.strip()]
        print("c1 in SYN-SENT", len(ports), ports[:10], flush=True)
        dump = sh("ovs-appctl", "dpctl/dump-conntrack", f"zone={B.ZONE}").splitlines()
        for p in ports[:5]:
            for h in B.INSTANCES:
                held = lab.host_cmd(h, f"ss -Htanoi '( dport = :{p} )'").strip()
                print(" ", h, p, held[:300], flush=True)
            print("  tracker", [x for x in dump if f"sport={p}," in x][:2], flush=True)
        print("drops after", dropped("r2"), dropped("r3"), flush=True)
        wait_until(lambda: "open " in proc.log(), 70, "the step done")
        print(proc.log(), flush=True)
        lab.stop_process(proc)
    finally:
        print(lab.close())


if __name__ == "__main__":
    main()
