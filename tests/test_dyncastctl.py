"""`dyncastctl` against the real API served over loopback HTTP: tables, JSON, exit statuses."""

from __future__ import annotations

import json
import socket
import threading
import time
import urllib.request
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, HTTPServer

import pytest

from agents.dyncastctl import main
from controller.api import Api
from tests.helpers import figure2_core, report

DBIDS = ("10.0.0.21", "10.0.0.22", "10.0.0.31", "10.0.0.32")


def _server(api: Api) -> HTTPServer:
    """An HTTP server on a free loopback port that hands every request to `api`."""

    class Handler(BaseHTTPRequestHandler):
        def _serve(self) -> None:
            body = self.rfile.read(int(self.headers.get("Content-Length") or 0))
            reply = api.handle(self.command, self.path, body, time.time())  # intents ignored
            data = json.dumps(reply.body).encode()
            self.send_response(reply.status)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(data)))
            self.end_headers()
            self.wfile.write(data)

        do_GET = do_POST = do_PUT = do_DELETE = _serve

        def log_message(self, *args: object) -> None:
            pass

    return HTTPServer(("127.0.0.1", 0), Handler)


@pytest.fixture
def url() -> Iterator[str]:
    """The base URL of a controller API on Figure 2, two instances with fresh metrics."""
    core = figure2_core()
    for dbid in ("10.0.0.21", "10.0.0.31"):
        report(core, dbid, time.time(), sessions=2, capacity=8)
    server = _server(Api(core))
    thread = threading.Thread(target=server.serve_forever, args=(0.05,), daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{server.server_address[1]}"
    server.shutdown()
    server.server_close()
    thread.join(5)


def _run(capsys: pytest.CaptureFixture[str], url: str, *argv: str) -> tuple[int, str, str]:
    """Run dyncastctl in-process: (exit status, stdout, stderr)."""
    status = main(["--controller", url, *argv])
    out = capsys.readouterr()
    return status, out.out, out.err


def test_services_table_lists_the_configured_services(capsys, url) -> None:
    """`services` prints a header and one aligned row per service, with its D-SID."""
    status, out, err = _run(capsys, url, "services")
    assert (status, err) == (0, "")
    lines = out.splitlines()
    assert lines[0].split() == ["NAME", "D-SID", "PROTO/PORT", "KEY", "IDLE/HARD", "WEIGHTS",
                                "N/C"]
    assert [ln.split()[:3] for ln in lines[1:]] == [["svc1", "10.0.100.1", "tcp/8000"],
                                                     ["svc2", "10.0.100.2", "tcp/8000"]]
    assert len({ln.index("10.0.100") for ln in lines[1:]}) == 1  # aligned


def test_service_add_then_remove_round_trip(capsys, url) -> None:
    """A service added with options appears as given, and after removal is gone."""
    status, out, _ = _run(capsys, url, "service", "add", "svc3", "--dsid", "10.0.100.3",
                          "--protocol", "udp", "--port", "5000", "--key", "source",
                          "--idle-timeout", "10", "--weight-compute", "2", "--budget-ms", "50")
    assert status == 0 and "svc3" in out
    status, out, _ = _run(capsys, url, "--json", "services")
    svc3 = next(s for s in json.loads(out) if s["name"] == "svc3")
    assert svc3 == {"name": "svc3", "dsid": "10.0.100.3", "protocol": "udp", "port": 5000,
                    "affinity": {"key": "source", "idle_timeout": 10, "hard_timeout": 0},
                    "weights": {"network": 1.0, "compute": 2.0}, "base_delay_ms": 10.0,
                    "delay_budget_ms": 50.0}
    assert _run(capsys, url, "service", "remove", "svc3")[0] == 0
    assert "svc3" not in _run(capsys, url, "services")[1]


def test_bad_dsid_exits_1_naming_the_field(capsys, url) -> None:
    """A rejected request exits 1 with the API's error and field on one stderr line."""
    status, out, err = _run(capsys, url, "service", "add", "svc4", "--dsid", "10.0.100.999")
    assert (status, out) == (1, "")
    assert len(err.splitlines()) == 1 and "400" in err and "field: dsid" in err
    assert "svc4" not in _run(capsys, url, "services")[1]


def test_unknown_service_remove_exits_1(capsys, url) -> None:
    """Removing a service that does not exist is the API's 404, exit 1, no traceback."""
    status, _, err = _run(capsys, url, "service", "remove", "nope")
    assert status == 1 and "404" in err and "Traceback" not in err


def test_instances_table_shows_every_dbid_with_state_and_location(capsys, url) -> None:
    """`instances` has a row per D-BID with its state, dpid:port, load and metric age."""
    status, out, _ = _run(capsys, url, "instances")
    assert status == 0
    rows = {ln.split()[0]: ln.split() for ln in out.splitlines()[1:]}
    assert set(rows) == set(DBIDS)
    assert rows["10.0.0.21"][1:9] == ["svc1", "active", "2:2", "0", "0.00", "2/8", "0", "0"]
    assert rows["10.0.0.22"][2] == "unknown" and rows["10.0.0.22"][-1] == "-"
    assert rows["10.0.0.21"][-1].endswith("s")


def test_decisions_table_has_a_row_per_ingress_and_candidate(capsys, url) -> None:
    """`decisions SERVICE` lists each ingress's candidates of that service only."""
    status, out, _ = _run(capsys, url, "decisions", "svc1")
    assert status == 0
    rows = [ln.split() for ln in out.splitlines()[1:]]
    assert {r[2] for r in rows} == {"10.0.0.21", "10.0.0.31"}
    assert {r[1] for r in rows} == {"svc1"} and {r[0] for r in rows} == {"1", "2", "3", "4"}
    assert all(r[7].endswith("%") for r in rows)
    assert {r[2] for r in (ln.split() for ln in _run(capsys, url, "decisions")[1]
                           .splitlines()[1:])} == set(DBIDS)


def test_bindings_table_starts_empty(capsys, url) -> None:
    """With no flows yet, `bindings` prints only its header."""
    status, out, _ = _run(capsys, url, "bindings", "svc1")
    assert status == 0
    assert out.splitlines() == ["ID  SERVICE  CLIENT  D-SID  INSTANCE  INGRESS"]


@pytest.mark.parametrize("argv", [["services"], ["instances"], ["decisions"], ["bindings"],
                                  ["stats"]])
def test_json_output_parses_as_the_apis_json(capsys, url, argv: list[str]) -> None:
    """`--json`, before or after the command, prints the API's JSON, the same both ways."""
    before = json.loads(_run(capsys, url, "--json", *argv)[1])
    after = json.loads(_run(capsys, url, *argv, "--json")[1])
    assert isinstance(before, list | dict) and before == after


def test_stats_prints_sorted_name_value_lines(capsys, url) -> None:
    """`stats` prints one `name value` line per counter, sorted by name."""
    status, out, _ = _run(capsys, url, "stats")
    pairs = [ln.split(" ") for ln in out.splitlines()]
    assert status == 0 and all(len(p) == 2 and p[1].isdigit() for p in pairs)
    assert [p[0] for p in pairs] == sorted(p[0] for p in pairs)
    assert "metric_reports" in dict(pairs)


def test_unreachable_controller_exits_2_with_one_line(capsys) -> None:
    """No controller listening: exit 2, one stderr line naming the URL and the reason."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    dead = f"http://127.0.0.1:{port}"
    status, out, err = _run(capsys, dead, "instances")
    assert (status, out) == (2, "")
    assert len(err.splitlines()) == 1
    assert dead in err and "refused" in err.lower()


def test_silent_controller_times_out_with_exit_2(capsys) -> None:
    """A controller that accepts but never answers: exit 2 after --timeout, saying so."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        sock.listen(1)  # connections complete in the backlog; nothing ever answers
        silent = f"http://127.0.0.1:{sock.getsockname()[1]}"
        start = time.monotonic()
        status, out, err = _run(capsys, silent, "--timeout", "0.2", "stats")
    assert (status, out) == (2, "") and time.monotonic() - start < 5
    assert len(err.splitlines()) == 1 and silent in err and "timed out" in err


def test_controller_from_environment(capsys, url, monkeypatch) -> None:
    """Without --controller, DYNCASTCTL_CONTROLLER names the controller."""
    monkeypatch.setenv("DYNCASTCTL_CONTROLLER", url)
    assert main(["stats"]) == 0
    assert "bindings 0" in capsys.readouterr().out


def test_drain_then_undrain_round_trip(capsys, url) -> None:
    """drain answers state `draining`; undrain brings back the state the instance had."""
    for dbid in ("10.0.0.31", "10.0.0.32"):  # one active (fresh metrics), one unknown
        was = json.loads(_run(capsys, url, "--json", "instances")[1])
        was_state = next(i["state"] for i in was if i["dbid"] == dbid)
        status, out, err = _run(capsys, url, "drain", dbid)
        assert (status, err) == (0, ""), err
        assert len(out.splitlines()) == 1 and dbid in out and "draining" in out
        status, out, _ = _run(capsys, url, "--json", "undrain", dbid)
        assert status == 0 and json.loads(out)["state"] == was_state


def test_drain_sends_the_deadline_only_when_given(capsys, url) -> None:
    """drain --deadline S sets a deadline S seconds out; without it there is none."""
    status, out, _ = _run(capsys, url, "--json", "drain", "10.0.0.21", "--deadline", "60")
    view = json.loads(out)
    assert status == 0 and view["state"] == "draining"
    assert view["drain_deadline"] == pytest.approx(time.time() + 60, abs=5)
    view = json.loads(_run(capsys, url, "--json", "drain", "10.0.0.22")[1])
    assert view["state"] == "draining" and view["drain_deadline"] is None


def test_drain_unknown_instance_exits_1(capsys, url) -> None:
    """Draining a D-BID the controller does not know is the API's 404, exit 1."""
    status, out, err = _run(capsys, url, "drain", "10.0.0.77")
    assert (status, out) == (1, "") and "404" in err and "10.0.0.77" in err


def test_activate_deactivate_and_history(capsys, url) -> None:
    """activate triggers an inactive instance (409, exit 1, for an active one); deactivate
    drains with a stop to follow; history lists the transitions oldest first."""
    status, _, err = _run(capsys, url, "activate", "10.0.0.21")
    assert status == 1 and "409" in err and "active" in err
    inactive = {"dbid": "10.0.0.22", "cpu": 0.0, "sessions": 0, "queue": 0, "capacity": 8,
                "active": False}
    request = urllib.request.Request(url + "/dyncast/v1/metrics", json.dumps(inactive).encode(),
                                     method="POST")
    urllib.request.urlopen(request, timeout=5).close()
    status, out, _ = _run(capsys, url, "--json", "activate", "10.0.0.22")
    view = json.loads(out)
    assert status == 0 and view["state"] == "activating"
    assert view["pending_commands"][0]["op"] == "reactivate"
    status, out, _ = _run(capsys, url, "deactivate", "10.0.0.31", "--deadline", "30")
    assert status == 0 and "draining" in out
    status, out, _ = _run(capsys, url, "history", "10.0.0.31")
    lines = out.splitlines()
    assert status == 0 and lines[0].split() == ["AT", "FROM", "TO", "EVENT", "REASON"]
    assert [ln.split()[1:4] for ln in lines[1:]] == [["unknown", "unknown", "register"],
                                                     ["unknown", "active", "report_active"],
                                                     ["active", "draining", "drain"]]


def test_every_api_operation_has_a_command() -> None:
    """docs/openapi.yaml's operations, each reachable with a dyncastctl command."""
    from pathlib import Path

    import yaml

    from agents.dyncastctl import build_parser

    doc = yaml.safe_load((Path(__file__).parent.parent / "docs" / "openapi.yaml").read_text())
    ops = {op["operationId"] for p in doc["paths"].values() for m, op in p.items()
           if m not in ("parameters", "servers")}
    covered = {"listResources": None, "listServices": "services", "createService": "service add",
               "getService": "service show", "replaceService": "service set",
               "deleteService": "service remove", "listInstances": "instances",
               "registerInstance": "register", "getInstance": "instance",
               "withdrawInstance": "withdraw", "drainInstance": "drain",
               "undrainInstance": "undrain", "activateInstance": "activate",
               "deactivateInstance": "deactivate", "reportMetrics": "report",
               "listDecisions": "decisions", "serviceDecisions": "decisions",
               "listBindings": "bindings", "serviceBindings": "bindings",
               "getTopology": "topology", "getStats": "stats", "reloadConfig": "reload",
               "getCluster": "cluster",
               "healthz": None, "readyz": None}  # probes for a supervisor, not for operators
    assert ops == set(covered)
    parser = build_parser()
    subs = parser._subparsers._group_actions[0].choices  # type: ignore[union-attr]
    for command in filter(None, covered.values()):
        words = command.split()
        assert words[0] in subs, command
        if len(words) > 1:
            inner = subs[words[0]]._subparsers._group_actions[0].choices
            assert words[1] in inner, command


def test_register_report_show_withdraw_round_trip(capsys, url, tmp_path) -> None:
    status, out, err = _run(capsys, url, "register", "10.0.100.1", "10.0.0.23", "--dma", "x")
    assert status == 0 and "registered 10.0.0.23 (svc1)" in out, err
    body = tmp_path / "r.json"
    body.write_text(json.dumps({"dbid": "10.0.0.23", "cpu": 0.1, "sessions": 0, "queue": 0,
                                "capacity": 4}))
    status, out, err = _run(capsys, url, "report", "--body", str(body))
    assert status == 0 and "accepted 1 report(s)" in out, err
    status, out, _ = _run(capsys, url, "instance", "10.0.0.23")
    assert status == 0 and json.loads(out)["metrics"]["capacity"] == 4
    status, out, _ = _run(capsys, url, "--json", "service", "show", "svc1")
    assert status == 0 and json.loads(out)["name"] == "svc1"
    svc = json.loads(out)
    svc["port"] = 8001
    body.write_text(json.dumps(svc))
    status, out, err = _run(capsys, url, "service", "set", "svc1", "--body", str(body))
    assert status == 0 and "replaced service svc1" in out, err
    status, out, _ = _run(capsys, url, "topology")
    assert status == 0 and "switches" in out
    status, out, _ = _run(capsys, url, "withdraw", "10.0.0.23")
    assert status == 0 and "withdrew 10.0.0.23" in out
    status, _, err = _run(capsys, url, "report", "--body", str(tmp_path / "missing.json"))
    assert status == 2 and "--body" in err
    status, _, err = _run(capsys, url, "reload")  # this test server has no reload
    assert status == 1 and "config/reload" in err
