"""The processor's own ledger in a SQLite file: requests, idempotent responses, captures.

A capture and the stored response of its key commit in one transaction, and a capture is
unique by idempotency key: whatever the client does, one key captures at most once.
"""

from __future__ import annotations

import json
import sqlite3
import threading
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

_SCHEMA = """
CREATE TABLE IF NOT EXISTS requests (
    id INTEGER PRIMARY KEY, idempotency_key TEXT, received_at TEXT, status_code INTEGER,
    outcome TEXT
);
CREATE TABLE IF NOT EXISTS responses (
    idempotency_key TEXT PRIMARY KEY, fingerprint TEXT NOT NULL, state TEXT NOT NULL,
    status_code INTEGER, body TEXT
);
CREATE TABLE IF NOT EXISTS captures (
    id TEXT PRIMARY KEY, idempotency_key TEXT NOT NULL UNIQUE, amount INTEGER NOT NULL,
    currency TEXT NOT NULL, token TEXT NOT NULL, captured_at TEXT NOT NULL
);
"""


@dataclass(frozen=True)
class Stored:
    state: str  # in_progress | done
    fingerprint: str
    status_code: int | None
    body: dict[str, Any] | None


def _now() -> str:
    return datetime.now(UTC).isoformat()


class Ledger:
    def __init__(self, path: Path) -> None:
        self._db = sqlite3.connect(path, check_same_thread=False, isolation_level=None)
        self._db.execute("PRAGMA journal_mode=WAL")
        self._db.execute("PRAGMA busy_timeout=10000")
        self._db.executescript(_SCHEMA)
        self._lock = threading.Lock()  # one writer at a time in this process

    def log_request(self, key: str | None, status_code: int, outcome: str) -> None:
        with self._lock:
            self._db.execute(
                "INSERT INTO requests (idempotency_key, received_at, status_code, outcome) "
                "VALUES (?, ?, ?, ?)",
                (key, _now(), status_code, outcome),
            )

    def claim(self, key: str, fingerprint: str) -> Stored | None:
        """Reserve the key for this request; returns what is stored if it was already used."""
        with self._lock:
            stored = self._stored(key)
            if stored is None:
                self._db.execute(
                    "INSERT INTO responses (idempotency_key, fingerprint, state) "
                    "VALUES (?, ?, 'in_progress')",
                    (key, fingerprint),
                )
            return stored

    def _stored(self, key: str) -> Stored | None:
        row = self._db.execute(
            "SELECT state, fingerprint, status_code, body FROM responses WHERE idempotency_key = ?",
            (key,),
        ).fetchone()
        return (
            None
            if row is None
            else Stored(row[0], row[1], row[2], json.loads(row[3]) if row[3] else None)
        )

    def release(self, key: str) -> None:
        """Forget a reservation whose request did nothing (an injected error before work)."""
        with self._lock:
            self._db.execute(
                "DELETE FROM responses WHERE idempotency_key = ? AND state = 'in_progress'", (key,)
            )

    def finish(
        self, key: str, status_code: int, body: dict[str, Any], capture: dict[str, Any] | None
    ) -> None:
        with self._lock:
            self._db.execute("BEGIN IMMEDIATE")
            try:
                if capture is not None:
                    self._db.execute(
                        "INSERT INTO captures (id, idempotency_key, amount, currency, token, "
                        "captured_at) VALUES (?, ?, ?, ?, ?, ?)",
                        (
                            capture["id"],
                            key,
                            capture["amount"],
                            capture["currency"],
                            capture["token"],
                            _now(),
                        ),
                    )
                self._db.execute(
                    "UPDATE responses SET state = 'done', status_code = ?, body = ? "
                    "WHERE idempotency_key = ?",
                    (status_code, json.dumps(body), key),
                )
                self._db.execute("COMMIT")
            except BaseException:
                self._db.execute("ROLLBACK")
                raise

    def lookup(self, key: str) -> Stored | None:
        with self._lock:
            return self._stored(key)

    def report(self) -> dict[str, Any]:
        with self._lock:
            requests = self._db.execute(
                "SELECT idempotency_key, received_at, status_code, outcome FROM requests "
                "ORDER BY id"
            ).fetchall()
            captures = self._db.execute(
                "SELECT id, idempotency_key, amount, currency, token, captured_at FROM captures "
                "ORDER BY captured_at, id"
            ).fetchall()
        return {
            "requests": [
                {"idempotency_key": k, "received_at": at, "status_code": code, "outcome": outcome}
                for k, at, code, outcome in requests
            ],
            "captures": [
                {
                    "id": i,
                    "idempotency_key": k,
                    "amount": a,
                    "currency": c,
                    "token": t,
                    "captured_at": at,
                }
                for i, k, a, c, t, at in captures
            ],
        }

    def close(self) -> None:
        self._db.close()
