"""The dataplane modes: one object per mode, and what each means for the controller."""

from __future__ import annotations

import dataclasses

import pytest

from controller.dataplane.modes import MODES, mode_of
from controller.intents import PORT_CONTROLLER, Output
from controller.model import DATAPLANES
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
    punt, syn = mode_of(reactive).punts(7, reactive)
    for fm in (punt, syn):
        assert fm.dpid == 7 and fm.actions == (Output(PORT_CONTROLLER),) and fm.command == "add"
        assert ("ipv4_dst", reactive.dsid) in fm.match and fm.cookie == punt.cookie
    assert dict(syn.match) == {**dict(punt.match), "tcp_flags": (0x002, 0x012)}
    assert syn.priority == punt.priority + 1
    for name in ("learn", "bucket"):
        svc = dataclasses.replace(SVC1, dataplane=name, buckets=8)
        (gone,) = mode_of(svc).punts(7, svc)
        assert gone.command == "delete_strict"
        assert (gone.match, gone.priority, gone.cookie) == (syn.match, syn.priority, syn.cookie)


@pytest.mark.parametrize("protocol, port", [("udp", 5000), (None, None)])
def test_only_tcp_services_get_a_syn_punt(protocol: str | None, port: int | None) -> None:
    """A service that is not TCP has no SYNs: one punt entry, and nothing to delete."""
    svc = dataclasses.replace(SVC1, protocol=protocol, port=port)
    (punt,) = mode_of(svc).punts(7, svc)
    assert "tcp_flags" not in dict(punt.match)
    assert mode_of(dataclasses.replace(svc, dataplane="learn")).punts(7, svc) == []


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
