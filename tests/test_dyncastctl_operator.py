"""Every `dyncastctl` command as an operator meets it: against the real server with its gate
(tests/test_schema_fuzz.py's `server`, each framework) with the right credentials, with none,
a wrong token or a read token, against a controller that is not there or does not answer, and
with bad arguments. Each ends with exit status 0 and nothing on stderr, or a non-zero status
and one line on stderr naming the problem; never a traceback."""

from __future__ import annotations

import json
import os
import re
import signal
import socket
from pathlib import Path

import pytest

from agents import dyncastctl
from agents.dyncastctl import main
from tests.test_app_smoke import DSID
from tests.test_schema_fuzz import Server, server  # the module's fixture

__all__ = ["server"]
API_MD = Path(__file__).resolve().parent.parent / "docs" / "api.md"
DBID = "10.0.0.61"
# every command but `keys` (offline: below), in an order that makes each one's object first
COMMANDS = [
    ["services"], ["service", "add", "ops1", "--dsid", "10.0.100.61", "--protocol", "udp"],
    ["service", "show", "ops1"], ["service", "set", "ops1", "--body", "{svc}"],
    ["register", DSID, DBID], ["report", "--body", "{report}"], ["instances"],
    ["instance", DBID], ["history", DBID], ["decisions"], ["decisions", "svc1"],
    ["bindings"], ["bindings", "svc1"], ["topology"], ["stats"], ["cluster"],
    ["drain", DBID, "--deadline", "60"], ["undrain", DBID], ["deactivate", DBID],
    ["activate", DBID], ["reload"], ["withdraw", DBID], ["service", "remove", "ops1"],
]


READS = {"services", "instances", "instance", "history", "decisions", "bindings", "topology",
         "stats", "cluster"}


def _argv(tmp: Path, command: list[str]) -> list[str]:
    """`command` with its --body files written."""
    bodies = {"{svc}": {"name": "ops1", "dsid": "10.0.100.61", "protocol": "udp",
                        "port": 5001},
              "{report}": {"dbid": DBID, "cpu": 0.1, "sessions": 1, "queue": 0,
                           "capacity": 10}}
    out = []
    for arg in command:
        if arg in bodies:
            path = tmp / f"{arg.strip('{}')}.json"
            path.write_text(json.dumps(bodies[arg]))
            arg = str(path)
        out.append(arg)
    return out


def _run(capsys: pytest.CaptureFixture[str], *argv: str) -> tuple[int, str, str]:
    """dyncastctl in-process (an exception escaping it fails the test): status, out, err."""
    try:
        status = main(list(argv))
    except SystemExit as exc:  # argparse's refusals
        status = int(exc.code or 0)
    out = capsys.readouterr()
    return status, out.out, out.err


def _one_line(err: str) -> str:
    """The one stderr line (argparse writes its usage first: the line is the last)."""
    lines = err.strip().splitlines()
    assert lines and "Traceback" not in err, err
    assert lines[-1].startswith("dyncastctl"), err
    return lines[-1]


def _credentials(srv: Server, tmp: Path) -> tuple[str, str, str]:
    """Files of the admin token, the read token and the D-MA key the server knows."""
    admin, reader = tmp / "admin.token", tmp / "read.token"
    admin.write_text(srv.admin + "\n")
    reader.write_text(srv.reader + "\n")
    key = tmp / "dma.key"
    key.write_text(f'agent = "{srv.signer.agent}"\nkey = "{srv.signer.key.hex()}"\n')
    return str(admin), str(reader), str(key)


def test_every_command_is_listed() -> None:
    """COMMANDS covers the parser's every command but `keys`."""
    sub = next(a for a in dyncastctl.build_parser()._actions if a.dest == "command")
    assert set(sub.choices) - {"keys"} == {c[0] for c in COMMANDS}


def test_every_command_with_credentials_succeeds(server: Server, tmp_path: Path,
                                                 capsys: pytest.CaptureFixture[str]) -> None:
    """With an admin token and the D-MA's key each command does its work (activate: 409, the
    instance is draining, as one line), stderr empty."""
    admin, _, key = _credentials(server, tmp_path)
    for command in COMMANDS:
        status, out, err = _run(capsys, "--controller", server.url, "--token-file", admin,
                                "--key-file", key, *_argv(tmp_path, command))
        if command[0] == "activate":
            assert status == 1 and "409" in _one_line(err), (command, err)
            continue
        assert (status, err) == (0, ""), (command, status, err)
        assert out.strip() or command[0] in ("bindings", "decisions"), command


@pytest.mark.parametrize("who", ["none", "wrong", "read"])
def test_a_missing_wrong_or_weak_credential_is_one_line(
        server: Server, tmp_path: Path, capsys: pytest.CaptureFixture[str], who: str) -> None:
    """No token, an unknown token, a read token for a change: status 1 and the API's 401/403
    on one line naming the header; a read still works with the read token."""
    _, reader, _ = _credentials(server, tmp_path)
    wrong = tmp_path / "wrong.token"
    wrong.write_text("not-a-token\n")
    token = {"none": [], "wrong": ["--token-file", str(wrong)],
             "read": ["--token-file", reader]}[who]
    for command in COMMANDS:
        status, _, err = _run(capsys, "--controller", server.url, *token,
                              *_argv(tmp_path, command))
        if who == "read" and (command[0] in READS or command[1:2] == ["show"]):
            # a read: answered (a 404 for an object the other test removed, on one line)
            assert (status, err) == (0, "") or (status == 1 and "404" in _one_line(err)), err
            continue
        line = _one_line(err)
        assert status == 1, (command, err)
        assert ("401" in line or "403" in line) and "field:" in line, (command, line)


def _closed_port() -> int:
    """A loopback port nothing listens on."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def test_a_controller_not_there_or_not_answering_is_one_line(
        server: Server, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """Nothing listening, and a stopped controller (connections accepted, nothing answered):
    status 2, one line saying the controller could not be reached and why."""
    admin, _, key = _credentials(server, tmp_path)
    for command in COMMANDS:
        status, _, err = _run(capsys, "--controller", f"http://127.0.0.1:{_closed_port()}",
                              "--token-file", admin, "--key-file", key,
                              *_argv(tmp_path, command))
        assert status == 2 and "cannot reach the controller" in _one_line(err), (command, err)
    os.kill(server.proc.pid, signal.SIGSTOP)
    try:
        for command in (["services"], ["drain", DBID], ["report", "--body", "{report}"]):
            status, _, err = _run(capsys, "--controller", server.url, "--timeout", "0.3",
                                  "--token-file", admin, "--key-file", key,
                                  *_argv(tmp_path, command))
            line = _one_line(err)
            assert status == 2 and "timed out" in line, (command, err)
    finally:
        os.kill(server.proc.pid, signal.SIGCONT)


@pytest.mark.parametrize(("argv", "named"), [
    (["--controller", "http://[::1", "services"], "--controller"),  # was a ValueError
    (["--timeout", "1e400", "services"], "--timeout"),  # inf: was an OverflowError
    (["--timeout", "0", "services"], "--timeout"),
    (["--controller", "ftp://x", "services"], "--controller"),
    (["drain", "10.0.0.1", "--deadline", "soon"], "--deadline"),
    (["service", "add", "x"], "--dsid"),
    (["nosuch"], "nosuch"),
    ([], "COMMAND"),
    (["report", "--body", "/nonexistent/report.json"], "/nonexistent/report.json"),
    (["--token-file", "/nonexistent/admin.token", "services"], "/nonexistent/admin.token"),
    (["keys", "token", "ops", "--table", "/nonexistent/dir/tokens.toml", "--token-file",
      "/nonexistent/dir/ops.token"], "/nonexistent/dir/ops.token"),  # named a temporary file
])
def test_bad_arguments_are_one_line_naming_them(capsys: pytest.CaptureFixture[str],
                                                argv: list[str], named: str) -> None:
    """A wrong command line, or a file it names that cannot be used: status 2 (as documented;
    an unreadable token file was 1, which means the API refused), one line (after argparse's
    usage) naming what is wrong; never a traceback."""
    status, _, err = _run(capsys, "--controller", f"http://127.0.0.1:{_closed_port()}", *argv)
    assert status == 2 and named in _one_line(err), (argv, err)
    assert "tmp" not in _one_line(err), err


def test_every_command_and_option_is_documented() -> None:
    """docs/api.md's dyncastctl section names every command and every global option (it left
    out `cluster`, `--key-file` and the TLS options)."""
    section = API_MD.read_text().split("## `dyncastctl`", 1)[1].split("\n## ", 1)[0]
    parser = dyncastctl.build_parser()
    sub = next(a for a in parser._actions if a.dest == "command")
    missing = [c for c in sub.choices if not re.search(rf"dyncastctl [^\n]*\b{c}\b", section)]
    options = [o for a in parser._actions for o in a.option_strings
               if o.startswith("--") and o != "--help"]
    missing += [o for o in options if f"`{o}" not in section]
    assert len(options) >= 8 and missing == []
