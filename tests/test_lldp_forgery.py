"""A host cannot fake a link with a forged LLDP frame: the controller's frames carry a tag
(HMAC-SHA256 under the store's key of switch, port and send time) and only tagged frames make
links (controller/network/network.py `keyed`). Before, one frame a host sent naming another
switch's port made a link to the host's own port: the host was unlearned there, and paths
could be drawn through it (link fabrication, as TopoGuard describes)."""

from __future__ import annotations

import pytest

from controller.intents import PacketOut
from controller.network.packet import ETH_TYPE_LLDP, build_lldp, parse
from controller.views import stats_view
from tests.helpers import HOSTS, figure2_core

KEY = bytes(range(32))


def _links(core: object) -> set[tuple[tuple[int, int], tuple[int, int]]]:
    return set(core.topology.links())  # type: ignore[attr-defined]


@pytest.mark.parametrize("forged", ["no tag", "another key", "another port's tag"])
def test_a_forged_frame_from_a_host_makes_no_link_and_the_host_stays(forged: str) -> None:
    """c1 sends a frame naming e2's switch port: no link, c1 still a host there, counted."""
    core = figure2_core()
    core.network.keyed(KEY)
    ip, _, dpid, port = HOSTS["c1"]
    links = _links(core)
    frame = {"no tag": build_lldp(2, 1, "00:00:00:00:00:99", 5.0),
             "another key": build_lldp(2, 1, "00:00:00:00:00:99", 5.0, bytes(32)),
             "another port's tag": build_lldp(2, 2, "00:00:00:00:00:99", 5.0, KEY)
             .replace(b"\x00\x00\x00\x02", b"\x00\x00\x00\x01", 1)}[forged]
    assert parse(frame).lldp_port == 1  # type: ignore[union-attr]
    core.packet_in(dpid, port, frame, 5.0)
    assert _links(core) == links
    assert ip in core.topology.hosts
    assert stats_view(core)["lldp_refused"] == 1


def test_the_controllers_own_frames_make_links() -> None:
    """The frames the tick sends carry the tag: one sent out of a port and met at another
    switch's port is a link (here c1's port: a cable plugged between two switches), and the
    frames of the known links refresh them, nothing refused."""
    core = figure2_core()
    core.network.keyed(KEY)
    _, _, dpid, port = HOSTS["c1"]
    sent = [i for i in core.tick(5.0) if isinstance(i, PacketOut)
            and (p := parse(i.data)) is not None and p.eth_type == ETH_TYPE_LLDP]
    assert sent and all(parse(i.data).lldp_tag is not None for i in sent)  # type: ignore[union-attr]
    out_of_e2 = next(i for i in sent if (i.dpid, parse(i.data).lldp_port) == (2, 1))  # type: ignore[union-attr]
    assert core.packet_in(dpid, port, out_of_e2.data, 5.001) is not None
    assert ((2, 1), (dpid, port)) in _links(core)
    assert stats_view(core)["lldp_refused"] == 0
