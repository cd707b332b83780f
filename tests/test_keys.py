"""`dyncastctl keys`: what it writes, and what it refuses to write over (agents/keys.py)."""

from __future__ import annotations

import os
import stat
import threading
import time
import tomllib
from pathlib import Path

import pytest

from agents import dyncastctl, keys


def _ctl(capsys: pytest.CaptureFixture[str], *argv: str) -> tuple[int, str]:
    """Run `dyncastctl keys ...` in this process; its status and what it wrote to stderr."""
    status = dyncastctl.main(["keys", *argv])
    return status, capsys.readouterr().err


def _agent(folder: Path, name: str, key_file: str, *extra: str) -> list[str]:
    """`keys agent NAME` arguments with the table in `folder`."""
    return ["agent", name, "--prefix", "10.1.0.0/16", "--table", str(folder / "ag.toml"),
            "--key-file", str(folder / key_file), *extra]


def _snapshot(folder: Path) -> dict[str, bytes]:
    """Every file in `folder` (temporary ones too) and its bytes."""
    return {p.name: p.read_bytes() for p in sorted(folder.iterdir())}


def _table(path: Path, key: str) -> list[dict[str, object]]:
    """The entries of a table file."""
    return list(tomllib.loads(path.read_text())[key])


def test_another_agents_key_file_is_not_overwritten(
        tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """A --key-file that exists (here a1's key) is refused with status 2, naming the option and
    the path; no file changes (a2 is not entered either). It was overwritten, status 0."""
    assert _ctl(capsys, *_agent(tmp_path, "a1", "a1.key"))[0] == 0
    before = _snapshot(tmp_path)
    status, err = _ctl(capsys, *_agent(tmp_path, "a2", "a1.key"))
    assert status == 2 and "--key-file" in err and str(tmp_path / "a1.key") in err, err
    assert _snapshot(tmp_path) == before


def test_an_agent_already_in_the_table_is_not_replaced(
        tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """A second `keys agent a1` (new key file) is refused: its entry would silently replace
    a1's, and a1's running D-MA would be locked out. Nothing is written, not even the key."""
    assert _ctl(capsys, *_agent(tmp_path, "a1", "a1.key"))[0] == 0
    before = _snapshot(tmp_path)
    status, err = _ctl(capsys, *_agent(tmp_path, "a1", "other.key"))
    assert status == 2 and "--table" in err and "'a1'" in err and "--force" in err, err
    assert _snapshot(tmp_path) == before


def test_force_re_keys_an_agent_and_keeps_the_others(
        tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """Adding an agent keeps the table's other entries; --force writes a new key over the old
    key file and replaces the agent's entry with it (re-keying, docs/security.md)."""
    assert _ctl(capsys, *_agent(tmp_path, "a1", "a1.key"))[0] == 0
    assert _ctl(capsys, *_agent(tmp_path, "a2", "a2.key"))[0] == 0
    old = (tmp_path / "a1.key").read_text()
    assert _ctl(capsys, *_agent(tmp_path, "a1", "a1.key", "--force"))[0] == 0
    new = tomllib.loads((tmp_path / "a1.key").read_text())
    assert (tmp_path / "a1.key").read_text() != old
    entries = {e["id"]: e["key"] for e in _table(tmp_path / "ag.toml", "agent")}
    assert entries.keys() == {"a1", "a2"} and entries["a1"] == new["key"]
    assert sorted(p.name for p in tmp_path.iterdir()) == ["a1.key", "a2.key", "ag.toml"]


@pytest.mark.parametrize("force", [[], ["--force"]])
def test_a_token_file_that_is_the_table_is_refused_even_forced(
        tmp_path: Path, capsys: pytest.CaptureFixture[str], force: list[str]) -> None:
    """--token-file naming the --table (the same path spelt otherwise) is refused, --force or
    not: the table was written over the token, which was lost, status 0."""
    assert _ctl(capsys, "token", "ops", "--table", str(tmp_path / "tok.toml"),
                "--token-file", str(tmp_path / "ops.token"))[0] == 0
    before = _snapshot(tmp_path)
    (tmp_path / "sub").mkdir()
    status, err = _ctl(capsys, "token", "viewer", "--role", "read", "--table",
                       str(tmp_path / "tok.toml"), "--token-file",
                       str(tmp_path / "sub" / ".." / "tok.toml"), *force)
    assert status == 2 and "--table" in err and "--token-file" in err, err
    assert "same file" in err and str(tmp_path / "tok.toml") in err, err
    (tmp_path / "sub").rmdir()
    assert _snapshot(tmp_path) == before


def test_a_key_file_linked_to_the_table_is_refused(
        tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """A --key-file that is a symbolic link to the --table is the same file: refused."""
    assert _ctl(capsys, *_agent(tmp_path, "a1", "a1.key"))[0] == 0
    (tmp_path / "link.key").symlink_to(tmp_path / "ag.toml")
    before = _snapshot(tmp_path)
    status, err = _ctl(capsys, *_agent(tmp_path, "a2", "link.key", "--force"))
    assert status == 2 and "same file" in err, err
    assert _snapshot(tmp_path) == before


def test_a_file_that_is_not_such_a_table_is_not_written_over(
        tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """--table naming an agent's key file (TOML, but no token table) is refused: the token
    table was written over it."""
    assert _ctl(capsys, *_agent(tmp_path, "a1", "a1.key"))[0] == 0
    before = _snapshot(tmp_path)
    status, err = _ctl(capsys, "token", "ops", "--table", str(tmp_path / "a1.key"),
                       "--token-file", str(tmp_path / "ops.token"), "--force")
    assert status == 2 and "--table" in err and "not written over" in err, err
    assert _snapshot(tmp_path) == before


def test_a_table_that_cannot_be_written_leaves_no_new_key_file(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """If the table cannot be written, the key file just made is removed again: a key the
    controller does not know is not left behind, nor a temporary file."""
    real = os.replace

    def failing(src: str | Path, dst: str | Path) -> None:
        if Path(dst).name == "ag.toml":
            raise OSError(28, "No space left on device", str(dst))
        real(src, dst)

    monkeypatch.setattr(os, "replace", failing)
    with pytest.raises(OSError):
        keys.add_agent(tmp_path / "ag.toml", tmp_path / "a1.key", "a1", ["10.1.0.0/16"])
    assert list(tmp_path.iterdir()) == []


def test_written_files_are_private_and_whole(tmp_path: Path) -> None:
    """Key, token and table files are mode 600; a write that fails midway leaves neither the
    file nor its temporary one."""
    keys.add_agent(tmp_path / "ag.toml", tmp_path / "a1.key", "a1", ["10.1.0.0/16"])
    keys.add_token(tmp_path / "tok.toml", tmp_path / "ops.token", "ops", "admin")
    for path in tmp_path.iterdir():
        assert stat.S_IMODE(path.stat().st_mode) == 0o600, path
    with pytest.raises(TypeError):
        keys.write_private(tmp_path / "half", 42)  # type: ignore[arg-type]
    assert sorted(p.name for p in tmp_path.iterdir()) == ["a1.key", "ag.toml", "ops.token",
                                                          "tok.toml"]


def test_write_private_never_replaces_an_existing_name_unless_told(tmp_path: Path) -> None:
    """Without `overwrite`, the write itself refuses an existing file (even one made after the
    options were checked): FileExistsError naming it, the file as it was, no temporary left."""
    path = tmp_path / "a.key"
    path.write_text("theirs")
    with pytest.raises(FileExistsError) as caught:
        keys.write_private(path, "mine")
    assert caught.value.filename == str(path) and path.read_text() == "theirs"
    keys.write_private(path, "mine", overwrite=True)
    assert path.read_text() == "mine" and [p.name for p in tmp_path.iterdir()] == ["a.key"]


def test_agents_added_at_once_to_one_table_are_all_entered(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Two `keys agent` commands adding to one table at once both get in: each read the table,
    and the later write dropped the earlier one's agent (its key file left, unknown)."""
    real = keys._render

    def slow(key: str, entries: list[dict[str, object]]) -> str:
        time.sleep(0.2)  # both commands have read the table before either writes it
        return real(key, entries)

    monkeypatch.setattr(keys, "_render", slow)
    threads = [threading.Thread(target=keys.add_agent, args=(
        tmp_path / "ag.toml", tmp_path / f"a{i}.key", f"a{i}", ["10.1.0.0/16"]))
        for i in range(4)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert sorted(e["id"] for e in _table(tmp_path / "ag.toml", "agent")) == [
        "a0", "a1", "a2", "a3"]
