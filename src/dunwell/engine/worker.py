"""A worker process's life: one executor id, held exclusively, then DBOS until told to stop."""

from __future__ import annotations

import contextlib
import fcntl
import hashlib
import os
import socket
from collections.abc import Iterator
from pathlib import Path

from sqlalchemy import text
from sqlalchemy.engine import make_url

from dunwell.bootstrap import Services
from dunwell.engine import durable
from dunwell.settings import Settings


class ExecutorIdInUse(RuntimeError):
    pass


def default_executor_id(settings: Settings, role: str) -> str:
    return settings.worker_id or f"{socket.gethostname()}-{role}"


def dispatch_options(settings: Settings) -> durable.DispatchOptions:
    return durable.DispatchOptions(
        batch_size=settings.dispatch_batch_size,
        charge_concurrency=settings.charge_concurrency,
        rate_limits=settings.rate_limits(),
    )


@contextlib.contextmanager
def exclusive_executor(services: Services, executor_id: str) -> Iterator[None]:
    """Refuse to start a second live process under one executor id.

    DBOS recovers a killed process's work under its executor id; two live processes
    sharing one would both run the same interrupted step. PostgreSQL: a session advisory
    lock held for the process's life (released by the server if the process dies).
    SQLite: an flock on a file beside the database (released by the kernel likewise).
    """
    url = services.settings.database_url
    if url.startswith("sqlite"):
        database = make_url(url).database or "dunwell.db"
        path = Path(f"{database}.executor-{_digest(executor_id)}.lock")
        handle = path.open("w")
        try:
            fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            handle.close()
            raise ExecutorIdInUse(_in_use(executor_id)) from None
        handle.write(f"{os.getpid()}\n")
        handle.flush()
        try:
            yield
        finally:
            handle.close()
        return
    key = int(_digest(executor_id), 16) % (2**63)
    with services.engine.connect() as connection:
        held = connection.execute(text("SELECT pg_try_advisory_lock(:k)"), {"k": key}).scalar()
        connection.commit()
        if not held:
            raise ExecutorIdInUse(_in_use(executor_id))
        try:
            yield
        finally:
            connection.execute(text("SELECT pg_advisory_unlock(:k)"), {"k": key})
            connection.commit()


def _digest(executor_id: str) -> str:
    return hashlib.sha256(f"dunwell-executor:{executor_id}".encode()).hexdigest()[:15]


def _in_use(executor_id: str) -> str:
    return (
        f"executor id {executor_id!r} is held by another live process; give each worker "
        "its own stable id (--id or DUNWELL_WORKER_ID)"
    )
