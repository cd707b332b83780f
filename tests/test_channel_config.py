"""The [channel] table: safe defaults, validation naming the key, and the manager's options."""

from __future__ import annotations

from typing import Any

import pytest

from apps.manager import channel_args
from controller.channel import ChannelConfig, Listen, TlsFiles, channel_from_dict
from controller.config import config_from_toml
from controller.errors import ConfigError, ValidationError


def test_defaults_listen_on_loopback_with_a_meter() -> None:
    """No [channel] table: REST and OpenFlow on 127.0.0.1, no TLS, any switch, 1000 pps."""
    ch = config_from_toml("", "x.toml").channel
    assert ch.openflow_listen == Listen("127.0.0.1", 6653)
    assert ch.rest_listen == Listen("127.0.0.1", 8080)
    assert ch.openflow_tls is None and ch.rest_tls is None
    assert ch.switch_allowed(12345)
    assert ch.punt_pps == 1000


def test_a_full_table_is_read() -> None:
    """Every key is taken as written."""
    ch = config_from_toml("""
[channel]
openflow_listen = "0.0.0.0:6653"
rest_listen = "[::1]:9000"
openflow_cert = "c.pem"
openflow_key = "k.pem"
openflow_ca = "ca.pem"
rest_cert = "rc.pem"
rest_key = "rk.pem"
request_timeout_s = 2.5
max_connections = 10
max_connections_per_client = 3
keepalive_idle_s = 0
max_requests_per_connection = 1
switches = [1, 2]
punt_pps = 0
""", "x.toml").channel
    assert ch.openflow_listen == Listen("0.0.0.0", 6653)
    assert ch.rest_listen == Listen("::1", 9000)
    assert ch.openflow_tls == TlsFiles("c.pem", "k.pem", "ca.pem")
    assert ch.rest_tls == TlsFiles("rc.pem", "rk.pem", None)
    assert (ch.request_timeout_s, ch.max_connections, ch.max_connections_per_client) == (
        2.5, 10, 3)
    assert (ch.keepalive_idle_s, ch.max_requests_per_connection) == (0.0, 1)
    assert ch.switches == (1, 2) and ch.switch_allowed(2) and not ch.switch_allowed(3)
    assert ch.punt_pps == 0


@pytest.mark.parametrize(("table", "field"), [
    ({"rest_listen": "localhost:80"}, "channel.rest_listen"),
    ({"openflow_listen": "127.0.0.1:70000"}, "channel.openflow_listen"),
    ({"openflow_listen": 6653}, "channel.openflow_listen"),
    ({"openflow_cert": "c.pem"}, "channel.openflow_key"),
    ({"rest_client_ca": "ca.pem"}, "channel.rest_client_ca"),
    ({"switches": [1, 1]}, "channel.switches"),
    ({"switches": ["a"]}, "channel.switches[0]"),
    ({"switches": 1}, "channel.switches"),
    ({"punt_pps": -1}, "channel.punt_pps"),
    ({"affinity_per_ingress": 5}, "channel.affinity_per_ingress"),  # not a key (yet)
    ({"max_connections": True}, "channel.max_connections"),
    ({"request_timeout_s": 0}, "channel.request_timeout_s"),
    ({"keepalive_idle_s": -1}, "channel.keepalive_idle_s"),
    ({"keepalive_idle_s": "5"}, "channel.keepalive_idle_s"),
    ({"max_requests_per_connection": 0}, "channel.max_requests_per_connection"),
    ({"max_requests_per_connection": 2.5}, "channel.max_requests_per_connection"),
    ({"listen": "x"}, "channel.listen"),
])
def test_bad_values_are_refused_naming_the_key(table: dict[str, Any], field: str) -> None:
    """A bad [channel] value is a ValidationError that names its key."""
    with pytest.raises(ValidationError) as err:
        channel_from_dict(table)
    assert err.value.field == field


def test_the_file_error_names_the_file_and_key() -> None:
    """Read from a file, the error names the file too."""
    with pytest.raises(ConfigError, match=r"d.toml: channel.punt_pps"):
        config_from_toml("[channel]\npunt_pps = 'x'\n", "d.toml")


def test_manager_adds_loopback_listen_options_the_command_line_leaves_out() -> None:
    """Defaults give loopback for both ports; options on the command line win."""
    extra = channel_args(ChannelConfig(), [])
    assert extra == ["--ofp-listen-host", "127.0.0.1", "--ofp-tcp-listen-port", "6653",
                     "--wsapi-host", "127.0.0.1", "--wsapi-port", "8080"]
    given = ["--wsapi-host", "0.0.0.0", "--wsapi-port=9", "--ofp-tcp-listen-port", "7"]
    assert channel_args(ChannelConfig(), given) == ["--ofp-listen-host", "127.0.0.1"]


def test_manager_turns_the_openflow_port_to_tls_when_certificates_are_named() -> None:
    """With [channel] certificates the OpenFlow port given serves TLS with them."""
    ch = ChannelConfig(openflow_tls=TlsFiles("c.pem", "k.pem", "ca.pem"))
    extra = channel_args(ch, ["--ofp-tcp-listen-port", "7000"])
    pairs = dict(zip(extra[::2], extra[1::2], strict=True))
    assert pairs["--ofp-ssl-listen-port"] == "7000"
    assert (pairs["--ctl-privkey"], pairs["--ctl-cert"], pairs["--ca-certs"]) == (
        "k.pem", "c.pem", "ca.pem")


def test_a_reloaded_channel_table_needs_a_restart() -> None:
    """[channel] is bound at start (sockets, meter, allowlist): a reload reports it, keeps it."""
    from controller.reload import plan

    running = config_from_toml("", "x.toml")
    new = config_from_toml("[channel]\npunt_pps = 5\n", "x.toml")
    p = plan(running, new, {})
    assert p.restart_required == ("channel",)
    assert p.config.channel.punt_pps == 1000
