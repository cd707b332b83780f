"""Two cluster members racing to create services on one D-SID (issue 21: one D-SID, one
service; docs/cluster.md, "Shared state").

No switches and no Mininet: two members (`dyncast-manager`, Figure 2's configuration, cluster
on, authentication on) on one fresh PostgreSQL schema. Each race sends, at the same moment
(two threads behind a barrier), `POST /services` of two services under different names on one
new D-SID, one to each member. Reported: races in which exactly one create was accepted, both,
or neither; every other reply (anything but 201 and 409 counts as a problem); and, once every
member applied what the other accepted, whether both hold the same services, and how many
D-SIDs the store holds two services on. `--tree PATH` runs the members from another checkout
(e.g. a commit from before the claims, for the comparison in docs/cluster.md); the checks
that would fail there are reported, not asserted, with `--tree`.
Results: bench/results/cluster_claims.{txt,json} (`--tree`: cluster_claims_tree.*).

    DYNCAST_TEST_PG_URL=... .venv/bin/python bench/cluster_claims.py [--races 200] [--tree PATH]
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from sqlalchemy import create_engine, text  # noqa: E402

from agents.credset import CredentialSet  # noqa: E402
from mininet_tests.processes import ControllerProcess, bin_path  # noqa: E402
from mininet_tests.test_cluster import member_config  # noqa: E402
from tests.pgschema import fresh_schema  # noqa: E402

RESULTS = ROOT / "bench" / "results"
MEMBERS = ("m1", "m2")


def services(proc: ControllerProcess) -> dict[str, str]:
    """A member's services: name -> D-SID."""
    status, body = proc.rest("GET", "/services")
    assert status == 200, (status, body)
    return {s["name"]: s["dsid"] for s in body}


def race(procs: list[ControllerProcess], k: int) -> list[tuple[int, Any]]:
    """One race: both members asked at once to create a service on the D-SID of race `k`."""
    dsid = f"10.0.{200 + k // 250}.{k % 250 + 1}"
    barrier = threading.Barrier(len(procs))
    replies: list[tuple[int, Any]] = [(0, None)] * len(procs)

    def create(i: int) -> None:
        barrier.wait()
        replies[i] = procs[i].rest("POST", "/services", {"name": f"r{k}-{MEMBERS[i]}",
                                                         "dsid": dsid})
    threads = [threading.Thread(target=create, args=(i,)) for i in range(len(procs))]
    for t in threads:
        t.start()
    for t in threads:
        t.join(30)
    return replies


def run(races: int, folder: Path, command: list[str] | None) -> dict[str, Any]:
    """The races on a fresh schema; the counts and the checks."""
    creds = CredentialSet(folder / "creds")
    with fresh_schema("bench") as url:
        procs = [ControllerProcess(folder / m, member_config(folder / m, url, m), creds=creds,
                                   command=command) for m in MEMBERS]
        try:
            for proc in procs:
                proc.start()
            started = time.monotonic()
            outcomes = [race(procs, k) for k in range(races)]
            took = time.monotonic() - started
            held: list[dict[str, str]] = []
            deadline = time.monotonic() + 10.0
            while time.monotonic() < deadline:  # until both applied what the other accepted
                held = [services(p) for p in procs]
                if held[0] == held[1]:
                    break
                time.sleep(0.2)
            for proc in procs:
                proc.stop()  # (SIGTERM flushes the store)
            engine = create_engine(url)
            with engine.begin() as conn:
                doubled = int(conn.execute(text(
                    "SELECT count(*) FROM (SELECT dsid FROM services GROUP BY dsid "
                    "HAVING count(*) > 1) AS d")).scalar_one())
            engine.dispose()
            errors = [e for p in procs for e in p.log_errors()]
        finally:
            for proc in procs:
                if proc.popen is not None and proc.popen.poll() is None:
                    proc.stop()
    accepted = [sum(status == 201 for status, _ in r) for r in outcomes]
    others = [r for pair in outcomes for r in pair if r[0] not in (201, 409)]
    return {"races": races, "seconds": round(took, 2),
            "one_accepted": accepted.count(1), "both_accepted": accepted.count(2),
            "none_accepted": accepted.count(0), "other_replies": others[:5],
            "other_reply_count": len(others), "members_agree": held[0] == held[1],
            "services_per_member": [len(h) for h in held], "dsids_doubled_in_store": doubled,
            "log_errors": errors[:5]}


def main() -> int:
    """Run the races; write the results; exit 1 if a check failed (without --tree)."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--races", type=int, default=200)
    parser.add_argument("--tree", type=Path, help="run the members from this checkout")
    parser.add_argument("--quick", action="store_true",
                        help="smoke run: 20 races, no results file written")
    args = parser.parse_args()
    if args.quick:
        args.races = 20
    command = None
    commit = subprocess.run(["git", "-C", str(args.tree or ROOT), "rev-parse", "--short",
                             "HEAD"], capture_output=True, text=True).stdout.strip()
    if args.tree is not None:
        tree = args.tree.resolve()
        os.environ["PYTHONPATH"] = str(tree)  # the members import that checkout's packages
        command = [bin_path("dyncast-manager"), "--framework",
                   os.environ.get("DYNCAST_FRAMEWORK", "ryu"), "--dyncast-config", "{config}",
                   "--ofp-tcp-listen-port", "{ofp_port}", "--wsapi-port", "{rest_port}",
                   str(tree / "apps" / "dyncast_app.py")]
    load_before = os.getloadavg()
    with tempfile.TemporaryDirectory(prefix="bench-cluster-claims-") as tmp:
        out = run(args.races, Path(tmp), command)
    problems = [f"{name}: {value}" for name, value in (
        ("races with both creates accepted", out["both_accepted"]),
        ("races with neither accepted", out["none_accepted"]),
        ("replies other than 201 and 409", out["other_reply_count"]),
        ("members holding different services", not out["members_agree"]),
        ("D-SIDs with two services in the store", out["dsids_doubled_in_store"]),
        ("controller log errors", out["log_errors"])) if value]
    out.update({"commit": commit, "tree": str(args.tree) if args.tree else None,
                "framework": os.environ.get("DYNCAST_FRAMEWORK", "ryu"), "problems": problems,
                "load_before": [round(x, 2) for x in load_before],
                "load_after": [round(x, 2) for x in os.getloadavg()],
                "date": time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime())})
    text_out = (f"{out['races']} races of two creates on one D-SID at two members "
                f"({out['commit']}{', from ' + str(args.tree) if args.tree else ''}): exactly "
                f"one accepted {out['one_accepted']}, both {out['both_accepted']}, neither "
                f"{out['none_accepted']}; other replies {out['other_reply_count']}; members "
                f"holding the same services after: {out['members_agree']} "
                f"({out['services_per_member']}); D-SIDs with two services in the store: "
                f"{out['dsids_doubled_in_store']}\n"
                f"{out['seconds']} s, {out['framework']}, {out['date']}; load average "
                f"{out['load_before']} before, {out['load_after']} after; problems: "
                f"{problems or 'none'}\n")
    print(text_out, end="")
    if args.quick:
        return 1 if problems else 0
    name = "cluster_claims_tree" if args.tree else "cluster_claims"
    RESULTS.mkdir(exist_ok=True)
    (RESULTS / f"{name}.json").write_text(json.dumps(out, indent=1) + "\n")
    (RESULTS / f"{name}.txt").write_text(text_out)
    return 1 if problems and args.tree is None else 0


if __name__ == "__main__":
    sys.exit(main())
