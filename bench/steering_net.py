"""The steering benchmark's networks: Figure 2 and Abilene, with edge sites, clients and a
bulk-transfer host, as networkx descriptions that Mininet and the benchmark both read.

Boundary: descriptions only (no Mininet, no processes). Every edge site is one instance of the
service `web` with its own capacity and service time; clients send to its D-SID. A site is
reached over an access link that a bulk transfer (iperf3 from the `bulk` host) can congest:
in Figure 2 the link x0-r3 in front of e3; in Abilene each site hangs off its PoP on a site
switch of its own, so its access link has no detour and congestion on it is real queueing.

    Abilene (11 PoPs) with four sites:          site host e<N> -- site switch a<N> -- PoP s<N>
      Seattle s4 ----- Denver s7 --- Kansas City s8 --- Indianapolis s11 --- Chicago s2
        |           /      |             |                   |                 |
      Sunnyvale s5 /       |           Houston s9 ------- Atlanta s10 --- Washington s3
        |                  +------------+                                      |
      Los Angeles s6 ------------------ s9                                  New York s1
    sites: Sunnyvale (a5), Kansas City (a8), Atlanta (a10), New York (a1)
    clients: Seattle, Los Angeles, Houston, Chicago, Washington; bulk host at Atlanta
"""

from __future__ import annotations

from dataclasses import dataclass, field

import networkx as nx

from topologies.figure2 import figure2_graph
from topologies.zoo import load_zoo, number_ports

SERVICE = "web"
DSID = "10.0.100.1"
PORT = 8000
PREFIX_LEN = 16
LINK_MBPS = 10.0  # every link is shaped to this (TCLink bw=)


@dataclass(frozen=True)
class Site:
    """One edge site: its host, instance address and the demo service's capacity model."""

    host: str
    dbid: str
    capacity: int
    service_ms: float
    label: str


@dataclass(frozen=True)
class Client:
    """A client host and its base request rate (requests per second)."""

    host: str
    rate: float
    label: str


@dataclass(frozen=True)
class Scenario:
    """What differs from the quiet network during one run."""

    name: str
    extra_load: dict[str, float] = field(default_factory=dict)  # site host -> extra_load
    bulk: bool = False  # the bulk transfer runs even when congestion is not standing
    step: dict[str, float] = field(default_factory=dict)  # client host -> rate factor at T/2
    fail: str | None = None  # site host whose service and D-MA are killed at T/2
    text: str = ""
    # site hosts of a reference run: every new flow goes to these (the other instances are
    # drained through the controller's API), the static choice of an operator who knows the
    # scenario; it shows what the network's capacity leaves any policy to gain
    reference: tuple[str, ...] = ()


@dataclass(frozen=True)
class BenchNet:
    """A network of the benchmark: graph, sites, clients and its scenarios."""

    name: str
    graph: nx.Graph
    sites: tuple[Site, ...]
    clients: tuple[Client, ...]
    bulk_host: str  # sends the bulk transfer ...
    congested: str  # ... to this site's host, across its access link
    congestion: str  # that, in words
    scenarios: tuple[Scenario, ...]
    deadline_ms: float
    base_delay_ms: float
    text: str

    def site(self, host: str) -> Site:
        """The site on `host`."""
        return next(s for s in self.sites if s.host == host)

    def scenario(self, name: str) -> Scenario:
        """The scenario called `name`."""
        return next(s for s in self.scenarios if s.name == name)


def _host(g: nx.Graph, name: str, switch: str, ip: str, role: str, mgmt: int | None = None,
          port: int | None = None) -> None:
    """Add a host node (and its link) in the shape topologies/ and the harness expect."""
    number = int(ip.split(".")[2]) * 256 + int(ip.split(".")[3])
    mac = f"00:00:00:00:{number >> 8:02x}:{number & 0xFF:02x}"
    dbids = {SERVICE: ip} if role == "edge" else {}
    g.add_node(name, role=role, ip=ip, ips=[ip], mac=mac, dbids=dbids, switch=switch, mgmt=mgmt)
    g.add_edge(name, switch, ports={name: 0, switch: port} if port is not None else {})


def _shape(g: nx.Graph) -> None:
    """Limit every switch-to-switch link to LINK_MBPS; host links stay unshaped, so a bulk
    sender's queue builds at the first switch link it crosses, where requests meet it."""
    for u, v, data in g.edges(data=True):
        if "dpid" in g.nodes[u] and "dpid" in g.nodes[v]:
            data["bw"] = LINK_MBPS


def figure2_bench() -> BenchNet:
    """The draft's Figure 2 with its third site: e4 beside c1's D-Router r1, e2 (the largest)
    beside c2's r2, and e3 (the smallest) behind x0-r3, the link the bulk host n0 congests."""
    g = figure2_graph(third_site=True)
    g.graph["services"] = {SERVICE: DSID}
    for edge in ("e2", "e3", "e4"):
        data = g.nodes[edge]
        data["dbids"] = {SERVICE: data["ip"]}
    _host(g, "n0", "x0", "10.0.2.1", "bulk", port=4)
    _shape(g)
    sites = (Site("e4", "10.0.0.41", 2, 100.0, "edge 4 (r1)"),
             Site("e2", "10.0.0.21", 3, 100.0, "edge 2 (r2)"),
             Site("e3", "10.0.0.31", 2, 130.0, "edge 3 (r3)"))
    # 9 requests a second each: at the load step's peak (c1 x3, 36/s) the demand is 55 % of
    # the sites' total capacity (65/s), as in Abilene (56 of 101/s). `--load 1.333` gives the
    # earlier, heavier 12/s (peak 73 %: more than the two uncongested sites can serve).
    clients = (Client("c1", 9.0, "c1 (r1)"), Client("c2", 9.0, "c2 (r2)"))
    scenarios = (
        Scenario("balanced", text="no extra load"),
        Scenario("hot-site", extra_load={"e4": 2.0}, bulk=True,
                 text="c1's nearest instance e4 runs at 3x service time",
                 reference=("e2",)),  # neither slowed nor behind the congested path
        Scenario("load-step", step={"c1": 3.0}, text="c1's request rate triples half-way"),
        Scenario("failure", fail="e2", text="e2's service and D-MA are killed half-way"),
    )
    return BenchNet("figure2", g, sites, clients, "n0", "e3",
                    "a bulk transfer from n0 saturates x0->r3, e3's only way in", scenarios,
                    deadline_ms=300.0,
                    base_delay_ms=100.0,
                    text="the draft's Figure 2: D-Routers r1, r2, r3 around x0; clients c1 "
                         "(r1) and c2 (r2); sites e4 (r1), e2 (r2) and e3 (r3)")


ABILENE_SITES = {5: (3, 100.0), 8: (4, 100.0), 10: (2, 130.0), 1: (2, 130.0)}  # PoP: cap, ms
ABILENE_CLIENTS = {4: 4.0, 6: 4.0, 9: 4.0, 2: 4.0, 3: 4.0}  # PoP: requests per second
ABILENE_BULK_POP = 10


def abilene_bench() -> BenchNet:
    """Abilene with four sites of unequal capacity, five client PoPs and a bulk host."""
    g = load_zoo("Abilene")
    g.graph.update(services={SERVICE: DSID}, prefixlen=PREFIX_LEN, service_port=PORT)
    labels = {n: d["label"] for n, d in g.nodes(data=True)}
    sites = []
    for pop, (capacity, ms) in ABILENE_SITES.items():
        switch = f"a{pop}"
        g.add_node(switch, role="switch", dpid=100 + pop, label=f"site {labels[f's{pop}']}")
        g.add_edge(switch, f"s{pop}")
        _host(g, f"e{pop}", switch, f"10.0.{pop}.1", "edge", mgmt=pop)
        sites.append(Site(f"e{pop}", f"10.0.{pop}.1", capacity, ms, labels[f"s{pop}"]))
    clients = []
    for pop, rate in ABILENE_CLIENTS.items():
        _host(g, f"c{pop}", f"s{pop}", f"10.0.{pop}.100", "client")
        clients.append(Client(f"c{pop}", rate, labels[f"s{pop}"]))
    _host(g, "b10", f"s{ABILENE_BULK_POP}", f"10.0.{ABILENE_BULK_POP}.200", "bulk")
    for _, _, data in g.edges(data=True):
        data.pop("ports", None)
    number_ports(g)
    _shape(g)
    scenarios = (
        Scenario("balanced", text="no extra load"),
        Scenario("hot-site", extra_load={"e5": 2.0}, bulk=True,
                 text="Sunnyvale's instance runs at 3x service time"),
        Scenario("load-step", step={"c2": 4.0, "c3": 4.0, "c9": 4.0},
                 text="Chicago's, Washington's and Houston's request rates quadruple half-way"),
        Scenario("failure", fail="e8", text="Kansas City's service and D-MA are killed "
                                            "half-way"),
    )
    return BenchNet("abilene", g, tuple(sites), tuple(clients), "b10", "e10",
                    "a bulk transfer from Atlanta's PoP saturates Atlanta's access link",
                    scenarios,
                    deadline_ms=300.0, base_delay_ms=100.0,
                    text="Topology Zoo's Abilene (11 PoPs); sites at Sunnyvale, Kansas City, "
                         "Atlanta and New York behind their own access links; clients at "
                         "Seattle, Los Angeles, Houston, Chicago and Washington")


NETWORKS = {"figure2": figure2_bench, "abilene": abilene_bench}


def controller_config(net: BenchNet, policy: str = "dyncast", extra: str = "") -> str:
    """The controller's TOML for `net`: shaped links, fast staleness, the one service;
    `extra` is appended to the [controller] table (e.g. a [controller.selection] table)."""
    return f"""# written by bench/steering.py for the {net.name} network
[controller]
store_url = "sqlite:///dyncast.db"
stats_interval_s = 1        # port counters every second: congestion shows within a few
link_capacity_mbps = {LINK_MBPS:g}   # every link is shaped to this
stale_after_s = 2.0         # D-MAs report at least every 0.5 s
probe_timeout_s = 1.0
{extra}

[[service]]
name = "{SERVICE}"
dsid = "{DSID}"
protocol = "tcp"
port = {PORT}
base_delay_ms = {net.base_delay_ms:g}
policy = "{policy}"
affinity = {{ key = "5-tuple", idle_timeout = 5, hard_timeout = 0 }}
"""


def service_body(net: BenchNet, policy: str, failover: bool = False) -> dict[str, object]:
    """The service as a REST body (PUT /services/web) with `policy`, and with switch-local
    failover if `failover` (dataplane reactive, the default: every policy decides per flow)."""
    body: dict[str, object] = {
        "name": SERVICE, "dsid": DSID, "protocol": "tcp", "port": PORT,
        "base_delay_ms": net.base_delay_ms, "policy": policy,
        "affinity": {"key": "5-tuple", "idle_timeout": 5, "hard_timeout": 0}}
    if failover:
        body["failover"] = True
    return body
