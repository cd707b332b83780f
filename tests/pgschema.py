"""A PostgreSQL schema of its own for one test, on the server scripts/test.sh starts
(DYNCAST_TEST_PG_URL): the store, the cluster's unit tests and its Mininet test use it."""

from __future__ import annotations

import os
import uuid
from collections.abc import Iterator
from contextlib import contextmanager

import pytest
from sqlalchemy import create_engine, text
from sqlalchemy.engine import make_url

PG_ENV = "DYNCAST_TEST_PG_URL"


@contextmanager
def fresh_schema(prefix: str = "test") -> Iterator[str]:
    """The URL of a new, empty schema (its search_path set), dropped with everything in it
    after; the test is skipped when DYNCAST_TEST_PG_URL is not set, and fails when the server
    cannot be reached."""
    base = os.environ.get(PG_ENV)
    if not base:
        pytest.skip(f"{PG_ENV} is not set (scripts/test.sh sets it from scripts/postgres.sh)")
    schema = f"{prefix}_{uuid.uuid4().hex[:16]}"
    admin = create_engine(base)
    try:
        with admin.begin() as conn:
            conn.execute(text(f"CREATE SCHEMA {schema}"))
        url = make_url(base).update_query_dict({"options": f"-csearch_path={schema}"})
        yield url.render_as_string(hide_password=False)
        with admin.begin() as conn:
            conn.execute(text(f"DROP SCHEMA {schema} CASCADE"))
    finally:
        admin.dispose()
