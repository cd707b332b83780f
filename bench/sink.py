"""The echo-responder sink: a trivial fake controller, to show the load generator's ceiling.

It does the controller side of the handshake (HELLO, FEATURES_REQUEST, a PORT_DESC request)
and answers every PACKET_IN with precomputed responses into which only the flow's client
address and port (and a binding id) are patched, so the generator verifies them exactly as it
verifies a real controller's:

- `--mode minimal`: one FLOW_MOD matching the packet's in_port and 5-tuple (what
  bench/minimal_app.py sends);
- `--mode dyncast`: forward and reverse affinity FLOW_MODs and a PACKET_OUT of the frame
  with the rewrite (what the Dyncast app sends), alternating between the switch's instances.

    .venv/bin/python bench/sink.py --port 6699 --mode dyncast --switches 16
"""

from __future__ import annotations

import argparse
import contextlib
import select
import socket
import struct
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from bench import ofgen
from bench.emuswitch import (
    InstanceTemplates,
    Scenario,
    Template,
    dyncast_templates,
    minimal_template,
)


class Conn:
    """One switch connection."""

    def __init__(self, sock: socket.socket) -> None:
        self.sock = sock
        self.rbuf = bytearray()
        self.wbuf = bytearray()
        self.index = -1
        self.minimal: Template | None = None
        self.dyncast: list[InstanceTemplates] = []
        self.ident = 0


def respond(conn: Conn, msg: bytes, mode: str) -> bytes:
    """The responses to one PACKET_IN."""
    (mlen,) = struct.unpack_from("!H", msg, 26)
    data = msg[24 + mlen + (-mlen % 8) + 2:]
    if data[12:14] != b"\x08\x00":  # the generator's ARP announcements need no answer
        return b""
    l4 = 14 + (data[14] & 0x0F) * 4
    client, sport = data[26:30], data[l4:l4 + 2]
    if mode == "minimal":
        assert conn.minimal is not None
        return conn.minimal.fill(client, sport)
    conn.ident += 1
    t = conn.dyncast[conn.ident % len(conn.dyncast)]
    ident = conn.ident.to_bytes(6, "big")
    f = t.fwd.fill(client, sport)
    r = t.rev.fill(client, sport)
    po = t.packet_out
    return (f[:10] + ident + f[16:] + r[:10] + ident + r[16:]
            + ofgen.header(ofgen.OFPT_PACKET_OUT, len(po) + len(data), 0) + po[8:] + data)


def serve(port: int, mode: str, sc: Scenario) -> None:
    listener = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    listener.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    listener.bind(("127.0.0.1", port))
    listener.listen(128)
    listener.setblocking(False)
    ep = select.epoll()
    ep.register(listener.fileno(), select.EPOLLIN)
    conns: dict[int, Conn] = {}
    print(f"sink: listening on {port}, mode {mode}", flush=True)

    def send(conn: Conn, data: bytes) -> None:
        if not conn.wbuf:
            try:
                n = conn.sock.send(data)
            except BlockingIOError:
                n = 0
            data = data[n:]
            if not data:
                return
            ep.modify(conn.sock.fileno(), select.EPOLLIN | select.EPOLLOUT)
        conn.wbuf += data

    while True:
        for fd, events in ep.poll():
            if fd == listener.fileno():
                sock, _ = listener.accept()
                sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
                sock.setblocking(False)
                conn = conns[sock.fileno()] = Conn(sock)
                ep.register(sock.fileno(), select.EPOLLIN)
                send(conn, ofgen.hello() + ofgen.features_request(1))
                continue
            conn = conns[fd]
            if events & select.EPOLLOUT:
                n = conn.sock.send(conn.wbuf)
                del conn.wbuf[:n]
                if not conn.wbuf:
                    ep.modify(fd, select.EPOLLIN)
            if not events & (select.EPOLLIN | select.EPOLLHUP | select.EPOLLERR):
                continue
            try:
                chunk = conn.sock.recv(1 << 18)
            except BlockingIOError:
                continue
            except ConnectionResetError:
                chunk = b""
            if not chunk:
                ep.unregister(fd)
                conn.sock.close()
                del conns[fd]
                continue
            conn.rbuf += chunk
            msgs, used = ofgen.split(conn.rbuf)
            del conn.rbuf[:used]
            out = []
            for msg_type, _xid, msg in msgs:
                if msg_type == ofgen.OFPT_PACKET_IN:
                    if conn.index >= 0:
                        out.append(respond(conn, msg, mode))
                elif msg_type == ofgen.OFPT_ECHO_REQUEST:
                    out.append(ofgen.echo_reply(msg))
                elif msg_type == ofgen.OFPT_FEATURES_REPLY:
                    (dpid,) = struct.unpack_from("!Q", msg, 8)
                    conn.index = (dpid - 1) % max(1, sc.switches)
                    conn.minimal = minimal_template(sc)
                    conn.dyncast = dyncast_templates(sc, conn.index)
                    out.append(ofgen.port_desc_request(2))
            if out:
                send(conn, b"".join(out))


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--port", type=int, required=True)
    ap.add_argument("--mode", choices=("minimal", "dyncast"), required=True)
    ap.add_argument("--switches", type=int, default=16)
    args = ap.parse_args()
    with contextlib.suppress(KeyboardInterrupt):
        serve(args.port, args.mode, Scenario(args.switches))


if __name__ == "__main__":
    main()
