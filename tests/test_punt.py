"""The packet-in limit: every entry that sends to the controller passes the punt meter."""

from __future__ import annotations

from apps.ofmsg import encode
from controller.dataplane.healthpunt import HEALTH_METER, TABLE_HEALTH
from controller.dataplane.punt import PUNT_METER, meter_punts, sends_to_controller
from controller.intents import FlowMod, Output, match
from tests.fakeoftable import FakeNetwork
from tests.fakes import FakeDatapath, framework_bytes
from tests.helpers import HOSTS, LINKS, SVC1
from tests.test_ofmsg_encode import core_intents


def test_every_controller_bound_entry_carries_the_meter_and_no_other() -> None:
    """Across every kind of intent the core makes, the meter goes exactly on punts: the
    punt meter, or on passive health's reset copies (on by default) the health meter."""
    metered = meter_punts(core_intents())
    mods = [i for i in metered if isinstance(i, FlowMod) and i.command == "add"]
    punts = [m for m in mods if sends_to_controller(m)]
    assert len(punts) >= 8  # LLDP, ARP, forward miss at four switches; service punts
    assert any(m.table == TABLE_HEALTH for m in punts)
    assert all(m.meter == (HEALTH_METER if m.table == TABLE_HEALTH else PUNT_METER)
               for m in punts)
    assert all(m.meter is None for m in mods if not sends_to_controller(m))


def test_packets_reaching_the_controller_passed_the_meter_forwarded_ones_did_not() -> None:
    """In a fake flow table: a new flow to a D-SID, ARP, LLDP and an unknown destination each
    reach the controller through the meter, once."""
    net = FakeNetwork(LINKS)
    net.apply([i for i in meter_punts(core_intents()) if isinstance(i, FlowMod)])
    ip, mac, dpid, port = HOSTS["c1"]
    tcp = {"eth_type": 0x800, "ip_proto": 6, "eth_src": mac, "eth_dst": "02:dc:00:00:00:01",
           "ipv4_src": ip, "ipv4_dst": SVC1.dsid, "tcp_src": 50000, "tcp_dst": 8000}
    for fields in (tcp, {"eth_type": 0x806, "eth_src": mac},
                   {"eth_type": 0x88CC, "eth_src": mac},
                   {**tcp, "ipv4_dst": "10.0.77.7"}):
        res = net.send(dpid, port, fields)
        assert res.to_controller and res.meters == [PUNT_METER], fields


def test_zero_rate_means_no_meter_when_the_shell_skips_meter_punts() -> None:
    """meter_punts leaves deletions and entries that already name a meter as they are."""
    fm = FlowMod(1, 0, 5, match(eth_type=0x806), (Output(0xFFFFFFFD),), meter=7)
    delete = FlowMod(1, 0, 5, (), (Output(0xFFFFFFFD),), command="delete")
    assert meter_punts([fm, delete]) == [fm, delete]


def test_a_metered_entry_encodes_to_the_framework_bytes(dp: FakeDatapath) -> None:
    """The fast encoder packs the meter instruction as the framework does (first)."""
    fm = FlowMod(1, 0, 1000, match(eth_type=0x800, ipv4_dst="10.0.100.1"),
                 (Output(0xFFFFFFFD),), meter=PUNT_METER)
    assert encode(fm, 9) == framework_bytes(dp, fm, 9)
