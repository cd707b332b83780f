"""`python -m apps.migrations [upgrade|current] [--url URL | --config FILE]`.

`upgrade` brings the store to the newest revision (the controller also does this at every
start); `current` prints the store's revision and the newest one, and exits 1 when they differ.
The store is `--url`, else `store_url` of `--config` or of $DYNCAST_CONFIG, else the default.
"""

from __future__ import annotations

import argparse
import os
import sys

from sqlalchemy import create_engine
from sqlalchemy.engine import make_url

from apps.configfile import load_config
from apps.migrations import MigrationError, current, head, upgrade
from controller.errors import ConfigError


def main(argv: list[str] | None = None) -> int:
    """Run one command; return the exit status."""
    parser = argparse.ArgumentParser(prog="python -m apps.migrations", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("command", choices=["upgrade", "current"])
    where = parser.add_mutually_exclusive_group()
    where.add_argument("--url", help="a sqlalchemy URL, e.g. postgresql+psycopg://u:p@host/db")
    where.add_argument("--config", help="a dyncast TOML file; its controller.store_url is used")
    args = parser.parse_args(argv)
    url = args.url
    if url is None:
        try:
            url = load_config(args.config or os.environ.get("DYNCAST_CONFIG")).store_url
        except ConfigError as exc:
            print(f"error: {exc}", file=sys.stderr)
            return 2
    shown = make_url(url).render_as_string(hide_password=True)
    engine = create_engine(url)
    try:
        if args.command == "upgrade":
            try:
                before, after = upgrade(engine)
            except MigrationError as exc:
                print(f"error: {shown}: {exc}", file=sys.stderr)
                return 1
            print(f"{shown}: {before or 'empty'} -> {after}" if before != after
                  else f"{shown}: at {after} already")
            return 0
        with engine.connect() as conn:
            rev = current(conn)
        print(f"{shown}: {rev or 'no revision'} (newest: {head()})")
        return 0 if rev == head() else 1
    finally:
        engine.dispose()


if __name__ == "__main__":
    sys.exit(main())
