"""apps/ofconn.py: the framework's receive loop sees the same bytes, errors and end of stream
through `Buffered`, with far fewer reads of the socket; its send loop writes the same bytes in
the same order, in fewer writes, and closes after the same buffer."""

from __future__ import annotations

import struct
from typing import Any

import pytest

from apps import ofconn
from apps.framework import hub
from apps.ofconn import Buffered, batched_get


class Sock:
    """A socket whose reads return the given pieces (a piece that is an exception is raised)."""

    def __init__(self, pieces: list[Any]) -> None:
        self.pieces = list(pieces)
        self.reads = 0
        self.sent: list[bytes] = []

    def recv(self, n: int) -> bytes:
        self.reads += 1
        if not self.pieces:
            return b""
        piece = self.pieces.pop(0)
        if isinstance(piece, Exception):
            raise piece
        if len(piece) > n:  # a real socket never returns more than asked
            self.pieces.insert(0, piece[n:])
            piece = piece[:n]
        return piece

    def sendall(self, data: bytes) -> None:
        self.sent.append(data)


def messages(count: int) -> bytes:
    """`count` OpenFlow-shaped messages (8-byte header with the length, then a body)."""
    out = b""
    for i in range(count):
        body = bytes([i % 256]) * (i % 50)
        out += struct.pack("!BBHI", 4, 10, 8 + len(body), i) + body
    return out


def read_like_the_framework(sock: Any) -> list[bytes]:
    """The framework's pattern: the 8-byte header, then the rest of the message."""
    out = []
    while True:
        head = sock.recv(8)
        if not head:
            return out
        while len(head) < 8:
            head += sock.recv(8 - len(head))
        length = struct.unpack_from("!H", head, 2)[0]
        body = b""
        while len(body) < length - 8:
            more = sock.recv(length - 8 - len(body))
            assert more, "end of stream inside a message"
            body += more
        out.append(head + body)


@pytest.mark.parametrize("split", [1, 7, 8, 100, 4096, 1 << 20])
def test_same_messages_with_fewer_reads(split: int) -> None:
    stream = messages(500)
    pieces = [stream[i:i + split] for i in range(0, len(stream), split)]
    plain, buffered = Sock(pieces), Sock(pieces)
    wrapped = Buffered(buffered)
    assert read_like_the_framework(wrapped) == read_like_the_framework(plain)
    assert b"".join(read_like_the_framework(Buffered(Sock(pieces)))) == stream
    assert wrapped.pending() == 0
    if split >= 4096:  # one read fetches many messages
        assert buffered.reads * 20 < plain.reads


def test_error_reaches_the_reader_after_the_bytes_before_it() -> None:
    stream = messages(3)
    wrapped = Buffered(Sock([stream, TimeoutError("timed out"), stream]))
    assert len(read_like_the_framework_until_error(wrapped)) == 3
    assert read_like_the_framework(wrapped) == read_like_the_framework(Sock([stream]))


def read_like_the_framework_until_error(sock: Any) -> list[bytes]:
    got: list[bytes] = []
    with pytest.raises(TimeoutError):
        while True:
            head = sock.recv(8)
            length = struct.unpack_from("!H", head, 2)[0]
            got.append(head + sock.recv(length - 8))
    return got


def test_everything_else_is_the_socket_s() -> None:
    sock = Sock([])
    wrapped = Buffered(sock)
    wrapped.sendall(b"abc")
    assert sock.sent == [b"abc"]
    assert wrapped.recv(8) == b""  # end of stream


def test_install_wraps_each_datapath_once() -> None:
    seen = []

    class Datapath:
        def __init__(self) -> None:
            self.socket = Sock([b"x"])
            self.send_q = hub.Queue(16)
            self._send_q_sem = hub.BoundedSemaphore(16)

        def _recv_loop(self) -> str:
            seen.append(self.socket)
            return "done"

        def _send_loop(self) -> str:
            return "sent"

    ofconn.install(Datapath)
    ofconn.install(Datapath)  # a second call changes nothing
    dp = Datapath()
    assert dp._recv_loop() == "done"
    assert isinstance(seen[0], Buffered) and seen[0].recv(8) == b"x"
    assert dp._recv_loop() == "done" and seen[1] is seen[0]
    assert dp._send_loop() == "sent" and "get" in vars(dp.send_q)


class Sender:
    """The framework's send side: `send` (semaphore, then queue) and its loop's steps."""

    def __init__(self) -> None:
        self.send_q = hub.Queue(16)
        self.sem = hub.BoundedSemaphore(16)
        self.send_q.get = batched_get(self.send_q, self.sem)  # type: ignore[method-assign]
        self.written: list[bytes] = []

    def send(self, buf: bytes, close_socket: bool = False) -> None:
        self.sem.acquire()
        self.send_q.put((buf, close_socket))

    def loop_once(self) -> bool:
        """One turn of the framework's send loop; True if it would stop (close_socket)."""
        buf, close = self.send_q.get()
        self.sem.release()
        self.written.append(buf)
        return close


def test_queued_buffers_go_out_as_one_write_in_order() -> None:
    s = Sender()
    for i in range(10):
        s.send(bytes([i]) * 3)
    assert not s.loop_once()
    assert s.written == [b"".join(bytes([i]) * 3 for i in range(10))]
    assert s.send_q.qsize() == 0 and s.sem.balance == 16  # every slot given back


def test_a_close_socket_buffer_ends_the_batch_and_the_loop() -> None:
    s = Sender()
    s.send(b"a")
    s.send(b"bye", close_socket=True)
    s.send(b"late")
    assert s.loop_once()  # the loop stops after the same bytes it would have
    assert s.written == [b"abye"]
    assert s.send_q.qsize() == 1 and s.sem.balance == 15
    assert s.send_q.get(block=False) == (b"late", False)  # the drain: the queue's own get


def test_a_batch_stops_at_the_size_limit() -> None:
    s = Sender()
    for _ in range(6):
        s.send(b"x" * (ofconn.BATCH // 4))
    s.loop_once()
    s.loop_once()
    assert [len(w) for w in s.written] == [ofconn.BATCH, ofconn.BATCH // 2]


def test_the_send_loop_waits_for_the_first_buffer_as_before() -> None:
    s = Sender()
    hub.spawn(lambda: (hub.sleep(0.01), s.send(b"later")))
    assert not s.loop_once()
    assert s.written == [b"later"]
