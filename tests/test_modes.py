"""The dataplane modes: one object per mode, and what each means for the controller."""

from __future__ import annotations

import dataclasses

import pytest

from controller.dataplane.modes import MODES, dsid_arp, mode_of
from controller.intents import PORT_CONTROLLER, VIRTUAL_MAC, Output
from controller.model import DATAPLANES
from controller.network.forwarding import base_flows
from tests.fakeoftable import FakeOFTable
from tests.helpers import SVC1


def test_every_dataplane_has_its_mode() -> None:
    """A service may name exactly the dataplanes that have a mode object."""
    assert set(MODES) == set(DATAPLANES)
    for name in DATAPLANES:
        assert mode_of(dataclasses.replace(SVC1, dataplane=name)).name == name


def test_only_reactive_punts_new_flows_to_the_controller() -> None:
    """Reactive installs the D-SID entry that sends first packets to the controller (and, for
    TCP, one above it for SYNs alone); the switch-driven modes install none at connect (the
    programmer installs their entries) and delete that SYN entry, which would shadow theirs."""
    reactive = dataclasses.replace(SVC1, dataplane="reactive")
    arp, punt, syn = mode_of(reactive).punts(7, reactive)
    assert arp == dsid_arp(7, reactive)
    for fm in (punt, syn):
        assert fm.dpid == 7 and fm.actions == (Output(PORT_CONTROLLER),) and fm.command == "add"
        assert ("ipv4_dst", reactive.dsid) in fm.match and fm.cookie == punt.cookie
    assert dict(syn.match) == {**dict(punt.match), "tcp_flags": (0x002, 0x012)}
    assert syn.priority == punt.priority + 1
    for name in ("learn", "bucket"):
        svc = dataclasses.replace(SVC1, dataplane=name, buckets=8)
        arp, gone = mode_of(svc).punts(7, svc)
        assert arp == dsid_arp(7, svc) and arp.command == "add"
        assert gone.command == "delete_strict"
        assert (gone.match, gone.priority, gone.cookie) == (syn.match, syn.priority, syn.cookie)


@pytest.mark.parametrize("protocol, port", [("udp", 5000), (None, None)])
def test_only_tcp_services_get_a_syn_punt(protocol: str | None, port: int | None) -> None:
    """A service that is not TCP has no SYNs: one punt entry, and nothing to delete."""
    svc = dataclasses.replace(SVC1, protocol=protocol, port=port)
    _, punt = mode_of(svc).punts(7, svc)
    assert "tcp_flags" not in dict(punt.match)
    assert mode_of(dataclasses.replace(svc, dataplane="learn")).punts(7, svc) == [
        dsid_arp(7, svc)]


def test_what_each_mode_means() -> None:
    """Only reactive places every flow itself; only learn learns; only bucket pins moves;
    reactive services are programmed only for an overlay."""
    reactive, learn, bucket = MODES["reactive"], MODES["learn"], MODES["bucket"]
    assert (reactive.places_flows, learn.places_flows, bucket.places_flows) == (True, False, False)
    assert (reactive.learns, learn.learns, bucket.learns) == (False, True, False)
    assert (reactive.pins_moves, learn.pins_moves, bucket.pins_moves) == (False, False, True)
    assert not reactive.programmed(SVC1)
    assert reactive.programmed(dataclasses.replace(SVC1, overlay=True))
    assert learn.programmed(SVC1) and bucket.programmed(SVC1)


def test_the_switch_answers_arp_for_the_dsid_itself() -> None:
    """An ARP request for the D-SID comes back from the switch, out of the port it came in by,
    as a reply from the virtual MAC to the asker; other ARP still reaches the controller."""
    table = FakeOFTable(7)
    for fm in [*base_flows(7), *mode_of(SVC1).punts(7, SVC1)]:
        table.apply(fm)
    asker = {"eth_src": "00:00:00:00:00:01", "eth_dst": "ff:ff:ff:ff:ff:ff", "eth_type": 0x0806,
             "arp_op": 1, "arp_sha": "00:00:00:00:00:01", "arp_spa": "10.0.0.1",
             "arp_tha": "00:00:00:00:00:00", "arp_tpa": SVC1.dsid}
    res = table.lookup(asker, in_port=3)
    assert not res.to_controller
    assert res.only().port == 3 and res.only().has(
        eth_src=VIRTUAL_MAC, eth_dst="00:00:00:00:00:01", arp_op=2, arp_sha=VIRTUAL_MAC,
        arp_spa=SVC1.dsid, arp_tha="00:00:00:00:00:01", arp_tpa="10.0.0.1")
    assert table.lookup({**asker, "arp_tpa": "10.0.0.9"}, in_port=3).to_controller
