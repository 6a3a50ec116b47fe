"""Synthetic load for the chaos check and the benchmarks: failed renewals whose first
retries are due now, opened through the real ingest path."""

from __future__ import annotations

import json
import socket
import subprocess
import sys
import time
from concurrent.futures import ThreadPoolExecutor
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import httpx
from sqlalchemy import text

from dunwell.bootstrap import build, ensure_tenant
from dunwell.engine.event_schema import parse_event
from dunwell.settings import Settings
from dunwell.store.database import make_engine

TENANT = "load"


def due_failure(i: int, at: datetime, *, decline_every: int = 3) -> dict[str, Any]:
    """A `payment.failed` three days before `at`: its first retry is due at `at`. Every
    `decline_every`-th card keeps declining (the simulated processors' magic token), so
    some cases also get later retries and notices; the others are approved."""
    declines = decline_every > 0 and i % decline_every == 0
    # Approved cards are unique per case, so captures can be counted per token.
    token = "decline_insufficient_funds" if declines else f"pm_load_{i}"
    return {
        "id": f"evt_load_{i}",
        "type": "payment.failed",
        "occurred_at": (at - timedelta(days=3)).isoformat(),
        "customer": {"id": f"cus_{i}", "country": "DE", "timezone": "UTC"},
        "subscription": {"id": f"sub_{i}"},
        "invoice": {"id": f"in_load_{i}", "amount": 1000 + i, "currency": "EUR"},
        "payment": {
            "provider": "sim",
            "payment_method": {"token": token, "brand": "visa", "fingerprint": f"fp_{i}"},
        },
        "decline": {"provider_code": "try_again_later"},
    }


def open_due_cases(url: str, count: int, *, start: int = 0, threads: int = 4) -> int:
    """Open `count` cases on the database at `url` (migrated) for tenant `load`."""
    services = build(Settings(database_url=url))
    ensure_tenant(services, TENANT, "Load tenant", None)
    now = datetime.now(UTC)

    def one(i: int) -> None:
        event, payload = parse_event(json.dumps(due_failure(i, now)))
        services.ingest(TENANT, event, payload)

    try:
        with ThreadPoolExecutor(max_workers=threads) as pool:
            list(pool.map(one, range(start, start + count)))
    finally:
        services.close()
    return count


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def wait_http(url: str, timeout: float = 20) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            if httpx.get(url, timeout=1).status_code == 200:
                return
        except httpx.HTTPError:
            pass
        time.sleep(0.1)
    raise RuntimeError(f"{url} did not come up")


def start_sim_psp(
    directory: Path, *, latency_ms: float = 20.0, error_rate: float = 0.0, seed: int | None = None
) -> tuple[subprocess.Popen[bytes], str]:
    """`dunwell sim psp` in its own process on a free port; returns it and its URL."""
    port = free_port()
    command = [
        str(Path(sys.executable).parent / "dunwell"),
        *("sim", "psp", "--port", str(port), "--db", str(directory / "psp.db")),
        *("--latency-ms", str(latency_ms), "--error-rate", str(error_rate)),
        *(("--seed", str(seed)) if seed is not None else ()),
    ]
    process = subprocess.Popen(command, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    url = f"http://127.0.0.1:{port}"
    wait_http(f"{url}/healthz")
    return process, url


def open_due(url: str) -> int:
    """Actions due now and not done: `running`, or `scheduled` with a due time passed."""
    engine = make_engine(url)
    with engine.connect() as connection:
        count = connection.execute(
            text(
                "SELECT count(*) FROM actions WHERE status = 'running' "
                "OR (status = 'scheduled' AND due_at <= :now)"
            ),
            {"now": datetime.now(UTC)},
        ).scalar_one()
    engine.dispose()
    return int(count)
