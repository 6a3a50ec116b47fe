"""Shared fixtures: a migrated database on SQLite and on PostgreSQL, and the engine on it.

PostgreSQL tests run against the server on 127.0.0.1:5432 (database `test`) in a schema of
their own. With CI=true they are mandatory: an unreachable server fails the run instead of
skipping it. Set DUNWELL_TEST_POSTGRES_URL to use another server.
"""

from __future__ import annotations

import os
import uuid
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path

import pytest
from sqlalchemy import text

from dunwell.bootstrap import Services, build, ensure_tenant
from dunwell.channels.memory import MemoryAccessGate, MemoryNotifier
from dunwell.engine.clock import VirtualClock
from dunwell.providers.base import ProviderRegistry
from dunwell.providers.sim import SimulatedProcessor
from dunwell.settings import Settings
from dunwell.store.database import make_engine
from dunwell.store.migrate import upgrade

POSTGRES_URL = os.environ.get(
    "DUNWELL_TEST_POSTGRES_URL", "postgresql://postgres@127.0.0.1:5432/test"
)
IN_CI = os.environ.get("CI", "").lower() == "true"
START = datetime(2026, 11, 2, 9, 0, tzinfo=UTC)
from factories import API_KEY  # noqa: E402


def _postgres_problem() -> str | None:
    try:
        engine = make_engine(POSTGRES_URL, connect_args={"connect_timeout": 3})
        with engine.connect() as connection:
            connection.execute(text("SELECT 1"))
        engine.dispose()
    except Exception as exc:  # any failure to connect means "not available here"
        return f"{type(exc).__name__}: {exc}".splitlines()[0]
    return None


@pytest.fixture(scope="session")
def postgres_schema_url() -> Iterator[str]:
    problem = _postgres_problem()
    if problem is not None:
        message = f"PostgreSQL at {POSTGRES_URL} is not reachable ({problem})"
        if IN_CI:
            pytest.fail(f"{message}; with CI=true the PostgreSQL tests are mandatory")
        pytest.skip(f"{message}: PostgreSQL tests skipped")
    schema = f"dunwell_test_{uuid.uuid4().hex[:10]}"
    admin = make_engine(POSTGRES_URL)
    with admin.begin() as connection:
        connection.execute(text(f'CREATE SCHEMA "{schema}"'))
    separator = "&" if "?" in POSTGRES_URL else "?"
    url = f"{POSTGRES_URL}{separator}options=-csearch_path%3D{schema}"
    upgrade(url)
    yield url
    with admin.begin() as connection:
        connection.execute(text(f'DROP SCHEMA "{schema}" CASCADE'))
    admin.dispose()


def _truncate_postgres(url: str) -> None:
    engine = make_engine(url)
    with engine.begin() as connection:
        tables = [
            row[0]
            for row in connection.execute(
                text(
                    "SELECT tablename FROM pg_tables WHERE schemaname = current_schema() "
                    "AND tablename <> 'alembic_version'"
                )
            )
        ]
        # TRUNCATE fires no row triggers: the append-only audit trigger stays in force.
        connection.execute(text(f"TRUNCATE {', '.join(tables)} RESTART IDENTITY"))
    engine.dispose()


@pytest.fixture(params=["sqlite", pytest.param("postgresql", marks=pytest.mark.postgres)])
def database_url(request: pytest.FixtureRequest, tmp_path: Path) -> str:
    if request.param == "sqlite":
        url = f"sqlite:///{tmp_path / 'dunwell.db'}"
        upgrade(url)
        return url
    url: str = request.getfixturevalue("postgres_schema_url")
    _truncate_postgres(url)
    return url


@pytest.fixture
def clock() -> VirtualClock:
    return VirtualClock(START)


@pytest.fixture
def notifier() -> MemoryNotifier:
    return MemoryNotifier()


@pytest.fixture
def access_gate() -> MemoryAccessGate:
    return MemoryAccessGate()


@pytest.fixture
def processor() -> SimulatedProcessor:
    return SimulatedProcessor()


@pytest.fixture
def services(
    database_url: str,
    clock: VirtualClock,
    notifier: MemoryNotifier,
    access_gate: MemoryAccessGate,
    processor: SimulatedProcessor,
) -> Iterator[Services]:
    built = build(
        Settings(database_url=database_url),
        clock=clock,
        providers=ProviderRegistry({}, fallback=processor),
        notifier=notifier,
        access=access_gate,
    )
    ensure_tenant(built, "acme", "Acme", API_KEY, policy="default")
    yield built
    built.close()
