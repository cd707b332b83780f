"""`GET /dyncast/v1/` lists every resource the app serves: the API's and the two the shell
serves itself (`cluster`, `config/reload`: apps/restside.py), which it used to leave out; each one
listed is there (no 404)."""

from __future__ import annotations

from tests.test_app_smoke import Shell
from tests.test_app_smoke import shell as shell  # the fixture, used by name


def test_the_list_names_every_resource_and_each_is_there(shell: Shell) -> None:
    reply = shell.rest("GET", "")
    assert reply.status == 200
    listed = reply.body["resources"]
    assert {"cluster", "config/reload", "services", "instances", "metrics", "stats"} <= set(listed)
    for name in listed:  # (config/reload: a 405, POST only)
        assert shell.rest("GET", name).status != 404, name
    assert shell.rest("GET", "cluster").body == {"enabled": False}
