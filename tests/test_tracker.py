"""Reading the connection trackers of `conntrack` services (controller/dataplane/tracker.py,
controller/trackview.py): the dump parser on `ovs-appctl dpctl/dump-conntrack` text, its
settings, the `/bindings` rows and per-zone counters, and drains that end when the tracker
holds no live connection of the instance any more."""

from __future__ import annotations

from pathlib import Path

import pytest

from controller.api import Api
from controller.config import config_from_dict
from controller.dataplane.drains import READ_MARGIN_S
from controller.dataplane.tracker import TrackerConfig, TrackerReads, parse_dump, parse_line
from controller.errors import ValidationError
from controller.network.packet import TCP_SYN
from controller.views import bindings_view, stats_view
from tests.fakeconntrack import Conn
from tests.test_api import _call
from tests.test_pipelines import E21, E31, FLOWS, SERVICES, Figure2, connect, to_dsid

SVC = SERVICES["conntrack"]
# captured from Open vSwitch 3.1.0's userspace datapath (mininet_tests/test_conntrack.py)
DUMP = """\
tcp,orig=(src=10.0.0.1,dst=10.0.100.1,sport=40262,dport=8000),reply=(src=10.0.0.21,dst=10.0.0.1,sport=8000,dport=40262),zone=25601,mark=2,protoinfo=(state=ESTABLISHED)
tcp,orig=(src=10.0.0.1,dst=10.0.100.1,sport=40270,dport=8000),reply=(src=10.0.0.31,dst=10.0.0.1,sport=8000,dport=40270),zone=25601,mark=3,protoinfo=(state=TIME_WAIT)
udp,orig=(src=10.0.0.1,dst=10.0.100.1,sport=5353,dport=8000),reply=(src=10.0.0.31,dst=10.0.0.1,sport=8000,dport=5353),zone=25601,mark=3
icmp,orig=(src=10.0.0.1,dst=10.0.0.21,id=7,type=8,code=0),reply=(src=10.0.0.21,dst=10.0.0.1,id=7,type=0,code=0)
"""


def _ip(value: int) -> str:
    return ".".join(str(value >> s & 0xFF) for s in (24, 16, 8, 0))


def dump(conns: list[Conn]) -> str:
    """The fake tracker's connections as Open vSwitch prints them (as in DUMP)."""
    lines = []
    for c in conns:
        (proto, src, dst, sport, dport), (_, rsrc, rdst, rsport, rdport) = c.orig, c.reply
        name = {6: "tcp", 17: "udp"}[proto]
        lines.append(f"{name},orig=(src={_ip(src)},dst={_ip(dst)},sport={sport},dport={dport}),"
                     f"reply=(src={_ip(rsrc)},dst={_ip(rdst)},sport={rsport},dport={rdport}),"
                     f"zone={c.zone},mark={c.mark}"
                     + (",protoinfo=(state=ESTABLISHED)" if proto == 6 else ""))
    return "".join(line + "\n" for line in lines)


def test_a_dump_is_parsed_into_tuples_marks_zones_and_states() -> None:
    """Each entry gives the client's tuple, who replies, its zone and mark, its TCP state;
    zone 0 and mark 0 are the ones OVS leaves out; a closed connection is not live."""
    entries, cut = parse_dump(DUMP, 100)
    assert not cut and len(entries) == 4
    est, closed, udp, icmp = entries
    assert (est.src, est.dst, est.sport, est.dport, est.reply_src, est.zone, est.mark) == (
        "10.0.0.1", "10.0.100.1", 40262, 8000, "10.0.0.21", 25601, 2)
    assert est.live and est.state == "ESTABLISHED"
    assert not closed.live and closed.state == "TIME_WAIT"
    assert udp.proto == "udp" and udp.state is None and udp.live
    assert (icmp.zone, icmp.mark, icmp.sport) == (0, 0, None)
    split = parse_line("tcp,orig=(src=1.1.1.1,dst=2.2.2.2,sport=1,dport=2),reply=(src=2.2.2.2,"
                       "dst=1.1.1.1,sport=2,dport=1),protoinfo=(state_orig=FIN_WAIT_2,"
                       "state_reply=TIME_WAIT)")
    assert split is not None and split.state == "FIN_WAIT_2/TIME_WAIT" and not split.live
    half = parse_line("tcp,orig=(src=1.1.1.1,dst=2.2.2.2,sport=1,dport=2),reply=(src=2.2.2.2,"
                      "dst=1.1.1.1,sport=2,dport=1),protoinfo=(state_orig=ESTABLISHED,"
                      "state_reply=FIN_WAIT_2)")
    assert half is not None and half.live  # half-closed: data may still flow one way
    assert parse_line("garbage") is None and parse_line("") is None


def test_a_dump_past_its_bound_or_cut_short_is_marked_truncated() -> None:
    """At most max_entries are kept; a text the reader cut mid-line loses that line."""
    entries, cut = parse_dump(DUMP, 2)
    assert len(entries) == 2 and cut
    entries, cut = parse_dump(DUMP[:-40], 100)
    assert len(entries) == 3 and cut
    assert parse_dump("", 10) == ([], False)


@pytest.mark.parametrize(("table", "key"), [
    ({"reader": "kernel"}, "dataplane.conntrack.reader"),
    ({"target": "a b"}, "dataplane.conntrack.target"),
    ({"interval_s": 0}, "dataplane.conntrack.interval_s"),
    ({"max_entries": 0}, "dataplane.conntrack.max_entries"),
    ({"zone_limit": -1}, "dataplane.conntrack.zone_limit"),
    ({"reader": "none", "zone_limit": 10}, "dataplane.conntrack.zone_limit"),
    ({"limit": 10}, "dataplane.conntrack"),
])
def test_bad_reader_settings_are_refused_naming_the_key(table: dict[str, object],
                                                         key: str) -> None:
    """Every bad [dataplane.conntrack] value names its key."""
    with pytest.raises(ValidationError) as err:
        config_from_dict({"dataplane": {"conntrack": table}})
    assert err.value.field.startswith(key)


def test_reader_settings_default_and_parse() -> None:
    """No table: read the local switch every 5 s, no limit; a table sets each."""
    assert config_from_dict({}).conntrack == TrackerConfig()
    cfg = config_from_dict({"dataplane": {"conntrack": {
        "reader": "ovs-appctl", "target": "/var/run/openvswitch/ovs-vswitchd.1.ctl",
        "interval_s": 1, "max_entries": 50, "zone_limit": 20}}}).conntrack
    assert (cfg.target, cfg.interval_s, cfg.max_entries, cfg.zone_limit) == (
        "/var/run/openvswitch/ovs-vswitchd.1.ctl", 1.0, 50, 20)


def _read(fig: Figure2, at: float) -> None:
    """The fake tracker's zone, dumped, parsed and handed over as asked at `at`."""
    entries, cut = parse_dump(dump(fig.net.conntrack.entries(SVC.ct_zone)), 1000)
    fig.core.drains.tracker.read(SVC.ct_zone, entries, cut, at)


def test_bindings_show_the_trackers_connections_with_their_instance() -> None:
    """/bindings lists each tracked connection with the instance its mark names; /stats and
    the per-zone counter count them."""
    fig = Figure2(SVC)
    placed = connect(fig, FLOWS)
    _read(fig, fig.now)
    rows = [r for r in bindings_view(fig.core) if r["source"] == "tracker"]
    assert {(r["flow"]["sport"], r["dbid"]) for r in rows} == set(placed.items())
    assert all(r["service"] == SVC.name and r["live"] for r in rows)
    from apps.metrics import Metrics
    scraped = Metrics(fig.core).scrape().decode()
    assert (f'dyncast_conntrack_entries{{service="{SVC.name}",zone="{SVC.ct_zone}"}} '
            f"{float(len(FLOWS))}") in scraped
    stats = stats_view(fig.core)
    assert stats["conntrack_read"] == 1
    assert stats["conntrack_entries"] == stats[f"conntrack_entries_zone_{SVC.ct_zone}"]
    assert stats["conntrack_entries"] == len(FLOWS)


def test_without_a_reader_the_api_says_the_tracker_is_not_read() -> None:
    """reader = "none": one "unread" row per conntrack service saying why, a 200 not an
    error; no counters of entries."""
    fig = Figure2(SVC)
    connect(fig, FLOWS)
    _read(fig, fig.now)
    fig.core.config = config_from_dict({"dataplane": {"conntrack": {"reader": "none"}}})
    reply = _call(Api(fig.core), "GET", f"bindings/{SVC.name}")
    assert reply.status == 200
    unread = [r for r in reply.body if r["source"] == "tracker"]
    assert [r["kind"] for r in unread] == ["unread"] and "reader" in unread[0]["reason"]
    assert stats_view(fig.core)["conntrack_read"] == 0
    assert stats_view(fig.core)["conntrack_entries"] == 0
    fig.core.drains.tracker.failed("dpctl/dump-conntrack: no datapaths exist")
    fig.core.config = config_from_dict({})
    row = next(r for r in bindings_view(fig.core) if r["source"] == "tracker")
    assert row["kind"] == "unread" and "no datapaths" in row["reason"]


def test_a_drain_ends_when_the_tracker_holds_no_live_connection_of_the_instance() -> None:
    """A retiring conntrack instance is reached while a read asked after its drain shows its
    connections; once a read shows none (closed ones may linger), it is stopped, long before
    a deadline."""
    fig = Figure2(SVC)
    on_e21 = [s for s, d in connect(fig, FLOWS).items() if d == E21]
    assert on_e21
    fig.apply(fig.core.deactivate(E21, None, fig.now)[1])
    began = fig.core.catalogue.instances[E21].state_since
    _read(fig, began)  # asked too early: proves nothing
    fig.advance(fig.now + 1)
    assert fig.core.drains.reached(E21)
    _read(fig, began + READ_MARGIN_S)
    fig.advance(fig.now + 1)
    assert fig.core.drains.reached(E21)
    assert stats_view(fig.core).get("deactivations", 0) == 0
    for c in fig.net.conntrack.entries(SVC.ct_zone):  # E21's clients close
        if c.reply[1] == int.from_bytes(bytes(int(x) for x in E21.split(".")), "big"):
            del fig.net.conntrack.conns[(c.zone, c.orig)]
            del fig.net.conntrack.conns[(c.zone, c.reply)]
    _read(fig, fig.now)
    fig.apply(fig.core.tick(fig.now))
    assert not fig.core.drains.reached(E21)
    assert stats_view(fig.core)["deactivations"] == 1
    assert fig.core.drains.reached(E31)  # the other instance's connections are still held


def test_reads_are_kept_per_zone_and_a_failure_drops_them() -> None:
    """Only the zone's own entries are kept; an incomplete or early read counts nothing; a
    failed read forgets the others (they can no longer be shown as current)."""
    reads = TrackerReads()
    entries, _ = parse_dump(DUMP, 100)
    reads.read(25601, entries, False, 10.0)
    assert reads.counts() == {25601: 3}
    assert reads.held(25601, 2, 10.0) == 1 and reads.held(25601, 3, 10.0) == 1  # TIME_WAIT not
    assert reads.held(25601, 2, 10.5) is None
    reads.read(25601, entries, True, 10.0)
    assert reads.held(25601, 2, 0.0) is None
    reads.keep({7})
    assert reads.counts() == {}
    reads.read(25601, entries, False, 10.0)
    reads.failed("timeout")
    assert reads.zones == {} and reads.failure == "timeout"


FAKE_APPCTL = """#!/bin/sh
echo "$@" >> "{log}"
case "$*" in
  *dump-conntrack*zone=404*) echo "ovs-vswitchd: no datapaths exist" >&2; exit 2 ;;
  *dump-conntrack*) cat "{dump}" ;;
  *ct-get-limits*) cat "{limits}" ;;
esac
"""


def test_the_shell_sets_only_changed_limits_then_reads_each_zone_bounded(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """apps/tracker.py against a stand-in ovs-appctl: a limit the tracker lacks is set and
    one of ours no longer wanted removed, one it has is left alone (OVS logs every change);
    then the zones are dumped, a dump past max_entries cut and marked; a failing command is
    an error value naming it, not an exception."""
    from apps.tracker import Cycle, work
    log, text, limits = tmp_path / "calls", tmp_path / "dump", tmp_path / "limits"
    text.write_text(DUMP * 50)
    limits.write_text("default limit=0\nzone=7,limit=5,count=0\n")
    script = tmp_path / "ovs-appctl"
    script.write_text(FAKE_APPCTL.format(log=log, dump=text, limits=limits))
    script.chmod(0o755)
    monkeypatch.setenv("PATH", f"{tmp_path}:/usr/bin:/bin")
    cfg = TrackerConfig(target="sw.ctl", max_entries=5, zone_limit=3)
    done = work(Cycle(cfg, [25601], {25601: 3}, {7}))
    assert done.error is None
    entries, truncated, _ = done.reads[25601]
    assert len(entries) == 5 and truncated
    calls = [c.split(" ", 3)[3] for c in log.read_text().splitlines()]
    assert calls == ["dpctl/ct-get-limits", "dpctl/ct-del-limits zone=7",
                     "dpctl/ct-set-limits zone=25601,limit=3", "dpctl/dump-conntrack zone=25601"]
    assert log.read_text().startswith("--timeout=5 -t sw.ctl ")
    limits.write_text("default limit=0\nzone=25601,limit=3,count=2\n")
    log.unlink()
    work(Cycle(cfg, [25601], {25601: 3}, {25601}))
    assert [c.split(" ", 3)[3] for c in log.read_text().splitlines()] == [
        "dpctl/ct-get-limits", "dpctl/dump-conntrack zone=25601"]
    failed = work(Cycle(TrackerConfig(), [404], {}, set()))
    assert failed.error is not None and "no datapaths exist" in failed.error


def test_a_full_zone_drops_a_new_connection_at_once_and_keeps_the_others() -> None:
    """With the zone at its limit, a commit creates no connection and the packet, still to
    the D-SID, is dropped at once (not decided again until Open vSwitch's recirculation limit
    drops it); established connections go on; nothing reaches the controller."""
    fig = Figure2(SVC)
    placed = connect(fig, FLOWS[:4])
    fig.net.conntrack.limits[SVC.ct_zone] = 4
    res = fig.send("c1", to_dsid("c1", FLOWS[5], TCP_SYN))
    assert not res.outputs and not res.to_controller
    assert len(fig.net.conntrack.entries(SVC.ct_zone)) == 4
    assert all(fig.go(s) == (d, False) for s, d in placed.items())
