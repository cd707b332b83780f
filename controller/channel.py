"""The controller's channels: the `[channel]` table of the controller's TOML file.

Boundary: plain values only (no sockets, no files read): where the REST API and the OpenFlow
port listen (loopback unless configured), the certificate files of each (TLS on OpenFlow,
HTTPS on REST), the REST server's connection limits, which switches may connect, and the
packet-in meter's rate. The shell (apps/) opens the sockets and reads the files named here.
"""

from __future__ import annotations

import ipaddress
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from controller.errors import ValidationError
from controller.validate import check_integer, check_number, check_path, reject_unknown

LOOPBACK = "127.0.0.1"
DEFAULT_OPENFLOW_PORT = 6653
DEFAULT_REST_PORT = 8080


@dataclass(frozen=True, slots=True)
class Listen:
    """A listening address: an IP literal and a TCP port."""

    host: str
    port: int

    def __str__(self) -> str:
        return f"[{self.host}]:{self.port}" if ":" in self.host else f"{self.host}:{self.port}"


@dataclass(frozen=True, slots=True)
class TlsFiles:
    """A certificate and its private key (PEM files), and optionally a CA to check peers with."""

    cert: str
    key: str
    ca: str | None = None


@dataclass(frozen=True, slots=True)
class ChannelConfig:
    """How the controller is reached, and how much one peer may ask of it."""

    openflow_listen: Listen = Listen(LOOPBACK, DEFAULT_OPENFLOW_PORT)
    rest_listen: Listen = Listen(LOOPBACK, DEFAULT_REST_PORT)
    openflow_tls: TlsFiles | None = None  # OpenFlow over TLS (OVS `ssl:` targets) when set
    rest_tls: TlsFiles | None = None  # HTTPS when set; `ca` asks clients for a certificate
    request_timeout_s: float = 10.0  # a request not fully read in this time is dropped
    max_connections: int = 256  # REST connections open at once, in all
    max_connections_per_client: int = 32  # ... and from one client address
    keepalive_idle_s: float = 5.0  # a kept-alive connection idle this long is closed; 0 = off
    max_requests_per_connection: int = 1000  # then the connection is closed (client reconnects)
    switches: tuple[int, ...] = ()  # datapath ids allowed to connect; () = any switch
    punt_pps: int = 1000  # packet-ins a switch may send per second (meter); 0 = no meter

    def switch_allowed(self, dpid: int) -> bool:
        """True if the switch `dpid` may be programmed (no list: every switch)."""
        return not self.switches or dpid in self.switches


KEYS = {"openflow_listen", "rest_listen", "openflow_cert", "openflow_key", "openflow_ca",
        "rest_cert", "rest_key", "rest_client_ca", "request_timeout_s", "max_connections",
        "max_connections_per_client", "keepalive_idle_s", "max_requests_per_connection",
        "switches", "punt_pps"}


def parse_listen(value: Any, field_name: str, default_port: int) -> Listen:
    """'host', 'host:port' or '[v6]:port' with an IP literal host; the port defaults."""
    if not isinstance(value, str) or not value or len(value) > 64:
        raise ValidationError(field_name, "must be an address such as '127.0.0.1:6653'")
    host, port_text = value, ""
    if value.startswith("["):
        host, _, rest = value[1:].partition("]")
        if rest and not rest.startswith(":"):
            raise ValidationError(field_name, f"{value!r}: expected '[v6 address]:port'")
        port_text = rest[1:]
    elif value.count(":") == 1:
        host, _, port_text = value.partition(":")
    try:
        ipaddress.ip_address(host)
    except ValueError:
        raise ValidationError(field_name, f"{host!r} is not an IP address") from None
    port = default_port
    if port_text:
        if not port_text.isdigit() or not 1 <= int(port_text) <= 65535:
            raise ValidationError(field_name, f"port {port_text!r} must be 1..65535")
        port = int(port_text)
    return Listen(host, port)


def _path(data: Mapping[str, Any], key: str) -> str | None:
    """An optional file name."""
    value = data.get(key)
    if value is None:
        return None
    return check_path(value, f"channel.{key}", empty=False)


def _tls(data: Mapping[str, Any], prefix: str, ca_key: str) -> TlsFiles | None:
    """The cert/key pair named `<prefix>_cert`/`<prefix>_key` (both or neither) and its CA."""
    cert, key, ca = _path(data, f"{prefix}_cert"), _path(data, f"{prefix}_key"), _path(data, ca_key)
    if cert is None and key is None:
        if ca is not None:
            raise ValidationError(f"channel.{ca_key}", f"needs channel.{prefix}_cert and "
                                  f"channel.{prefix}_key")
        return None
    if cert is None or key is None:
        missing = f"{prefix}_cert" if cert is None else f"{prefix}_key"
        raise ValidationError(f"channel.{missing}", "must be given with its pair")
    return TlsFiles(cert, key, ca)


def _switches(raw: Any) -> tuple[int, ...]:
    """The allowlist of datapath ids."""
    if not isinstance(raw, list):
        raise ValidationError("channel.switches", "must be a list of datapath ids")
    out = tuple(check_integer(d, f"channel.switches[{i}]", 1, 2**64 - 1)
                for i, d in enumerate(raw))
    if len(set(out)) != len(out):
        raise ValidationError("channel.switches", "lists a datapath id twice")
    return out


def channel_from_dict(data: Any) -> ChannelConfig:
    """Parse and validate the [channel] table (absent: loopback, no TLS, default limits)."""
    if not isinstance(data, Mapping):
        raise ValidationError("channel", "must be a table")
    reject_unknown(data, KEYS, "channel")
    d = ChannelConfig()
    ofl = data.get("openflow_listen")
    rl = data.get("rest_listen")
    return ChannelConfig(
        openflow_listen=d.openflow_listen if ofl is None else parse_listen(
            ofl, "channel.openflow_listen", DEFAULT_OPENFLOW_PORT),
        rest_listen=d.rest_listen if rl is None else parse_listen(
            rl, "channel.rest_listen", DEFAULT_REST_PORT),
        openflow_tls=_tls(data, "openflow", "openflow_ca"),
        rest_tls=_tls(data, "rest", "rest_client_ca"),
        request_timeout_s=check_number(data.get("request_timeout_s", d.request_timeout_s),
                                       "channel.request_timeout_s", 0.1, 3600.0),
        max_connections=check_integer(data.get("max_connections", d.max_connections),
                                      "channel.max_connections", 1, 100_000),
        max_connections_per_client=check_integer(
            data.get("max_connections_per_client", d.max_connections_per_client),
            "channel.max_connections_per_client", 1, 100_000),
        keepalive_idle_s=check_number(data.get("keepalive_idle_s", d.keepalive_idle_s),
                                      "channel.keepalive_idle_s", 0.0, 3600.0),
        max_requests_per_connection=check_integer(
            data.get("max_requests_per_connection", d.max_requests_per_connection),
            "channel.max_requests_per_connection", 1, 1_000_000),
        switches=_switches(data.get("switches", [])),
        punt_pps=check_integer(data.get("punt_pps", d.punt_pps), "channel.punt_pps",
                               0, 10_000_000),
    )
