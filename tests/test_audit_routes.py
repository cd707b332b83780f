"""The audit's wanted host routes are made again only when a route's port or its host's MAC
changed (controller/network/forwarding.py `installed_routes`): the audit stays exact, so a
route the switch holds wrong, or lacks, is still repaired after any change."""

from __future__ import annotations

from controller.config import ControllerConfig
from controller.core import Core
from controller.dataplane.audit import joined
from controller.intents import (
    COOKIE_APP,
    TABLE_FORWARD,
    FlowMod,
    Intent,
    Output,
    SetField,
    SwitchEntry,
    action_signature,
)
from controller.model import AffinityPolicy, Service
from controller.network.packet import ARP_REQUEST, BROADCAST, build_arp

Table = dict[tuple[int, int, tuple[object, ...]], FlowMod]


def apply(table: Table, intents: list[Intent], dpid: int = 1) -> None:
    """What switch `dpid` holds after `intents`."""
    for fm in intents:
        if isinstance(fm, FlowMod) and fm.dpid == dpid:
            key = (fm.table, fm.priority, fm.match)
            if fm.command == "add":
                table[key] = fm
            elif fm.command == "delete_strict":
                table.pop(key, None)


def entries(table: Table) -> list[SwitchEntry]:
    return [SwitchEntry(fm.cookie, fm.table, fm.priority, fm.match, action_signature(fm))
            for fm in table.values() if fm.cookie >> 56 == COOKIE_APP]


def routes_to(intents: list[Intent], ip: str) -> list[tuple[str, tuple[object, ...]]]:
    return [(fm.command, fm.actions) for fm in intents if isinstance(fm, FlowMod)
            and fm.table == TABLE_FORWARD and ("ipv4_dst", ip) in fm.match]


def arp(core: Core, ip: str, mac: str, port: int, now: float) -> list[Intent]:
    return core.packet_in(1, port, build_arp(ARP_REQUEST, mac, ip, BROADCAST, "10.9.9.9"), now)


def setup() -> tuple[Core, Table]:
    svc = Service("svc", "10.0.100.1", "tcp", 8000, AffinityPolicy("5-tuple", 30, 0))
    core = Core(ControllerConfig(services=(svc,), stale_after_s=1e9))
    table: Table = {}
    apply(table, core.switch_connected(1))
    apply(table, core.switch_ports(1, {1, 2, 3}, 0.0))
    for k in range(40):
        apply(table, arp(core, f"10.2.0.{k + 1}", f"02:02:00:00:00:{k + 1:02x}", 1 + k % 3, 0.0))
    return core, table


def audit(core: Core, table: Table, now: float) -> list[Intent]:
    out = joined(core.switch_table_steps(1, entries(table), [], now, now))
    apply(table, out)
    return out


def test_a_switch_holding_what_we_sent_needs_nothing_twice() -> None:
    core, table = setup()
    assert audit(core, table, 1.0) == [] and audit(core, table, 2.0) == []


def test_a_route_lost_or_changed_in_the_switch_is_repaired_after_an_audit() -> None:
    core, table = setup()
    audit(core, table, 1.0)  # the routes made for this audit are kept for the next
    key = next(k for k in table if ("ipv4_dst", "10.2.0.5") in k[2])
    wrong = table[key]
    table[key] = FlowMod(1, wrong.table, wrong.priority, wrong.match,
                         (SetField("eth_dst", "02:02:00:00:00:05"), Output(3)),
                         cookie=wrong.cookie)  # its port changed behind our back
    del table[next(k for k in table if ("ipv4_dst", "10.2.0.6") in k[2])]
    out = audit(core, table, 2.0)
    assert routes_to(out, "10.2.0.5") == [("add", wrong.actions)]
    assert routes_to(out, "10.2.0.6") and len(out) == 2
    assert audit(core, table, 3.0) == []


def test_a_host_that_moved_or_changed_its_mac_since_the_last_audit_is_routed_anew() -> None:
    core, table = setup()
    audit(core, table, 1.0)
    arp(core, "10.2.0.7", "02:02:00:00:00:07", 3, 2.0)  # moved from port 1: the sync's
    # flow-mod is lost on the way, so the switch still holds the port-1 route
    out = audit(core, table, 3.0)
    assert routes_to(out, "10.2.0.7") == [
        ("add", (SetField("eth_dst", "02:02:00:00:00:07"), Output(3)))]
    apply(table, arp(core, "10.2.0.8", "02:02:00:00:00:99", 2, 4.0))  # new MAC, same port
    out = audit(core, table, 5.0)
    assert routes_to(out, "10.2.0.8") == [
        ("add", (SetField("eth_dst", "02:02:00:00:00:99"), Output(2)))]
    assert audit(core, table, 6.0) == []
