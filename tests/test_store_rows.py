"""The store's binding rows: written out directly (apps/store.py `_binding_json`), they are
exactly what json.dumps gives, and anything not shaped like a binding falls back to it."""

from __future__ import annotations

import json
import math

from hypothesis import given
from hypothesis import strategies as st

from apps.store import _binding_json, _row

TEXT = st.text(max_size=12)
PORT = st.none() | st.integers(0, 65535)


@given(ident=st.integers(0, 2**63), service=TEXT, src=TEXT, dsid=TEXT, dbid=TEXT,
       proto=st.none() | st.integers(0, 255), sport=PORT, dport=PORT,
       ingress=st.integers(0, 2**64 - 1),
       created=st.floats(allow_nan=False, allow_infinity=False) | st.integers(0, 2**40))
def test_binding_row_is_what_json_dumps_gives(ident: int, service: str, src: str, dsid: str,
                                              dbid: str, proto: int | None, sport: int | None,
                                              dport: int | None, ingress: int,
                                              created: float) -> None:
    """Any binding record, odd characters included, gives json.dumps' exact text."""
    value = {"id": ident, "service": service, "dbid": dbid, "ingress": ingress,
             "created_at": created, "flow": {"src": src, "dsid": dsid, "proto": proto,
                                             "sport": sport, "dport": dport}}
    row = _row("binding", str(ident), value)
    assert row["data"] == json.dumps(value, sort_keys=True)
    assert json.loads(row["data"]) == value
    assert (row["id"], row["service"], row["dbid"]) == (str(ident), service, dbid)


def test_records_not_shaped_like_a_binding_go_through_json_dumps() -> None:
    """A field more or less, a bool, a NaN or a number where text belongs: json.dumps' text."""
    good = {"id": 1, "service": "s", "dbid": "10.0.0.21", "ingress": 2, "created_at": 0.5,
            "flow": {"src": "10.0.0.1", "dsid": "10.0.100.1", "proto": 6, "sport": 1,
                     "dport": 2}}
    odd = [{**good, "extra": 1}, {k: v for k, v in good.items() if k != "ingress"},
           {**good, "id": True}, {**good, "created_at": math.nan}, {**good, "dbid": 21},
           {**good, "flow": {**good["flow"], "vlan": 3}}]  # type: ignore[dict-item]
    for value in odd:
        assert _binding_json(value) is None
        assert _row("binding", "1", value)["data"] == json.dumps(value, sort_keys=True)
