"""The REST clients over HTTPS (agents/tls.py): `dyncast-dma`'s and `dyncastctl`'s calls to the
real hardened REST server (apps/restserver.py, in a subprocess) with a CA the test makes.
Verification is on by default: an unknown CA or a wrong host name is refused; the CA file
(option or env DYNCAST_CA_FILE) makes it work; a client certificate is sent when the server
requires one."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path

import pytest

from agents import dyncastctl
from agents.dma import cli
from agents.dma.wire import UnreachableError, controller_call, controller_link
from agents.tls import ENV_CA_FILE, TlsError, client_context
from tests.test_restserver import _start, make_ca

PKI_NAMES = ("server", "client")


@pytest.fixture(scope="module")
def pki(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    """The test CA with a server (SAN IP 127.0.0.1) and a client certificate; and a second,
    unrelated CA."""
    out = make_ca(tmp_path_factory.mktemp("pki"), PKI_NAMES)
    other = make_ca(tmp_path_factory.mktemp("other"), ())
    return {**out, "other_ca": other["ca"]}


def _server(tls: dict[str, str]) -> Iterator[int]:
    proc, port = _start(tls)
    try:
        yield port
    finally:
        proc.terminate()
        proc.wait(10)


@pytest.fixture(scope="module")
def https_port(pki: dict[str, Path]) -> Iterator[int]:
    """An HTTPS server (no client certificates asked)."""
    yield from _server({"cert": str(pki["server"]), "key": str(pki["server_key"])})


@pytest.fixture(scope="module")
def mutual_port(pki: dict[str, Path]) -> Iterator[int]:
    """An HTTPS server that requires a client certificate signed by the test CA."""
    yield from _server({"cert": str(pki["server"]), "key": str(pki["server_key"]),
                        "ca": str(pki["ca"])})


def _dma_args(port: int, *extra: str, host: str = "127.0.0.1") -> list[str]:
    return ["--controller", f"https://{host}:{port}", "--name", "dma-e2",
            "--instance", "10.0.100.1=10.0.0.21@http://10.0.0.21:8000/stats", *extra]


def _dma_post(options: cli.Options) -> int:
    """One D-MA call (as its agent makes them) with the TLS context its options give: the length
    the server read of the body."""
    answer = controller_call(controller_link(options.controller, options.tls), "POST", "/x",
                             {"reports": []})
    assert answer.status == 200, answer
    return int(json.loads(answer.body)["len"])


def test_the_dma_reaches_an_https_controller_with_its_ca_file(https_port: int,
                                                              pki: dict[str, Path]) -> None:
    """--ca-file: the D-MA's calls reach the server, body and all."""
    options = cli.parse_args(_dma_args(https_port, "--ca-file", str(pki["ca"])))
    assert _dma_post(options) == len(json.dumps({"reports": []}))


def test_the_dma_verifies_the_controller_by_default(https_port: int,
                                                    pki: dict[str, Path],
                                                    monkeypatch: pytest.MonkeyPatch) -> None:
    """Without a CA file (system CAs), with another CA, or by a name the certificate does not
    carry, the call fails as unreachable, naming the verification; the env var works too."""
    monkeypatch.delenv(ENV_CA_FILE, raising=False)
    for args in (_dma_args(https_port),
                 _dma_args(https_port, "--ca-file", str(pki["other_ca"])),
                 _dma_args(https_port, "--ca-file", str(pki["ca"]), host="localhost")):
        with pytest.raises(UnreachableError, match="CERTIFICATE_VERIFY_FAILED"):
            _dma_post(cli.parse_args(args))
    monkeypatch.setenv(ENV_CA_FILE, str(pki["ca"]))
    assert _dma_post(cli.parse_args(_dma_args(https_port))) > 0


def test_the_dma_sends_its_client_certificate_when_required(mutual_port: int,
                                                            pki: dict[str, Path]) -> None:
    """A server with rest_client_ca: served with --client-cert/--client-key, refused without."""
    ca = ("--ca-file", str(pki["ca"]))
    with pytest.raises(UnreachableError):
        _dma_post(cli.parse_args(_dma_args(mutual_port, *ca)))
    mine = ("--client-cert", str(pki["client"]), "--client-key", str(pki["client_key"]))
    assert _dma_post(cli.parse_args(_dma_args(mutual_port, *ca, *mine))) > 0


def test_the_dma_refuses_unusable_tls_files_at_start(pki: dict[str, Path], tmp_path: Path,
                                                     capsys: pytest.CaptureFixture[str]) -> None:
    """A missing CA file or a key without its certificate: a usage error naming the file."""
    missing = str(tmp_path / "nope.pem")
    for extra, named in (("--ca-file", missing), ("--client-key", str(pki["client_key"]))):
        with pytest.raises(SystemExit) as exc:
            cli.parse_args(_dma_args(1, extra, named))
        assert exc.value.code == 2
        assert named in capsys.readouterr().err
    with pytest.raises(TlsError, match=r"client\.pem"):
        client_context(str(pki["ca"]), str(pki["client"]), str(pki["server_key"]))


def _ctl(port: int, *args: str, host: str = "127.0.0.1") -> list[str]:
    return ["--controller", f"https://{host}:{port}", *args, "stats"]


def test_dyncastctl_over_https(https_port: int, mutual_port: int, pki: dict[str, Path],
                               capsys: pytest.CaptureFixture[str],
                               monkeypatch: pytest.MonkeyPatch) -> None:
    """dyncastctl: refused (exit 2, naming the verification) without the CA; answered with
    --ca-file, with env DYNCAST_CA_FILE, and with a client certificate where one is required
    (the option also after the command)."""
    monkeypatch.delenv(ENV_CA_FILE, raising=False)
    assert dyncastctl.main(_ctl(https_port)) == 2
    assert "CERTIFICATE_VERIFY_FAILED" in capsys.readouterr().err
    assert dyncastctl.main(_ctl(https_port, "--ca-file", str(pki["ca"]), host="localhost")) == 2
    assert "CERTIFICATE_VERIFY_FAILED" in capsys.readouterr().err
    assert dyncastctl.main(_ctl(https_port, "--ca-file", str(pki["ca"]))) == 0
    assert capsys.readouterr().out.strip() == "len 0"
    monkeypatch.setenv(ENV_CA_FILE, str(pki["ca"]))
    assert dyncastctl.main(_ctl(mutual_port)) == 2
    capsys.readouterr()
    mine = ["--client-cert", str(pki["client"]), "--client-key", str(pki["client_key"])]
    assert dyncastctl.main([*_ctl(mutual_port), *mine]) == 0
    assert capsys.readouterr().out.strip() == "len 0"

