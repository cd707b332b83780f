"""The real clients against the real gate over HTTP: dyncastctl sends its token, the D-MA's
calls are signed with its key file, and both are refused without them."""

from __future__ import annotations

import threading
from collections.abc import Iterator
from pathlib import Path
from wsgiref.simple_server import WSGIRequestHandler, make_server

import pytest

from agents import dyncastctl
from agents.dma.wire import controller_call, controller_link
from agents.signing import Signer
from tests.test_security_gate import REG, Lab


class Quiet(WSGIRequestHandler):
    def log_message(self, *args: object) -> None:
        pass


@pytest.fixture
def served(tmp_path: Path) -> Iterator[tuple[Lab, str]]:
    lab = Lab(tmp_path)
    server = make_server("127.0.0.1", 0, lab.gate, handler_class=Quiet)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield lab, f"http://127.0.0.1:{server.server_port}"
    server.shutdown()
    server.server_close()


def test_dyncastctl_sends_its_token(served: tuple[Lab, str], capsys: pytest.CaptureFixture[str],
                                    monkeypatch: pytest.MonkeyPatch) -> None:
    """--token-file or $DYNCAST_TOKEN_FILE: the call works; neither: exit 1 naming the 401."""
    lab, url = served
    token = str(lab.tmp / "admin.token")
    monkeypatch.delenv("DYNCAST_TOKEN_FILE", raising=False)
    assert dyncastctl.main(["--controller", url, "--token-file", token, "services"]) == 0
    assert "svc1" in capsys.readouterr().out
    assert dyncastctl.main(["--controller", url, "services"]) == 1
    assert "Authorization" in capsys.readouterr().err
    monkeypatch.setenv("DYNCAST_TOKEN_FILE", token)
    assert dyncastctl.main(["--controller", url, "service", "remove", "svc1"]) == 0
    read_only = str(lab.tmp / "read.token")
    assert dyncastctl.main(["--controller", url, "--token-file", read_only, "drain",
                            "10.0.0.21"]) == 1
    assert "needs 'admin'" in capsys.readouterr().err


def test_the_dmas_calls_are_signed_with_its_key_file(served: tuple[Lab, str]) -> None:
    """The D-MA's one request path signs with its key: registration, then withdrawal, work;
    the same calls unsigned get 401 and change nothing."""
    lab, url = served
    signer = Signer.from_file(lab.tmp / "dma-e2.key")
    link = controller_link(url)
    assert controller_call(link, "POST", "/instances", {**REG, "dbid": "10.0.0.22"}).status \
        == 401
    assert controller_call(link, "POST", "/instances", REG, signer).status == 201
    assert controller_call(link, "DELETE", "/instances/10.0.0.21", None).status == 401
    assert "10.0.0.21" in lab.core.catalogue.instances
    assert controller_call(link, "DELETE", "/instances/10.0.0.21", None, signer).status == 200
    assert lab.core.catalogue.instances == {}


def test_the_dma_refuses_a_key_file_of_another_agent(tmp_path: Path,
                                                     capsys: pytest.CaptureFixture[str]) -> None:
    """`dyncast-dma --name X --key-file Y.key` with Y != X is a usage error, before any call."""
    from agents import keys
    from agents.dma.cli import parse_args

    keys.add_agent(tmp_path / "a.toml", tmp_path / "other.key", "other", ["10.0.0.0/8"])
    with pytest.raises(SystemExit):
        parse_args(["--controller", "http://127.0.0.1:1", "--name", "dma-e2", "--key-file",
                    str(tmp_path / "other.key"), "--instance",
                    "10.0.100.1=10.0.0.21@http://10.0.0.21:8000/stats"])
    assert "not --name" in capsys.readouterr().err


def test_dyncastctl_signs_agent_calls_with_a_key_file(served: tuple[Lab, str],
                                                       capsys: pytest.CaptureFixture[str]) -> None:
    """`dyncastctl --key-file K register/withdraw` signs as K's agent (the instance's dma);
    with only a token those calls are refused."""
    lab, url = served
    token, key = str(lab.tmp / "admin.token"), str(lab.tmp / "dma-e2.key")
    assert dyncastctl.main(["--controller", url, "--token-file", token, "register",
                            "10.0.100.1", "10.0.0.21"]) == 1
    assert "X-Dyncast-Agent" in capsys.readouterr().err
    assert dyncastctl.main(["--controller", url, "--key-file", key, "register", "10.0.100.1",
                            "10.0.0.21"]) == 0
    assert lab.core.catalogue.instances["10.0.0.21"].dma == "dma-e2"
    assert dyncastctl.main(["--controller", url, "--key-file", key, "--token-file", token,
                            "withdraw", "10.0.0.21"]) == 0
    assert lab.core.catalogue.instances == {}
