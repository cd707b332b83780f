"""Prototype of the dataplane modes of issue 5 (learn, bucket, overlay) on userspace Open vSwitch.

No controller is connected: every bridge is fail_mode=secure and gets its rules from
`ovs-ofctl -O OpenFlow13` (the rule text is built below and listed in docs/dataplane-modes.md).
The network, 3 switches in a line, a client and two instances (D-SID 10.0.100.1, TCP 8000):

    h1 10.0.0.1 --1-[s1]-2--2-[s2]-3--2-[s3]
                            1            1
                        i1 10.0.0.21  i2 10.0.0.31

s1 is the ingress. Each network is short-lived: `mininet_tests.harness.Lab` holds the
machine-wide Mininet lock while it exists and tears it down by name and pid.

`run` does two things:
- checks: every mode in its own network: TCP through the pipeline (replies from the D-SID),
  which instance served, learned/pinned entries, a long-lived connection across a decision
  change (kept, except for the static reference and the unpinned bucket move, which must break),
  the two-phase pinned bucket move, a 3:1 decision, 1 MB each way, datapath flows (masks), and
  that no rule sending to the controller was hit (no packet-ins);
- bench: per group of modes one network, R rounds, the modes in a shuffled order each round
  (the machine is shared): connect()-to-first-byte median/p90 over N sequential fresh
  connections (kernel-chosen ports, 10 ms apart), then new connections per second (one epoll
  client keeping C connections in flight for S seconds, explicit source ports, each: connect,
  send 2 bytes, read the reply, close with RST), with datapath upcalls ("missed") and
  flow-table revalidations counted. Ratios against the static reference are per round.

    sudo .venv/bin/python bench/dataplane_proto.py [run] [--quick] [--checks a,b] [--bench "a,b;c"]
    sudo .venv/bin/python bench/dataplane_proto.py ryu-check

Modes: static (pre-installed wildcard rewrite to i1, the reference), learn (decision slots with
learn actions, learned reverse entries), learn-wrev (learned forward, wildcard reverse),
learn-group (select group -> resubmit -> learn), bucket (16 masked buckets, two-phase pinned
move, TCP SYNs to the new instance from phase 1b), bucket-nosyn (the same without the SYN rule),
bucket-syn-at-once (phase 1a and 1b together; not in the default checks), bucket-naive (the
move without pinning: negative control), overlay-static,
overlay-learn, overlay-bucket (D-SID on the instances, MPLS label to the egress) and
overlay-bucket-mac (the instance's MAC as the tag). `ryu-check` builds the same rules with
Ryu 4.34's parser, pushes the bytes to a scratch bridge over its management socket and
compares with the ovs-ofctl version. Results are printed and written to
bench/results/dataplane_proto.json. The sub-commands `serve` and `client` run in the hosts.
"""

from __future__ import annotations

import argparse
import contextlib
import errno
import json
import os
import random
import re
import selectors
import socket
import statistics
import struct
import subprocess
import sys
import time
from collections import Counter
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
RESULTS = ROOT / "bench" / "results" / "dataplane_proto.json"
PY = sys.executable

# ---- addresses and numbers -----------------------------------------------------------------

DSID = "10.0.100.1"
PORT = 8000
VMAC = "02:dc:00:00:00:01"
CLIENT = ("h1", "10.0.0.1", "00:00:00:00:00:01")
# instance id (reg0 value) -> (host, D-BID, MAC, switch, MPLS label)
INSTANCES = {1: ("i1", "10.0.0.21", "00:00:00:00:00:21", "s2", 1001),
             2: ("i2", "10.0.0.31", "00:00:00:00:00:31", "s3", 1002)}
# switch -> {host address: port towards it}; the line h1-s1-s2-s3
ROUTES = {"s1": {"10.0.0.1": 1, "10.0.0.21": 2, "10.0.0.31": 2},
          "s2": {"10.0.0.1": 2, "10.0.0.21": 1, "10.0.0.31": 3},
          "s3": {"10.0.0.1": 2, "10.0.0.21": 2, "10.0.0.31": 1}}
MACS = {"10.0.0.1": CLIENT[2], **{v[1]: v[2] for v in INSTANCES.values()}}
INGRESS = "s1"

T_CLASSIFY, T_FORWARD, T_AFFINITY, T_DECISION, T_INSTANCE, T_LEARN = 0, 1, 2, 3, 4, 5
BUCKET_BITS = 4                      # 16 buckets
BUCKET_MASK = ((1 << BUCKET_BITS) - 1) << 1   # tcp_src bits 1..4: Linux connect() picks even ports
GROUP_ID = 1

# cookies: top byte 0xdc as in the README; bits 48-55 the kind (new kinds 5..10 proposed)
K_INFRA, K_SERVICE, K_HOST, K_DECISION, K_INSTANCE, K_LEARNED_FWD, K_LEARNED_REV, K_PIN = \
    0, 1, 4, 5, 6, 7, 8, 9
K_LABEL = 10


def cookie(kind: int, ident: int = 0) -> str:
    """The cookie of an entry, as ovs-ofctl text."""
    return hex((0xDC << 56) | (kind << 48) | ident)


def ip_int(addr: str) -> int:
    return int.from_bytes(socket.inet_aton(addr), "big")


def mac_int(mac: str) -> int:
    return int(mac.replace(":", ""), 16)


# ---- the rules (ovs-ofctl syntax) ------------------------------------------------------------

SVC_MATCH = f"tcp,nw_dst={DSID},tp_dst={PORT}"


def base_rules(switch: str, overlay_tag: str | None) -> list[str]:
    """Every switch: the classify and forward tables as today, no service; for the overlay the
    paths to every instance's egress by tag (an MPLS label or the instance's MAC)."""
    rules = [
        f"table={T_CLASSIFY},priority=50000,cookie={cookie(K_INFRA)},arp,actions=CONTROLLER:65535",
        f"table={T_CLASSIFY},priority=0,cookie={cookie(K_INFRA)},actions=goto_table:{T_FORWARD}",
        f"table={T_FORWARD},priority=1,cookie={cookie(K_INFRA)},ip,actions=CONTROLLER:65535",
        f"table={T_FORWARD},priority=0,cookie={cookie(K_INFRA)},actions=drop",
    ]
    for addr, port in ROUTES[switch].items():
        rules.append(f"table={T_FORWARD},priority=100,cookie={cookie(K_HOST)},ip,nw_dst={addr},"
                     f"actions=set_field:{MACS[addr]}->eth_dst,output:{port}")
    for _, (_host, dbid, mac, egress, label) in INSTANCES.items():
        port = ROUTES[switch][dbid]
        if overlay_tag == "mpls":  # label-switched path; the egress pops and delivers
            actions = (f"pop_mpls:0x0800,set_field:{mac}->eth_dst,output:{port}"
                       if switch == egress else f"output:{port}")
            rules.append(f"table={T_FORWARD},priority=100,cookie={cookie(K_LABEL, label)},"
                         f"mpls,mpls_label={label},actions={actions}")
        elif overlay_tag == "mac":  # the instance's MAC is the tag: no header, no MTU change
            rules.append(f"table={T_FORWARD},priority=110,cookie={cookie(K_LABEL, label)},"
                         f"ip,nw_dst={DSID},dl_dst={mac},actions=output:{port}")
    return rules


def learn_fwd(k: int, idle: int, hard: int = 0, kind: int = K_LEARNED_FWD) -> str:
    """learn(): the per-flow affinity entry (5-tuple) that sends the flow to instance k.

    It copies the packet's own fields into the learned match, so it must run BEFORE anything
    rewrites nw_dst."""
    return (f"learn(table={T_AFFINITY},idle_timeout={idle},hard_timeout={hard},priority=100,"
            f"cookie={cookie(kind, k)},eth_type=0x800,nw_proto=6,NXM_OF_IP_SRC[],"
            f"NXM_OF_IP_DST[],NXM_OF_TCP_SRC[],NXM_OF_TCP_DST[],load:{k}->NXM_NX_REG0[])")


def learn_rev(k: int, idle: int, hard: int = 0) -> str:
    """learn(): the reply entry (D-BID -> D-SID). It runs AFTER the rewrite, so nw_dst is
    already the D-BID, and on every translation of the flow's forward packets, which keeps it
    alive as long as the forward entry (OVS refreshes a learned entry while a datapath flow
    whose translation learned it is used)."""
    return (f"learn(table={T_AFFINITY},idle_timeout={idle},hard_timeout={hard},priority=100,"
            f"cookie={cookie(K_LEARNED_REV, k)},eth_type=0x800,nw_proto=6,"
            f"NXM_OF_IP_SRC[]=NXM_OF_IP_DST[],NXM_OF_IP_DST[]=NXM_OF_IP_SRC[],"
            f"NXM_OF_TCP_SRC[]=NXM_OF_TCP_DST[],NXM_OF_TCP_DST[]=NXM_OF_TCP_SRC[],"
            f"load:{hex(ip_int(DSID))}->NXM_OF_IP_SRC[],"
            f"load:{hex(mac_int(VMAC))}->NXM_OF_ETH_SRC[])")


def slot_match(slot: int) -> str:
    """A bucket (slot): tcp_src bits 1..4 (bit 0 is almost always 0: see the docs)."""
    return f"{SVC_MATCH},tp_src={hex(slot << 1)}/{hex(BUCKET_MASK)}"


def classify_rules(overlay: bool, reverse: str) -> list[str]:
    """Table 0 service entries and the miss entries of tables 2 and 3 (learn and bucket modes).

    reverse: "learned" (replies look up the learned reverse entries in table 2) or "wildcard"
    (one entry per instance rewrites every reply from D-BID:port)."""
    rules = [
        f"table={T_CLASSIFY},priority=1000,cookie={cookie(K_SERVICE, 1)},{SVC_MATCH},"
        f"actions=resubmit(,{T_AFFINITY}),goto_table:{T_INSTANCE}",
        f"table={T_AFFINITY},priority=0,cookie={cookie(K_SERVICE, 1)},"
        f"actions=resubmit(,{T_DECISION})",
        f"table={T_DECISION},priority=0,cookie={cookie(K_SERVICE, 1)},actions=drop",
    ]
    if overlay:
        return rules
    for _host, dbid, _mac, _egress, _label in INSTANCES.values():
        if reverse == "wildcard":
            actions = (f"set_field:{VMAC}->eth_src,set_field:{DSID}->ip_src,"
                       f"goto_table:{T_FORWARD}")
        else:
            actions = f"resubmit(,{T_AFFINITY}),goto_table:{T_FORWARD}"
        rules.append(f"table={T_CLASSIFY},priority=1000,cookie={cookie(K_SERVICE, 1)},"
                     f"tcp,nw_src={dbid},tp_src={PORT},actions={actions}")
    return rules


def instance_rules(overlay_tag: str | None, idle: int, reverse_learn: bool) -> list[str]:
    """Table 4: what reg0 = k means at the ingress. goto_table cannot go back to table 1 in
    OpenFlow, so these end with resubmit(,1)."""
    rules = [f"table={T_INSTANCE},priority=0,cookie={cookie(K_SERVICE, 1)},actions=drop"]
    for k, (_host, dbid, mac, _egress, label) in INSTANCES.items():
        if overlay_tag == "mpls":
            actions = f"push_mpls:0x8847,set_field:{label}->mpls_label,resubmit(,{T_FORWARD})"
        elif overlay_tag == "mac":
            actions = f"set_field:{mac}->eth_dst,resubmit(,{T_FORWARD})"
        else:
            rev = learn_rev(k, idle) + "," if reverse_learn else ""
            actions = (f"set_field:{mac}->eth_dst,set_field:{dbid}->ip_dst,{rev}"
                       f"resubmit(,{T_FORWARD})")
        rules.append(f"table={T_INSTANCE},priority=100,cookie={cookie(K_INSTANCE, k)},"
                     f"tcp,reg0={k},actions={actions}")
    return rules


def static_rules(k: int, overlay_tag: str | None) -> list[str]:
    """The reference: a pre-installed wildcard path of every flow to instance k."""
    _host, dbid, mac, _egress, label = INSTANCES[k]
    head = f"table={T_CLASSIFY},priority=1000,cookie={cookie(K_SERVICE, 1)}"
    if overlay_tag == "mpls":
        return [f"{head},{SVC_MATCH},actions=push_mpls:0x8847,set_field:{label}->mpls_label,"
                f"goto_table:{T_FORWARD}"]
    if overlay_tag == "mac":
        return [f"{head},{SVC_MATCH},actions=set_field:{mac}->eth_dst,goto_table:{T_FORWARD}"]
    return [f"{head},{SVC_MATCH},actions=set_field:{mac}->eth_dst,set_field:{dbid}->ip_dst,"
            f"goto_table:{T_FORWARD}",
            f"{head},tcp,nw_src={dbid},tp_src={PORT},actions=set_field:{VMAC}->eth_src,"
            f"set_field:{DSID}->ip_src,goto_table:{T_FORWARD}"]


def learn_decision(slots: list[int], idle: int) -> list[str]:
    """learn mode, table 3: one rule per slot (masked tcp_src bits): learn, then reg0 = k."""
    return [f"table={T_DECISION},priority=100,cookie={cookie(K_DECISION, s)},{slot_match(s)},"
            f"actions={learn_fwd(k, idle)},set_field:{k}->reg0" for s, k in enumerate(slots)]


def learn_group_rules(idle: int) -> list[str]:
    """learn-group mode: table 3 -> select group; a bucket cannot learn (OVS runs a bucket as
    an action set and drops learn from it), so each bucket sets reg0 and resubmits to table 5,
    which learns and finishes the pipeline there: what a bucket changes is undone when the
    group returns, and table 0's goto_table:4 then meets reg0 = 0 (drop)."""
    rules = [f"table={T_DECISION},priority=100,cookie={cookie(K_DECISION)},{SVC_MATCH},"
             f"actions=group:{GROUP_ID}"]
    for k in INSTANCES:
        rules.append(f"table={T_LEARN},priority=100,cookie={cookie(K_DECISION, k)},tcp,reg0={k},"
                     f"actions={learn_fwd(k, idle)},resubmit(,{T_INSTANCE})")
    return rules


def group_text(weights: dict[int, int]) -> str:
    buckets = ",".join(f"bucket=weight:{w},actions=set_field:{k}->reg0,resubmit(,{T_LEARN})"
                       for k, w in weights.items() if w > 0)
    return f"group_id={GROUP_ID},type=select,{buckets}"


def bucket_rule(slot: int, k: int) -> str:
    """bucket mode, table 3: bucket `slot` is served by instance k (no per-flow state)."""
    return (f"table={T_DECISION},priority=100,cookie={cookie(K_DECISION, slot)},"
            f"{slot_match(slot)},actions=set_field:{k}->reg0")


def bucket_pinning_rules(slot: int, old: int, new: int, idle: int) -> list[str]:
    """bucket mode, phase 1 of moving `slot` from `old` to `new` (lasts idle_timeout + margin):
    every packet of the bucket learns a pin of its flow to `old` and goes to `old`, except TCP
    SYNs (new connections), which are pinned to `new` and go there at once.

    Install the first rule (1a), wait PIN_SETTLE_S, then the SYN rule (1b): OVS revalidates a
    wide datapath flow with the key of the packet that created it, which may be the SYN of a
    flow still alive; with the SYN rule present that translation pins the live flow to `new`."""
    return [
        f"table={T_DECISION},priority=100,cookie={cookie(K_DECISION, slot)},{slot_match(slot)},"
        f"actions={learn_fwd(old, idle, kind=K_PIN)},set_field:{old}->reg0",
        f"table={T_DECISION},priority=110,cookie={cookie(K_DECISION, slot)},{slot_match(slot)},"
        f"tcp_flags=+syn-ack,actions={learn_fwd(new, idle, kind=K_PIN)},set_field:{new}->reg0",
    ]


def quotas(weights: dict[int, int], n: int) -> dict[int, int]:
    """How many of n slots each instance gets (largest remainder)."""
    total = sum(weights.values())
    quota = {k: n * w / total for k, w in weights.items()}
    count = {k: int(q) for k, q in quota.items()}
    short = n - sum(count.values())
    for k in sorted(quota, key=lambda k: quota[k] - count[k], reverse=True)[:short]:
        count[k] += 1
    return count


def spread(weights: dict[int, int], n: int) -> list[int]:
    """A fresh slot map: slots -> instances in proportion to weights, interleaved."""
    count = quotas(weights, n)
    out: list[int] = []
    credit = {k: 0 for k in weights}
    for _ in range(n):  # smooth weighted round robin over the slots
        for k in credit:
            credit[k] += count[k]
        best = max(credit, key=lambda k: credit[k])
        credit[best] -= n
        out.append(best)
    return out


def bucket_moves(old: list[int], weights: dict[int, int]) -> list[int]:
    """The slot map for new weights that moves as few slots as possible away from `old`."""
    want = quotas(weights, len(old))
    have = Counter(old)
    new = list(old)
    for slot, k in enumerate(old):
        if have[k] > want.get(k, 0):
            target = next(t for t in want if have[t] < want[t])
            have[k] -= 1
            have[target] += 1
            new[slot] = target
    return new


# modes: name -> (kind, overlay tag)
MODES = {
    "static": ("static", None), "learn": ("learn", None), "learn-wrev": ("learn-wrev", None),
    "learn-group": ("learn-group", None), "bucket": ("bucket", None),
    "bucket-naive": ("bucket-naive", None), "bucket-syn-at-once": ("bucket", None),
    "bucket-nosyn": ("bucket", None),
    "overlay-static": ("static", "mpls"), "overlay-learn": ("learn", "mpls"),
    "overlay-bucket": ("bucket", "mpls"), "overlay-bucket-mac": ("bucket", "mac"),
    "overlay-learn-mac": ("learn", "mac"),
}
N_SLOTS = 1 << BUCKET_BITS
MUST_BREAK = ("static", "bucket-naive")  # negative controls
PIN_SETTLE_S = 1.0  # between phase 1a and 1b of a bucket move (see bucket_pinning_rules)


def install(bridge: str, mode: str, idle: int) -> None:
    """Replace the service's entries at the ingress with those of `mode` (all to i1)."""
    kind, tag = MODES[mode]
    # Empty the datapath flow cache first: a purged datapath flow pushes its last statistics
    # to the rules its translation hits *now*, so purging after the deletion would credit
    # packets already delivered to table 1's controller entry (an accounting artefact).
    sh(["ovs-appctl", "revalidator/purge"])
    ofctl("del-flows", bridge, f"cookie={cookie(K_SERVICE)}/0xffff000000000000")
    for table in (T_AFFINITY, T_DECISION, T_INSTANCE, T_LEARN):
        ofctl("del-flows", bridge, f"table={table}")
    ofctl("del-groups", bridge)
    overlay = tag is not None
    if kind == "static":
        rules = static_rules(1, tag)
    elif kind == "learn":
        rules = (classify_rules(overlay, "learned") + instance_rules(tag, idle, True)
                 + learn_decision([1] * N_SLOTS, idle))
    elif kind == "learn-wrev":  # learn forward, wildcard reverse: one upcall per connection
        rules = (classify_rules(overlay, "wildcard") + instance_rules(tag, idle, False)
                 + learn_decision([1] * N_SLOTS, idle))
    elif kind == "learn-group":
        ofctl("add-group", bridge, group_text({1: 1, 2: 0}))
        rules = (classify_rules(overlay, "learned") + instance_rules(tag, idle, True)
                 + learn_group_rules(idle))
    else:  # bucket, bucket-naive
        rules = (classify_rules(overlay, "wildcard") + instance_rules(tag, idle, False)
                 + [bucket_rule(s, 1) for s in range(N_SLOTS)])
    add_flows(bridge, rules)
    sh(["ovs-appctl", "revalidator/purge"])  # and start the run from an empty cache


# ---- host programs: server and clients -------------------------------------------------------

def serve(binds: list[str], port: int, name: str) -> None:
    """Reply '<name>\\n' and close to 'G'; stream '<name> <n>\\n' every 0.1 s to 'S'; send 1 MB
    to 'B'; count an upload to 'U' (until EOF) and reply the count. One epoll loop."""
    sel = selectors.DefaultSelector()
    for addr in binds:
        lsock = socket.socket()
        lsock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        lsock.bind((addr, port))
        lsock.listen(4096)
        lsock.setblocking(False)
        sel.register(lsock, selectors.EVENT_READ, None)
    reply = f"{name}\n".encode()
    streams: dict[socket.socket, int] = {}
    print(f"serving {name} on {binds}:{port}", flush=True)
    next_tick = time.monotonic()
    while True:
        for key, _ in sel.select(0.05 if streams else None):
            if key.data is None:
                for _ in range(256):
                    try:
                        conn, _ = key.fileobj.accept()
                    except (BlockingIOError, InterruptedError):
                        break
                    conn.setblocking(False)
                    sel.register(conn, selectors.EVENT_READ, True)
                continue
            conn = key.fileobj
            try:
                data = conn.recv(64)
            except OSError:
                data = b""
            if data and conn in streams:
                continue  # the long-lived client's keep-alive bytes
            if data.startswith(b"S"):
                streams[conn] = 0
                continue
            sel.unregister(conn)
            streams.pop(conn, None)
            try:
                if data.startswith(b"B"):
                    conn.setblocking(True)
                    conn.sendall(b"x" * (1 << 20))
                elif data.startswith(b"U"):  # count an upload until EOF, reply the count
                    conn.setblocking(True)
                    got = len(data) - 2
                    while chunk := conn.recv(65536):
                        got += len(chunk)
                    conn.sendall(f"{got}\n".encode())
                elif data:
                    conn.send(reply)
            except OSError:
                pass
            conn.close()
        if streams and time.monotonic() >= next_tick:
            next_tick = time.monotonic() + 0.1
            for conn in list(streams):
                streams[conn] += 1
                with contextlib.suppress(OSError):
                    conn.send(f"{name} {streams[conn]}\n".encode())


def _rst_socket() -> socket.socket:
    sock = socket.socket()
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
    return sock


def client_latency(dst: str, port: int, n: int, gap: float) -> dict[str, Any]:
    """N sequential connections: connect(), send 'G', time to the first byte of the reply."""
    times, served, ports, errors = [], Counter(), [], Counter()
    for _ in range(n):
        sock = _rst_socket()
        sock.settimeout(3)
        start = time.perf_counter()
        try:
            sock.connect((dst, port))
            sock.sendall(b"G\n")
            data = sock.recv(64)
            took = time.perf_counter() - start
            if not data:
                raise OSError("empty reply")
            times.append(took)
            served[data.decode().strip()] += 1
            ports.append(sock.getsockname()[1])
        except OSError as exc:
            errors[type(exc).__name__ + ":" + str(exc)[:40]] += 1
        finally:
            sock.close()
        time.sleep(gap)
    return {"times": times, "served": dict(served), "ports": ports, "errors": dict(errors)}


def client_rate(src: str, dst: str, port: int, seconds: float, inflight: int,
                first_port: int = 1024) -> dict[str, Any]:
    """Keep `inflight` connections open at once for `seconds`; count completed ones. Source
    ports are bound explicitly from `first_port` up, so none is reused within a run."""
    sel = selectors.EpollSelector()
    ports = iter(range(first_port, 65536))
    done = errors = 0
    lat: list[float] = []
    served: Counter[str] = Counter()
    state: dict[socket.socket, float] = {}

    def start_one() -> bool:
        for p in ports:
            sock = _rst_socket()
            sock.setblocking(False)
            try:
                sock.bind((src, p))
            except OSError:
                sock.close()
                continue
            err = sock.connect_ex((dst, port))
            if err not in (0, errno.EINPROGRESS):
                sock.close()
                continue
            state[sock] = time.perf_counter()
            sel.register(sock, selectors.EVENT_WRITE, "connecting")
            return True
        return False

    begin = time.perf_counter()
    stop = begin + seconds
    for _ in range(inflight):
        start_one()
    while state:
        now = time.perf_counter()
        for key, _ in sel.select(0.2):
            sock = key.fileobj
            finished = False
            if key.data == "connecting":
                if sock.getsockopt(socket.SOL_SOCKET, socket.SO_ERROR) != 0:
                    errors += 1
                    finished = True
                else:
                    try:
                        sock.send(b"G\n")
                        sel.modify(sock, selectors.EVENT_READ, "reading")
                    except OSError:
                        errors += 1
                        finished = True
            else:
                try:
                    data = sock.recv(64)
                except OSError:
                    data = b""
                if data:
                    done += 1
                    lat.append(time.perf_counter() - state[sock])
                    served[data.decode().strip()] += 1
                else:
                    errors += 1
                finished = True
            if finished:
                sel.unregister(sock)
                del state[sock]
                sock.close()
                if time.perf_counter() < stop:
                    start_one()
        for sock, began in list(state.items()):  # give up on connections older than 3 s
            if now - began > 3:
                sel.unregister(sock)
                del state[sock]
                sock.close()
                errors += 1
                if now < stop:
                    start_one()
    elapsed = min(time.perf_counter(), stop + 3) - begin
    lat.sort()
    return {"done": done, "errors": errors, "elapsed": elapsed, "rate": done / seconds,
            "served": dict(served),
            "lat_median_ms": 1000 * lat[len(lat) // 2] if lat else None}


def client_bulk(dst: str, port: int) -> dict[str, Any]:
    """1 MB down (server to client), then 1 MB up (client to server, full-size segments)."""
    out: dict[str, Any] = {}
    for what in ("down", "up"):
        start = time.perf_counter()
        count, reply = 0, b""
        try:
            with socket.create_connection((dst, port), timeout=10) as sock:
                if what == "down":
                    sock.sendall(b"B\n")
                else:
                    sock.sendall(b"U\n" + b"y" * (1 << 20))
                    sock.shutdown(socket.SHUT_WR)
                while data := sock.recv(65536):
                    count += len(data)
                    reply += data if what == "up" else b""
        except OSError as exc:
            out[what] = {"error": str(exc), "s": round(time.perf_counter() - start, 2)}
            continue
        size = int(reply.decode() or 0) if what == "up" else count
        out[what] = {"bytes": size, "s": round(time.perf_counter() - start, 2)}
    return out


def client_stream(dst: str, port: int, seconds: float) -> None:
    """One long-lived connection: print every line the server streams, send a byte each 0.1 s."""
    sock = socket.create_connection((dst, port), timeout=2)
    print(f"local {sock.getsockname()} peer {sock.getpeername()}", flush=True)
    sock.sendall(b"S\n")
    sock.settimeout(0.1)
    end = time.monotonic() + seconds
    buf = b""
    while time.monotonic() < end:
        try:
            data = sock.recv(4096)
            if not data:
                print("closed by peer", flush=True)
                return
            buf += data
            *lines, buf = buf.split(b"\n")
            for line in lines:
                print(f"{time.monotonic():.2f} {line.decode()}", flush=True)
        except TimeoutError:
            pass
        except OSError as exc:
            print(f"error {exc}", flush=True)
            return
        with contextlib.suppress(OSError):
            sock.send(b".")
    print("done", flush=True)


# ---- the lab --------------------------------------------------------------------------------

def sh(argv: list[str], check: bool = True) -> str:
    done = subprocess.run(argv, capture_output=True, text=True, timeout=60, check=False)
    if check and done.returncode != 0:
        raise RuntimeError(f"{' '.join(argv)}: {done.stderr.strip()}")
    return done.stdout


def ofctl(*args: str) -> str:
    return sh(["ovs-ofctl", "-O", "OpenFlow13", *args])


def add_flows(bridge: str, rules: list[str]) -> None:
    """Add rules through a file (one flow-mod each; an identical match is replaced)."""
    path = Path(f"/tmp/dcp-{bridge}.flows")
    path.write_text("\n".join(rules) + "\n")
    ofctl("add-flows", bridge, str(path))
    path.unlink()


def dump(bridge: str, table: int | None = None) -> list[str]:
    args = ["dump-flows", bridge] + ([f"table={table}"] if table is not None else [])
    return [line.strip() for line in ofctl(*args).splitlines()[1:] if line.strip()]


def packet_in_hits(bridges: list[str]) -> int:
    """Packets that hit a rule sending to the controller (would have been packet-ins)."""
    hits = 0
    for bridge in bridges:
        for line in dump(bridge):
            if "CONTROLLER" in line:
                hits += int(re.search(r"n_packets=(\d+)", line).group(1))
    return hits


def dp_stats() -> dict[str, int]:
    """hit/missed of the userspace datapath (all netdev bridges share it)."""
    out = sh(["ovs-appctl", "dpif/show"])
    found = re.search(r"netdev@ovs-netdev: hit:(\d+) missed:(\d+)", out)
    return {"hit": int(found.group(1)), "missed": int(found.group(2))} if found else {}


def revalidations() -> int:
    """How often a flow-table change made the revalidators re-translate every datapath flow."""
    found = re.search(r"^rev_flow_table .*total: (\d+)", sh(["ovs-appctl", "coverage/show"]),
                      re.MULTILINE)
    return int(found.group(1)) if found else 0


def flow_limit() -> int:
    """The datapath flow limit OVS currently applies (it lowers it when dumps get slow)."""
    found = re.search(r"\(limit (\d+)\)", sh(["ovs-appctl", "upcall/show"]))
    return int(found.group(1)) if found else 0


def megaflows(in_port: str) -> list[str]:
    """Datapath flows entering at `in_port` (a port name), masks included."""
    out = sh(["ovs-appctl", "dpctl/dump-flows", "-m", "netdev@ovs-netdev"], check=False)
    return [line for line in out.splitlines() if f"in_port({in_port})" in line]


class Net:
    """One short-lived Mininet network through mininet_tests.harness.Lab (lock, teardown).

    overlay_tag None: instances serve on their D-BID; "mpls"/"mac": they serve on the D-SID
    (on lo, arp_ignore=1) and the switches get the tag paths. `mtu` is set on the
    switch-to-switch ports (an MPLS label needs 4 bytes more than 1500)."""

    def __init__(self, name: str, overlay_tag: str | None = None, mtu: int = 1500) -> None:
        sys.path.insert(0, str(ROOT))
        from mininet.topo import Topo

        from mininet_tests.harness import Lab

        class Line(Topo):
            def build(self) -> None:
                s = {n: self.addSwitch(n, dpid=f"{i:016x}")
                     for i, n in ((1, "s1"), (2, "s2"), (3, "s3"))}
                self.addHost("h1", ip="10.0.0.1/8", mac=CLIENT[2])
                self.addLink("h1", s["s1"], port2=1)
                self.addLink(s["s1"], s["s2"], port1=2, port2=2)
                self.addLink(s["s2"], s["s3"], port1=3, port2=2)
                for _k, (host, dbid, mac, sw, _label) in INSTANCES.items():
                    self.addHost(host, ip=f"{dbid}/8", mac=mac)
                    self.addLink(host, s[sw], port2=1)

        self.lab = Lab(f"dataplane-proto-{name}")
        self.bridges = ["s1", "s2", "s3"]
        try:
            self.net = self.lab.build_net(Line(), controller_port=None, fail_mode="secure")
            for intf in ("s1-eth2", "s2-eth2", "s2-eth3", "s3-eth2"):
                sh(["ovs-vsctl", "set", "interface", intf, f"mtu_request={mtu}"])
            for bridge in self.bridges:
                ofctl("del-flows", bridge)
                add_flows(bridge, base_rules(bridge, overlay_tag))
            h1 = self.net["h1"]
            h1.cmd(f"ip neigh replace {DSID} lladdr {VMAC} dev h1-eth0 nud permanent")
            for addr, mac in MACS.items():
                if addr != CLIENT[1]:
                    h1.cmd(f"ip neigh replace {addr} lladdr {mac} dev h1-eth0 nud permanent")
            for _k, (host, dbid, _mac, _sw, _label) in INSTANCES.items():
                node = self.net[host]
                node.cmd(f"ip neigh replace {CLIENT[1]} lladdr {CLIENT[2]} dev {host}-eth0 "
                         "nud permanent")
                binds = [dbid]
                if overlay_tag:  # every instance answers on the D-SID itself
                    node.cmd("sysctl -qw net.ipv4.conf.all.arp_ignore=1 "
                             "net.ipv4.conf.all.arp_announce=2")
                    node.cmd(f"ip addr add {DSID}/32 dev lo")
                    binds = [DSID]
                argv = [PY, __file__, "serve", "--port", str(PORT), "--name", host]
                for addr in binds:
                    argv += ["--bind", addr]
                self.lab.popen(host, argv, "server", ready=r"^serving ")
        except BaseException:
            self.close()
            raise

    def client(self, *args: str) -> dict[str, Any]:
        out = self.net["h1"].cmd(" ".join([PY, __file__, "client", *args]))
        try:
            return json.loads(out.strip().splitlines()[-1])
        except (ValueError, IndexError) as exc:
            raise RuntimeError(f"client {args}: {out[-2000:]}") from exc

    def stream(self, seconds: float) -> Any:
        return self.lab.popen("h1", [PY, __file__, "client", "stream", "--seconds",
                                     str(seconds)], "stream", ready=r"^\S+ i\d \d+")

    def close(self) -> None:
        problems = self.lab.close()
        if problems:
            print("teardown problems:", *problems, sep="\n  ")


# ---- the experiments ------------------------------------------------------------------------

def summary(times: list[float]) -> dict[str, float]:
    if not times:
        return {}
    ordered = sorted(times)
    return {"n": len(ordered), "median_ms": round(1000 * statistics.median(ordered), 3),
            "p90_ms": round(1000 * ordered[int(0.9 * (len(ordered) - 1))], 3)}


def stream_lines(proc: Any) -> list[tuple[float, str]]:
    out = []
    for line in proc.log().splitlines():
        parts = line.split()
        if len(parts) == 3 and parts[1].startswith("i"):
            out.append((float(parts[0]), parts[1]))
    return out


def short_megaflow(line: str) -> str:
    """The interesting part of a datapath flow: its IPv4/TCP match (with masks) and actions."""
    match = re.search(r"(ipv4\(.*?\)),(tcp\(.*?\)).*?actions:(.*?)(?:, dp-extra|$)", line)
    return " ".join(match.groups()) if match else line[:200]


def change_decision(net: Net, mode: str, idle: int, report: dict[str, Any]) -> float:
    """Send every new flow to i2 the way `mode` does it; return when the change began."""
    kind, tag = MODES[mode]
    s1 = INGRESS
    began = time.monotonic()
    if kind == "static":  # the reference has no affinity: its flows move (and break)
        add_flows(s1, static_rules(2, tag))
    elif kind in ("learn", "learn-wrev"):
        add_flows(s1, learn_decision([2] * N_SLOTS, idle))
    elif kind == "learn-group":
        ofctl("mod-group", s1, group_text({1: 0, 2: 1}))
    elif kind == "bucket-naive":  # moving buckets without pinning: the negative control
        add_flows(s1, [bucket_rule(s, 2) for s in range(N_SLOTS)])
    else:  # bucket: phase 1a (pin to old), 1b (+ SYNs to new), idle_timeout + 1 s, phase 2
        old = [1] * N_SLOTS
        new = bucket_moves(old, {1: 0, 2: 1})
        moving = [s for s in range(N_SLOTS) if old[s] != new[s]]
        report["moving_buckets"] = len(moving)
        rules = [r for s in moving for r in bucket_pinning_rules(s, old[s], new[s], idle)]
        if mode == "bucket-syn-at-once":  # both phase-1 rules at once (failed 2 of 3 once)
            add_flows(s1, rules)
        elif mode == "bucket-nosyn":  # no SYN rule: new flows wait for phase 2 (safe as is)
            add_flows(s1, [r for r in rules if "tcp_flags" not in r])
        else:
            add_flows(s1, [r for r in rules if "tcp_flags" not in r])
            time.sleep(PIN_SETTLE_S)  # let the revalidators turn the wide datapath flows exact
            add_flows(s1, [r for r in rules if "tcp_flags" in r])
        time.sleep(0.5)
        during = net.client("latency", "--n", "20", "--gap", "0.01")
        report["new_flows_during_pinning"] = during["served"]
        pins = [e for e in dump(s1, T_AFFINITY) if "priority=100" in e]
        report["pins_during_pinning"] = {
            "to_i1": sum(cookie(K_PIN, 1) + "," in e for e in pins),
            "to_i2": sum(cookie(K_PIN, 2) + "," in e for e in pins),
            "stream_pin": [e for e in pins if f"tp_src={report['stream_port']}," in e]}
        time.sleep(max(0.0, idle + 1 - (time.monotonic() - began)))
        add_flows(s1, [bucket_rule(s, new[s]) for s in moving])
        for s in moving:
            ofctl("--strict", "del-flows", s1,
                  f"table={T_DECISION},priority=110,{slot_match(s)},tcp_flags=+syn-ack")
        report["moved_at_s"] = round(time.monotonic() - began, 2)
        report["stream_pin_at_end"] = [e.split(",")[0] for e in dump(s1, T_AFFINITY)
                                       if f"tp_src={report['stream_port']}," in e]
    return began


def weighted(net: Net, mode: str, idle: int) -> dict[str, int] | None:
    """A 3:1 decision expressed in the switch: where 64 new connections go."""
    kind, _tag = MODES[mode]
    slots = spread({1: 3, 2: 1}, N_SLOTS)
    if kind in ("learn", "learn-wrev"):
        add_flows(INGRESS, learn_decision(slots, idle))
    elif kind == "learn-group":
        ofctl("mod-group", INGRESS, group_text({1: 3, 2: 1}))
    elif kind in ("bucket", "bucket-naive"):
        add_flows(INGRESS, [bucket_rule(s, k) for s, k in enumerate(slots)])
    else:
        return None
    served: dict[str, int] = net.client("latency", "--n", "64", "--gap", "0.01")["served"]
    return served


def check_mode(mode: str, idle: int, mtu: int = 1508) -> dict[str, Any]:
    """Functional check of one mode in its own network (see the module docstring)."""
    kind, tag = MODES[mode]
    report: dict[str, Any] = {"mode": mode, "mtu": mtu if tag else 1500}
    net = Net(mode, overlay_tag=tag, mtu=mtu if tag else 1500)
    try:
        s1 = INGRESS
        install(s1, mode, idle)
        first = net.client("latency", "--n", "1", "--gap", "0")
        report["first_connection"] = {"served": first["served"], "errors": first["errors"]}
        stream = net.stream(60)
        report["stream_port"] = int(re.search(r"local \('[\d.]+', (\d+)\)", stream.log()).group(1))
        report["stream_peer"] = re.search(r"peer (\(.*?\))", stream.log()).group(1)
        before = dp_stats()
        lat = net.client("latency", "--n", "50", "--gap", "0.01")
        after = dp_stats()
        report["fifty"] = {"served": lat["served"], "errors": lat["errors"],
                           "even_ports": sum(1 for p in lat["ports"] if p % 2 == 0),
                           "upcalls_per_conn": round((after["missed"] - before["missed"]) / 50, 2)}
        report["bulk_1MB"] = net.client("bulk")
        entries = [e for e in dump(s1, T_AFFINITY) if "priority=100" in e]
        report["affinity_entries"] = len(entries)
        report["sample_affinity"] = [re.sub(r"duration=[\d.]+s, |n_bytes=\d+, ", "", e)
                                     for e in entries if f"{report['stream_port']}" in e]
        flows = megaflows("s1-eth1")
        report["megaflows_from_client"] = len(flows)
        report["sample_megaflows"] = sorted({short_megaflow(f) for f in flows})[:3]

        began = change_decision(net, mode, idle, report)
        time.sleep(0.3)
        after_change = net.client("latency", "--n", "20", "--gap", "0.01")
        report["new_flows_after_change"] = after_change["served"]
        report["errors_after_change"] = after_change["errors"]
        time.sleep(3.0)
        lines = stream_lines(stream)
        tail = stream.log().splitlines()[-1]
        late = [who for t, who in lines if t > began + 1.0]
        report["stream"] = {"before": dict(Counter(w for t, w in lines if t < began)),
                            "after": dict(Counter(late)), "last_line": tail}
        report["stream_kept_instance"] = (len(late) >= 10 and set(late) == {"i1"}
                                          and tail.split()[1:2] == ["i1"])
        report["as_expected"] = report["stream_kept_instance"] == (mode not in MUST_BREAK)
        report["weighted_3_to_1"] = weighted(net, mode, idle)
        report["tables_s1"] = {t: len(dump(s1, t)) for t in range(6)}
        report["packet_in_hits"] = packet_in_hits(net.bridges)
        if kind == "learn-group":
            report["group"] = ofctl("dump-groups", s1).splitlines()[1:]
    finally:
        net.close()
    return report


def bench(modes: list[str], args: argparse.Namespace) -> dict[str, Any]:
    """Interleaved rounds in one network: every round measures every mode once."""
    tags = {MODES[m][1] for m in modes}
    assert len(tags) == 1, "translation and overlay modes need different networks"
    tag = tags.pop()
    net = Net("bench-" + ("overlay" if tag else "translation"), overlay_tag=tag,
              mtu=1508 if tag else 1500)
    runs: dict[str, list[dict[str, Any]]] = {m: [] for m in modes}
    ref = "overlay-static" if tag else "static"
    order = random.Random(5)
    try:
        for rnd in range(args.rounds):
            shuffled = list(modes)
            order.shuffle(shuffled)  # the machine is shared: spread drifts over the modes
            for mode in shuffled:
                install(INGRESS, mode, args.idle)
                time.sleep(0.5)
                hits, before = packet_in_hits(net.bridges), dp_stats()
                lat = net.client("latency", "--n", str(args.n), "--gap", "0.01")
                after = dp_stats()
                run = {"round": rnd, **summary(lat["times"]), "errors": lat["errors"],
                       "upcalls_per_conn": round((after["missed"] - before["missed"]) / args.n, 2),
                       "loadavg_1min": float(Path("/proc/loadavg").read_text().split()[0])}
                install(INGRESS, mode, args.idle)  # fresh tables and datapath for the rate run
                time.sleep(0.5)
                before, revs = dp_stats(), revalidations()
                rate = net.client("rate", "--seconds", str(args.rate_seconds),
                                  "--inflight", str(args.inflight))
                after = dp_stats()
                run.update(rate=round(rate["rate"]), rate_errors=rate["errors"],
                           rate_revalidations=revalidations() - revs, flow_limit=flow_limit(),
                           rate_lat_median_ms=round(rate["lat_median_ms"] or 0, 2),
                           rate_upcalls_per_conn=round((after["missed"] - before["missed"])
                                                       / max(1, rate["done"]), 2),
                           affinity_entries=len(dump(INGRESS, T_AFFINITY)) - 1,
                           packet_in_hits=packet_in_hits(net.bridges) - hits)
                print(f"  round {rnd} {mode:15s} median {run['median_ms']:.3f} ms  "
                      f"p90 {run['p90_ms']:.3f} ms  rate {run['rate']}/s  "
                      f"upcalls/conn {run['upcalls_per_conn']}  "
                      f"load {run['loadavg_1min']}", flush=True)
                runs[mode].append(run)
    finally:
        net.close()
    table = {}
    for mode, rs in runs.items():
        refs = runs[ref]
        lat_ratio = [r["median_ms"] / q["median_ms"] for r, q in zip(rs, refs, strict=True)]
        rate_ratio = [r["rate"] / q["rate"] for r, q in zip(rs, refs, strict=True)]
        table[mode] = {
            "median_ms": round(statistics.median(r["median_ms"] for r in rs), 3),
            "p90_ms": round(statistics.median(r["p90_ms"] for r in rs), 3),
            "rate": round(statistics.median(r["rate"] for r in rs)),
            "upcalls_per_conn": statistics.median(r["upcalls_per_conn"] for r in rs),
            "latency_vs_static": round(statistics.median(lat_ratio), 2),
            "latency_vs_static_range": [round(min(lat_ratio), 2), round(max(lat_ratio), 2)],
            "rate_vs_static": round(statistics.median(rate_ratio), 2),
            "rate_vs_static_range": [round(min(rate_ratio), 2), round(max(rate_ratio), 2)],
            "packet_in_hits": sum(r["packet_in_hits"] for r in rs),
            "revalidations_per_rate_run": statistics.median(r["rate_revalidations"] for r in rs),
        }
    return {"summary": table, "runs": runs}


# ---- Ryu: the same rules as OpenFlow 1.3 messages built by Ryu 4.34 ---------------------------

class RyuDp:
    """Enough of a datapath for Ryu to serialise OpenFlow 1.3 messages."""

    def __init__(self) -> None:
        from ryu.ofproto import ofproto_v1_3, ofproto_v1_3_parser
        self.ofproto, self.ofproto_parser, self.id = ofproto_v1_3, ofproto_v1_3_parser, 1


def ryu_cookie(kind: int, ident: int = 0) -> int:
    return int(cookie(kind, ident), 16)


def ryu_learn_fwd(dp: RyuDp, k: int, idle: int, kind: int = K_LEARNED_FWD) -> Any:
    """NXActionLearn for learn_fwd(): match specs copy the packet's own fields (src == dst)."""
    p = dp.ofproto_parser
    return p.NXActionLearn(
        table_id=T_AFFINITY, idle_timeout=idle, hard_timeout=0, priority=100,
        cookie=ryu_cookie(kind, k),
        specs=[p.NXFlowSpecMatch(src=0x0800, dst=("eth_type", 0), n_bits=16),
               p.NXFlowSpecMatch(src=6, dst=("ip_proto", 0), n_bits=8),
               p.NXFlowSpecMatch(src=("ipv4_src", 0), dst=("ipv4_src", 0), n_bits=32),
               p.NXFlowSpecMatch(src=("ipv4_dst", 0), dst=("ipv4_dst", 0), n_bits=32),
               p.NXFlowSpecMatch(src=("tcp_src", 0), dst=("tcp_src", 0), n_bits=16),
               p.NXFlowSpecMatch(src=("tcp_dst", 0), dst=("tcp_dst", 0), n_bits=16),
               p.NXFlowSpecLoad(src=k, dst=("reg0", 0), n_bits=32)])


def ryu_learn_rev(dp: RyuDp, k: int, idle: int) -> Any:
    """NXActionLearn for learn_rev(): crossed fields, immediate loads of D-SID and vMAC."""
    p = dp.ofproto_parser
    return p.NXActionLearn(
        table_id=T_AFFINITY, idle_timeout=idle, hard_timeout=0, priority=100,
        cookie=ryu_cookie(K_LEARNED_REV, k),
        specs=[p.NXFlowSpecMatch(src=0x0800, dst=("eth_type", 0), n_bits=16),
               p.NXFlowSpecMatch(src=6, dst=("ip_proto", 0), n_bits=8),
               p.NXFlowSpecMatch(src=("ipv4_dst", 0), dst=("ipv4_src", 0), n_bits=32),
               p.NXFlowSpecMatch(src=("ipv4_src", 0), dst=("ipv4_dst", 0), n_bits=32),
               p.NXFlowSpecMatch(src=("tcp_dst", 0), dst=("tcp_src", 0), n_bits=16),
               p.NXFlowSpecMatch(src=("tcp_src", 0), dst=("tcp_dst", 0), n_bits=16),
               p.NXFlowSpecLoad(src=ip_int(DSID), dst=("ipv4_src", 0), n_bits=32),
               p.NXFlowSpecLoad(src=mac_int(VMAC), dst=("eth_src", 0), n_bits=48)])


def ryu_flow(dp: RyuDp, table: int, priority: int, ck: int, match: dict[str, Any],
             actions: list[Any], goto: int | None = None) -> Any:
    ofp, p = dp.ofproto, dp.ofproto_parser
    inst = [p.OFPInstructionActions(ofp.OFPIT_APPLY_ACTIONS, actions)] if actions else []
    if goto is not None:
        inst.append(p.OFPInstructionGotoTable(goto))
    return p.OFPFlowMod(datapath=dp, cookie=ck, table_id=table, command=ofp.OFPFC_ADD,
                        priority=priority, buffer_id=ofp.OFP_NO_BUFFER, match=p.OFPMatch(**match),
                        instructions=inst)


SVC_RYU = {"eth_type": 0x0800, "ip_proto": 6, "ipv4_dst": DSID, "tcp_dst": PORT}


def ryu_rule_sets(dp: RyuDp, idle: int) -> dict[str, tuple[list[str], list[str], list[Any]]]:
    """name -> (ovs-ofctl rules, ovs-ofctl groups, the same built by Ryu)."""
    ofp, p = dp.ofproto, dp.ofproto_parser
    svc = ryu_cookie(K_SERVICE, 1)
    resubmit = p.NXActionResubmitTable

    def classify(reverse: str) -> list[Any]:
        msgs = [ryu_flow(dp, T_CLASSIFY, 1000, svc, SVC_RYU, [resubmit(table_id=T_AFFINITY)],
                         goto=T_INSTANCE),
                ryu_flow(dp, T_AFFINITY, 0, svc, {}, [resubmit(table_id=T_DECISION)]),
                ryu_flow(dp, T_DECISION, 0, svc, {}, [])]
        if reverse == "overlay":
            return msgs
        for _k, (_host, dbid, _mac, _egress, _label) in INSTANCES.items():
            match = {"eth_type": 0x0800, "ip_proto": 6, "ipv4_src": dbid, "tcp_src": PORT}
            if reverse == "wildcard":
                acts = [p.OFPActionSetField(eth_src=VMAC), p.OFPActionSetField(ipv4_src=DSID)]
            else:
                acts = [resubmit(table_id=T_AFFINITY)]
            msgs.append(ryu_flow(dp, T_CLASSIFY, 1000, svc, match, acts, goto=T_FORWARD))
        return msgs

    def instance(tag: str | None, reverse_learn: bool) -> list[Any]:
        msgs = [ryu_flow(dp, T_INSTANCE, 0, svc, {}, [])]
        for k, (_host, dbid, mac, _egress, label) in INSTANCES.items():
            if tag == "mpls":
                acts = [p.OFPActionPushMpls(0x8847), p.OFPActionSetField(mpls_label=label)]
            else:
                acts = [p.OFPActionSetField(eth_dst=mac), p.OFPActionSetField(ipv4_dst=dbid)]
                if reverse_learn:
                    acts.append(ryu_learn_rev(dp, k, idle))
            acts.append(resubmit(table_id=T_FORWARD))
            msgs.append(ryu_flow(dp, T_INSTANCE, 100, ryu_cookie(K_INSTANCE, k),
                                 {"eth_type": 0x0800, "ip_proto": 6, "reg0": k}, acts))
        return msgs

    def slot(s: int) -> dict[str, Any]:
        return {**SVC_RYU, "tcp_src": (s << 1, BUCKET_MASK)}

    slots = spread({1: 1, 2: 1}, N_SLOTS)
    learn = [ryu_flow(dp, T_DECISION, 100, ryu_cookie(K_DECISION, s), slot(s),
                      [ryu_learn_fwd(dp, k, idle), p.OFPActionSetField(reg0=k)])
             for s, k in enumerate(slots)]
    group = [ryu_flow(dp, T_DECISION, 100, ryu_cookie(K_DECISION), SVC_RYU,
                      [p.OFPActionGroup(GROUP_ID)])]
    group += [ryu_flow(dp, T_LEARN, 100, ryu_cookie(K_DECISION, k),
                       {"eth_type": 0x0800, "ip_proto": 6, "reg0": k},
                       [ryu_learn_fwd(dp, k, idle), resubmit(table_id=T_INSTANCE)])
              for k in INSTANCES]
    group.insert(0, p.OFPGroupMod(dp, ofp.OFPGC_ADD, ofp.OFPGT_SELECT, GROUP_ID, [
        p.OFPBucket(weight=w, actions=[p.OFPActionSetField(reg0=k),
                                       resubmit(table_id=T_LEARN)])
        for k, w in ((1, 3), (2, 1))]))
    moving, old, new = 3, 1, 2
    buckets = [ryu_flow(dp, T_DECISION, 100, ryu_cookie(K_DECISION, s), slot(s),
                        [p.OFPActionSetField(reg0=k)])
               for s, k in enumerate(slots) if s != moving]
    buckets += [
        ryu_flow(dp, T_DECISION, 100, ryu_cookie(K_DECISION, moving), slot(moving),
                 [ryu_learn_fwd(dp, old, idle, K_PIN), p.OFPActionSetField(reg0=old)]),
        ryu_flow(dp, T_DECISION, 110, ryu_cookie(K_DECISION, moving),
                 {**slot(moving), "tcp_flags": (0x002, 0x012)},
                 [ryu_learn_fwd(dp, new, idle, K_PIN), p.OFPActionSetField(reg0=new)])]
    labels = []
    for _host, dbid, mac, egress, label in INSTANCES.values():
        port = ROUTES["s2"][dbid]
        acts = ([p.OFPActionPopMpls(0x0800), p.OFPActionSetField(eth_dst=mac)]
                if egress == "s2" else [])
        labels.append(ryu_flow(dp, T_FORWARD, 100, ryu_cookie(K_LABEL, label),
                               {"eth_type": 0x8847, "mpls_label": label},
                               [*acts, p.OFPActionOutput(port, 0)]))
    static = [ryu_flow(dp, T_CLASSIFY, 1000, svc, SVC_RYU,
                       [p.OFPActionSetField(eth_dst=INSTANCES[1][2]),
                        p.OFPActionSetField(ipv4_dst=INSTANCES[1][1])], goto=T_FORWARD)]
    label_text = [r for r in base_rules("s2", "mpls") if "mpls_label" in r]
    pinning = bucket_pinning_rules(moving, old, new, idle)
    return {
        "learn (slots, learned reverse)": (
            classify_rules(False, "learned") + instance_rules(None, idle, True)
            + learn_decision(slots, idle), [], classify("learned") + instance(None, True) + learn),
        "learn-group": (
            learn_group_rules(idle), [group_text({1: 3, 2: 1})], group),
        "bucket with one bucket pinning": (
            classify_rules(False, "wildcard") + instance_rules(None, idle, False)
            + [bucket_rule(s, k) for s, k in enumerate(slots) if s != moving] + pinning, [],
            classify("wildcard") + instance(None, False) + buckets),
        "overlay (MPLS) ingress and egress": (
            classify_rules(True, "") + instance_rules("mpls", idle, False) + label_text, [],
            classify("overlay") + instance("mpls", False) + labels),
        "static reference": (static_rules(1, None)[:1], [], static),
    }


def mgmt_push(bridge: str, dp: RyuDp, msgs: list[Any]) -> list[str]:
    """Send serialised messages to a bridge over its management socket (as ovs-ofctl does);
    return the errors the switch answered with."""
    ofp, p = dp.ofproto, dp.ofproto_parser
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    sock.connect(f"/var/run/openvswitch/{bridge}.mgmt")
    sock.settimeout(5)

    def read_msg() -> tuple[int, int, bytes]:
        head = b""
        while len(head) < 8:
            head += sock.recv(8 - len(head))
        _version, kind, length, xid = struct.unpack("!BBHI", head)
        body = b""
        while len(body) < length - 8:
            body += sock.recv(length - 8 - len(body))
        return kind, xid, body

    sock.sendall(struct.pack("!BBHI", ofp.OFP_VERSION, ofp.OFPT_HELLO, 8, 1))
    read_msg()
    for xid, msg in enumerate(msgs, start=100):
        msg.xid = xid
        msg.serialize()
        sock.sendall(bytes(msg.buf))
    barrier = p.OFPBarrierRequest(dp)
    barrier.xid = 99999
    barrier.serialize()
    sock.sendall(bytes(barrier.buf))
    errors = []
    while True:
        kind, xid, body = read_msg()
        if kind == ofp.OFPT_ERROR:
            etype, code = struct.unpack_from("!HH", body)
            errors.append(f"xid {xid}: error type {etype} code {code}")
        elif kind == ofp.OFPT_BARRIER_REPLY and xid == 99999:
            break
    sock.close()
    return errors


def scratch_bridge(name: str) -> None:
    sh(["ovs-vsctl", "--may-exist", "add-br", name, "--", "set", "bridge", name,
        "datapath_type=netdev", "fail_mode=secure", "protocols=OpenFlow13"])


def normalised(bridge: str) -> list[str]:
    flows = ofctl("--no-stats", "--sort", "dump-flows", bridge).splitlines()
    groups = ofctl("dump-groups", bridge).splitlines()[1:]
    return sorted(line.strip() for line in flows + groups if line.strip())


def ryu_check() -> int:
    """Build every rule set with Ryu 4.34, push the bytes into one scratch bridge and the
    ovs-ofctl text into another, and compare what the switch holds; then show that OVS keeps
    but never runs a learn action inside a select group's bucket."""
    sys.path.insert(0, str(ROOT))
    from mininet_tests.harness import take_machine_lock

    dp = RyuDp()
    fd = take_machine_lock("dataplane-proto ryu-check")
    bridges = ["dcpryu0", "dcpryu1"]
    failed = 0
    try:
        for name, (text, groups, msgs) in ryu_rule_sets(dp, 30).items():
            for bridge in bridges:
                sh(["ovs-vsctl", "--if-exists", "del-br", bridge])
                scratch_bridge(bridge)
            for group in groups:
                ofctl("add-group", bridges[0], group)
            add_flows(bridges[0], text)
            errors = mgmt_push(bridges[1], dp, msgs)
            a, b = normalised(bridges[0]), normalised(bridges[1])
            same = a == b and not errors
            failed += not same
            print(f"{'SAME' if same else 'DIFFERENT'}: {name}: {len(a)} entries"
                  + (f"; errors {errors}" if errors else ""))
            if not same:
                for line in sorted(set(a) ^ set(b)):
                    print(("  ovs-ofctl only: " if line in a else "  ryu only:       ") + line)
        # learn inside a select group's bucket: accepted, kept, but not executed
        ofp, p = dp.ofproto, dp.ofproto_parser
        bridge = bridges[1]
        sh(["ovs-vsctl", "--if-exists", "del-br", bridge])
        scratch_bridge(bridge)
        bucket = p.OFPBucket(weight=1, actions=[ryu_learn_fwd(dp, 1, 30),
                                                p.OFPActionSetField(reg0=1),
                                                p.OFPActionOutput(2, 0)])
        gmod = p.OFPGroupMod(dp, ofp.OFPGC_ADD, ofp.OFPGT_SELECT, 7, [bucket])
        gmod.xid = 1
        gmod.serialize()
        print("OFPGroupMod with NXActionLearn in a bucket, as Ryu serialises it:")
        print("  " + bytes(gmod.buf).hex())
        errors = mgmt_push(bridge, dp, [gmod, ryu_flow(dp, 0, 1000, 0, SVC_RYU,
                                                       [p.OFPActionGroup(7)])])
        print(f"  pushed: errors {errors}; the switch holds:",
              *ofctl("dump-groups", bridge).splitlines()[1:])
        flow = f"in_port=1,tcp,nw_src=10.0.0.1,nw_dst={DSID},tp_src=40000,tp_dst={PORT}"
        first = sh(["ovs-appctl", "ofproto/trace", bridge, flow, "-generate"])
        recirc = re.search(r"recirc\((0x[0-9a-f]+)\)", first)
        trace = sh(["ovs-appctl", "ofproto/trace", bridge,
                    f"recirc_id={recirc.group(1)},dp_hash=0x1,{flow}", "-generate"]) \
            if recirc else first
        steps = [ln.strip() for ln in trace.splitlines() if "bucket" in ln or "set_field" in ln
                 or "output" in ln or "learn" in ln]
        learned = len(dump(bridge, T_AFFINITY))
        print("  trace of a packet through the group (dp_hash, so two passes):", *steps,
              f"entries learned into table {T_AFFINITY}: {learned}", sep="\n    ")
    finally:
        for bridge in bridges:
            sh(["ovs-vsctl", "--if-exists", "del-br", bridge], check=False)
        os.close(fd)
    return 1 if failed else 0


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    sub = parser.add_subparsers(dest="cmd")
    run = sub.add_parser("run", help="functional checks, then the benchmark (the default)")
    run.add_argument("--checks", default="static,learn,learn-wrev,learn-group,bucket,"
                     "bucket-nosyn,bucket-naive,overlay-learn,overlay-bucket,"
                     "overlay-bucket-mac")
    run.add_argument("--bench", default="static,learn,learn-wrev,learn-group,bucket;"
                     "overlay-static,overlay-learn,overlay-bucket",
                     help="groups of modes (;-separated) measured in one network each")
    run.add_argument("--rounds", type=int, default=5)
    run.add_argument("--n", type=int, default=200, help="connections per latency run")
    run.add_argument("--rate-seconds", type=float, default=1.5)
    run.add_argument("--inflight", type=int, default=64)
    run.add_argument("--idle", type=int, default=5, help="affinity idle_timeout (s)")
    run.add_argument("--overlay-mtu", type=int, default=1508)
    run.add_argument("--quick", action="store_true", help="1 round of 50 connections")
    srv = sub.add_parser("serve")
    srv.add_argument("--bind", action="append", required=True)
    srv.add_argument("--port", type=int, default=PORT)
    srv.add_argument("--name", required=True)
    cli = sub.add_parser("client")
    cli.add_argument("what", choices=["latency", "rate", "stream", "bulk"])
    cli.add_argument("--n", type=int, default=200)
    cli.add_argument("--gap", type=float, default=0.01)
    cli.add_argument("--seconds", type=float, default=2.0)
    cli.add_argument("--inflight", type=int, default=64)
    sub.add_parser("ryu-check", help="Ryu builds the same rules; compare on a scratch bridge")
    args = parser.parse_args(argv if argv is not None else (sys.argv[1:] or ["run"]))

    if args.cmd == "serve":
        serve(args.bind, args.port, args.name)
        return 0
    if args.cmd == "client":
        if args.what == "latency":
            print(json.dumps(client_latency(DSID, PORT, args.n, args.gap)))
        elif args.what == "rate":
            print(json.dumps(client_rate(CLIENT[1], DSID, PORT, args.seconds, args.inflight)))
        elif args.what == "bulk":
            print(json.dumps(client_bulk(DSID, PORT)))
        else:
            client_stream(DSID, PORT, args.seconds)
        return 0
    if args.cmd == "ryu-check":
        return ryu_check()
    if args.quick:
        args.n, args.rounds, args.rate_seconds = 50, 1, 1.0
    results: dict[str, Any] = {"checks": [], "bench": []}
    if RESULTS.exists():  # a run of only the checks (or only the bench) keeps the other part
        with contextlib.suppress(ValueError):
            results.update(json.loads(RESULTS.read_text()))
    if args.checks:
        results["checks"] = []
    if args.bench:
        results["bench"] = []
    for mode in filter(None, args.checks.split(",")):
        print(f"== check {mode}", flush=True)
        mtu = args.overlay_mtu
        report = check_mode(mode, args.idle, mtu)
        print(json.dumps(report, indent=1), flush=True)
        results["checks"].append(report)
    for group in filter(None, args.bench.split(";")):
        print(f"== bench {group}", flush=True)
        out = bench(group.split(","), args)
        print(json.dumps(out["summary"], indent=1), flush=True)
        results["bench"].append(out)
    RESULTS.parent.mkdir(parents=True, exist_ok=True)
    RESULTS.write_text(json.dumps(results, indent=1) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
