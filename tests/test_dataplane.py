"""The learn, bucket and overlay dataplanes: rules per mode, bucket moves with pins, the
reconciler, read-back of learned entries, and that every rule serialises as OpenFlow 1.3."""

from __future__ import annotations

import dataclasses
from collections import Counter

import pytest

from apps.ofmsg import to_message
from controller.config import ControllerConfig, SelectionConfig
from controller.core import Core
from controller.dataplane.reconciler import Reconciler
from controller.dataplane.rules import (
    PRIO_BUCKET_SYN,
    PRIO_PROBE_ANSWER,
    SYN_DELAY_S,
    Program,
    Target,
    bucket_fields,
    label_routes,
    service_entries,
)
from controller.intents import (
    TABLE_AFFINITY,
    TABLE_CLASSIFY,
    TABLE_DECISION,
    TABLE_FORWARD,
    TABLE_INSTANCE,
    CookieKind,
    FlowMod,
    Learn,
    PopMpls,
    PushMpls,
    Resubmit,
    SetField,
    cookie,
    cookie_kind,
)
from controller.model import Metrics
from controller.views import bindings_view, stats_view
from tests.fakes import FakeDatapath
from tests.fakes import parse_back as _parse_back
from tests.helpers import SVC1, SVC2, figure2_core, flow_mods, report, see_links

LEARN = dataclasses.replace(SVC1, dataplane="learn", buckets=8)
BUCKET = dataclasses.replace(SVC1, dataplane="bucket", buckets=8)
OVERLAY = dataclasses.replace(SVC1, dataplane="learn", overlay=True, buckets=8)
TARGETS = (Target("10.0.0.21", 16, "00:00:00:00:00:21"),
           Target("10.0.0.31", 17, "00:00:00:00:00:31"))
MAP = (16, 17, 16, 17, 16, 17, 16, 17)


def _by_table(entries: list[FlowMod]) -> dict[int, list[FlowMod]]:
    out: dict[int, list[FlowMod]] = {}
    for fm in entries:
        out.setdefault(fm.table, []).append(fm)
    return out


def _kinds(fm: FlowMod) -> list[type]:
    return [type(a) for a in fm.actions]


def test_learn_mode_rules() -> None:
    """learn: the service entry looks up table 2 then goes to 4; each bucket learns the flow
    and loads its label; each instance rewrites, learns the reply entry, and forwards; replies
    look up their learned entries."""
    t = _by_table(service_entries(Program(LEARN, 1, TARGETS, MAP)))
    (svc,) = [f for f in t[TABLE_CLASSIFY] if ("ipv4_dst", "10.0.100.1") in f.match]
    assert svc.actions == (Resubmit(TABLE_AFFINITY),) and svc.goto == TABLE_INSTANCE
    replies = [f for f in t[TABLE_CLASSIFY] if f is not svc]
    assert {dict(f.match)["ipv4_src"] for f in replies} == {"10.0.0.21", "10.0.0.31"}
    assert all(f.actions == (Resubmit(TABLE_AFFINITY),) and f.goto == TABLE_FORWARD
               for f in replies)
    assert len(t[TABLE_DECISION]) == 8
    first = t[TABLE_DECISION][0]
    learn = first.actions[0]
    assert isinstance(learn, Learn) and learn.table == TABLE_AFFINITY
    assert learn.idle_timeout == SVC1.affinity.idle_timeout
    assert {s.dst for s in learn.specs if s.kind == "match"} == {
        "eth_type", "ip_proto", "ipv4_src", "ipv4_dst", "tcp_src", "tcp_dst"}
    assert first.actions[1] == SetField("reg0", 16)
    inst = t[TABLE_INSTANCE]
    assert [_kinds(f) for f in inst] == [[SetField, SetField, Learn, Resubmit]] * 2
    assert inst[0].actions[1] == SetField("ipv4_dst", "10.0.0.21")


def test_bucket_mode_has_no_per_flow_state_and_wildcard_replies() -> None:
    """bucket: the decision only loads labels; replies from an instance's service port are
    rewritten by one entry per instance; nothing learns."""
    entries = service_entries(Program(BUCKET, 1, TARGETS, MAP))
    assert not any(isinstance(a, Learn) for f in entries for a in f.actions)
    t = _by_table(entries)
    assert [f.actions for f in t[TABLE_DECISION]][:2] == [(SetField("reg0", 16),),
                                                          (SetField("reg0", 17),)]
    replies = [f for f in t[TABLE_CLASSIFY] if "ipv4_src" in dict(f.match)
               and f.priority != PRIO_PROBE_ANSWER]  # (liveness answers: tests/test_probe_answers)
    assert len(replies) == 2
    assert all(SetField("ipv4_src", "10.0.100.1") in f.actions for f in replies)


def test_buckets_are_masked_source_bits() -> None:
    """5-tuple: bits 1.. of the source port; source key: low bits of the client address."""
    assert bucket_fields(BUCKET, 5)["tcp_src"] == (10, 14)
    src = dataclasses.replace(BUCKET, affinity=dataclasses.replace(SVC1.affinity, key="source"))
    assert bucket_fields(src, 5)["ipv4_src"] == (5, 7)


def test_moving_bucket_pins_old_flows_and_sends_syns_to_the_new_instance() -> None:
    """While bucket 0 moves from 16 to 17: its packets learn a pin to 16, SYNs a pin to 17."""
    t = _by_table(service_entries(Program(BUCKET, 1, TARGETS, MAP, ((0, 16, 17, True),))))
    moving = [f for f in t[TABLE_DECISION] if dict(f.match)["tcp_src"] == (0, 14)]
    assert len(moving) == 2
    keep, syn = sorted(moving, key=lambda f: f.priority)
    assert isinstance(keep.actions[0], Learn) and keep.actions[1] == SetField("reg0", 16)
    assert cookie_kind(keep.actions[0].cookie) == (CookieKind.PIN, 16)
    assert dict(syn.match)["tcp_flags"] == (0x002, 0x012) and syn.actions[1] == SetField(
        "reg0", 17)


def test_moving_bucket_has_no_syn_entry_until_it_is_time() -> None:
    """Before SYN_DELAY_S, a moving bucket only pins its flows to the old instance."""
    t = _by_table(service_entries(Program(BUCKET, 1, TARGETS, MAP, ((0, 16, 17, False),))))
    (keep,) = [f for f in t[TABLE_DECISION] if dict(f.match)["tcp_src"] == (0, 14)]
    assert keep.actions[1] == SetField("reg0", 16)


def test_overlay_pushes_a_label_and_the_egress_pops_it() -> None:
    """overlay: no rewrite and no reply entries; instance k pushes MPLS label k; label routes
    carry it on and the egress pops it and delivers to the instance's MAC."""
    t = _by_table(service_entries(Program(OVERLAY, 1, TARGETS, MAP)))
    assert all("ipv4_src" not in dict(f.match) for f in t[TABLE_CLASSIFY])
    assert t[TABLE_INSTANCE][0].actions == (PushMpls(), SetField("mpls_label", 16),
                                            Resubmit(TABLE_FORWARD))
    transit, egress = label_routes(2, [(TARGETS[0], 10, False), (TARGETS[1], 1, True)])
    assert transit.table == TABLE_FORWARD and dict(transit.match)["mpls_label"] == 16
    assert egress.actions[0] == PopMpls() and egress.actions[1] == SetField(
        "eth_dst", "00:00:00:00:00:31")


def test_reconciler_sends_only_differences() -> None:
    """Same desired set: nothing; one bucket changed: one add; an entry gone: a strict delete."""
    rec = Reconciler()
    first = service_entries(Program(BUCKET, 1, TARGETS, MAP))
    assert len(rec.apply(1, "svc1", first)) == len(first)
    assert rec.apply(1, "svc1", first) == []
    changed = service_entries(Program(BUCKET, 1, TARGETS, (17, *MAP[1:])))
    (diff,) = rec.apply(1, "svc1", changed)
    assert diff.table == TABLE_DECISION and diff.actions == (SetField("reg0", 17),)
    gone = rec.apply(1, "svc1", [])
    assert len(gone) == len(changed) and all(f.command == "delete_strict" for f in gone)


def test_every_mode_serialises(dp: FakeDatapath) -> None:
    """Every entry of every mode (learn specs, masks, tcp_flags, reg0, MPLS) serialises."""
    entries = (service_entries(Program(LEARN, 1, TARGETS, MAP, ((1, 17, 16, True),)))
               + service_entries(Program(OVERLAY, 1, TARGETS, MAP))
               + label_routes(1, [(TARGETS[0], 10, False), (TARGETS[1], 1, True)]))
    for fm in entries + Reconciler().apply(1, "x", []) + [
            FlowMod(1, 3, 100, entries[-1].match, command="delete_strict")]:
        assert _parse_back(dp, to_message(dp, fm))[0] == dp.ofproto.OFPT_FLOW_MOD


CFG = ControllerConfig(services=(LEARN, SVC2), stale_after_s=3.0,
                       selection=SelectionConfig(spread=0.3, sharpness=4.0, hysteresis=0.15))


def _fresh(core, now: float, busy: set[str] | frozenset[str] = frozenset()) -> None:
    """Fresh reports of every instance: idle, or `busy` (every worker, and as many waiting)."""
    for dbid in ("10.0.0.21", "10.0.0.22", "10.0.0.31", "10.0.0.32"):
        load = 10 if dbid in busy else 0
        report(core, dbid, now, sessions=load, queue=load)
    see_links(core, now)


def test_core_programs_every_ingress_from_its_decision() -> None:
    """A learn service gets its entries at every switch, buckets in proportion to shares,
    and no packet-in entry; reactive svc2 keeps its punt."""
    core = figure2_core(CFG)
    _fresh(core, 1.0)
    intents = flow_mods(core.tick(1.0) + core.report("10.0.0.21", report_metrics(), 1.0))
    assert stats_view(core)["dataplane_entries"] > 0
    buckets = core.programmer._maps[(2, "svc1")]
    shares = core.engine.decisions[(2, "svc1")].shares
    assert Counter(buckets) == {d: round(s * 8) for d, s in shares.items() if round(s * 8)}
    assert not [f for f in intents if ("ipv4_dst", "10.0.100.1") in f.match
                and f.actions and getattr(f.actions[0], "port", None) == 0xFFFFFFFD]


def report_metrics():
    from controller.model import Metrics

    return Metrics(cpu=0.0, sessions=0, queue=0, capacity=10)


def _settled_bucket_core() -> Core:
    """Figure 2 with svc1 in bucket mode (idle_timeout 5 s), its start-up moves over at t=8."""
    svc = dataclasses.replace(BUCKET, affinity=dataclasses.replace(SVC1.affinity,
                                                                   idle_timeout=5))
    core = figure2_core(dataclasses.replace(CFG, services=(svc, SVC2)))
    _fresh(core, 1.0)
    _fresh(core, 8.0)
    core.tick(8.0)
    return core


def test_core_bucket_move_pins_then_finishes_after_the_idle_timeout() -> None:
    """A decision change in bucket mode moves the fewest buckets through a pinning phase of
    idle_timeout + 1 s, then points them at the new instance."""
    core = _settled_bucket_core()
    assert not core.programmer._moves[(1, "svc1")]
    before = list(core.programmer._maps[(1, "svc1")])
    _fresh(core, 9.0, {"10.0.0.21"})  # 21 busy: r1 moves its buckets to 31
    after = core.programmer._maps[(1, "svc1")]
    moving = dict(core.programmer._moves[(1, "svc1")])
    assert set(moving) == {b for b in range(8) if before[b] != after[b]} and moving
    assert all(m.until == 9.0 + 5 + 1.0 for m in moving.values())
    _fresh(core, 14.0, {"10.0.0.21"})
    core.tick(14.0)
    assert core.programmer._moves[(1, "svc1")]
    _fresh(core, 15.5, {"10.0.0.21"})
    intents = flow_mods(core.tick(15.5))
    assert not core.programmer._moves[(1, "svc1")]
    syn_gone = [f for f in intents if f.command == "delete_strict" and f.dpid == 1
                and f.table == TABLE_DECISION]
    assert len(syn_gone) == len(moving)


def test_core_bucket_move_sends_syns_to_the_new_instance_only_after_the_syn_delay() -> None:
    """A move starts with pins to the old instance alone; the first tick SYN_DELAY_S later adds
    one SYN entry per moving bucket (OVS has revalidated the wide datapath flows by then)."""
    core = _settled_bucket_core()
    start = []
    for dbid in ("10.0.0.21", "10.0.0.22", "10.0.0.31", "10.0.0.32"):
        start += flow_mods(core.report(dbid, Metrics(cpu=0.0, sessions=10 if dbid == "10.0.0.21"
                                                     else 0, queue=10 if dbid == "10.0.0.21"
                                                     else 0, capacity=10), 9.0))
    moving = core.programmer._moves[(1, "svc1")]
    assert moving and not any("tcp_flags" in dict(f.match) for f in start)
    assert not any("tcp_flags" in dict(f.match) for f in flow_mods(core.tick(9.0 + 0.5)))
    later = flow_mods(core.tick(9.0 + SYN_DELAY_S))
    syns = [f for f in later if f.dpid == 1 and "tcp_flags" in dict(f.match)]
    assert len(syns) == len(moving) and all(f.priority == PRIO_BUCKET_SYN for f in syns)
    assert not flow_mods(core.tick(9.0 + SYN_DELAY_S + 0.5))  # installed once


def test_dead_instance_loses_its_learned_entries_and_buckets_at_once() -> None:
    """An instance going down: its buckets move without pins, and what the switches learned
    for it is deleted (those flows are decided again)."""
    core = _settled_bucket_core()
    intents = flow_mods(core.port_changed(3, 1, up=False, now=9.0))  # e3's port
    assert "10.0.0.31" not in core.programmer._maps[(1, "svc1")]
    assert not core.programmer._moves[(1, "svc1")]
    label = core.programmer.labels["10.0.0.31"]
    deleted = {(f.dpid, cookie_kind(f.cookie)) for f in intents if f.command == "delete"}
    assert (1, (CookieKind.LEARNED_FWD, label)) in deleted
    assert (1, (CookieKind.PIN, label)) in deleted


def test_learned_entries_read_back_show_in_bindings() -> None:
    """Table-2 statistics become /bindings rows (source `switch`) with instance and flow."""
    core = figure2_core(CFG)
    _fresh(core, 1.0)
    label = core.programmer.label("10.0.0.21")
    fields = {"eth_type": 0x800, "ip_proto": 6, "ipv4_src": "10.0.0.1",
              "ipv4_dst": "10.0.100.1", "tcp_src": 40000, "tcp_dst": 8000}
    core.learned_entries(1, [(cookie(CookieKind.LEARNED_FWD, label), fields, 12, 3.0),
                             (cookie(CookieKind.LEARNED_REV, label), {}, 12, 3.0)])
    (row,) = bindings_view(core)
    assert (row["source"], row["kind"], row["dbid"], row["ingress"]) == (
        "switch", "learned", "10.0.0.21", 1)
    assert row["flow"]["sport"] == 40000 and row["service"] == "svc1"


def test_dataplane_settings_are_validated() -> None:
    """learn/bucket need tcp/udp with a port; buckets a power of two; unknown modes refused."""
    from controller.errors import ValidationError
    from controller.model import service_from_dict

    base = {"name": "s", "dsid": "10.0.100.9", "protocol": "tcp", "port": 80}
    assert service_from_dict({**base, "dataplane": "bucket", "buckets": 32}).buckets == 32
    for bad, field in (({"dataplane": "fast"}, "dataplane"), ({"buckets": 48}, "buckets"),
                       ({"overlay": "yes"}, "overlay")):
        with pytest.raises(ValidationError) as err:
            service_from_dict({**base, **bad})
        assert err.value.field == field
    with pytest.raises(ValidationError):
        service_from_dict({"name": "s", "dsid": "10.0.100.9", "dataplane": "learn"})


def test_tcp_flags_come_after_their_prerequisites(dp: FakeDatapath) -> None:
    """OVS refuses a match whose tcp_flags precedes eth_type/ip_proto (BAD_PREREQ): the
    SYN entry of a moving bucket puts it last."""
    entries = service_entries(Program(BUCKET, 1, TARGETS, MAP, ((1, 17, 16, True),)))
    (syn,) = [f for f in entries if "tcp_flags" in dict(f.match)]
    _, buf = _parse_back(dp, to_message(dp, syn))
    match = buf[48:]
    flags = match.find(bytes.fromhex("00014504"))  # NXM_NX_TCP_FLAGS, masked
    assert flags > match.find(bytes.fromhex("80000a02")) > 0  # after OXM eth_type
    assert flags > match.find(bytes.fromhex("80001401")) > 0  # and ip_proto
