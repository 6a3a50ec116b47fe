"""Engines and sessions for SQLite (the embedded default) and PostgreSQL."""

from __future__ import annotations

import os
import sqlite3
import threading
from typing import Any

from sqlalchemy import Engine, create_engine, event
from sqlalchemy.engine import make_url
from sqlalchemy.orm import Session, sessionmaker

BUSY_TIMEOUT_SECONDS = 10


def make_engine(url: str, **kwargs: Any) -> Engine:
    if url.startswith("postgresql://"):
        url = "postgresql+psycopg://" + url.removeprefix("postgresql://")
    if url.startswith("sqlite"):
        database = make_url(url).database or ""
        connect_args: dict[str, Any] = {"check_same_thread": False}
        gate = None
        if database and database != ":memory:" and not database.startswith("file:"):
            gate = _writer_gate(database)
            connect_args["factory"] = _GatedConnection
        engine = create_engine(url, connect_args=connect_args, **kwargs)

        def on_connect(dbapi_connection: Any, _record: Any) -> None:
            _sqlite_pragmas(dbapi_connection)
            if gate is not None:
                dbapi_connection.gate = gate

        event.listen(engine, "connect", on_connect)
        event.listen(engine, "begin", _sqlite_begin_immediate)
        return engine
    return create_engine(url, pool_pre_ping=True, **kwargs)


_gates: dict[str, threading.Lock] = {}
_gates_lock = threading.Lock()


def _writer_gate(database: str) -> threading.Lock:
    """One lock per database file in this process, whichever engine opens it."""
    with _gates_lock:
        return _gates.setdefault(os.path.realpath(database), threading.Lock())


class _GatedConnection(sqlite3.Connection):
    """Holds its file's process-wide gate from BEGIN to COMMIT or ROLLBACK.

    SQLite has one writer at a time, and every transaction here takes the write lock at
    BEGIN. Without the gate, concurrent threads of one process meet in SQLite's busy handler,
    which polls with sleeps of up to 100 ms; with it they queue on a Python lock and start the
    moment the previous transaction ends. Other processes still meet in the busy handler.
    """

    gate: threading.Lock | None = None
    holds_gate = False

    def enter(self) -> None:
        if self.gate is not None and not self.holds_gate:
            # Past the busy timeout, go on without it: SQLite's own lock still decides (a
            # transaction nested in one thread then fails as it did before, not hangs).
            self.holds_gate = self.gate.acquire(timeout=BUSY_TIMEOUT_SECONDS)

    def leave(self) -> None:
        if self.holds_gate and self.gate is not None:
            self.holds_gate = False
            self.gate.release()

    def commit(self) -> None:
        try:
            super().commit()
        finally:
            if not self.in_transaction:
                self.leave()

    def rollback(self) -> None:
        try:
            super().rollback()
        finally:
            self.leave()

    def close(self) -> None:
        try:
            super().close()
        finally:
            self.leave()


def _sqlite_pragmas(dbapi_connection: Any) -> None:
    # WAL lets readers (the API) run beside the writer (the worker); the Python driver's own
    # transaction handling is turned off so BEGIN IMMEDIATE below is the one that counts.
    dbapi_connection.isolation_level = None
    cursor = dbapi_connection.cursor()
    cursor.execute("PRAGMA journal_mode=WAL")
    cursor.execute("PRAGMA synchronous=NORMAL")
    cursor.execute(f"PRAGMA busy_timeout={BUSY_TIMEOUT_SECONDS * 1000}")
    cursor.execute("PRAGMA foreign_keys=ON")
    cursor.close()


def _sqlite_begin_immediate(connection: Any) -> None:
    # Take the write lock at the start: a read-then-write transaction cannot deadlock on upgrade.
    dbapi_connection = connection.connection.dbapi_connection
    if isinstance(dbapi_connection, _GatedConnection):
        dbapi_connection.enter()
    try:
        connection.exec_driver_sql("BEGIN IMMEDIATE")
    except BaseException:
        if isinstance(dbapi_connection, _GatedConnection):
            dbapi_connection.leave()
        raise


def make_sessionmaker(engine: Engine) -> sessionmaker[Session]:
    return sessionmaker(engine, expire_on_commit=False)
