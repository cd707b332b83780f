"""Configuration: one validating parser, errors naming the file and the key."""

from __future__ import annotations

from pathlib import Path

import pytest

from apps.configfile import load_config
from controller.errors import ConfigError

GOOD = """
[controller]
store_url = "sqlite:///:memory:"
stale_after_s = 5

[controller.selection]
spread = 0.2

[[service]]
name = "svc1"
dsid = "10.0.100.1"
protocol = "tcp"
port = 8000
affinity = { key = "5-tuple", idle_timeout = 10, hard_timeout = 60 }
weights = { network = 2.0, compute = 1.0 }
"""


def _write(tmp_path: Path, text: str) -> Path:
    path = tmp_path / "dyncast.toml"
    path.write_text(text)
    return path


def test_good_file_is_read_into_typed_values(tmp_path: Path) -> None:
    """A valid file yields the services and settings it declares."""
    cfg = load_config(_write(tmp_path, GOOD))
    (svc,) = cfg.services
    assert (svc.name, svc.dsid, svc.protocol, svc.port) == ("svc1", "10.0.100.1", "tcp", 8000)
    assert (svc.affinity.idle_timeout, svc.affinity.hard_timeout) == (10, 60)
    assert svc.weights.network == 2.0 and cfg.stale_after_s == 5 and cfg.selection.spread == 0.2


def test_no_file_gives_defaults() -> None:
    """Without a file the controller runs with defaults and no services."""
    assert load_config(None).services == ()
    assert load_config(None).gc_full_walk_s == 86400.0


def test_the_full_walk_interval_is_read(tmp_path: Path) -> None:
    """[controller] gc_full_walk_s: how often frozen objects go back to the collector."""
    cfg = load_config(_write(tmp_path, GOOD.replace("stale_after_s = 5", "gc_full_walk_s = 90")))
    assert cfg.gc_full_walk_s == 90.0


@pytest.mark.parametrize(("text", "field"), [
    (GOOD.replace('port = 8000', 'port = 8000\ncolour = "red"'), "service[0].colour"),
    (GOOD.replace('"10.0.100.1"', '"10.0.100.300"'), "service[0].dsid"),
    (GOOD.replace('"5-tuple"', '"4-tuple"'), "service[0].affinity.key"),
    (GOOD.replace("idle_timeout = 10", "idle_timeout = -1"), "service[0].affinity.idle_timeout"),
    (GOOD.replace("stale_after_s = 5", "stale_after = 5"), "controller.stale_after"),
    (GOOD.replace("spread = 0.2", "spread = 0.2\nplaced_flows = 1"),
     "controller.selection.placed_flows"),
    (GOOD.replace("spread = 0.2", "spread = 0.2\nplaced_grace_s = -1"),
     "controller.selection.placed_grace_s"),
    (GOOD.replace("spread = 0.2", 'spread = 0.2\nqueueing = "yes"'),
     "controller.selection.queueing"),
    (GOOD.replace("spread = 0.2", 'spread = 0.2\npick = "fastest"'), "controller.selection.pick"),
    (GOOD.replace("spread = 0.2", 'spread = 0.2\npick = "per-flow"\nplaced_flows = false'),
     "controller.selection.pick"),
    (GOOD.replace('protocol = "tcp"', 'protocol = "sctp"'), "service[0].protocol"),
    (GOOD + GOOD.split("[[service]]")[1].join(["[[service]]", ""]), "service[1].name"),
    (GOOD.replace("stale_after_s = 5", "gc_full_walk_s = 0"), "controller.gc_full_walk_s"),
    (GOOD.replace("stale_after_s = 5", 'gc_full_walk_s = "10m"'), "controller.gc_full_walk_s"),
    ("[controller\n", "(syntax)"),
])
def test_bad_file_names_the_key(tmp_path: Path, text: str, field: str) -> None:
    """Each kind of mistake is reported with the file and the offending key."""
    with pytest.raises(ConfigError) as err:
        load_config(_write(tmp_path, text))
    assert err.value.field == field
    assert str(tmp_path / "dyncast.toml") in str(err.value)


def test_missing_file_is_a_clear_error(tmp_path: Path) -> None:
    """A path that does not exist says so."""
    with pytest.raises(ConfigError, match="cannot read"):
        load_config(tmp_path / "nope.toml")
