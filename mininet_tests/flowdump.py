"""The one parser for `ovs-ofctl -O OpenFlow13 dump-flows` output (pure, unit-tested in tests/).

A line such as
    cookie=0x64, duration=1.2s, table=1, n_packets=5, n_bytes=420, idle_timeout=30,
    priority=100,tcp,nw_dst=10.0.100.1,tp_dst=8000 actions=set_field:10.0.0.21->ip_dst,output:10
becomes
    {"cookie": 100, "duration": 1.2, "table": 1, "n_packets": 5, "n_bytes": 420,
     "idle_timeout": 30, "hard_timeout": 0, "priority": 100,
     "match": {"tcp": "", "nw_dst": "10.0.100.1", "tp_dst": "8000"},
     "actions": ["set_field:10.0.0.21->ip_dst", "output:10"], "text": <the line>}
Fields ovs-ofctl leaves out get their OpenFlow defaults (priority 32768, table/cookie/timeouts 0);
bare protocol words (tcp, arp, ...) are match keys with the value ""; `actions=drop` is [].
"""

from __future__ import annotations

import subprocess
from typing import Any

INT_FIELDS = {"table", "n_packets", "n_bytes", "idle_timeout", "hard_timeout", "idle_age",
              "hard_age", "priority", "importance"}
FLAG_FIELDS = {"send_flow_rem", "check_overlap", "reset_counts", "no_packet_counts",
               "no_byte_counts"}
DEFAULTS: dict[str, Any] = {"cookie": 0, "table": 0, "priority": 32768, "idle_timeout": 0,
                            "hard_timeout": 0, "n_packets": 0, "n_bytes": 0}


def split_top_level(text: str, seps: str = ",") -> list[str]:
    """Split on any character of `seps` outside brackets and quotes; drop empty parts."""
    parts, depth, quoted, start = [], 0, False, 0
    for i, ch in enumerate(text):
        if ch == '"':
            quoted = not quoted
        elif not quoted and ch in "([":
            depth += 1
        elif not quoted and ch in ")]":
            depth -= 1
        elif not quoted and depth == 0 and ch in seps:
            parts.append(text[start:i])
            start = i + 1
    parts.append(text[start:])
    return [p.strip() for p in parts if p.strip()]


def _value(key: str, raw: str) -> Any:
    """Convert a stats field's text to its Python value."""
    if key == "cookie":
        return int(raw.split("/")[0], 0)
    if key == "duration":
        return float(raw.rstrip("s"))
    if key in INT_FIELDS:
        return int(raw)
    return raw


def parse_flow_line(line: str) -> dict[str, Any] | None:
    """One flow entry as a dict, or None for a line that is not a flow (e.g. the reply header)."""
    text = line.strip()
    head, sep, actions = text.partition(" actions=")
    if not sep:
        if not text.startswith("actions="):
            return None
        head, actions = "", text[len("actions="):]
    flow: dict[str, Any] = dict(DEFAULTS)
    match: dict[str, str] = {}
    for token in split_top_level(head, ", "):  # flags such as send_flow_rem end with a space
        key, eq, raw = token.partition("=")
        if key in DEFAULTS or key in INT_FIELDS or key == "duration":
            flow[key] = _value(key, raw)
        elif key in FLAG_FIELDS and not eq:
            flow[key] = True
        else:
            match[key] = raw.strip('"')
    flow["match"] = match
    acts = split_top_level(actions)
    flow["actions"] = [] if acts == ["drop"] else acts
    flow["text"] = text
    return flow


def parse_flows(output: str) -> list[dict[str, Any]]:
    """Every flow entry in a dump-flows output."""
    flows = (parse_flow_line(line) for line in output.splitlines())
    return [f for f in flows if f is not None]


def dump_flows_text(bridge: str, names: bool = False) -> str:
    """Raw `ovs-ofctl -O OpenFlow13 dump-flows` output of `bridge` (port numbers unless `names`)."""
    args = ["ovs-ofctl", "-O", "OpenFlow13", "--names" if names else "--no-names",
            "dump-flows", bridge]
    done = subprocess.run(args, capture_output=True, text=True, timeout=10, check=False)
    if done.returncode != 0:
        raise RuntimeError(f"{' '.join(args)} failed ({done.returncode}): {done.stderr.strip()}")
    return done.stdout


def dump_flows(bridge: str) -> list[dict[str, Any]]:
    """The parsed flow table of `bridge`."""
    return parse_flows(dump_flows_text(bridge))
