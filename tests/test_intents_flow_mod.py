"""`flow_mod` (a FlowMod made past the frozen dataclass's __init__) equals the plain one."""

from __future__ import annotations

import dataclasses

from controller.intents import FlowMod, Output, SetField, flow_mod, match


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
