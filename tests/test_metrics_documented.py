"""docs/observability.md's metric table against a real scrape of the app (driven as in
tests/test_app_smoke.py, both frameworks, with a switch, an instance, a decision, a binding, a
rejected report and an OpenFlow error): every documented metric is exported with the documented
type and label names, every exported dyncast_* family is documented, and no counter goes down
across a configuration reload (the SIGHUP path) or a switch's reconnection."""

from __future__ import annotations

import os
import re
import signal
import struct
import time
from pathlib import Path
from typing import Any

import pytest
import yaml
from prometheus_client.parser import text_string_to_metric_families

from bench import ofgen
from tests import test_app_smoke
from tests.test_app_smoke import CLIENT, CONFIG, INSTANCE, Shell

shell = test_app_smoke.shell  # the fixture: the app on each framework
DOC = Path(__file__).resolve().parent.parent / "docs" / "observability.md"
ALERTS = DOC.parent / "prometheus" / "alerts.yml"
FIRST = re.compile(r"(?:increase|rate)\((dyncast_\w+)(\{[^}]*\})?\[\w+\]\)\s*>\s*0\b")
ROW = re.compile(r"^\| (`dyncast_[^|]+) \| ([a-z, ]+) \|([^|]*)\|", re.M)
TICKED = re.compile(r"`([a-z_]+)`")


def documented() -> dict[str, tuple[str, frozenset[str]]]:
    """The table: metric name -> (type, label names). A labels cell names its labels before
    the first `:` or ` (` (what follows are their values)."""
    out = {}
    for names, types, labels in ROW.findall(DOC.read_text()):
        metrics = TICKED.findall(names)
        kinds = [k.strip() for k in types.split(",")]
        kinds = kinds * len(metrics) if len(kinds) == 1 else kinds
        assert len(kinds) == len(metrics), names
        label_names = frozenset(TICKED.findall(re.split(r":| \(", labels, maxsplit=1)[0]))
        for metric, kind in zip(metrics, kinds, strict=True):
            out[metric] = (kind, label_names)
    return out


def scrape(app: Any) -> dict[str, tuple[str, set[str], dict[tuple[Any, ...], float]]]:
    """The app's exposition: family -> (type, label names seen, (sample, labels) -> value);
    a counter's family is named as its samples are, with `_total`."""
    out = {}
    for family in text_string_to_metric_families(app.metrics_text().decode()):
        name = family.name + ("_total" if family.type == "counter" else "")
        labels = {k for s in family.samples for k in s.labels} - {"le"}
        values = {(s.name, tuple(sorted(s.labels.items()))): s.value for s in family.samples}
        out[name] = (family.type, labels, values)
    return out


def busy(shell: Shell) -> None:
    """A switch, an instance with a report, a decision, a bound flow, a rejected report, an
    OpenFlow error and a decision timing: most labelled families get a series."""
    shell.connect()
    shell.arp_from(INSTANCE)
    shell.arp_from(CLIENT)
    shell.register()
    shell.syn(40000)
    shell.app.metrics.compute.observe(0.001)
    ofp = shell.dp.ofproto
    body = struct.pack("!HH", ofp.OFPET_BAD_MATCH, ofp.OFPBMC_BAD_PREREQ) + bytes(64)
    shell.switch_says(ofgen.message(ofp.OFPT_ERROR, 9, body))
    assert shell.rest("GET", "decisions").status == 200
    bad = {"dbid": INSTANCE[0], "cpu": 7, "sessions": 0, "queue": 0, "capacity": 10}
    assert shell.rest("POST", "metrics", bad).status == 400


def test_the_table_is_read() -> None:
    """The parser finds the table (a reformatted table must not make the tests vacuous)."""
    doc = documented()
    assert len(doc) >= 40
    assert doc["dyncast_new_flows_total"] == ("counter", {"service", "ingress", "instance"})
    assert doc["dyncast_switches_connected"] == ("gauge", frozenset())
    assert doc["dyncast_packet_ins_total"] == ("counter", {"reason"})


def test_every_documented_metric_is_exported_as_documented(shell: Shell) -> None:
    """Each row's metric is in the scrape, of its type, with its labels (label names are
    checked where the family has a series here; a family without one is listed)."""
    busy(shell)
    got = scrape(shell.app)
    for name, (kind, labels) in documented().items():
        assert name in got, f"{name}: documented, not exported"
        assert got[name][0] == kind, f"{name}: documented a {kind}, exported a {got[name][0]}"
        if got[name][2]:
            assert got[name][1] == labels, f"{name}: labels {sorted(got[name][1])}, " \
                                           f"documented {sorted(labels)}"
    empty = sorted(n for n, (_, _, values) in got.items() if not values)
    # only a conntrack service's tracker read makes a series (tests/test_conntrack_*.py)
    assert empty == ["dyncast_conntrack_entries"], "families with no series: labels unchecked"


def test_every_exported_family_is_documented(shell: Shell) -> None:
    """No dyncast_* family the app exports is missing from the table."""
    busy(shell)
    exported = {n for n in scrape(shell.app) if n.startswith("dyncast_")}
    assert exported - set(documented()) == set()


def test_counters_never_go_down_across_a_reload_or_a_reconnection(shell: Shell) -> None:
    """Prometheus reads a counter that goes down as a restart: a SIGHUP reload and a switch
    that disconnects and connects again keep every counter series, none lower."""
    busy(shell)

    def counters() -> dict[tuple[Any, ...], float]:
        return {k: v for _, (kind, _, values) in scrape(shell.app).items() if kind in (
            "counter", "histogram") for k, v in values.items() if not k[0].endswith("_created")}

    before = counters()
    config = Path(os.environ["DYNCAST_CONFIG"])
    config.write_text(CONFIG.format(url=shell.store_url).replace(
        "[controller]\n", "[controller]\nstats_interval_s = 7.0\n"))
    os.kill(os.getpid(), signal.SIGHUP)
    time.sleep(0.01)
    shell.app._watched(0.0)  # the loop's next watch step runs the reload
    assert shell.app.config.stats_interval_s == 7.0
    after_reload = counters()
    shell.dispatch(shell.fw.ofp_event.EventOFPStateChange(shell.dp), shell.fw.DEAD_DISPATCHER)
    shell.connect()
    shell.syn(40001)
    after_reconnect = counters()
    for stage, now in (("reload", after_reload), ("reconnect", after_reconnect)):
        gone = sorted(set(before) - set(now))
        assert gone == [], f"{stage}: counter series gone: {gone}"
        lower = sorted(k for k in before if now[k] < before[k])
        assert lower == [], f"{stage}: counters down: {[(k, before[k], now[k]) for k in lower]}"
    reloads = ("dyncast_config_reloads_total", (("result", "success"),))
    assert after_reload[reloads] == before.get(reloads, 0) + 1
    connections = ("dyncast_switch_connections_total", ())
    assert after_reconnect[connections] == before[connections] + 1


@pytest.mark.parametrize("name", ["dyncast_openflow_errors_total", "dyncast_new_flows_total"])
def test_the_busy_scrape_has_the_series_it_is_meant_to(shell: Shell, name: str) -> None:
    """The scenario above reaches what it means to (else the label checks check nothing)."""
    busy(shell)
    assert scrape(shell.app)[name][2]


def test_an_alert_on_the_first_event_sees_the_first_event(shell: Shell) -> None:
    """An alert `increase(c[w]) > 0` (or `rate`) never fires for the event that creates the
    series: Prometheus sees it appear at 1, never at 0. Each such rule's counter is exported
    at 0 before any event (a fresh app's scrape has its series), or the rule also fires on a
    series that is new (`unless ... offset`)."""
    fresh = scrape(shell.app)
    rules = [r for g in yaml.safe_load(ALERTS.read_text())["groups"] for r in g["rules"]]
    checked = 0
    for rule in rules:
        for name, selector in FIRST.findall(rule["expr"]):
            checked += 1
            wanted = dict(re.findall(r'(\w+)="([^"]*)"', selector or ""))
            present = [k for k in fresh[name][2] if k[0] == name and wanted.items()
                       <= dict(k[1]).items()]
            if not present:
                assert re.search(rf"unless {name}(\{{[^}}]*\}})? offset", rule["expr"]), \
                    f"{rule['alert']}: {name} has no series until its first event"
    assert checked >= 3


def test_only_a_refused_report_counts_as_a_rejected_report(shell: Shell) -> None:
    """A GET of /dyncast/v1/metrics (a scraper pointed at the API's path instead of /metrics)
    is a 405, not a D-MA report: it counted under reason "path", feeding the alert on rising
    rejected reports; a refused POST still counts under its field."""
    shell.register()
    for method in ("GET", "PUT", "DELETE"):
        assert shell.rest(method, "metrics").status == 405
    bad = {"dbid": INSTANCE[0], "cpu": 7, "sessions": 0, "queue": 0, "capacity": 10}
    assert shell.rest("POST", "metrics", bad).status == 400
    rejected = scrape(shell.app)["dyncast_reports_rejected_total"][2]
    assert {dict(k[1])["reason"]: v for k, v in rejected.items() if v} == {"cpu": 1.0}
