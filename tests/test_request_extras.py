"""What a request carries besides its method, path and body, through the real app (the Shell
of tests/test_app_smoke.py): the API takes no query parameter, and no body on a GET, a DELETE
or a reload. Either is a 400 naming `query` or `body`, and changes nothing: an option sent as
a parameter (`?deadline_s=5`) was ignored before, and the call applied without it."""

from __future__ import annotations

from typing import Any

import pytest

from tests import test_app_smoke
from tests.test_app_smoke import INSTANCE, Shell

shell = test_app_smoke.shell  # the fixture: the app on each framework

SVC3 = {"name": "svc3", "dsid": "10.0.100.3", "protocol": "tcp", "port": 9000}


def state(shell: Shell) -> Any:
    """What the API shows of services and instances."""
    return (shell.rest("GET", "services").body, shell.rest("GET", "instances").body)


@pytest.mark.parametrize("method, path, body", [
    ("POST", "instances/10.0.0.21/drain?deadline_s=5", None),
    ("POST", "services?validate_only=true", SVC3),
    ("DELETE", "services/svc1?dry_run=1", None),
    ("GET", "instances?dbid=10.0.0.21", None),
    ("PUT", "services/svc1?x", None),
    ("POST", "metrics?%ff=1", {"dbid": INSTANCE[0], "cpu": 0.5, "sessions": 1, "queue": 0,
                               "capacity": 10}),
])
def test_a_query_string_is_a_400_naming_it_and_changes_nothing(
        shell: Shell, method: str, path: str, body: Any) -> None:
    shell.register()
    before = state(shell)
    reply = shell.rest(method, path, body)
    assert reply.status == 400 and reply.body["field"] == "query", reply.body
    assert "query parameters" in reply.body["error"]
    assert state(shell) == before
    assert shell.rest("GET", "instances/10.0.0.21").body["drain_deadline"] is None


@pytest.mark.parametrize("method, path", [("GET", "services"), ("DELETE", "services/svc1"),
                                          ("DELETE", "instances/10.0.0.21"),
                                          ("POST", "config/reload")])
def test_a_body_where_the_call_takes_none_is_a_400_and_changes_nothing(
        shell: Shell, method: str, path: str) -> None:
    shell.register()
    before = state(shell)
    reply = shell.rest(method, path, {"x": 1})
    assert reply.status == 400 and reply.body["field"] == "body", reply.body
    assert state(shell) == before
    assert shell.rest(method, path).status == 200  # the same call without it: served


def test_an_empty_object_or_null_body_is_no_body(shell: Shell) -> None:
    """`{}` or `null` (what some clients send with every call) carry nothing: served."""
    shell.register()
    assert shell.rest("GET", "services", {}).status == 200
    assert shell.rest("POST", "config/reload", None).status == 200
    assert shell.app.api_call("DELETE", "/dyncast/v1/instances/10.0.0.21", b" null ").status \
        == 200
