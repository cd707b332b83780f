"""docs/grafana/dyncast.json and docs/prometheus/alerts.yml: they load, and every metric they
use exists in a real scrape of the app with instances, decisions and bindings present."""

from __future__ import annotations

import json
import re
from pathlib import Path

import yaml
from prometheus_client.parser import text_string_to_metric_families

from tests import test_app_smoke
from tests.test_app_smoke import Shell
from tests.test_metrics_documented import busy  # the scenario: a switch, flows, errors

shell = test_app_smoke.shell  # the fixture: the app on each framework
DOCS = Path(__file__).resolve().parent.parent / "docs"
NAME = re.compile(r"\bdyncast_[a-z0-9_]+")


def dashboard_exprs() -> list[str]:
    dash = json.loads((DOCS / "grafana" / "dyncast.json").read_text())
    variables = {v["name"]: v for v in dash["templating"]["list"]}
    assert variables["datasource"]["type"] == "datasource"  # chosen at import, not fixed
    ids = [p["id"] for p in dash["panels"]]
    assert len(ids) == len(set(ids)) and ids
    exprs = [variables["service"]["definition"]]
    for p in dash["panels"]:
        assert p["datasource"]["uid"] == "${datasource}", p["title"]
        assert p["targets"], p["title"]
        exprs += [t["expr"] for t in p["targets"]]
    return exprs


def alert_exprs() -> list[str]:
    doc = yaml.safe_load((DOCS / "prometheus" / "alerts.yml").read_text())
    rules = [r for g in doc["groups"] for r in g["rules"]]
    assert {"DyncastInstanceStale", "DyncastEventLoopLagging", "DyncastRejectedReportsRising",
            "DyncastNoUsableInstance"} <= {r["alert"] for r in rules}
    for r in rules:
        assert r["expr"] and r["annotations"]["summary"] and r["labels"]["severity"]
    return [r["expr"] for r in rules]


def test_every_metric_used_exists_in_a_real_scrape(shell: Shell) -> None:
    busy(shell)
    scraped = set()
    for family in text_string_to_metric_families(shell.app.metrics_text().decode()):
        scraped |= {s.name for s in family.samples}
    used = {m for e in dashboard_exprs() + alert_exprs() for m in NAME.findall(e)}
    assert len(used) > 20
    assert used - scraped == set()
    # and the dashboard shows every family the app exports
    errors = {s.labels["type"]: s.value for f in text_string_to_metric_families(
        shell.app.metrics_text().decode()) for s in f.samples
        if s.name == "dyncast_openflow_errors_total"}
    assert errors == {"bad_match": 1.0}
    families = {re.sub(r"_(total|bucket|sum|count|created)$", "", n) for n in scraped}
    shown = {re.sub(r"_(total|bucket|sum|count)$", "", n) for n in used}
    assert families - shown == set()
