"""Observability of the shell: GET /metrics, config reload (HTTP and SIGHUP), structured and
rate-limited logs. The app is driven as in test_app_smoke.py (both frameworks)."""

from __future__ import annotations

import json
import logging
import os
import re
import signal
import time
from collections import Counter
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from prometheus_client.parser import text_string_to_metric_families

from apps.logs import STATE_LINES_PER_INSTANCE, JsonFormatter, RejectLog, StateLog, core_events
from controller.model import Metrics
from tests import test_app_smoke
from tests.helpers import figure2_core
from tests.test_app_smoke import CLIENT, CONFIG, INSTANCE, Shell

shell = test_app_smoke.shell  # the fixture: the app on each framework


def samples(app: Any) -> dict[tuple[str, tuple[tuple[str, str], ...]], float]:
    """A scrape of the app through its REST controller, parsed: (name, labels) -> value."""
    from apps.rest import RestController

    ctl = RestController(None, None, {"dyncast_app": app})
    resp = ctl.metrics(None)
    assert resp.status_int == 200
    assert resp.headers["Content-Type"].startswith("text/plain; version=0.0.4")
    out = {}
    for family in text_string_to_metric_families(resp.body.decode()):
        for s in family.samples:
            out[(s.name, tuple(sorted(s.labels.items())))] = s.value
    return out


def value(scrape: dict[Any, float], name: str, **labels: str) -> float:
    """One sample's value (0 if absent)."""
    return scrape.get((name, tuple(sorted(labels.items()))), 0.0)


@pytest.fixture
def records() -> Iterator[list[logging.LogRecord]]:
    """Every record of the structured loggers (dyncast.<component>)."""
    got: list[logging.LogRecord] = []
    capture = logging.Handler()
    capture.emit = got.append  # type: ignore[method-assign]
    names = ["dyncast.instances", "dyncast.decisions", "dyncast.input", "dyncast.config",
             "dyncast.reconcile", "dyncast.switches"]
    for n in names:
        logging.getLogger(n).addHandler(capture)
    yield got
    for n in names:
        logging.getLogger(n).removeHandler(capture)


def events(got: list[logging.LogRecord], name: str) -> list[dict[str, Any]]:
    """The fields of the records of one event."""
    return [r.fields for r in got if getattr(r, "fields", {}).get("event") == name]  # type: ignore[attr-defined]


def test_metrics_move_with_traffic(shell: Shell, records: list[logging.LogRecord]) -> None:
    """A switch, an instance, a new flow: the counters and gauges a dashboard needs move."""
    before = samples(shell.app)
    assert value(before, "dyncast_packet_ins_total", reason="service_flow") == 0
    shell.connect()
    shell.arp_from(INSTANCE)
    shell.arp_from(CLIENT)
    shell.register()
    shell.syn(40000)
    after = samples(shell.app)
    assert value(after, "dyncast_packet_ins_total", reason="service_flow") == 1
    assert value(after, "dyncast_packet_ins_total", reason="other") >= 2  # the ARPs
    assert value(after, "dyncast_flow_setups_total", dataplane="reactive") == 1
    assert value(after, "dyncast_new_flows_total", service="svc1", ingress="1",
                 instance=INSTANCE[0]) == 1
    assert value(after, "dyncast_bindings", service="svc1", instance=INSTANCE[0]) == 1
    assert value(after, "dyncast_switch_connections_total") == 1
    assert value(after, "dyncast_switches_connected") == 1
    assert value(after, "dyncast_flow_mods_sent_total") > value(before,
                                                                "dyncast_flow_mods_sent_total")
    assert value(after, "dyncast_reports_accepted_total") == 1
    assert value(after, "dyncast_instance_state", service="svc1", instance=INSTANCE[0],
                 state="active") == 1
    assert value(after, "dyncast_service_usable_instances", service="svc1") == 1
    assert value(after, "dyncast_service_usable_instances", service="svc2") == 0
    assert 0 <= value(after, "dyncast_instance_metric_age_seconds", service="svc1",
                      instance=INSTANCE[0]) < 60
    assert value(after, "dyncast_decision_recomputes_total") > 0
    assert value(after, "dyncast_decision_changes_total") > 0
    assert value(after, "dyncast_config_reloads_total", result="success") == 0
    changed = events(records, "decision_changed")
    assert any(c["service"] == "svc1" and c["primary"] == INSTANCE[0] and c["reason"]
               for c in changed), changed
    assert shell.app.core.counters["errors"] == 0


def test_rejected_reports_are_counted_by_field_and_logged(
        shell: Shell, records: list[logging.LogRecord]) -> None:
    """A bad report: a 400 naming the field, counted under that field, logged once."""
    shell.register()
    bad = {"dbid": INSTANCE[0], "cpu": 7, "sessions": 0, "queue": 0, "capacity": 10}
    reply = shell.rest("POST", "metrics", bad)
    assert reply.status == 400 and reply.body["field"] == "cpu"
    assert value(samples(shell.app), "dyncast_reports_rejected_total", reason="cpu") == 1
    assert value(samples(shell.app), "dyncast_requests_refused_total", status="400") == 1
    assert value(samples(shell.app), "dyncast_requests_refused_total", status="401") == 0
    (line,) = events(records, "rejected_input")
    assert line["field"] == "cpu" and line["status"] == 400 and "cpu" in line["reason"]
    for _ in range(3):  # the gate's refusals go to the same counts (the app's RejectLog)
        shell.app.rejects.reject("GET", "/dyncast/v1/services", 401, "Authorization", "no")
    assert value(samples(shell.app), "dyncast_requests_refused_total", status="401") == 3


def test_rejected_input_lines_are_rate_limited_and_summarised(
        records: list[logging.LogRecord]) -> None:
    """A flood writes `per_minute` lines, then one summary a minute with what was left out."""
    now = [1000.0]
    log = RejectLog(3, clock=lambda: now[0])
    written = [log.reject("POST", "/dyncast/v1/metrics", 400, "cpu", "bad") for _ in range(1000)]
    assert written.count(True) == 3
    assert len(events(records, "rejected_input")) == 3
    now[0] += 61
    log.roll()
    (summary,) = events(records, "rejected_input_suppressed")
    assert summary["count"] == 997 and summary["by_field"] == {"cpu": 997}
    assert log.reject("POST", "/x", 400, "cpu", "bad")  # a new window


@pytest.fixture
def instances_at_info() -> Iterator[None]:
    """The instances component logs at INFO, as in a controller (restored after)."""
    log = logging.getLogger("dyncast.instances")
    old = log.level
    log.setLevel(logging.INFO)
    yield
    log.setLevel(old)


@pytest.mark.usefixtures("instances_at_info")
def test_one_instance_flapping_writes_its_budget_then_one_summary_a_minute(
        records: list[logging.LogRecord]) -> None:
    """An agent's batch flipping its instance between serving and not 10,000 times wrote
    10,000 `instance_state` lines; now an instance writes STATE_LINES_PER_INSTANCE a minute
    and the rest are summarised, while every other instance's changes are all logged (the
    tick after a start changes thousands of instances once each)."""
    now = [1000.0]
    log = StateLog(clock=lambda: now[0])
    core = figure2_core()
    flapper = core.catalogue.instances["10.0.0.21"]
    for k in range(1000):
        core.report(flapper.dbid, Metrics(capacity=10, active=k % 2 == 1), 1.0 + k)
    for dbid in ("10.0.0.31", "10.0.0.22", "10.0.0.32"):  # each once
        core.report(dbid, Metrics(capacity=10, active=False), 1.0)
    made = Counter(t.dbid for t in core.states.transitions)
    flaps = made[flapper.dbid]
    assert flaps > 900
    core_events(core, log)
    lines = events(records, "instance_state")
    by = Counter(line["instance"] for line in lines)
    assert by == {**made, flapper.dbid: STATE_LINES_PER_INSTANCE}
    now[0] += 61
    log.roll()
    (summary,) = events(records, "instance_state_suppressed")
    assert summary["by_instance"] == {"10.0.0.21": flaps - STATE_LINES_PER_INSTANCE}
    assert summary["count"] == flaps - STATE_LINES_PER_INSTANCE
    core.report(flapper.dbid, Metrics(capacity=10, active=False), 2000.0)
    core_events(core, log)  # a new window: logged again
    assert len(events(records, "instance_state")) == len(lines) + 1


def test_a_summary_names_at_most_twenty_fields_however_many_the_clients_chose(
        records: list[logging.LogRecord]) -> None:
    """Fields at fault can be the client's text (an unknown key): the summary names the first
    20 and counts the rest as one; before, 3,000 made one line of 131,525 characters."""
    now = [1000.0]
    log = RejectLog(0, clock=lambda: now[0])
    for k in range(500):
        log.reject("POST", "/dyncast/v1/metrics", 400, f"k{k:04d}_{'x' * 30}", "unknown key")
    now[0] += 61
    log.roll()
    (summary,) = events(records, "rejected_input_suppressed")
    assert summary["count"] == 500 and len(summary["by_field"]) == 21
    assert summary["by_field"]["(other fields)"] == 480


def test_reports_refused_for_keys_the_client_chose_count_under_one_reason(
        shell: Shell) -> None:
    """Unknown keys are the client's own names: refused reports count under `other`, never
    one series per name (3,000 names were 3,000 series before, never pruned); a report's own
    fields still name their reason, in a batch too."""
    shell.register()
    good = {"dbid": INSTANCE[0], "cpu": 0.5, "sessions": 0, "queue": 0, "capacity": 10}
    for k in range(30):
        reply = shell.rest("POST", "metrics", {**good, f"made_up_{k}": 1})
        assert reply.status == 400 and reply.body["field"] == f"made_up_{k}"
    assert shell.rest("POST", "metrics", {"reports": [good, {**good, "cpu": 7}]}).status == 400
    assert shell.rest("POST", "metrics", {"reports": [[]]}).body["field"] == "reports[0]"
    reasons = {labels["reason"]: v for labels, v in
               ((dict(k[1]), v) for k, v in samples(shell.app).items()
                if k[0] == "dyncast_reports_rejected_total") if v}
    assert reasons == {"other": 30, "cpu": 1, "report": 1}, reasons


def test_json_lines_are_one_object_each() -> None:
    """The JSON formatter writes one object a line with the event's fields."""
    rec = logging.LogRecord("dyncast.config", logging.INFO, __file__, 1, "reloaded", None, None)
    rec.fields = {"event": "reloaded", "reason": "x\ny"}
    line = JsonFormatter().format(rec)
    assert "\n" not in line
    assert json.loads(line)["component"] == "config"
    assert json.loads(line)["reason"] == "x\ny"


def _config(_: Shell) -> Path:
    return Path(os.environ["DYNCAST_CONFIG"])


def test_reload_applies_services_and_tunables_and_keeps_bindings(
        shell: Shell, records: list[logging.LogRecord]) -> None:
    """svc2 changed, svc3 added, a tunable and a restart-only key changed: the services and
    the tunable apply, the restart-only key is reported and kept, svc1's binding stays."""
    shell.connect()
    shell.arp_from(INSTANCE)
    shell.arp_from(CLIENT)
    shell.register()
    shell.syn(40001)
    bindings = shell.rest("GET", "bindings").body
    assert len(bindings) == 1
    text = CONFIG.format(url=shell.store_url).replace(
        "[controller]\n", "[controller]\nstats_interval_s = 7.0\nstale_after_s = 30\n")
    text = text.replace('dsid = "10.0.100.2"\nprotocol = "tcp"\nport = 8000',
                        'dsid = "10.0.100.2"\nprotocol = "tcp"\nport = 9000')
    text += '\n[[service]]\nname = "svc3"\ndsid = "10.0.100.3"\nprotocol = "tcp"\nport = 80\n'
    _config(shell).write_text(text)
    reply = shell.rest("POST", "config/reload")
    assert reply.status == 200, reply.body
    assert reply.body["services_added"] == ["svc3"]
    assert reply.body["services_changed"] == ["svc2"]
    assert reply.body["services_removed"] == []
    assert reply.body["applied"] == ["controller.stats_interval_s"]
    assert reply.body["restart_required"] == ["controller.stale_after_s"]
    assert shell.app.config.stats_interval_s == 7.0
    assert shell.app.core.config.stale_after_s == 10.0  # kept until a restart
    assert shell.rest("GET", "services/svc2").body["port"] == 9000
    assert shell.rest("GET", "services/svc3").status == 200
    assert shell.rest("GET", "bindings").body == bindings
    assert shell.app.datapaths == {1: shell.dp}
    assert value(samples(shell.app), "dyncast_config_reloads_total", result="success") == 1
    (line,) = events(records, "reloaded")
    assert line["trigger"] == "http" and line["restart_required"] == ["controller.stale_after_s"]
    # removing svc3 from the file removes it; svc1 (still listed) stays with its binding
    _config(shell).write_text(CONFIG.format(url=shell.store_url))
    reply = shell.rest("POST", "config/reload")
    assert reply.status == 200 and reply.body["services_removed"] == ["svc3"]
    assert shell.rest("GET", "services/svc3").status == 404
    assert shell.rest("GET", "bindings").body == bindings
    assert shell.app.core.counters["errors"] == 0


@pytest.mark.parametrize(("text", "status", "field"), [
    ("[controller\n", 400, "(syntax)"),
    ("[controller]\nstats_interval_s = -1\n", 400, "controller.stats_interval_s"),
    ("[controller.logging]\nlevel = 'LOUD'\n", 400, "controller.logging.level"),
    ('[[service]]\nname = "x"\ndsid = "10.0.100.1"\nprotocol = "tcp"\nport = 1\n', 400,
     "service[2].dsid"),
    ('[[service]]\nname = "x"\ndsid = "10.0.100.9"\nprotocol = "tcp"\nport = 1\n', 409,
     "service.x.dsid"),
    # a registered instance's D-BID: the refusal said "dsid", not which service's
    ('[[service]]\nname = "x"\ndsid = "10.0.0.21"\nprotocol = "tcp"\nport = 1\n', 409,
     "service.x.dsid"),
    # a file cut short while being written: applied, it removed every file service and
    # its instances
    ("", 400, "(file)"),
    ("\n  \n", 400, "(file)"),
    ("# dyncast\n", 400, "(file)"),
])
def test_a_bad_file_is_refused_whole(shell: Shell, records: list[logging.LogRecord],
                                     text: str, status: int, field: str) -> None:
    """An invalid file (or one whose services conflict): a 4xx with the reason, the old
    config and services kept, a failure counted and logged."""
    _config(shell).write_text(CONFIG.format(url=shell.store_url) + "\n" + text
                              if "service" in text else text)
    made = {"name": "api1", "dsid": "10.0.100.9", "protocol": "tcp", "port": 80}
    assert shell.rest("POST", "services", made).status == 201  # made through the API
    shell.register()  # 10.0.0.21
    services = shell.rest("GET", "services").body
    config = shell.app.config
    reply = shell.rest("POST", "config/reload")
    assert reply.status == status, reply.body
    assert reply.body["field"] == field and "running configuration kept" in reply.body["error"]
    assert shell.app.config is config and shell.rest("GET", "services").body == services
    assert value(samples(shell.app), "dyncast_config_reloads_total", result="failure") == 1
    assert events(records, "reload_refused")[0]["field"] == field
    assert shell.rest("GET", "config/reload").status == 405


def test_sighup_reloads_on_the_loop(shell: Shell) -> None:
    """SIGHUP only sets a flag; the next watch step (on the loop) reloads."""
    _config(shell).write_text(CONFIG.format(url=shell.store_url).replace(
        "[controller]\n", "[controller]\nstore_flush_s = 3.0\n"))
    os.kill(os.getpid(), signal.SIGHUP)
    time.sleep(0.01)
    assert shell.app._hup and shell.app.config.store_flush_s == 1.0
    shell.app._watched(0.002)
    assert not shell.app._hup and shell.app.config.store_flush_s == 3.0
    assert value(samples(shell.app), "dyncast_event_loop_lag_seconds") == 0.002


def test_metric_names_follow_the_conventions(shell: Shell) -> None:
    """dyncast_ prefix; counters end in _total; no unit-less time."""
    text = shell.app.metrics_text().decode()
    for line in text.splitlines():
        if line.startswith("# TYPE "):
            _, _, name, kind = line.split()
            assert name.startswith("dyncast_"), name
            assert kind != "counter" or name.endswith("_total"), name
    assert not re.search(r"^dyncast_\w*(_ms|_seconds_total_seconds)\b", text, re.M)


def test_levels_per_component_and_the_text_format() -> None:
    """[controller.logging] sets each component's level; json = false writes text lines."""
    import io

    from apps.logs import configure, event
    from controller.logcfg import LogConfig

    out = io.StringIO()
    try:
        configure(LogConfig("WARNING", (("decisions", "DEBUG"),), 5, False), out)
        event("decisions", "decision_changed", logging.DEBUG, service="s", reason="r")
        event("instances", "instance_state", logging.INFO, reason="hidden")
        assert out.getvalue() == "DEBUG dyncast.decisions: decision_changed " \
                                 "event=decision_changed reason=r service=s\n"
        assert logging.getLogger("dyncast.instances").level == logging.WARNING
    finally:
        configure(LogConfig())
