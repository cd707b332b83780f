"""A switch connection read in large chunks and written in batches: the framework's loops,
fewer socket calls.

Boundary: shell, the framework's `Datapath` only (Ryu or os-ken); `install()` is all the app
calls.

Reading. The framework's receive loop reads each OpenFlow message with two socket reads, its
8-byte header and then the rest: under a packet-in load that is two trips through eventlet's
green socket (and usually two system calls) per message. `install()` makes each datapath's
receive loop read through `Buffered`, which fetches whatever the kernel has (up to `CHUNK`
bytes) in one read and hands the loop the same bytes, in the same order and sizes it asked for,
from memory. Everything else about the socket (sending, timeouts, errors, end of stream,
closing) is the socket's own: `Buffered` passes every other attribute through, and an error or
the end of stream reaches the loop at the read where it would have.

Writing. The framework's send loop takes one queued buffer at a time and writes it
(`sendall`): one write per packet-in answered. With `install()`, the loop's `get()` also takes
the buffers already queued behind the first (never waiting for more, at most `BATCH` bytes,
and stopping after one queued with `close_socket`) and hands them on as one: the same bytes in
the same order, the queue's semaphore released once per buffer taken, as the loop itself does.
Other readers of the queue (the loop's drain when the connection ends) get it unchanged.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

CHUNK = 65536  # bytes per read: many packet-ins at once under load
BATCH = 262144  # at most this many bytes written at once


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
    `Buffered` and send in batches; a second call changes nothing."""
    recv, send = datapath_class._recv_loop, datapath_class._send_loop  # type: ignore[attr-defined]
    if not getattr(recv, "batched", False):
        datapath_class._recv_loop = _buffered(recv)  # type: ignore[attr-defined]
    if not getattr(send, "batched", False):
        datapath_class._send_loop = _batching(send)  # type: ignore[attr-defined]


def _buffered(loop: Callable[[Any], Any]) -> Callable[[Any], Any]:
    def _recv_loop(self: Any) -> Any:
        if not isinstance(self.socket, Buffered):
            self.socket = Buffered(self.socket)
        return loop(self)

    _recv_loop.batched = True  # type: ignore[attr-defined]
    _recv_loop.__doc__ = loop.__doc__
    return _recv_loop


def _batching(loop: Callable[[Any], Any]) -> Callable[[Any], Any]:
    def _send_loop(self: Any) -> Any:
        queue = self.send_q
        if queue is not None and "get" not in vars(queue):
            queue.get = batched_get(queue, self._send_q_sem)
        return loop(self)

    _send_loop.batched = True  # type: ignore[attr-defined]
    _send_loop.__doc__ = loop.__doc__
    return _send_loop


def batched_get(queue: Any, sem: Any) -> Callable[..., Any]:
    """`queue.get` for the send loop: with no arguments (the loop's call), the first
    `(buf, close_socket)` waited for as before, joined with those already queued behind it
    (see the module docstring); with arguments, the queue's own `get`."""
    get = queue.get

    def batch(*args: Any, **kwargs: Any) -> Any:
        if args or kwargs:
            return get(*args, **kwargs)
        buf, close = get()
        if close or not queue.qsize():
            return buf, close
        parts, size = [buf], len(buf)
        while not close and size < BATCH and queue.qsize():
            more, close = get(block=False)
            sem.release()  # the loop releases once, for the first
            parts.append(more)
            size += len(more)
        return b"".join(parts), close

    return batch
