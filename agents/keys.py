"""`dyncastctl keys ...`: make an agent's key and an operator's token, and enter them in the
controller's tables (the files `[security] agents_file` and `tokens_file` name).

Boundary: files only (written whole to a temporary name, then renamed, mode 600), no network.
The controller re-reads a table when its file changes. Only the SHA-256 of a token is kept
in the token table; the token itself goes to the token file, for the operator.
    dyncastctl keys agent dma-e2 --prefix 10.0.100.0/24 --prefix 10.0.0.21/32 \\
        --table agents.toml --key-file dma-e2.key
    dyncastctl keys token operator --role admin --table tokens.toml --token-file admin.token
"""

from __future__ import annotations

import argparse
import hashlib
import os
import secrets
import tomllib
from collections.abc import Sequence
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


def write_private(path: str | Path, text: str) -> None:
    """Write `text` to `path` atomically, readable by its owner only."""
    path = Path(path)
    tmp = path.with_name(f".{path.name}.{secrets.token_hex(4)}.tmp")
    try:
        fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    except OSError as exc:  # named as the file asked for, not the temporary one
        raise OSError(exc.errno, exc.strerror, str(path)) from None
    try:
        with os.fdopen(fd, "w", encoding="utf-8") as f:
            f.write(text)
        os.replace(tmp, path)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise


def _load(path: Path, key: str) -> list[dict[str, Any]]:
    """The entries of a table file (none if it does not exist yet)."""
    if not path.exists():
        return []
    try:
        data = tomllib.loads(path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, tomllib.TOMLDecodeError) as exc:
        raise KeysError(f"{path}: cannot read: {exc}") from None
    entries = data.get(key, [])
    if not isinstance(entries, list):
        raise KeysError(f"{path}: {key}: must be an array of tables")
    return [dict(e) for e in entries]


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


def add_agent(table: str | Path, key_file: str | Path, name: str, prefixes: Sequence[str],
              max_instances: int | None = None) -> None:
    """Make a key for agent `name`, write its key file, and enter it (replacing an entry of
    the same name) with `prefixes` in the agent table."""
    check_name(name, "name")
    key = secrets.token_hex(32)
    entry: dict[str, Any] = {"id": name, "key": key, "prefixes": list(prefixes)}
    if max_instances is not None:
        entry["max_instances"] = max_instances
    path = Path(table)
    entries = [e for e in _load(path, "agent") if e.get("id") != name] + [entry]
    text = _render("agent", entries)
    try:
        agents_from_dict(tomllib.loads(text), 1)  # what the controller will accept
    except ValidationError as exc:
        raise KeysError(f"{path}: {exc}") from None
    write_private(key_file, f"agent = {_quote(name)}\nkey = {_quote(key)}\n")
    write_private(path, text)


def add_token(table: str | Path, token_file: str | Path, name: str, role: str) -> str:
    """Make a token for operator `name` with `role`, write it to `token_file`, and enter its
    SHA-256 in the token table (replacing an entry of the same name); return the token."""
    check_name(name, "name")
    token = secrets.token_urlsafe(32)
    entry = {"name": name, "role": role, "sha256": hashlib.sha256(token.encode()).hexdigest()}
    path = Path(table)
    entries = [e for e in _load(path, "token") if e.get("name") != name] + [entry]
    text = _render("token", entries)
    try:
        tokens_from_dict(tomllib.loads(text))
    except ValidationError as exc:
        raise KeysError(f"{path}: {exc}") from None
    write_private(token_file, token + "\n")
    write_private(path, text)
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
    token = kinds.add_parser("token", help="an operator token, its digest entered in the "
                             "token table")
    token.add_argument("name")
    token.add_argument("--role", choices=ROLES, default="admin")
    token.add_argument("--table", required=True, help="the token table ([security] "
                       "tokens_file)")
    token.add_argument("--token-file", required=True, help="where to write the token")
    keys.set_defaults(keys=run)


def run(args: argparse.Namespace) -> str:
    """Carry out a parsed `keys` command; the line to print."""
    try:
        if args.kind == "agent":
            add_agent(args.table, args.key_file, args.name, args.prefix, args.max_instances)
            return f"agent {args.name}: key written to {args.key_file}, entered in {args.table}"
        add_token(args.table, args.token_file, args.name, args.role)
        return (f"token {args.name} ({args.role}): written to {args.token_file}, its digest "
                f"entered in {args.table}")
    except OSError as exc:
        raise KeysError(f"{exc.filename}: cannot write: {exc.strerror}" if exc.filename
                        else str(exc)) from None
    except ValidationError as exc:
        raise KeysError(str(exc)) from None
