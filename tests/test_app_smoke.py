"""The shell itself (apps/dyncast_app.py), driven the way the framework drives it.

Modelled on FAUCET's test_valveapp_smoke.py, and taken further: the app is instantiated on
each installed framework with a fake WSGI context and an SQLite store in tmp_path; events are
built from the bytes a switch sends, parsed by the framework and handed to the handler the app
registered for them in the dispatcher state the framework would be in; what the app sends to
the fake datapath is parsed back. Handlers never raise (`guarded` counts and logs instead), so
every test also asserts the app's error counter.
"""

from __future__ import annotations

import importlib
import json
import logging
import struct
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from types import ModuleType
from typing import Any

import pytest

import apps
from apps.store import Store
from bench import ofgen
from controller.network.packet import ARP_REQUEST, BROADCAST, build_arp
from tests.fakes import FRAMEWORKS, FakeDatapath, Sent, framework_parse
from tests.helpers import tcp_frame

SHELL = ("apps.framework", "apps.osken_wsgi", "apps.rest", "apps.restside", "apps.apploops",
         "apps.groupsync", "apps.dyncast_app")
APP_MANAGERS = {"ryu": "ryu.base.app_manager", "os_ken": "os_ken.base.app_manager"}
CONFIG = """
[controller]
store_url = "{url}"

[[service]]
name = "svc1"
dsid = "10.0.100.1"
protocol = "tcp"
port = 8000
affinity = {{ key = "5-tuple", idle_timeout = 30, hard_timeout = 0 }}

[[service]]
name = "svc2"
dsid = "10.0.100.2"
protocol = "tcp"
port = 8000
affinity = {{ key = "3-tuple", idle_timeout = 30, hard_timeout = 0 }}
"""
DSID = "10.0.100.1"
VIRTUAL_MAC = "02:dc:00:00:00:01"
CLIENT = ("10.0.0.1", "00:00:00:00:00:01", 1)  # ip, mac, port at switch 1
INSTANCE = ("10.0.0.21", "00:00:00:00:00:21", 2)
PORTS = [1, 2, 3]


class FakeWSGI:
    """The `wsgi` context: records the REST controllers registered with it."""

    def __init__(self) -> None:
        self.registered: list[tuple[type, dict[str, Any]]] = []

    def register(self, controller: type, data: dict[str, Any]) -> None:
        self.registered.append((controller, data))


@dataclass
class Shell:
    """The app under test, the modules it was imported with, its switches and its store."""

    app: Any
    fw: ModuleType  # apps.framework as imported for this framework
    module: ModuleType  # apps.dyncast_app, likewise
    wsgi: FakeWSGI
    dp: FakeDatapath
    store_url: str

    def dispatch(self, ev: Any, state: str | None) -> None:
        """Hand `ev` to the one handler the app registered for it in `state`."""
        handlers = list(self.app.get_handlers(ev, state))
        assert len(handlers) == 1, (type(ev).__name__, state, handlers)
        handlers[0](ev)

    def switch_says(self, raw: bytes, state: str = "main", dp: FakeDatapath | None = None) -> None:
        """A message from a switch (`dp`, else the first one), as the framework delivers it."""
        msg = framework_parse(dp or self.dp, raw, dropped_ok=True)
        if msg is None:
            return  # a packet-in dropped by the parser: the framework makes no event of it
        dispatcher = {"config": self.fw.CONFIG_DISPATCHER, "main": self.fw.MAIN_DISPATCHER}
        self.dispatch(self.fw.ofp_event.ofp_msg_to_ev(msg), dispatcher[state])

    def rest(self, method: str, path: str, body: object = None) -> Any:
        """A REST call as the WSGI controller makes it; the reply."""
        data = b"" if body is None else json.dumps(body).encode()
        path, _, query = path.partition("?")
        return self.app.api_call(method, f"/dyncast/v1/{path}", data, query)

    def sent(self, dp: FakeDatapath | None = None) -> list[Sent]:
        """What the app sent a switch since the last call."""
        dp = dp or self.dp
        out = dp.messages()
        dp.sent.clear()
        return out

    def connect(self, dp: FakeDatapath | None = None) -> None:
        """A switch connects: features, then its ports, then its (empty) table."""
        dp = dp or self.dp
        self.switch_says(ofgen.features_reply(1, dp.id), "config", dp)
        xid = self.table_read_xid(dp)
        self.switch_says(ofgen.port_desc_reply(2, dp.id, PORTS), dp=dp)
        self.switch_says(ofgen.multipart_reply(xid, dp.ofproto.OFPMP_FLOW), dp=dp)

    def table_read_xid(self, dp: FakeDatapath) -> int:
        """The transaction id of the app's latest request for the switch's table."""
        reads = [s for s in dp.messages() if s.msg_type == dp.ofproto.OFPT_MULTIPART_REQUEST
                 and ofgen.multipart_type(s.raw) == dp.ofproto.OFPMP_FLOW]
        assert reads, "the app did not ask for the switch's table"
        return int(struct.unpack_from("!I", reads[-1].raw, 4)[0])

    def arp_from(self, host: tuple[str, str, int]) -> None:
        """A host at switch 1 sends an ARP request (so the controller learns where it is)."""
        ip, mac, port = host
        arp = build_arp(ARP_REQUEST, mac, ip, BROADCAST, "10.0.0.254")
        self.switch_says(ofgen.packet_in(3, port, arp))

    def register(self) -> None:
        """The instance registers for svc1 and reports its load."""
        assert self.rest("POST", "instances", {"dsid": DSID, "dbid": INSTANCE[0],
                                               "dma": "smoke"}).status == 201
        report = {"dbid": INSTANCE[0], "cpu": 0.1, "sessions": 0, "queue": 0, "capacity": 10}
        assert self.rest("POST", "metrics", report).status == 200

    def syn(self, sport: int) -> bytes:
        """The client's SYN to svc1's D-SID arrives at switch 1; returns the frame."""
        ip, mac, port = CLIENT
        frame = tcp_frame(mac, VIRTUAL_MAC, ip, DSID, sport, 8000)
        self.switch_says(ofgen.packet_in(4, port, frame))
        return frame


@pytest.fixture(params=FRAMEWORKS or [pytest.param("none", marks=pytest.mark.skip(
    reason="neither ryu nor os_ken is installed"))])
def shell(request: pytest.FixtureRequest, tmp_path: Path,
          monkeypatch: pytest.MonkeyPatch) -> Iterator[Shell]:
    """DyncastApp on one framework, as its manager would create it, with switch 1 not yet
    connected. The shell's modules are imported afresh (and the other framework's app manager
    hidden meanwhile) so the app subclasses this framework's app class whichever came first."""
    framework = request.param
    wanted = framework.replace("_", "-")  # DYNCAST_FRAMEWORK's spelling
    url = f"sqlite:///{tmp_path / 'store.db'}"
    (tmp_path / "dyncast.toml").write_text(CONFIG.format(url=url))
    monkeypatch.setenv("DYNCAST_CONFIG", str(tmp_path / "dyncast.toml"))
    monkeypatch.setenv("DYNCAST_FRAMEWORK", wanted)
    monkeypatch.chdir(tmp_path)  # (what a stop cannot store is kept there: unstored_path)
    hidden = [name for fw, name in APP_MANAGERS.items() if fw != framework]
    saved = {name: sys.modules.pop(name) for name in (*SHELL, *hidden) if name in sys.modules}
    try:
        module = importlib.import_module("apps.dyncast_app")
        fw = sys.modules["apps.framework"]
        assert wanted == fw.FRAMEWORK
        wsgi = FakeWSGI()
        app = module.DyncastApp(wsgi=wsgi)
        fw.app_manager.register_instance(app)  # what the manager does: handlers by event
        yield Shell(app, fw, module, wsgi, FakeDatapath(framework), url)
    finally:
        for name in SHELL:
            sys.modules.pop(name, None)
            attr = name.rpartition(".")[2]
            if name in saved:
                setattr(apps, attr, saved[name])
            elif hasattr(apps, attr):
                delattr(apps, attr)
        sys.modules.update(saved)


def flow_mods(sent: list[Sent]) -> list[Any]:
    """The FlowMods among sent messages, as the framework parsed them."""
    return [s.msg for s in sent if type(s.msg).__name__ == "OFPFlowMod"]


def packet_outs(sent: list[Sent], ofp: ModuleType) -> list[Any]:
    """The PacketOuts among sent messages, decoded."""
    return [ofgen.decode_packet_out(s.raw) for s in sent if s.msg_type == ofp.OFPT_PACKET_OUT]


def test_a_connecting_switch_is_configured_and_gets_the_pipeline(shell: Shell) -> None:
    """Features: SET_CONFIG, a port-desc request, a request for every entry with our cookie;
    the ports: LLDP out of each; the (empty) table: the pipeline with both services' punts;
    and the REST controller was registered with the app, the web view's files beside it."""
    ofp = shell.dp.ofproto
    ((controller, data), (web, _)) = shell.wsgi.registered
    assert controller.__module__ == "apps.rest" and data == {"dyncast_app": shell.app}
    assert web.__module__ == "apps.web"
    shell.switch_says(ofgen.features_reply(1, 1), "config")
    assert shell.app.datapaths == {1: shell.dp}
    xid = shell.table_read_xid(shell.dp)
    sent = shell.sent()
    assert sent[0].msg_type == ofp.OFPT_SET_CONFIG
    # the punt meter ([channel].punt_pps, default 1000), then passive health's (on by
    # default; [controller.health].punt_pps, 100): each added (or, if there, modified) first
    assert [s.msg_type for s in sent[1:5]] == [ofp.OFPT_METER_MOD] * 4
    meters = [struct.unpack_from("!HHI4xI", s.raw, 8) for s in sent[1:5]]  # command .. rate
    assert [(m[0], m[2], m[3]) for m in meters] == [(ofp.OFPMC_ADD, 1, 1000),
                                                     (ofp.OFPMC_MODIFY, 1, 1000),
                                                     (ofp.OFPMC_ADD, 2, 100),
                                                     (ofp.OFPMC_MODIFY, 2, 100)]
    assert [ofgen.multipart_type(s.raw) for s in sent[5:]] == [ofp.OFPMP_PORT_DESC,
                                                                ofp.OFPMP_FLOW]
    assert flow_mods(sent) == []  # nothing before we know what the switch holds
    shell.switch_says(ofgen.port_desc_reply(2, 1, PORTS))
    lldp = packet_outs(shell.sent(), ofp)
    assert sorted(po.actions[-1] for po in lldp) == [("output", p) for p in PORTS]
    shell.switch_says(ofgen.multipart_reply(xid, ofp.OFPMP_FLOW))
    mods = flow_mods(shell.sent())
    punted = {fm.match.get("ipv4_dst") for fm in mods if fm.match.get("tcp_dst") == 8000}
    assert punted == {"10.0.100.1", "10.0.100.2"}
    assert mods[-1].table_id == 4 and mods[-1].priority == 0  # the pipeline's misses last
    assert shell.app.core.counters["reconcile_added"] == len(mods)
    assert shell.app.core.counters["errors"] == 0


def test_a_syn_to_a_service_is_bound_at_the_switch_and_forwarded(shell: Shell) -> None:
    """After the instance registers and is located, the client's SYN to the D-SID gives the
    forward entry rewriting to the instance, the reverse entry, and the packet out of its
    port; the decisions the REST API shows name that instance."""
    ofp = shell.dp.ofproto
    shell.connect()
    shell.arp_from(CLIENT)
    shell.arp_from(INSTANCE)
    shell.register()
    reply = shell.rest("GET", "decisions")
    assert reply.status == 200
    assert {r["service"]: r["primary"] for r in reply.body} == {"svc1": INSTANCE[0],
                                                                "svc2": None}
    shell.sent()
    frame = shell.syn(40000)
    sent = shell.sent()
    fwd, rev = flow_mods(sent)
    assert fwd.match["ipv4_src"] == CLIENT[0] and fwd.match["tcp_src"] == 40000
    assert fwd.match["ipv4_dst"] == DSID and fwd.flags & ofp.OFPFF_SEND_FLOW_REM
    rewrite = {a.key: a.value for a in fwd.instructions[0].actions}
    assert rewrite == {"eth_dst": INSTANCE[1], "ipv4_dst": INSTANCE[0]}
    assert rev.match["ipv4_src"] == INSTANCE[0] and rev.match["tcp_dst"] == 40000
    (po,) = packet_outs(sent, ofp)
    assert po.in_port == CLIENT[2] and po.data == frame
    assert po.actions[-1] == ("output", INSTANCE[2])
    assert [s.msg_type for s in sent] == [ofp.OFPT_FLOW_MOD, ofp.OFPT_FLOW_MOD,
                                          ofp.OFPT_PACKET_OUT]
    assert shell.app.core.counters["errors"] == 0


def test_every_other_handler_runs_without_an_error(shell: Shell) -> None:
    """Flow removed, port status, port and flow statistics, echo reply, the tick and a switch
    leaving all reach the core and none raises."""
    ofp = shell.dp.ofproto
    shell.connect()
    shell.arp_from(CLIENT)
    shell.arp_from(INSTANCE)
    shell.register()
    shell.sent()
    shell.syn(40000)
    (fwd, _) = flow_mods(shell.sent())
    assert len(shell.rest("GET", "bindings").body) == 1
    match = bytearray()
    fwd.match.serialize(match, 0)  # the switch reports the entry's match as it was installed
    removed = struct.pack("!QHBBIIHHQQ", fwd.cookie, fwd.priority, ofp.OFPRR_IDLE_TIMEOUT, 0,
                          31, 0, 30, 0, 5, 300) + bytes(match)
    shell.switch_says(ofgen.message(ofp.OFPT_FLOW_REMOVED, 5, removed))
    assert shell.rest("GET", "bindings").body == []
    port3 = ofgen.port_desc_reply(0, 1, [3])[16:]  # the ofp_port of port 3
    port3 = port3[:36] + struct.pack("!I", ofp.OFPPS_LINK_DOWN) + port3[40:]
    status = struct.pack("!B7x", ofp.OFPPR_MODIFY) + port3
    shell.switch_says(ofgen.message(ofp.OFPT_PORT_STATUS, 6, status))
    shell.switch_says(ofgen.port_stats_reply(7, PORTS))
    shell.switch_says(ofgen.multipart_reply(8, ofp.OFPMP_FLOW))
    echo = ofgen.message(ofp.OFPT_ECHO_REQUEST, 9, struct.pack("!d", time.time() - 0.002))
    shell.switch_says(ofgen.echo_reply(echo))
    shell.dispatch(shell.module.EventTick(), None)
    shell.dispatch(shell.fw.ofp_event.EventOFPStateChange(shell.dp), shell.fw.DEAD_DISPATCHER)
    assert shell.app.datapaths == {}
    assert shell.app.core.counters["errors"] == 0


def test_a_large_metrics_batch_lets_the_event_loop_run_between_slices(
        shell: Shell, monkeypatch: pytest.MonkeyPatch) -> None:
    """A 1,000-report batch is checked, then recorded, a slice at a time, the shell yielding
    to the event loop between two slices; every report counts (the last one wins), and the
    service is left for the recomputer, which the reply wakes."""
    shell.connect()
    shell.arp_from(INSTANCE)
    shell.register()
    yields: list[float] = []
    monkeypatch.setattr(shell.module.hub, "sleep", yields.append)
    shell.app._reported.clear()
    reports = [{"dbid": INSTANCE[0], "cpu": 0.1, "sessions": k % 10, "queue": 0,
                "capacity": 10} for k in range(999)] + [{"dbid": INSTANCE[0], "cpu": 0.5,
                                                         "sessions": 7, "queue": 0,
                                                         "capacity": 10}]
    reply = shell.rest("POST", "metrics", {"reports": reports})
    assert reply.status == 200 and reply.body["accepted"] == 1000
    assert yields == [0] * (2 * 5 - 2)  # 5 slices checked, 5 recorded, one step shared
    inst = shell.app.core.catalogue.instances[INSTANCE[0]]
    assert (inst.metrics.cpu, inst.metrics.sessions) == (0.5, 7)
    assert shell.app.core.intake.dirty == {"svc1"} and shell.app._reported.is_set()
    assert shell.rest("GET", "decisions/svc1").status == 200
    assert not shell.app.core.intake.dirty
    assert shell.app.core.counters["errors"] == 0


def test_a_link_cost_change_is_applied_in_steps_off_the_handler(
        shell: Shell, monkeypatch: pytest.MonkeyPatch) -> None:
    """Port counters that move a link's cost: the handler only queues them; the coster
    repairs the trees a slice at a time and syncs the routes, yielding between two steps, and
    recomputes no service (a large network's every tree and service at once held the event
    loop for hundreds of ms); it wakes the recomputer, which recomputes them one at a time."""
    shell.connect()
    shell.arp_from(INSTANCE)
    shell.register()
    core = shell.app.core
    core.flush(time.time())
    monkeypatch.setattr(core.network, "port_stats", lambda *a, defer: True)  # a cost moved
    pending = iter([True, True, False])  # three slices of repairs, the last ends them
    monkeypatch.setattr(core.topology, "repair_some", lambda size: next(pending))
    recomputed: list[str] = []
    real = core._recompute
    monkeypatch.setattr(core, "_recompute", lambda name, now: recomputed.append(name) or real(
        name, now))
    shell.app._reported.clear()
    shell.switch_says(ofgen.port_stats_reply(7, PORTS))
    assert len(shell.app._costs) == 1 and shell.app._costs_ready.is_set()
    assert not core.intake.dirty and next(pending)  # nothing done in the handler
    pending = iter([True, True, False])
    yields: list[float] = []
    monkeypatch.setattr(shell.module.hub, "sleep", yields.append)
    shell.app._apply_costs()
    assert yields == [0, 0, 0] and not shell.app._costs  # 2 steps, then the routes; 1 after
    assert recomputed == [] and core.intake.dirty == {"svc1", "svc2"}
    assert shell.app._reported.is_set()
    yields.clear()
    shell.app._recompute_dirty()
    assert recomputed == ["svc1", "svc2"] and yields == [0, 0] and not core.intake.dirty
    assert core.counters["errors"] == 0


def test_a_long_reply_is_encoded_a_slice_at_a_time(shell: Shell,
                                                   monkeypatch: pytest.MonkeyPatch) -> None:
    """A list of two slices and a bit is encoded in three slices with a yield between two;
    the JSON is the list's, whole and in order; a short one is encoded at once."""
    yields: list[float] = []
    monkeypatch.setattr(shell.module.hub, "sleep", yields.append)
    size = sys.modules["apps.restside"].ENCODE_SLICE
    rows = [{"n": k, "ok": [k, None]} for k in range(2 * size + 3)]
    assert json.loads(shell.app.encode(rows)) == rows and yields == [0, 0]
    assert json.loads(shell.app.encode({"a": rows[:3]})) == {"a": rows[:3]} and len(yields) == 2


def test_an_openflow_error_is_counted_and_logged(shell: Shell,
                                                 caplog: pytest.LogCaptureFixture) -> None:
    """An OFPT_ERROR from a switch counts as an error and is logged with its type and code."""
    ofp = shell.dp.ofproto
    shell.connect()
    assert shell.app.core.counters["errors"] == 0
    body = struct.pack("!HH", ofp.OFPET_BAD_MATCH, ofp.OFPBMC_BAD_PREREQ) + bytes(64)
    shell.switch_says(ofgen.message(ofp.OFPT_ERROR, 9, body))
    assert shell.app.core.counters["errors"] == 1
    assert f"type={ofp.OFPET_BAD_MATCH} code={ofp.OFPBMC_BAD_PREREQ}" in caplog.text


def test_store_writes_reach_the_store_when_the_app_stops(shell: Shell) -> None:
    """The registered instance, its metrics and the flow's binding are in the SQLite file
    after `stop` (which flushes what the store thread has not yet written)."""
    shell.connect()
    shell.arp_from(CLIENT)
    shell.arp_from(INSTANCE)
    shell.register()
    shell.syn(40000)
    assert Store(shell.store_url).load().instances == []
    shell.app.stop()
    snap = Store(shell.store_url).load()
    (inst,) = snap.instances
    assert (inst.dbid, inst.service, inst.metrics.capacity) == (INSTANCE[0], "svc1", 10)
    (binding,) = snap.bindings
    assert binding.dbid == INSTANCE[0] and binding.key.sport == 40000
    assert shell.app.core.counters["errors"] == 0


@pytest.mark.parametrize("switches", [0, 1, 2])
def test_instance_transitions_are_logged_whatever_the_intents(
        shell: Shell, switches: int) -> None:
    """Every state transition the core records is logged once, after the call that made it,
    and none stays queued: whether the call sent nothing (no switch), sent to one switch
    (the probe for an instance not yet located) or to several. Each is one structured
    record (apps/logs.py) with its reason."""
    records: list[logging.LogRecord] = []
    capture = logging.Handler()
    capture.emit = records.append  # type: ignore[method-assign]
    logging.getLogger("dyncast.instances").addHandler(capture)
    dps = [shell.dp, FakeDatapath(shell.dp.framework, 2)][:switches]
    for dp in dps:
        shell.connect(dp)
    for dp in dps:
        shell.sent(dp)
    assert shell.rest("POST", "instances", {"dsid": DSID, "dbid": INSTANCE[0]}).status == 201
    assert [bool(shell.sent(dp)) for dp in dps] == [True] * switches  # the ARP probes
    report = {"dbid": INSTANCE[0], "cpu": 0.1, "sessions": 0, "queue": 0, "capacity": 10}
    assert shell.rest("POST", "metrics", report).status == 200
    assert shell.rest("POST", f"instances/{INSTANCE[0]}/drain").status == 200
    assert shell.app.core.states.transitions == []
    logging.getLogger("dyncast.instances").removeHandler(capture)
    logged = [r.fields for r in records]  # type: ignore[attr-defined]
    assert [(f["event"], f["instance"], f["src"], f["dst"], f["trigger"]) for f in logged] == [
        ("instance_state", INSTANCE[0], "unknown", "unknown", "register"),
        ("instance_state", INSTANCE[0], "unknown", "active", "report_active"),
        ("instance_state", INSTANCE[0], "active", "draining", "drain")], logged
    assert all(f["reason"] for f in logged)
    assert shell.app.core.counters["errors"] == 0


def test_a_switch_not_on_the_allowlist_gets_nothing_and_is_disconnected(shell: Shell) -> None:
    """[channel].switches without its datapath id: no flows, no packet-outs, hung up, counted;
    its packet-ins teach the controller nothing."""
    from dataclasses import replace

    from controller.channel import ChannelConfig

    shell.app.config = replace(shell.app.config, channel=ChannelConfig(switches=(2,)))
    shell.switch_says(ofgen.features_reply(1, 1), "config")
    assert shell.dp.closed and shell.app.datapaths == {}
    shell.arp_from(CLIENT)
    assert shell.sent() == []
    assert shell.app.core.network.view()["hosts"] == []
    stats = shell.rest("GET", "stats").body
    assert stats["switches_refused"] == 1 and stats["errors"] == 0


def test_the_punt_meter_drops_are_read_into_stats(shell: Shell) -> None:
    """A meter statistics reply's band drops show as punt_meter_drops in GET /stats; the
    METER_EXISTS answer to the add at a reconnecting switch is not an error."""
    shell.connect()
    body = struct.pack("!IH6xIQQII", 1, 56, 3, 900, 90000, 5, 0) + struct.pack("!QQ", 777, 7770)
    raw = struct.pack("!BBHIHH4x", 4, 19, 16 + len(body), 50, 9, 0) + body  # OFPMP_METER
    shell.switch_says(raw)
    error = struct.pack("!BBHIHH", 4, 1, 12 + 8, 51, 12, 1) + bytes(8)  # METER_EXISTS
    shell.switch_says(error)
    stats = shell.rest("GET", "stats").body
    assert stats["punt_meter_drops"] == 777 and stats["errors"] == 0
