"""Throw-away databases for the chaos check and the benchmarks: a fresh PostgreSQL schema
(dropped afterwards, with the DBOS schema beside it) or a SQLite file in a directory."""

from __future__ import annotations

import uuid
from dataclasses import dataclass
from pathlib import Path

from sqlalchemy import text

from dunwell.store.database import make_engine
from dunwell.store.migrate import upgrade


@dataclass
class ScratchDatabase:
    url: str
    dbos_schema: str


class scratch_database:  # noqa: N801 - used as a context manager, like open()
    def __init__(self, kind: str, directory: Path, postgres_url: str) -> None:
        if kind not in ("sqlite", "postgres"):
            raise ValueError(f"unknown database kind {kind!r}: sqlite or postgres")
        self.kind, self.directory, self.postgres_url = kind, directory, postgres_url
        self.schema = f"dunwell_scratch_{uuid.uuid4().hex[:8]}"

    def __enter__(self) -> ScratchDatabase:
        if self.kind == "sqlite":
            url = f"sqlite:///{self.directory / 'dunwell.db'}"
            upgrade(url)
            return ScratchDatabase(url, "dbos")
        admin = make_engine(self.postgres_url)
        with admin.begin() as connection:
            connection.execute(text(f'CREATE SCHEMA "{self.schema}"'))
        admin.dispose()
        separator = "&" if "?" in self.postgres_url else "?"
        url = f"{self.postgres_url}{separator}options=-csearch_path%3D{self.schema}"
        upgrade(url)
        return ScratchDatabase(url, f"{self.schema}_dbos")

    def __exit__(self, *_: object) -> None:
        if self.kind == "sqlite":
            return
        admin = make_engine(self.postgres_url)
        with admin.begin() as connection:
            for schema in (self.schema, f"{self.schema}_dbos"):
                connection.execute(text(f'DROP SCHEMA IF EXISTS "{schema}" CASCADE'))
        admin.dispose()
