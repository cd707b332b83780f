"""A controller that cannot start says why in one line naming the key or file at fault, and
exits 1: never a traceback (the manager, as an operator starts it, under os-ken)."""

from __future__ import annotations

import os
import socket
import subprocess
import sys
from pathlib import Path

import pytest
from sqlalchemy import create_engine, text

from agents import keys
from apps.store import open_store

REPO = Path(__file__).resolve().parent.parent


def _start(tmp: Path, config: str, rest_port: int = 0, of_port: int = 0,
           framework: str = "os-ken") -> subprocess.CompletedProcess[str]:
    cfg = tmp / "dyncast.toml"
    cfg.write_text(config)
    return subprocess.run([sys.executable, "-m", "apps.manager", "--framework", framework,
                           "--ofp-tcp-listen-port", str(of_port), "--wsapi-host", "127.0.0.1",
                           "--wsapi-port", str(rest_port), "--dyncast-config", str(cfg),
                           str(REPO / "apps" / "dyncast_app.py")],
                          cwd=tmp, capture_output=True, text=True, timeout=60,
                          env={**os.environ, "PYTHONPATH": str(REPO)})


def _partial_store(tmp: Path) -> str:
    """A database holding one of the store's tables but not the others (refused)."""
    url = f"sqlite:///{tmp}/partial.db"
    engine = create_engine(url)
    with engine.begin() as conn:
        conn.execute(text("CREATE TABLE services (name VARCHAR(64) PRIMARY KEY, data TEXT)"))
    engine.dispose()
    return url


def _newer_store(tmp: Path) -> str:
    """A store a newer version of the controller upgraded past our newest revision."""
    url = f"sqlite:///{tmp}/newer.db"
    engine = create_engine(url)
    with engine.begin() as conn:
        conn.execute(text("CREATE TABLE alembic_version (version_num VARCHAR(32) PRIMARY KEY)"))
        conn.execute(text("INSERT INTO alembic_version VALUES ('9999')"))
    engine.dispose()
    return url


@pytest.mark.parametrize(("case", "wanted"), [
    ("store_dir", "controller.store_url"),  # a directory that does not exist
    ("store_driver", "controller.store_url"),  # a dialect whose driver is not installed
    ("store_partial", "controller.store_url"),  # a database that is not a store
    ("store_newer", "newer version"),  # a store of a later schema revision than ours
    ("store_in_use", "in use by another controller"),  # another lone controller's store
    ("agents_file", "nope.toml"),  # a table file that is not there
    ("tokens_bad", "tokens.toml"),  # one that does not parse
])
def test_a_start_that_cannot_go_on_is_one_line_naming_the_key(tmp_path: Path, case: str,
                                                               wanted: str) -> None:
    """The store and the security tables are opened by the app as the manager builds it:
    what they raised went up through the framework as a traceback (the key unnamed)."""
    keys.add_agent(tmp_path / "agents.toml", tmp_path / "a.key", "dma-a", ["10.0.0.0/24"])
    keys.add_token(tmp_path / "tokens.toml", tmp_path / "admin.token", "ops", "admin")
    store = {"store_dir": f"sqlite:///{tmp_path}/no/such/dir/x.db",
             "store_driver": "mysql://u:secret@127.0.0.1/db",
             "store_partial": _partial_store(tmp_path),
             "store_newer": _newer_store(tmp_path)}.get(case, f"sqlite:///{tmp_path}/s.db")
    if case == "tokens_bad":
        (tmp_path / "tokens.toml").write_text("garbage [[[\n")
    agents = "nope.toml" if case == "agents_file" else "agents.toml"
    other = open_store(store, "other.toml") if case == "store_in_use" else None
    done = _start(tmp_path, f'[security]\nagents_file = "{agents}"\n'
                            f'tokens_file = "tokens.toml"\n[controller]\nstore_url = "{store}"\n')
    if other is not None:
        other.close()
    assert done.returncode == 1, done.stderr[-2000:]
    assert "Traceback" not in done.stderr, done.stderr[-3000:]
    last = done.stderr.strip().splitlines()[-1]
    assert last.startswith("dyncast-manager: ") and wanted in last, last
    assert "secret" not in done.stderr


@pytest.mark.parametrize(("which", "framework"), [
    ("rest", "os-ken"), ("openflow", "os-ken"), ("openflow", "ryu")])
def test_a_port_in_use_is_one_line_naming_the_listen_key(tmp_path: Path, which: str,
                                                          framework: str) -> None:
    """Another process on the REST port: eventlet's bind error was a traceback; on the
    OpenFlow port, a traceback from the framework's server thread and an exit status of 0."""
    with socket.socket() as busy:
        busy.bind(("127.0.0.1", 0))
        busy.listen()
        port = busy.getsockname()[1]
        done = _start(tmp_path, "[security]\nauth = false\n[controller]\n"
                                f'store_url = "sqlite:///{tmp_path}/s.db"\n',
                      rest_port=port if which == "rest" else 0,
                      of_port=port if which == "openflow" else 0, framework=framework)
    assert done.returncode == 1 and "Traceback" not in done.stderr, done.stderr[-3000:]
    last = done.stderr.strip().splitlines()[-1]
    assert last.startswith("dyncast-manager: ") and f"channel.{which}_listen" in last, last
    assert "in use" in last, last
