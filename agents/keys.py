"""`dyncastctl keys ...`: make an agent's key and an operator's token, and enter them in the
controller's tables (the files `[security] agents_file` and `tokens_file` name).

Boundary: files only (written whole to a temporary name, then renamed, mode 600), no network.
The controller re-reads a table when its file changes. Only the SHA-256 of a token is kept
in the token table; the token itself goes to the token file, for the operator.

A table is added to: the new entry joins the others. Nothing is overwritten unless `--force`
is given: an existing key or token file, or an entry of the same name in the table (re-keying
an agent, a new token for an operator). Two options naming one file are refused either way.
    dyncastctl keys agent dma-e2 --prefix 10.0.100.0/24 --prefix 10.0.0.21/32 \\
        --table agents.toml --key-file dma-e2.key
    dyncastctl keys token operator --role admin --table tokens.toml --token-file admin.token
"""

from __future__ import annotations

import argparse
import contextlib
import errno
import fcntl
import hashlib
import os
import secrets
import tomllib
from collections.abc import Callable, Iterator, Sequence
from pathlib import Path
from typing import Any

from controller.auth.credentials import ROLES, agents_from_dict, tokens_from_dict
from controller.errors import ValidationError
from controller.validate import check_name


class KeysError(Exception):
    """A table or file that cannot be written; the message says which and why."""


def _quote(text: str) -> str:
    """A TOML basic string (our values are safe names, prefixes and hex: no escapes needed)."""
    if any(c in text for c in '"\\\n\r') or not text.isprintable():
        raise KeysError(f"{text!r}: not a safe value")
    return f'"{text}"'


def write_private(path: str | Path, text: str, overwrite: bool = False) -> None:
    """Write `text` to `path` atomically, readable by its owner only: whole to a temporary
    file beside it, then renamed over it (`overwrite`) or linked to its name, which fails if
    that exists (FileExistsError naming `path`): a half-written file never has `path`'s name."""
    path = Path(path)
    tmp = path.with_name(f".{path.name}.{secrets.token_hex(4)}.tmp")
    try:
        fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    except OSError as exc:  # named as the file asked for, not the temporary one
        raise OSError(exc.errno, exc.strerror, str(path)) from None
    try:
        with os.fdopen(fd, "w", encoding="utf-8") as f:
            f.write(text)
            f.flush()
            os.fsync(f.fileno())
        if overwrite:
            os.replace(tmp, path)
            return
        try:
            os.link(tmp, path)  # atomic: never replaces an existing name
        except FileExistsError:
            raise FileExistsError(errno.EEXIST, "exists", str(path)) from None
        except OSError as exc:  # a file system without hard links: checked, then renamed
            if exc.errno not in (errno.EPERM, errno.EOPNOTSUPP, errno.ENOTSUP, errno.EMLINK):
                raise OSError(exc.errno, exc.strerror, str(path)) from None
            if os.path.lexists(path):
                raise FileExistsError(errno.EEXIST, "exists", str(path)) from None
            os.replace(tmp, path)
    finally:
        tmp.unlink(missing_ok=True)


def _distinct(*named: tuple[str, str | Path]) -> None:
    """Refuse two output options that name one file (after resolving links and `..`)."""
    seen: list[tuple[str, Path]] = []
    for option, value in named:
        path = Path(value)
        for other, prior in seen:
            same = path.resolve() == prior.resolve()
            if not same and path.exists() and prior.exists():
                same = os.path.samefile(path, prior)
            if same:
                raise KeysError(f"{other} and {option} name the same file: {path.resolve()}")
        seen.append((option, path))


def _fresh(option: str, path: Path, force: bool) -> None:
    """Refuse to write over an existing file unless `force`."""
    if not force and os.path.lexists(path):
        raise KeysError(f"{option}: {path} exists; not overwritten (--force overwrites it)")


def _load(path: Path, key: str, check: Callable[[Any], object]) -> list[dict[str, Any]]:
    """The entries of a table file (none if it does not exist yet); a file that is not such a
    table (another table, a key file, TOML the controller would refuse) is refused, not
    written over."""
    if not path.exists():
        return []
    try:
        data = tomllib.loads(path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, tomllib.TOMLDecodeError) as exc:
        raise KeysError(f"--table: {path}: cannot read: {exc}") from None
    try:
        check(data)
    except ValidationError as exc:
        raise KeysError(f"--table: {path}: not a [[{key}]] table the controller takes "
                        f"({exc}); not written over") from None
    return [dict(e) for e in data.get(key, [])]


def _render(key: str, entries: list[dict[str, Any]]) -> str:
    """A table file's text."""
    out = ["# written by dyncastctl keys; keep it private (mode 600)\n"]
    for entry in entries:
        out.append(f"\n[[{key}]]\n")
        for name, value in entry.items():
            if isinstance(value, list):
                shown = "[" + ", ".join(_quote(str(v)) for v in value) + "]"
            elif isinstance(value, int):
                shown = str(value)
            else:
                shown = _quote(str(value))
            out.append(f"{name} = {shown}\n")
    return "".join(out)


def _merge(path: Path, key: str, field: str, entry: dict[str, Any], force: bool,
           check: Callable[[Any], object]) -> str:
    """The table file's new text: its entries plus `entry`, which replaces one of the same
    `field` only if `force`; checked as the controller will read it."""
    entries = _load(path, key, check)
    name = entry[field]
    if not force and any(e.get(field) == name for e in entries):
        raise KeysError(f"--table: {path} already has {key} {name!r}; not replaced "
                        f"(--force replaces it)")
    text = _render(key, [e for e in entries if e.get(field) != name] + [entry])
    try:
        check(tomllib.loads(text))
    except ValidationError as exc:
        raise KeysError(f"--table: {path}: {exc}") from None
    return text


@contextlib.contextmanager
def _locked(table: Path) -> Iterator[None]:
    """Hold an exclusive lock on the table's folder while it is read and written again, so
    that two `keys` commands adding to one table at once both get in (the later one read the
    table before the earlier one replaced it, and wrote its entry over it)."""
    try:
        fd = os.open(table.parent, os.O_RDONLY | os.O_DIRECTORY)
    except OSError:  # no such folder: the writes fail and say which file
        yield
        return
    try:
        fcntl.flock(fd, fcntl.LOCK_EX)
        yield
    finally:
        os.close(fd)


def _write_both(option: str, private: Path, private_text: str, table: Path, table_text: str,
                force: bool) -> None:
    """Write the key or token file (`option`), then the table; if the table cannot be
    written, a file just made is removed again (one written over with `force` cannot be
    brought back)."""
    existed = os.path.lexists(private)
    try:
        write_private(private, private_text, overwrite=force)
    except FileExistsError:  # made since _fresh looked
        _fresh(option, private, False)
        raise
    try:
        write_private(table, table_text, overwrite=True)
    except BaseException:
        if not existed:
            private.unlink(missing_ok=True)
        raise


def add_agent(table: str | Path, key_file: str | Path, name: str, prefixes: Sequence[str],
              max_instances: int | None = None, force: bool = False) -> None:
    """Make a key for agent `name`, write its key file, and add it with `prefixes` to the
    agent table. An existing key file, or an entry of the same name, is refused (KeysError
    naming the option) unless `force`; `key_file` must not be `table`."""
    check_name(name, "name")
    path, key_path = Path(table), Path(key_file)
    _distinct(("--table", path), ("--key-file", key_path))
    _fresh("--key-file", key_path, force)
    key = secrets.token_hex(32)
    entry: dict[str, Any] = {"id": name, "key": key, "prefixes": list(prefixes)}
    if max_instances is not None:
        entry["max_instances"] = max_instances
    key_text = f"agent = {_quote(name)}\nkey = {_quote(key)}\n"
    with _locked(path):
        text = _merge(path, "agent", "id", entry, force, lambda d: agents_from_dict(d, 1))
        _write_both("--key-file", key_path, key_text, path, text, force)


def add_token(table: str | Path, token_file: str | Path, name: str, role: str,
              force: bool = False) -> str:
    """Make a token for operator `name` with `role`, write it to `token_file`, and add its
    SHA-256 to the token table; return the token. An existing token file, or an entry of the
    same name, is refused (KeysError naming the option) unless `force`; `token_file` must not
    be `table`."""
    check_name(name, "name")
    path, token_path = Path(table), Path(token_file)
    _distinct(("--table", path), ("--token-file", token_path))
    _fresh("--token-file", token_path, force)
    token = secrets.token_urlsafe(32)
    entry = {"name": name, "role": role, "sha256": hashlib.sha256(token.encode()).hexdigest()}
    with _locked(path):
        text = _merge(path, "token", "name", entry, force, tokens_from_dict)
        _write_both("--token-file", token_path, token + "\n", path, text, force)
    return token


def add_parser(sub: Any) -> None:
    """`keys agent` and `keys token` under dyncastctl's subcommands."""
    keys = sub.add_parser("keys", help="make agent keys and operator tokens",
                          description=__doc__,
                          formatter_class=argparse.RawDescriptionHelpFormatter)
    kinds = keys.add_subparsers(dest="kind", metavar="KIND", required=True)
    agent = kinds.add_parser("agent", help="an agent (D-MA) key, entered in the agent table")
    agent.add_argument("name", help="the D-MA's name (dyncast-dma --name)")
    agent.add_argument("--prefix", action="append", required=True, metavar="PREFIX",
                       help="a D-SID or D-BID prefix it may speak for (repeat)")
    agent.add_argument("--max-instances", type=int, default=None, metavar="N")
    agent.add_argument("--table", required=True, help="the agent table ([security] "
                       "agents_file)")
    agent.add_argument("--key-file", required=True, help="where to write the agent's key")
    agent.add_argument("--force", action="store_true", help="overwrite an existing --key-file "
                       "and replace the agent's entry in --table (re-keying it)")
    token = kinds.add_parser("token", help="an operator token, its digest entered in the "
                             "token table")
    token.add_argument("name")
    token.add_argument("--role", choices=ROLES, default="admin")
    token.add_argument("--table", required=True, help="the token table ([security] "
                       "tokens_file)")
    token.add_argument("--token-file", required=True, help="where to write the token")
    token.add_argument("--force", action="store_true", help="overwrite an existing "
                       "--token-file and replace the operator's entry in --table")
    keys.set_defaults(keys=run)


def run(args: argparse.Namespace) -> str:
    """Carry out a parsed `keys` command; the line to print."""
    try:
        if args.kind == "agent":
            add_agent(args.table, args.key_file, args.name, args.prefix, args.max_instances,
                      args.force)
            return f"agent {args.name}: key written to {args.key_file}, entered in {args.table}"
        add_token(args.table, args.token_file, args.name, args.role, args.force)
        return (f"token {args.name} ({args.role}): written to {args.token_file}, its digest "
                f"entered in {args.table}")
    except OSError as exc:
        raise KeysError(f"{exc.filename}: cannot write: {exc.strerror}" if exc.filename
                        else str(exc)) from None
    except ValidationError as exc:
        raise KeysError(str(exc)) from None
