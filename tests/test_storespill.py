"""The file a stop keeps its unstored writes in (apps/storespill.py): a record's newer write
replaces its older one across stops, deletes are kept as deletes, and the next start stores
exactly what the file holds, in a real store (SQLite here; the app tests drive the stop)."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from apps import storespill
from apps.store import Store
from controller.config import ControllerConfig
from controller.errors import ConfigError
from controller.intents import StoreWrite
from tests.pgschema import fresh_schema

SVC = {"name": "svc3", "dsid": "10.0.100.3", "protocol": "tcp", "port": 9000}


@pytest.fixture(params=["sqlite", "postgresql"])
def url(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[str]:
    """A fresh store of each kind (PostgreSQL: a schema of its own on the test server)."""
    if request.param == "sqlite":
        yield f"sqlite:///{tmp_path / 'store.db'}"
        return
    with fresh_schema("spill") as pg:
        yield pg


def test_kept_writes_merge_across_stops_and_the_next_start_stores_them(tmp_path: Path,
                                                                        url: str) -> None:
    path = tmp_path / "kept.jsonl"
    store = Store(url)
    store.apply([StoreWrite("service", "old", {**SVC, "name": "old", "dsid": "10.0.100.4"})])
    first = [StoreWrite("service", "svc3", {**SVC, "port": 1}), StoreWrite("service", "old", None)]
    assert storespill.keep(str(path), first) == 2
    assert storespill.keep(str(path), [StoreWrite("service", "svc3", SVC)]) == 2  # newer wins
    config = ControllerConfig(store_url=url, unstored_path=str(path))
    assert storespill.replay(store, config, "dyncast.toml") == 2
    assert not path.exists()
    assert [(s.name, s.port) for s in store.load().services] == [("svc3", 9000)]
    assert storespill.replay(store, config, "dyncast.toml") == 0  # nothing kept: nothing to do
    store.close()


@pytest.mark.parametrize("line, why", [
    ("not json", "is not JSON"),
    ('{"kind": "service", "key": "x"}', "exactly kind, key and value"),
    ('{"kind": "table", "key": "x", "value": null}', "has kind 'table'"),
    ('{"kind": "service", "key": 7, "value": null}', "key that is not a non-empty string"),
    ('{"kind": "service", "key": "x", "value": [1]}', "neither an object nor null"),
])
def test_a_line_that_is_no_kept_write_is_refused_naming_the_file_and_line(
        tmp_path: Path, line: str, why: str) -> None:
    path = tmp_path / "kept.jsonl"
    storespill.keep(str(path), [StoreWrite("service", "svc3", SVC)])
    path.write_text(path.read_text() + line + "\n")
    store = Store(f"sqlite:///{tmp_path / 'store.db'}")
    config = ControllerConfig(unstored_path=str(path))
    with pytest.raises(ConfigError) as err:
        storespill.replay(store, config, "dyncast.toml")
    assert f"controller.unstored_path: {path} line 2 " in str(err.value)
    assert why in str(err.value)
    assert path.exists() and store.load().services == []
    store.close()


def test_a_cluster_member_keeps_and_stores_nothing(tmp_path: Path) -> None:
    """A shared store: another member may have written a record since (module docstring)."""
    from controller.cluster.settings import ClusterConfig

    path = tmp_path / "kept.jsonl"
    storespill.keep(str(path), [StoreWrite("service", "svc3", SVC)])
    store = Store(f"sqlite:///{tmp_path / 'store.db'}")
    config = ControllerConfig(unstored_path=str(path), cluster=ClusterConfig(enabled=True))
    assert storespill.replay(store, config, "dyncast.toml") == 0
    assert path.exists() and store.load().services == []
    store.close()


@pytest.mark.parametrize("value", [7, "a\x00b", "x" * 4097])
def test_an_unstored_path_that_is_no_file_name_is_refused_naming_it(value: object) -> None:
    from controller.config import config_from_dict
    from controller.errors import ValidationError

    with pytest.raises(ValidationError, match=r"controller\.unstored_path"):
        config_from_dict({"controller": {"unstored_path": value}})
    assert config_from_dict({"controller": {"unstored_path": ""}}).unstored_path == ""
