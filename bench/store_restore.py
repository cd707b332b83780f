"""A controller restart at size: the start-up time and that every stored record comes back.

The store is filled as a running controller would have left it: 10 services created through
the API (half `learn`, so their instances carry labels), `--instances` instances with metrics,
half of them with D-BIDs whose low 16 bits clash with another's (so their labels are not the
preferred ones, and only the stored label gives the switches' learned entries the same
number), `--bindings` bindings spread over the instances and 4 ingress switches, and one
request sequence per instance's agent. Then, per backend (SQLite file; PostgreSQL when
`--pg-url` is given, in a schema of its own), timed, a fresh process's start as the framework
makes it (`DyncastApp(...)`: open the store, upgrade check, load, restore into the core,
install the security gate), `--rounds` times, wall clock; and `Store.load()` alone. It
asserts that every binding (identifier, flow, instance, ingress, time), every label, every
service and every agent's sequence is back, and that a new binding is numbered above every
stored one.

    .venv/bin/python bench/store_restore.py [--pg-url URL]   # bench/results/store_restore.txt
"""

from __future__ import annotations

import argparse
import importlib
import os
import statistics
import sys
import tempfile
import time
import uuid
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from apps.store import Store  # noqa: E402
from bench.cbench import loadavg, machine  # noqa: E402
from controller.dataplane.affinity import Binding, FlowKey  # noqa: E402
from controller.dataplane.labels import Labels  # noqa: E402
from controller.intents import StoreWrite  # noqa: E402
from controller.model import AffinityPolicy, Instance, Metrics, Service  # noqa: E402

SERVICES = 10
INGRESSES = (1, 2, 3, 4)


def records(n_instances: int, n_bindings: int) -> tuple[list[StoreWrite], dict[str, Any]]:
    """The store writes of a running controller, and what a restart must give back."""
    svcs = [Service(f"svc{k}", f"10.0.100.{k + 1}", "tcp", 8000,
                    affinity=AffinityPolicy("5-tuple", 30, 0),
                    dataplane="learn" if k % 2 else "reactive") for k in range(SERVICES)]
    labels = Labels()
    insts = []
    for i in range(n_instances):
        # the second half clashes: 10.2.x.y has the low 16 bits of 10.1.x.y
        dbid = f"10.{1 + (2 * i >= n_instances)}.{(i % (n_instances // 2)) // 250}." \
               f"{(i % (n_instances // 2)) % 250 + 1}"
        svc = svcs[i % SERVICES]
        insts.append(Instance(service=svc.name, dbid=dbid, dma=f"dma-{i}",
                              metrics=Metrics(cpu=0.3, sessions=i % 7, capacity=10),
                              metrics_at=1000.0 + i, registered_at=900.0, state="active",
                              state_since=950.0, label=labels.of(dbid)))
    base = 1_700_000_000 * 100_000  # an earlier process's numbers (10 µs steps)
    binds = []
    for b in range(n_bindings):
        inst = insts[b % n_instances]
        key = FlowKey(inst.service, f"10.9.{b // 250 % 250}.{b % 250 + 1}",
                      svcs[int(inst.service[3:])].dsid, 6, 20000 + b % 40000, 8000)
        binds.append(Binding(base + b, key, inst.dbid, INGRESSES[b % len(INGRESSES)],
                             1_700_000_000.0 + b / 1000))
    writes = [StoreWrite("service", s.name, s.to_dict()) for s in svcs]
    writes += [StoreWrite("instance", i.dbid, i.to_dict()) for i in insts]
    writes += [StoreWrite("binding", str(b.ident), b.to_dict()) for b in binds]
    seqs = {i.dma: 10_000 + k for k, i in enumerate(insts)}
    writes += [StoreWrite("agent_seq", a, {"agent": a, "seq": s, "key": f"k-{a}"})
               for a, s in seqs.items()]
    clashed = sum(1 for i in insts if i.label != labels_preferred(i.dbid))
    return writes, {"services": svcs, "instances": insts, "bindings": binds, "seqs": seqs,
                    "clashed": clashed}


def labels_preferred(dbid: str) -> int:
    """The label a D-BID gets when nothing clashes."""
    return Labels().of(dbid)


def start_app(url: str, workdir: Path) -> Any:
    """A controller's start, as the framework makes the app (Ryu or os-ken, as installed)."""
    (workdir / "dyncast.toml").write_text(f'[controller]\nstore_url = "{url}"\n'
                                          '[security]\nauth = false\n')
    os.environ["DYNCAST_CONFIG"] = str(workdir / "dyncast.toml")
    module = importlib.import_module("apps.dyncast_app")

    class Wsgi:
        def register(self, controller: type, data: dict[str, Any]) -> None:
            pass

    return module.DyncastApp(wsgi=Wsgi())


def check(core: Any, agent_seqs: dict[str, int], want: dict[str, Any]) -> None:
    """Every record is back in `core` (a restarted controller's) and in `agent_seqs` (what
    the security gate was given): bindings whole, labels, services, agents' sequences."""
    assert sorted(core.catalogue.services) == sorted(s.name for s in want["services"])
    assert len(core.catalogue.instances) == len(want["instances"])
    labels = core.programmer.labels
    for inst in want["instances"]:  # (looked up, not assigned: `find` would assign anew)
        assert inst.dbid in labels and labels[inst.dbid] == inst.label, inst.dbid
    assert len(core.bindings) == len(want["bindings"])
    for b in want["bindings"]:
        got = core.flows.bindings.by_ident(b.ident)
        assert got is not None and (got.key, got.dbid, got.ingress, got.created_at) == (
            b.key, b.dbid, b.ingress, b.created_at), b.ident
    assert core.flows.bindings.next_ident > max(b.ident for b in want["bindings"])
    assert agent_seqs == want["seqs"]


def run(url: str, label: str, rounds: int, want: dict[str, Any], writes: list[StoreWrite],
        out: list[str]) -> None:
    """Fill the store at `url`, then time `rounds` starts and loads."""
    store = Store(url)
    t0 = time.perf_counter()
    store.apply(writes)
    fill = time.perf_counter() - t0
    store.close()
    starts, loads = [], []
    with tempfile.TemporaryDirectory() as tmp:
        for _ in range(rounds):
            t0 = time.perf_counter()
            app = start_app(url, Path(tmp))
            starts.append(time.perf_counter() - t0)
            t0 = time.perf_counter()
            snap = app.store.load()
            loads.append(time.perf_counter() - t0)
            check(app.core, snap.agent_seqs, want)
            app.store.close()
    out.append(f"{label}: filled in one batch {fill:.2f} s; start (DyncastApp()) median "
               f"{statistics.median(starts):.2f} s (range {min(starts):.2f}-{max(starts):.2f}); "
               f"Store.load() median {statistics.median(loads):.2f} s; all records back")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--instances", type=int, default=1000)
    parser.add_argument("--bindings", type=int, default=10_000)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--pg-url", default=None)
    parser.add_argument("--out", default=str(ROOT / "bench/results/store_restore.txt"))
    args = parser.parse_args()
    writes, want = records(args.instances, args.bindings)
    out = [f"# bench/store_restore.py --instances {args.instances} --bindings {args.bindings} "
           f"--rounds {args.rounds}{' --pg-url URL' if args.pg_url else ''}",
           f"# {machine()}; load {loadavg()}",
           f"# {len(writes)} records; {want['clashed']} instances hold a label other than "
           "their preferred one (a clash)"]
    with tempfile.TemporaryDirectory() as tmp:
        run(f"sqlite:///{tmp}/store.db", "sqlite", args.rounds, want, writes, out)
    if args.pg_url:
        from sqlalchemy import create_engine, text
        from sqlalchemy.engine import make_url
        schema = f"restore_{uuid.uuid4().hex[:12]}"
        admin = create_engine(args.pg_url)
        with admin.begin() as conn:
            conn.execute(text(f"CREATE SCHEMA {schema}"))
        try:
            url = make_url(args.pg_url).update_query_dict(
                {"options": f"-csearch_path={schema}"}).render_as_string(hide_password=False)
            run(url, "postgresql", args.rounds, want, writes, out)
        finally:
            with admin.begin() as conn:
                conn.execute(text(f"DROP SCHEMA {schema} CASCADE"))
            admin.dispose()
    text_out = "\n".join(out) + "\n"
    print(text_out, end="")
    Path(args.out).write_text(text_out)


if __name__ == "__main__":
    main()
