"""Reading a switch's connection in large chunks: the framework's receive loop, fewer reads.

Boundary: shell, the framework's `Datapath` only (Ryu or os-ken). The framework's receive loop
reads each OpenFlow message with two socket reads, its 8-byte header and then the rest: under
a packet-in load that is two trips through eventlet's green socket (and usually two system
calls) per message. `install()` makes each datapath's receive loop read through `Buffered`,
which fetches whatever the kernel has (up to `CHUNK` bytes) in one read and hands the loop the
same bytes, in the same order and sizes it asked for, from memory. Everything else about the
socket (sending, timeouts, errors, end of stream, closing) is the socket's own: `Buffered`
passes every other attribute through, and an error or the end of stream reaches the loop at
the read where it would have.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

CHUNK = 65536  # bytes per read: many packet-ins at once under load


class Buffered:
    """A socket whose `recv(n)` is served from one larger read of the real socket."""

    __slots__ = ("_buf", "_pos", "_sock")

    def __init__(self, sock: Any) -> None:
        self._sock = sock
        self._buf = b""
        self._pos = 0

    def recv(self, n: int) -> bytes:
        """Up to `n` bytes: from what an earlier read fetched, else from one new read."""
        buf, pos = self._buf, self._pos
        if pos >= len(buf):
            buf = self._sock.recv(max(n, CHUNK))  # errors and b"" (end) reach the caller
            if len(buf) <= n:
                self._buf, self._pos = b"", 0
                return buf
            self._buf, pos = buf, 0
        out = buf[pos:pos + n]
        self._pos = pos + len(out)
        return out

    def pending(self) -> int:
        """Bytes read from the socket but not yet handed out."""
        return len(self._buf) - self._pos

    def __getattr__(self, name: str) -> Any:
        return getattr(self._sock, name)


def install(datapath_class: type) -> None:
    """Make `datapath_class` (the framework's `controller.Datapath`) receive through
    `Buffered`; a second call changes nothing."""
    loop = datapath_class._recv_loop  # type: ignore[attr-defined]
    if getattr(loop, "buffered", False):
        return
    datapath_class._recv_loop = _buffered(loop)  # type: ignore[attr-defined]


def _buffered(loop: Callable[[Any], Any]) -> Callable[[Any], Any]:
    def _recv_loop(self: Any) -> Any:
        if not isinstance(self.socket, Buffered):
            self.socket = Buffered(self.socket)
        return loop(self)

    _recv_loop.buffered = True  # type: ignore[attr-defined]
    _recv_loop.__doc__ = loop.__doc__
    return _recv_loop
