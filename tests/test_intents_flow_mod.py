"""`flow_mod` (a FlowMod made past the frozen dataclass's __init__) equals the plain one."""

from __future__ import annotations

import dataclasses

from controller.intents import (
    FlowMod,
    Output,
    PacketOut,
    SetField,
    flow_mod,
    flow_mod_of,
    match,
    packet_out,
)


def test_flow_mod_equals_the_dataclass_made_one_field_for_field() -> None:
    """An add and a strict delete, every field compared (a field FlowMod gains and `flow_mod`
    does not set fails here: it is unset)."""
    m, acts = match(eth_type=0x0800, ipv4_dst="10.0.0.1"), (SetField("eth_dst", "aa"), Output(3))
    pairs = [(flow_mod(7, 1, 100, m, acts, 42), FlowMod(7, 1, 100, m, acts, cookie=42)),
             (flow_mod(7, 1, 100, m, (), 42, "delete_strict"),
              FlowMod(7, 1, 100, m, cookie=42, command="delete_strict"))]
    for quick, plain in pairs:
        for field in dataclasses.fields(FlowMod):
            assert getattr(quick, field.name) == getattr(plain, field.name), field.name
        assert quick == plain and hash(quick) == hash(plain)


def test_flow_mod_of_and_packet_out_equal_the_dataclass_made_ones() -> None:
    """Every field given (`flow_mod_of`, in FlowMod's order) and `packet_out`: equal to the
    dataclass's own, field for field, with the same hash (a field either gains and does not
    set fails here: it is unset)."""
    m, acts = match(eth_type=0x0800, ipv4_dst="10.0.0.1"), (SetField("eth_dst", "aa"), Output(3))
    values = (7, 1, 100, m, acts, 2, 30, 60, 42, "add", True, 0xFF, 5)
    pairs: list[tuple[object, object]] = [(flow_mod_of(*values), FlowMod(*values)),  # type: ignore[arg-type]
                                          (packet_out(3, b"frame", acts, None),
                                           PacketOut(3, b"frame", acts)),
                                          (packet_out(3, b"frame", acts, 4),
                                           PacketOut(3, b"frame", acts, 4))]
    assert [f.name for f in dataclasses.fields(FlowMod)][-1] == "meter"  # all 13 given
    for quick, plain in pairs:
        assert dataclasses.is_dataclass(plain)
        for field in dataclasses.fields(plain):  # type: ignore[arg-type]
            assert getattr(quick, field.name) == getattr(plain, field.name), field.name
        assert quick == plain and hash(quick) == hash(plain) and type(quick) is type(plain)
