"""controller/reload.py (what a re-read file changes) and controller/logcfg.py, pure; and the
cost of a scrape with 1,000 instances."""

from __future__ import annotations

import dataclasses
import json
import time
from pathlib import Path
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from apps.configfile import load_config
from apps.metrics import Metrics, ShellCounts
from apps.reloader import Reloader
from controller.api import Api
from controller.config import ControllerConfig, config_from_toml
from controller.core import Core
from controller.errors import ConfigError
from controller.logcfg import LogConfig
from controller.reload import plan, refusal

BASE = """
[controller]
stats_interval_s = 2.0
[[service]]
name = "a"
dsid = "10.0.100.1"
protocol = "tcp"
port = 80
[[service]]
name = "b"
dsid = "10.0.100.2"
protocol = "tcp"
port = 80
"""


def test_plan_sorts_changes_into_live_and_restart_only() -> None:
    old = config_from_toml(BASE, "old")
    new = config_from_toml(BASE.replace("stats_interval_s = 2.0", "stats_interval_s = 5.0\n"
                                        "store_url = 'sqlite:///other.db'\n"
                                        "[controller.selection]\nspread = 3.0")
                           .replace('name = "b"\ndsid = "10.0.100.2"\nprotocol = "tcp"\n'
                                    'port = 80', 'name = "c"\ndsid = "10.0.100.3"\n'
                                    'protocol = "tcp"\nport = 81'), "new")
    current = {s.name: s for s in old.services}
    p = plan(old, new, current)
    assert [s.name for s in p.added] == ["c"] and p.removed == ("b",) and p.changed == ()
    assert p.applied == ("controller.stats_interval_s",)
    assert p.restart_required == ("controller.store_url", "controller.selection")
    assert p.config.stats_interval_s == 5.0
    assert p.config.store_url == old.store_url and p.config.selection == old.selection
    assert refusal(p, current) is None
    assert plan(old, old, current).empty


def test_the_body_limit_needs_a_restart_and_the_other_limits_do_not() -> None:
    """The REST server and the gate judge a body by the limit they started with: a reload
    said "applied: limits" for a new max_body_bytes, and bodies under the new limit still got
    the old limit's 413 (a lower one: the API's 400 instead of the 413)."""
    old = config_from_toml("[limits]\nmax_body_bytes = 4096\nmax_services = 5\n", "old")
    new = config_from_toml("[limits]\nmax_body_bytes = 8192\nmax_services = 7\n", "new")
    p = plan(old, new, {})
    assert (p.applied, p.restart_required) == (("limits",), ("limits.max_body_bytes",))
    assert (p.config.limits.max_body_bytes, p.config.limits.max_services) == (4096, 7)
    only = config_from_toml("[limits]\nmax_body_bytes = 2048\nmax_services = 5\n", "new")
    p = plan(old, only, {})
    assert (p.applied, p.restart_required) == ((), ("limits.max_body_bytes",))
    assert p.config.limits == old.limits


def test_a_conntrack_zone_an_api_service_holds_is_refused_before_anything_changes(
        tmp_path: Path) -> None:
    """A file service whose D-SID's low 16 bits are the tracker zone of a `conntrack` service
    made through the API: the pre-checks passed it, the service put failed midway (a 500,
    the file's other services already applied); now a 409 naming it, nothing changed."""
    cfg = tmp_path / "dyncast.toml"
    cfg.write_text(BASE)
    core = Core(load_config(str(cfg)))
    made = {"name": "api0", "dsid": "10.1.100.1", "protocol": "tcp", "port": 80,
            "dataplane": "conntrack"}
    assert Api(core).handle("POST", "/dyncast/v1/services", json.dumps(made).encode(),
                            1.0).status == 201
    before = dict(core.catalogue.services)
    cfg.write_text(BASE.replace('port = 80\n[[service]]\nname = "b"',
                                'port = 81\n[[service]]\nname = "b"')  # a changed
                   + '[[service]]\nname = "c"\ndsid = "10.0.100.1"\nprotocol = "udp"\n'
                     'port = 80\ndataplane = "conntrack"\n'.replace("10.0.100.1", "10.2.100.1"))
    out = Reloader(core, str(cfg), ShellCounts(), lambda c: None).reload(2.0, "test")
    assert (out.status, out.body["field"]) == (409, "service.c.dsid"), out.body
    assert "zone 25601" in out.body["error"] and "api0" in out.body["error"]
    assert core.catalogue.services == before


def test_a_service_made_through_the_api_is_not_the_files_to_remove() -> None:
    old = config_from_toml(BASE, "old")
    api_made = dataclasses.replace(old.services[0], name="z", dsid="10.0.100.9")
    current = {**{s.name: s for s in old.services}, "z": api_made}
    assert plan(old, old, current).removed == ()
    taken = dataclasses.replace(old, services=(*old.services, dataclasses.replace(
        api_made, name="y")))
    p = plan(old, taken, current)
    assert refusal(p, current) == ("service.y.dsid", "10.0.100.9 is the D-SID of service z")


def test_logging_table() -> None:
    cfg = config_from_toml("[controller.logging]\nlevel = 'warning'\nrejected_per_minute = 5\n"
                           "components = { decisions = 'debug' }\n", "f")
    assert cfg.logging == LogConfig("WARNING", (("decisions", "DEBUG"),), 5, True)
    assert cfg.logging.level_of("decisions") == "DEBUG"
    assert cfg.logging.level_of("input") == "WARNING"
    for bad, field in (("components = { nope = 'INFO' }", "controller.logging.components.nope"),
                       ("rejected_per_minute = -1", "controller.logging.rejected_per_minute"),
                       ("json = 1", "controller.logging.json")):
        with pytest.raises(ConfigError) as exc:
            config_from_toml(f"[controller.logging]\n{bad}\n", "f")
        assert exc.value.field == field


def test_a_scrape_of_1000_instances_is_cheap() -> None:
    """1,000 instances with reports, 10 services: a scrape well under 100 ms."""
    core = Core(ControllerConfig())
    api = Api(core)
    now = time.time()
    for s in range(10):
        body = {"name": f"s{s}", "dsid": f"10.0.100.{s + 1}", "protocol": "tcp", "port": 80}
        assert api.handle("POST", "/dyncast/v1/services", json.dumps(body).encode(),
                          now).status == 201
    for i in range(1000):
        dsid, dbid = f"10.0.100.{i % 10 + 1}", f"10.1.{i // 250}.{i % 250 + 1}"
        assert api.handle("POST", "/dyncast/v1/instances", json.dumps(
            {"dsid": dsid, "dbid": dbid}).encode(), now).status == 201
        assert api.handle("POST", "/dyncast/v1/metrics", json.dumps(
            {"dbid": dbid, "cpu": 0.5, "sessions": 1, "queue": 0, "capacity": 10}).encode(),
            now).status == 200
    metrics = Metrics(core)
    times = []
    for _ in range(5):
        start = time.perf_counter()
        text = metrics.scrape()
        times.append(time.perf_counter() - start)
    assert text.count(b"dyncast_instance_metric_age_seconds{") == 1000
    assert min(times) < 0.1, times


NAMES = ("a", "b", "c", "d")
# 10.x.100.1 share tracker zone 25601; 10.0.0.21 is an instance's D-BID
DSIDS = ("10.0.100.1", "10.1.100.1", "10.2.100.1", "10.0.100.2", "10.0.0.21")
MODES = ("reactive", "learn", "bucket", "conntrack")
SERVICE = st.fixed_dictionaries({
    "dsid": st.sampled_from(DSIDS), "protocol": st.sampled_from(("tcp", "udp")),
    "port": st.sampled_from((80, 81)), "dataplane": st.sampled_from(MODES),
    "overlay": st.sampled_from((False, False, True)),
    "failover": st.sampled_from((False, False, True))})
FILE = st.tuples(st.dictionaries(st.sampled_from(NAMES), SERVICE, max_size=3),
                 st.sampled_from((None, 2, 3, 100)))


def _toml(file: tuple[dict[str, dict[str, object]], int | None]) -> str:
    services, most = file
    text = f"[limits]\nmax_services = {most}\n" if most else ""
    for name, svc in services.items():
        text += f'[[service]]\nname = "{name}"\n' + "".join(
            f"{k} = {json.dumps(v)}\n" for k, v in svc.items())
    return text


@settings(max_examples=300, deadline=None, derandomize=True,
          suppress_health_check=[HealthCheck.too_slow])
@given(first=FILE, made=st.lists(SERVICE, max_size=2), owners=st.lists(st.integers(0, 9),
                                                                        max_size=2),
       files=st.lists(FILE, min_size=1, max_size=3))
def test_any_reload_sequence_is_applied_whole_or_refused_changing_nothing(
        tmp_path_factory: pytest.TempPathFactory, first: Any, made: list[dict[str, object]],
        owners: list[int], files: list[Any]) -> None:
    """Random files (services of every data plane, D-SIDs and tracker zones that collide
    with each other, with services made through the API and with instances' D-BIDs, quotas)
    reloaded in turn: never a 5xx; a refusal names a field and leaves the services as they
    were (the reload is applied whole or not at all)."""
    cfg = tmp_path_factory.mktemp("reload") / "dyncast.toml"
    cfg.write_text(_toml(first))
    try:
        core = Core(load_config(str(cfg)))
    except ConfigError:
        return  # a first file the controller would not start with
    api = Api(core)
    for k, svc in enumerate(made):
        api.handle("POST", "/dyncast/v1/services",
                   json.dumps({"name": f"api{k}", **svc}).encode(), 1.0)
    for k, owner in enumerate(owners):
        services = sorted(core.catalogue.services.values(), key=lambda s: s.name)
        if services:
            body = {"dsid": services[owner % len(services)].dsid, "dbid": f"10.0.0.2{k + 1}"}
            api.handle("POST", "/dyncast/v1/instances", json.dumps(body).encode(), 1.0)
    reloader = Reloader(core, str(cfg), ShellCounts(), lambda c: None)
    for file in files:
        cfg.write_text(_toml(file))
        before = dict(core.catalogue.services)
        out = reloader.reload(2.0, "test")
        assert out.status < 500, out.body
        if out.status >= 400:
            assert out.body["field"] and core.catalogue.services == before, out.body
