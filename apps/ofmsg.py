"""The one place that turns core intents into OpenFlow 1.3 messages (Ryu or os-ken parser).

Works on any object with `ofproto` and `ofproto_parser` attributes, so tests can serialise the
messages with a stand-in datapath and no switch.
"""

from __future__ import annotations

from typing import Any

from controller.intents import PORT_CONTROLLER, FlowMod, Intent, Output, PacketOut, SetField


def _actions(dp: Any, actions: tuple[Output | SetField, ...]) -> list[Any]:
    """OpenFlow actions for intent actions."""
    ofp, parser = dp.ofproto, dp.ofproto_parser
    out: list[Any] = []
    for act in actions:
        if isinstance(act, SetField):
            out.append(parser.OFPActionSetField(**{act.field: act.value}))
        elif act.port == PORT_CONTROLLER:
            out.append(parser.OFPActionOutput(ofp.OFPP_CONTROLLER, ofp.OFPCML_NO_BUFFER))
        else:
            out.append(parser.OFPActionOutput(act.port, 0))
    return out


def flow_mod(dp: Any, fm: FlowMod) -> Any:
    """An OFPFlowMod for a FlowMod intent."""
    ofp, parser = dp.ofproto, dp.ofproto_parser
    commands = {"add": ofp.OFPFC_ADD, "delete": ofp.OFPFC_DELETE,
                "delete_strict": ofp.OFPFC_DELETE_STRICT}
    inst = []
    if fm.actions:
        inst.append(parser.OFPInstructionActions(ofp.OFPIT_APPLY_ACTIONS, _actions(dp, fm.actions)))
    if fm.goto is not None:
        inst.append(parser.OFPInstructionGotoTable(fm.goto))
    return parser.OFPFlowMod(
        datapath=dp, cookie=fm.cookie, cookie_mask=fm.cookie_mask, table_id=fm.table,
        command=commands[fm.command], idle_timeout=fm.idle_timeout,
        hard_timeout=fm.hard_timeout, priority=fm.priority, buffer_id=ofp.OFP_NO_BUFFER,
        out_port=ofp.OFPP_ANY, out_group=ofp.OFPG_ANY,
        flags=ofp.OFPFF_SEND_FLOW_REM if fm.notify_removal else 0,
        match=parser.OFPMatch(**dict(fm.match)), instructions=inst)


def packet_out(dp: Any, po: PacketOut) -> Any:
    """An OFPPacketOut carrying the packet's data (never a switch buffer)."""
    ofp, parser = dp.ofproto, dp.ofproto_parser
    in_port = ofp.OFPP_CONTROLLER if po.in_port is None else po.in_port
    return parser.OFPPacketOut(datapath=dp, buffer_id=ofp.OFP_NO_BUFFER, in_port=in_port,
                               actions=_actions(dp, po.actions), data=po.data)


def to_message(dp: Any, intent: Intent) -> Any:
    """The OpenFlow message for any intent."""
    if isinstance(intent, FlowMod):
        return flow_mod(dp, intent)
    return packet_out(dp, intent)
