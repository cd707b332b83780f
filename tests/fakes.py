"""Stand-ins the unit tests share: a datapath without a switch, the framework's parser of what
it was sent, and the type of the demo services the `start` fixture (conftest.py) runs.

Boundary: imports the frameworks' protocol modules (`ryu.ofproto.*`, `os_ken.ofproto.*`) by
name and nothing else of theirs, so it works whichever framework `apps.framework` picked.
"""

from __future__ import annotations

import importlib
import importlib.util
import struct
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from apps.ofmsg import to_message
from controller.intents import Intent

FRAMEWORKS = [name for name in ("ryu", "os_ken") if importlib.util.find_spec(name)]
Start = Callable[..., int]  # the `start` fixture: start a demo service, return its port


class FakeDatapath:
    """Enough of a datapath for the app and the serialisers: the framework's protocol modules,
    an id, a transaction id counter, and every byte string sent, in order (`sent`)."""

    def __init__(self, framework: str, dpid: int = 1) -> None:
        self.framework = framework.replace("-", "_")  # a module name: ryu or os_ken
        self.ofproto = importlib.import_module(f"{self.framework}.ofproto.ofproto_v1_3")
        self.ofproto_parser = importlib.import_module(
            f"{self.framework}.ofproto.ofproto_v1_3_parser")
        self.id = dpid
        self.xid = 0
        self.sent: list[bytes] = []
        self.closed = False

    def close(self) -> None:
        """Record that the app hung up on the switch."""
        self.closed = True

    def send(self, buf: bytes) -> bool:
        """Record what would go to the switch."""
        self.sent.append(bytes(buf))
        return True

    def set_xid(self, msg: Any) -> int:
        """Give `msg` the next transaction id, as the framework's datapath does."""
        self.xid = (self.xid + 1) & self.ofproto.MAX_XID
        msg.set_xid(self.xid)
        return self.xid

    def send_msg(self, msg: Any) -> bool:
        """Serialise a framework message and send it, as the framework's datapath does."""
        if msg.xid is None:
            self.set_xid(msg)
        msg.serialize()
        return self.send(msg.buf)

    def messages(self) -> list[Sent]:
        """Everything sent so far, one message at a time, parsed back by the framework where
        it can parse that type."""
        parsers = importlib.import_module(
            f"{self.framework}.ofproto.ofproto_v1_3_parser")._MSG_PARSERS  # type -> parser
        out = []
        for buf in self.sent:
            off = 0
            while off < len(buf):
                _, msg_type, length, _ = struct.unpack_from("!BBHI", buf, off)
                raw = buf[off:off + length]
                parsed = framework_parse(self, raw) if msg_type in parsers else None
                out.append(Sent(msg_type, raw, parsed))
                off += length
        return out


@dataclass(frozen=True)
class Sent:
    """One message sent to a fake datapath: its type, its bytes, and the framework's parse of
    it (None for the types the framework only builds, never parses: PACKET_OUT, SET_CONFIG,
    MULTIPART_REQUEST, ...)."""

    msg_type: int
    raw: bytes
    msg: Any


def framework_parse(dp: FakeDatapath, raw: bytes, dropped_ok: bool = False) -> Any:
    """The framework's own parse of one message (ours, or one a switch would send); None
    only if `dropped_ok` (a PACKET_IN apps/packet_in.py's parser dropped: no event made)."""
    parser = importlib.import_module(f"{dp.framework}.ofproto.ofproto_parser")
    version, msg_type, length, xid = parser.header(raw)
    assert length == len(raw)
    msg = parser.msg(dp, version, msg_type, length, xid, bytearray(raw))
    assert msg is not None or (dropped_ok and msg_type == 10), (
        f"the framework could not parse message type {msg_type}")
    return msg


def framework_bytes(dp: FakeDatapath, intent: Intent, xid: int = 9) -> bytes:
    """What the framework's own message classes serialise `intent` to."""
    msg = to_message(dp, intent)
    msg.set_xid(xid)
    msg.serialize()
    return bytes(msg.buf)


def parse_back(dp: FakeDatapath, msg: Any) -> tuple[int, bytes]:
    """Serialise a framework message; check its header; return (type, bytes)."""
    msg.xid = 1
    msg.serialize()
    buf = bytes(msg.buf)
    version, msg_type, length, _xid = struct.unpack_from("!BBHI", buf, 0)
    assert version == 4 and length == len(buf)
    return msg_type, buf
