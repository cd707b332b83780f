"""The dump-flows parser used by the Mininet tests, on lines captured from OVS 3.1."""

from __future__ import annotations

from mininet_tests.flowdump import parse_flow_line, parse_flows, split_top_level

DUMP = """\
OFPST_FLOW reply (OF1.3) (xid=0x2):
 cookie=0xdc00000000000000, duration=6.001s, table=0, n_packets=7, n_bytes=357, priority=60000,dl_type=0x88cc actions=CONTROLLER:65535
 cookie=0xdc02000000000001, duration=0.126s, table=0, n_packets=6, n_bytes=475, idle_timeout=30, send_flow_rem priority=2000,tcp,nw_src=10.0.0.1,nw_dst=10.0.100.1,tp_src=38510,tp_dst=8000 actions=set_field:00:00:00:00:00:31->eth_dst,set_field:10.0.0.31->ip_dst,goto_table:1
 cookie=0xdc04000000000000, duration=0.851s, table=1, n_packets=0, n_bytes=0, priority=100,ip,nw_dst=10.0.0.21 actions=set_field:00:00:00:00:00:21->eth_dst,output:"r1-eth10"
 cookie=0xdc00000000000000, duration=6.001s, table=1, n_packets=5, n_bytes=406, priority=0 actions=drop
"""  # noqa: E501


def test_stats_match_and_actions_are_separated() -> None:
    """An affinity entry yields its cookie, timeouts, flags, match fields and ordered actions."""
    flow = parse_flows(DUMP)[1]
    assert flow["cookie"] == 0xDC02000000000001
    assert (flow["table"], flow["priority"], flow["n_packets"], flow["n_bytes"]) == (0, 2000, 6,
                                                                                     475)
    assert (flow["idle_timeout"], flow["hard_timeout"], flow["duration"]) == (30, 0, 0.126)
    assert flow["send_flow_rem"] is True
    assert flow["match"] == {"tcp": "", "nw_src": "10.0.0.1", "nw_dst": "10.0.100.1",
                             "tp_src": "38510", "tp_dst": "8000"}
    assert flow["actions"] == ["set_field:00:00:00:00:00:31->eth_dst",
                               "set_field:10.0.0.31->ip_dst", "goto_table:1"]


def test_header_lines_are_skipped_and_drop_is_empty() -> None:
    """Only flow lines are returned; `actions=drop` means no actions."""
    flows = parse_flows(DUMP)
    assert len(flows) == 4
    assert flows[-1]["actions"] == [] and flows[-1]["match"] == {}
    assert flows[0]["match"] == {"dl_type": "0x88cc"}


def test_quoted_port_names_are_unquoted_in_matches_only() -> None:
    """A match on a named port gives the bare name; actions keep OVS's text."""
    line = (' cookie=0x1, duration=1s, table=2, n_packets=0, n_bytes=0, hard_timeout=60, '
            'priority=5,in_port="r1-eth1",dl_src=00:00:00:00:00:01 actions=output:"r1-eth10"')
    flow = parse_flow_line(line)
    assert flow is not None
    assert flow["match"]["in_port"] == "r1-eth1" and flow["hard_timeout"] == 60
    assert flow["actions"] == ['output:"r1-eth10"']


def test_omitted_fields_get_openflow_defaults() -> None:
    """ovs-ofctl leaves out default values: priority 32768, cookie and table 0."""
    flow = parse_flow_line(" n_packets=0, n_bytes=0, ip actions=NORMAL")
    assert flow is not None
    assert (flow["cookie"], flow["table"], flow["priority"]) == (0, 0, 32768)
    assert flow["match"] == {"ip": ""} and flow["actions"] == ["NORMAL"]


def test_commas_inside_parentheses_stay_in_one_action() -> None:
    """Nested actions such as ct(...) and learn(...) are not split apart."""
    line = ("cookie=0x0, table=0, priority=10,ip actions=ct(commit,zone=5,nat(src=10.0.0.1)),"
            "learn(table=2,NXM_OF_ETH_DST[]=NXM_OF_ETH_SRC[]),output:2")
    flow = parse_flow_line(line)
    assert flow is not None
    assert flow["actions"] == ["ct(commit,zone=5,nat(src=10.0.0.1))",
                               "learn(table=2,NXM_OF_ETH_DST[]=NXM_OF_ETH_SRC[])", "output:2"]
    assert split_top_level('a,"b,c",d') == ["a", '"b,c"', "d"]


def test_non_flow_lines_give_none() -> None:
    """Blank lines and reply headers are not flows."""
    assert parse_flow_line("") is None
    assert parse_flow_line("OFPST_FLOW reply (OF1.3) (xid=0x2):") is None
