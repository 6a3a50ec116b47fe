"""Benchmark (a): events ingested per second through `POST /v1/events`, beside a bare endpoint.

For each backend (SQLite file, PostgreSQL schema) and each server (`dunwell`, `bare`): start
the server in its own process on a fresh database, post N distinct `payment.failed` events
from C concurrent clients over loopback HTTP, and time it. Repeated R times; medians and the
dunwell/bare ratio go to benchmarks/results/ingest.json and stdout. Nothing here is a test.

    .venv/bin/python benchmarks/ingest.py [--events 1000] [--clients 16] [--runs 3] [--workers 1]
        [--load python|wrk] [--backends sqlite,postgresql] [--servers dunwell,bare]
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import platform
import re
import socket
import statistics
import subprocess
import sys
import tempfile
import time
import uuid
from datetime import UTC, datetime
from pathlib import Path

import httpx
from sqlalchemy import text

from dunwell.store.database import make_engine

HERE = Path(__file__).parent
KEY = "bench-key-0123456789"
POSTGRES = os.environ.get("DUNWELL_BENCH_POSTGRES_URL", "postgresql://postgres@127.0.0.1:5432/test")


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def _event(n: int, run: str) -> dict[str, object]:
    return {
        "id": f"evt_{run}_{n}",
        "type": "payment.failed",
        "occurred_at": datetime.now(UTC).isoformat(),
        "customer": {"id": f"cus_{n}", "country": "DE", "timezone": "Europe/Berlin"},
        "subscription": {"id": f"sub_{n}", "plan": "pro", "storefront": "web"},
        "invoice": {"id": f"in_{run}_{n}", "amount": 1999, "currency": "EUR"},
        "payment": {
            "provider": "stripe",
            "payment_method": {"token": f"pm_{n}", "brand": "visa", "fingerprint": f"fp_{n}"},
        },
        "decline": {"provider_code": "insufficient_funds"},
    }


async def _load(url: str, events: int, clients: int, run: str) -> float:
    queue: asyncio.Queue[int] = asyncio.Queue()
    for n in range(events):
        queue.put_nowait(n)
    limits = httpx.Limits(max_connections=clients)
    async with httpx.AsyncClient(
        base_url=url, limits=limits, timeout=60, headers={"Authorization": f"Bearer {KEY}"}
    ) as client:

        async def worker() -> None:
            while not queue.empty():
                n = queue.get_nowait()
                response = await client.post("/v1/events", json=_event(n, run))
                assert response.status_code == 201, response.text

        started = time.perf_counter()
        await asyncio.gather(*(worker() for _ in range(clients)))
        return events / (time.perf_counter() - started)


def _database(backend: str, folder: Path) -> tuple[str, object]:
    if backend == "sqlite":
        return f"sqlite:///{folder / f'{uuid.uuid4().hex}.db'}", None
    schema = f"bench_{uuid.uuid4().hex[:8]}"
    admin = make_engine(POSTGRES)
    with admin.begin() as connection:
        connection.execute(text(f'CREATE SCHEMA "{schema}"'))
    return f"{POSTGRES}?options=-csearch_path%3D{schema}", (admin, schema)


def _drop(handle: object) -> None:
    if handle is None:
        return
    admin, schema = handle  # type: ignore[misc]
    with admin.begin() as connection:
        connection.execute(text(f'DROP SCHEMA "{schema}" CASCADE'))
    admin.dispose()


def _wrk(url: str, clients: int, seconds: int, run: str) -> float:
    """The same events posted by wrk (C, far cheaper per request than the Python client)."""
    script = str(HERE / "wrk_events.lua")
    command = ["wrk", "-t2", f"-c{clients}", f"-d{seconds}s", "--timeout", "30s", "-s", script]
    output = subprocess.run(
        [*command, url],
        env={**os.environ, "WRK_KEY": KEY, "WRK_RUN": run},
        capture_output=True,
        text=True,
        check=True,
    ).stdout
    failed = re.search(r"non-2xx: (\d+), errors: (\d+)", output)
    assert failed is not None and failed.groups() == ("0", "0"), output
    rate = re.search(r"Requests/sec:\s+([\d.]+)", output)
    assert rate is not None, output
    return float(rate.group(1))


def measure(
    backend: str, kind: str, events: int, clients: int, workers: int = 1, load: str = "python"
) -> float:
    with tempfile.TemporaryDirectory() as folder:
        url, handle = _database(backend, Path(folder))
        port = _free_port()
        server = subprocess.Popen(
            [sys.executable, str(HERE / "serve.py"), kind, url, str(port), KEY, str(workers)],
            env={**os.environ, "DUNWELL_LOG_FORMAT": "json"},
        )
        try:
            deadline = time.monotonic() + 60
            while True:
                try:
                    httpx.get(f"http://127.0.0.1:{port}/docs", timeout=1)
                    break
                except httpx.TransportError:
                    if time.monotonic() > deadline or server.poll() is not None:
                        raise RuntimeError(f"{kind} server did not start") from None
                    time.sleep(0.1)
            url = f"http://127.0.0.1:{port}"
            asyncio.run(_load(url, 100, clients, "warmup"))
            if load == "wrk":
                return _wrk(url, clients, 10, uuid.uuid4().hex[:8])
            return asyncio.run(_load(url, events, clients, "run"))
        finally:
            server.terminate()
            server.wait(timeout=30)
            _drop(handle)


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--events", type=int, default=1000)
    parser.add_argument("--clients", type=int, default=16)
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument("--backends", default="sqlite,postgresql")
    parser.add_argument("--servers", default="dunwell,bare")
    parser.add_argument("--workers", type=int, default=1, help="uvicorn worker processes")
    parser.add_argument(
        "--load", choices=["python", "wrk"], default="python", help="wrk: 10 s of wrk per run"
    )
    parser.add_argument("--out", help="file name under benchmarks/results/")
    args = parser.parse_args()
    results = []
    # Other work on the machine skews every figure: keep the load beside them.
    load_before = os.getloadavg()
    for backend in args.backends.split(","):
        # Servers alternate run by run, so a change in the machine's other load hits both.
        kinds = args.servers.split(",")
        rates: dict[str, list[float]] = {kind: [] for kind in kinds}
        for _ in range(args.runs):
            for kind in kinds:
                rates[kind].append(
                    measure(backend, kind, args.events, args.clients, args.workers, args.load)
                )
        medians = {kind: statistics.median(r) for kind, r in rates.items()}
        row: dict[str, object] = {"backend": backend}
        for kind, median in medians.items():
            row[f"{kind}_events_per_s"] = round(median, 1)
        if "dunwell" in medians and "bare" in medians:
            row["ratio"] = round(medians["dunwell"] / medians["bare"], 3)
        row["runs"] = {k: [round(x, 1) for x in v] for k, v in rates.items()}
        results.append(row)
        print(json.dumps(row), flush=True)
    report = {
        "benchmark": "ingest",
        "at": datetime.now(UTC).isoformat(timespec="seconds"),
        "machine": {
            "cpus": os.cpu_count(),
            "python": platform.python_version(),
            "load_average_1m_before_after": [
                round(load_before[0], 2),
                round(os.getloadavg()[0], 2),
            ],
        },
        "events": args.events,
        "clients": args.clients,
        "runs": args.runs,
        "workers": args.workers,
        "load_client": args.load,
        "results": results,
    }
    (HERE / "results").mkdir(exist_ok=True)
    wrk = "-wrk" if args.load == "wrk" else ""
    workers = f"-{args.workers}-workers" if args.workers > 1 else ""
    name = args.out or f"ingest{wrk}{workers}.json"
    (HERE / "results" / name).write_text(json.dumps(report, indent=2) + "\n")


if __name__ == "__main__":
    main()
