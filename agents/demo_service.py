"""The bundled demo service: one Dyncast instance, an HTTP/1.1 server bound to its D-BID.

Boundary: HTTP in, JSON out. `GET /` does synthetic work in a capacity-limited worker pool;
`GET /stats` is the interface a D-MA reads; `POST /load` sets synthetic extra load; `GET /hold`
keeps one request open for tests. No Dyncast logic and no controller calls live here.
"""

from __future__ import annotations

import argparse
import ipaddress
import json
import socket
import socketserver
import sys
import threading
import time
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any
from urllib.parse import parse_qs, urlsplit

from agents.stopping import stop_on_signals

EWMA_ALPHA = 0.3  # weight of the newest observation in processing_delay_ms
HOLD_LINE_PERIOD = 0.2  # seconds between two lines of GET /hold
MAX_HOLD_SECONDS = 3600.0
MAX_BODY_BYTES = 64 * 1024

Route = Callable[[str, bytes], None]  # (query string, body) -> sends the answer


@dataclass(frozen=True)
class ServiceConfig:
    """What one demo instance is: its name, D-BID, port, worker count and base service time."""

    name: str
    dbid: str
    port: int = 8000
    capacity: int = 4
    service_ms: float = 20.0


class RequestError(Exception):
    """A request the service rejects with a 4xx JSON error."""

    def __init__(self, status: int, message: str) -> None:
        super().__init__(message)
        self.status = status
        self.message = message


class Workers:
    """A capacity-limited worker pool that counts sessions, queue and observed delay."""

    def __init__(self, capacity: int, service_ms: float) -> None:
        self.capacity = capacity
        self.service_ms = service_ms
        self._slots = threading.BoundedSemaphore(capacity)
        self._lock = threading.Lock()
        self._sessions = 0
        self._queue = 0
        self._requests = 0
        self._extra_load = 0.0
        self._delay_ms: float | None = None

    @contextmanager
    def admit(self) -> Iterator[float]:
        """Wait for a free worker (counted in `queue`), then hold it (counted in `sessions`)."""
        arrived = time.monotonic()
        with self._lock:
            self._queue += 1
        self._slots.acquire()
        with self._lock:
            self._queue -= 1
            self._sessions += 1
            self._requests += 1
        try:
            yield time.monotonic() - arrived
        finally:
            with self._lock:
                self._sessions -= 1
            self._slots.release()

    def service_seconds(self) -> float:
        """How long one request takes to serve under the current extra load."""
        with self._lock:
            return self.service_ms * (1.0 + self._extra_load) / 1000.0

    def set_extra_load(self, extra_load: float) -> None:
        """Set the synthetic extra load (0 means none)."""
        with self._lock:
            self._extra_load = extra_load

    def observe(self, delay_ms: float) -> None:
        """Fold one observed processing delay (queue wait plus service) into the EWMA."""
        with self._lock:
            old = self._delay_ms
            self._delay_ms = delay_ms if old is None else old + EWMA_ALPHA * (delay_ms - old)

    def stats(self) -> dict[str, Any]:
        """The counters a D-MA reads.

        `processing_delay_ms` is what a new request should expect: the nominal service time at
        the current extra load, or the recent observed delay when busier than that. When idle,
        past observations say nothing about the next request, so the nominal time is reported.
        `service_ms` is the time a request holds a worker now (the nominal service time at the
        current extra load), queue wait excluded: with it the controller prices the queue from
        the counts rather than from the lagging average.
        """
        with self._lock:
            nominal = self.service_ms * (1.0 + self._extra_load)
            idle = self._sessions == 0 and self._queue == 0
            delay = nominal if self._delay_ms is None or idle else max(nominal, self._delay_ms)
            return {"sessions": self._sessions, "queue": self._queue,
                    "capacity": self.capacity, "processing_delay_ms": round(delay, 3),
                    "service_ms": round(nominal, 3),
                    "requests": self._requests, "extra_load": self._extra_load}


def parse_extra_load(body: bytes) -> float:
    """The `extra_load` of a `POST /load` body, or RequestError naming the field."""
    try:
        data = json.loads(body)
    except (ValueError, UnicodeDecodeError):
        raise RequestError(400, "body: must be a JSON object") from None
    if not isinstance(data, dict):
        raise RequestError(400, "body: must be a JSON object")
    unknown = sorted(set(data) - {"extra_load"})
    if unknown:
        raise RequestError(400, f"{unknown[0]}: unknown field")
    value = data.get("extra_load")
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        raise RequestError(400, f"extra_load: must be a number >= 0, got {value!r}")
    if not 0.0 <= value < float("inf"):
        raise RequestError(400, f"extra_load: must be a number >= 0, got {value!r}")
    return float(value)


def parse_hold_seconds(query: str) -> float:
    """The `seconds` of a `GET /hold?seconds=S` query, or RequestError naming the parameter."""
    values = parse_qs(query).get("seconds", [])
    if len(values) != 1:
        raise RequestError(400, "seconds: exactly one value is required")
    try:
        seconds = float(values[0])
    except ValueError:
        raise RequestError(400, f"seconds: must be a number, got {values[0]!r}") from None
    if not 0.0 <= seconds <= MAX_HOLD_SECONDS:
        raise RequestError(400, f"seconds: must be in [0, {MAX_HOLD_SECONDS:g}], got {seconds:g}")
    return seconds


class ServiceServer(ThreadingHTTPServer):
    """A threading HTTP server that carries the instance's config and worker pool."""

    daemon_threads = True
    # socketserver's default listen backlog is 5: a burst of new connections while the accept
    # loop waits for the CPU overflows it, and the kernel drops their SYNs (the client retries
    # after 1 s). Queue them instead, so overload shows as waiting, as on a real server.
    request_queue_size = 1024

    def __init__(self, config: ServiceConfig) -> None:
        self.config = config
        self.workers = Workers(config.capacity, config.service_ms)
        if ":" in config.dbid:
            self.address_family = socket.AF_INET6
        super().__init__((config.dbid, config.port), ServiceHandler)

    def server_bind(self) -> None:
        """Bind without HTTPServer's reverse DNS lookup (it can stall in a network namespace)."""
        socketserver.TCPServer.server_bind(self)
        self.server_name = self.config.dbid
        self.server_port = self.socket.getsockname()[1]


class ServiceHandler(BaseHTTPRequestHandler):
    """Routes one request; every answer carries Content-Length or is chunked (keep-alive)."""

    protocol_version = "HTTP/1.1"
    server_version = "dyncast-demo-service/1"
    server: ServiceServer

    def do_GET(self) -> None:
        """Serve `/`, `/stats` and `/hold`."""
        self._dispatch({"/": self._serve_root, "/stats": self._serve_stats,
                        "/hold": self._serve_hold})

    def do_POST(self) -> None:
        """Serve `/load`."""
        self._dispatch({"/load": self._set_load})

    def do_PUT(self) -> None:
        """Reject: no resource takes PUT."""
        self._dispatch({})

    def do_DELETE(self) -> None:
        """Reject: no resource takes DELETE."""
        self._dispatch({})

    def log_message(self, format: str, *args: object) -> None:
        """Stay quiet: one line per request would drown the demo's output."""

    def _dispatch(self, routes: dict[str, Route]) -> None:
        """Read the body, route by path, and turn RequestError into a JSON error."""
        try:
            body = self._read_body()
            url = urlsplit(self.path)
            route = routes.get(url.path)
            if route is None:
                status = 405 if self._known(url.path) else 404
                raise RequestError(status, f"path: no {self.command} {url.path}")
            route(url.query, body)
        except RequestError as exc:
            self._send_json(exc.status, {"error": exc.message})

    @staticmethod
    def _known(path: str) -> bool:
        """Whether `path` is a resource of this service (for 404 versus 405)."""
        return path in {"/", "/stats", "/hold", "/load"}

    def _read_body(self) -> bytes:
        """The request body, read fully so the connection stays usable."""
        length_text = self.headers.get("Content-Length", "0")
        try:
            length = int(length_text)
        except ValueError:
            self.close_connection = True
            raise RequestError(400, f"Content-Length: not a number: {length_text!r}") from None
        if not 0 <= length <= MAX_BODY_BYTES:
            self.close_connection = True
            raise RequestError(413, f"Content-Length: must be in [0, {MAX_BODY_BYTES}]")
        return self.rfile.read(length) if length else b""

    def _send_json(self, status: int, data: dict[str, Any]) -> None:
        """Send one JSON answer with Content-Length."""
        payload = json.dumps(data).encode() + b"\n"
        self.send_response(status)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(payload)))
        self.end_headers()
        self.wfile.write(payload)

    def _serve_root(self, query: str, body: bytes) -> None:
        """Do one request's synthetic work in a worker and report how long it took."""
        workers = self.server.workers
        with workers.admit() as waited:
            started = time.monotonic()
            time.sleep(workers.service_seconds())
            served_ms = (waited + time.monotonic() - started) * 1000.0
        workers.observe(served_ms)
        self._send_json(200, {"instance": self.server.config.name,
                              "dbid": self.server.config.dbid, "served_ms": round(served_ms, 3),
                              "local": self.connection.getsockname()[0]})

    def _serve_stats(self, query: str, body: bytes) -> None:
        """Report the worker pool's counters (never queued behind the workers)."""
        self._send_json(200, self.server.workers.stats())

    def _set_load(self, query: str, body: bytes) -> None:
        """Set the synthetic extra load from `{"extra_load": float >= 0}`."""
        self.server.workers.set_extra_load(parse_extra_load(body))
        self._send_json(200, self.server.workers.stats())

    def _serve_hold(self, query: str, body: bytes) -> None:
        """Hold a worker and stream one chunked line naming the instance every 0.2 s."""
        seconds = parse_hold_seconds(query)
        with self.server.workers.admit():
            self.send_response(200)
            self.send_header("Content-Type", "application/x-ndjson")
            self.send_header("Transfer-Encoding", "chunked")
            self.end_headers()
            try:
                self._stream_lines(time.monotonic() + seconds)
            except (BrokenPipeError, ConnectionResetError):
                self.close_connection = True

    def _stream_lines(self, deadline: float) -> None:
        """Write chunked lines until `deadline`, then the last chunk."""
        config = self.server.config
        seq = 0
        while True:
            line = json.dumps({"instance": config.name, "dbid": config.dbid, "seq": seq})
            data = line.encode() + b"\n"
            self.wfile.write(b"%x\r\n%s\r\n" % (len(data), data))
            self.wfile.flush()
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                break
            time.sleep(min(HOLD_LINE_PERIOD, remaining))
            seq += 1
        self.wfile.write(b"0\r\n\r\n")


def ip_address(text: str) -> str:
    """An argparse type: an IP address in canonical text form."""
    try:
        return str(ipaddress.ip_address(text))
    except ValueError:
        raise argparse.ArgumentTypeError(f"not an IP address: {text!r}") from None


def bounded(kind: type[int] | type[float], low: float, high: float) -> Callable[[str], int | float]:
    """An argparse type: a number of `kind` within [low, high]."""

    def parse(text: str) -> int | float:
        """Parse and range-check one number."""
        try:
            value = kind(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"not a number: {text!r}") from None
        if not low <= value <= high:
            raise argparse.ArgumentTypeError(f"must be in [{low:g}, {high:g}], got {text}")
        return value

    return parse


def parse_args(argv: Sequence[str] | None) -> ServiceConfig:
    """Parse the command line into a ServiceConfig."""
    parser = argparse.ArgumentParser(prog="dyncast-demo-service",
                                     description="Bundled Dyncast demo HTTP service.")
    parser.add_argument("--bind", required=True, type=ip_address,
                        help="address to listen on: the instance's D-BID")
    parser.add_argument("--port", type=bounded(int, 0, 65535), default=8000,
                        help="TCP port (default 8000; 0 picks a free one)")
    parser.add_argument("--name", required=True, help="instance name shown in answers")
    parser.add_argument("--capacity", type=bounded(int, 1, 100000), default=4,
                        help="requests processed at once (default 4)")
    parser.add_argument("--service-ms", type=bounded(float, 0, 600000), default=20.0,
                        help="base service time of one request in ms (default 20)")
    args = parser.parse_args(argv)
    return ServiceConfig(name=args.name, dbid=args.bind, port=args.port,
                         capacity=args.capacity, service_ms=args.service_ms)


def serve_until(server: ServiceServer, stop: threading.Event) -> None:
    """Serve in a background thread until `stop` is set, then close the listening socket."""
    # a short poll interval: shutdown() waits for the loop's next look (a stop within 0.1 s)
    thread = threading.Thread(target=server.serve_forever, kwargs={"poll_interval": 0.1},
                              name="serve", daemon=True)
    thread.start()
    while not stop.wait(0.5):
        pass
    server.shutdown()
    server.server_close()


def main(argv: Sequence[str] | None = None) -> int:
    """Run the demo service until SIGTERM or SIGINT."""
    config = parse_args(argv)
    try:
        server = ServiceServer(config)
    except OSError as exc:
        print(f"dyncast-demo-service: cannot listen on {config.dbid}:{config.port}: {exc}",
              file=sys.stderr, flush=True)
        return 1
    stop = threading.Event()
    stop_on_signals(stop)  # (not Event.set in the handler: agents/stopping.py)
    print(f"serving {config.name} on {config.dbid}:{server.server_port}", flush=True)
    serve_until(server, stop)
    return 0


if __name__ == "__main__":
    sys.exit(main())
