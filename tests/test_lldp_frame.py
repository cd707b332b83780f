"""LLDP frames as the switches get them (IEEE 802.1AB TLVs), built in part once per port."""

from __future__ import annotations

from controller.network.packet import build_lldp, parse

HEAD = ("0180c200000e" "020000000001" "88cc"  # to the LLDP group, from us, LLDP
        "0216" "07" + b"dpid:0000000000000001".hex()  # chassis: "dpid:" and 16 hex digits
        + "0405" "02" "0000000a"  # port 10
        + "0602" "0078")  # TTL 120 s


def test_frames_are_the_tlvs_with_the_time_of_each_send() -> None:
    """The same port's frames differ only in the time TLV; without a time, none is sent."""
    for sent_at, time_tlv in ((1.5, "fe0c" "02dc0001" "3ff8000000000000"),
                              (2.0, "fe0c" "02dc0001" "4000000000000000"),
                              (None, "")):
        frame = build_lldp(1, 10, "02:00:00:00:00:01", sent_at)
        assert frame.hex() == HEAD + time_tlv + "0000"
        pkt = parse(frame)
        assert pkt is not None
        assert (pkt.lldp_dpid, pkt.lldp_port, pkt.lldp_sent_at) == (1, 10, sent_at)
    other = parse(build_lldp(2**48 - 1, 7, "02:00:00:00:00:02", 3.0))
    assert other is not None and (other.lldp_dpid, other.lldp_port) == (2**48 - 1, 7)
    assert build_lldp(1, 10, "02:00:00:00:00:02").hex()[12:24] == "020000000002"
