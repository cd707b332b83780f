"""The dataplane modes: one object per mode, and what each means for the controller."""

from __future__ import annotations

import dataclasses

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
    """Reactive installs the D-SID entry that sends first packets to the controller; the
    switch-driven modes install none at connect (the programmer installs their entries)."""
    reactive = dataclasses.replace(SVC1, dataplane="reactive")
    (punt,) = mode_of(reactive).punts(7, reactive)
    assert punt.dpid == 7 and punt.actions == (Output(PORT_CONTROLLER),)
    assert ("ipv4_dst", reactive.dsid) in punt.match
    for name in ("learn", "bucket"):
        svc = dataclasses.replace(SVC1, dataplane=name, buckets=8)
        assert mode_of(svc).punts(7, svc) == []


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
