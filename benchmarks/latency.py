"""Benchmark (d): p50/p99 of the webhook-to-persisted path.

`POST /v1/events` answers 201 only after the event, the case, its plan and its audit are
committed, so the request's round trip on loopback is the webhook-to-persisted time. For
each backend the dunwell server (benchmarks/serve.py) runs in its own process on a fresh
database; N distinct `payment.failed` events are posted by 1 client (latency alone) and by
16 concurrent clients (latency under load). Results to benchmarks/results/latency.json.

    .venv/bin/python benchmarks/latency.py [--events 1000] [--backends sqlite,postgresql]

Nothing here is a test.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import platform
import statistics
import subprocess
import sys
import tempfile
import time
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import httpx

from dunwell.sim.workload import free_port
from dunwell.store.scratch import scratch_database

sys.path.insert(0, str(Path(__file__).parent))
from ingest import HERE, KEY, POSTGRES, _event  # noqa: E402  (the same events as benchmark (a))


async def _load(url: str, events: int, clients: int, run: str) -> list[float]:
    queue: asyncio.Queue[int] = asyncio.Queue()
    for n in range(events):
        queue.put_nowait(n)
    latencies: list[float] = []
    async with httpx.AsyncClient(
        base_url=url,
        limits=httpx.Limits(max_connections=clients),
        timeout=60,
        headers={"Authorization": f"Bearer {KEY}"},
    ) as client:

        async def worker() -> None:
            while not queue.empty():
                n = queue.get_nowait()
                started = time.perf_counter()
                response = await client.post("/v1/events", json=_event(n, run))
                latencies.append(time.perf_counter() - started)
                assert response.status_code == 201, response.text

        await asyncio.gather(*(worker() for _ in range(clients)))
    return latencies


def _percentile(values: list[float], share: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(share * len(ordered)))]


def measure(backend: str, events: int) -> dict[str, Any]:
    with tempfile.TemporaryDirectory() as folder:
        kind = "sqlite" if backend == "sqlite" else "postgres"
        with scratch_database(kind, Path(folder), POSTGRES) as db:
            port = free_port()
            server = subprocess.Popen(
                [sys.executable, str(HERE / "serve.py"), "dunwell", db.url, str(port), KEY],
                env={**os.environ, "DUNWELL_LOG_FORMAT": "json"},
                stdout=subprocess.DEVNULL,
                stderr=subprocess.DEVNULL,
            )
            url = f"http://127.0.0.1:{port}"
            try:
                deadline = time.monotonic() + 60
                while True:
                    try:
                        httpx.get(f"{url}/healthz", timeout=1)
                        break
                    except httpx.TransportError:
                        if time.monotonic() > deadline or server.poll() is not None:
                            raise RuntimeError("server did not start") from None
                        time.sleep(0.1)
                asyncio.run(_load(url, 100, 4, "warmup"))
                row: dict[str, Any] = {"backend": backend}
                for clients in (1, 16):
                    latencies = asyncio.run(_load(url, events, clients, f"c{clients}"))
                    row[f"clients_{clients}"] = {
                        "p50_ms": round(statistics.median(latencies) * 1000, 1),
                        "p99_ms": round(_percentile(latencies, 0.99) * 1000, 1),
                        "max_ms": round(max(latencies) * 1000, 1),
                    }
                return row
            finally:
                server.terminate()
                server.wait(timeout=30)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--events", type=int, default=1000)
    parser.add_argument("--backends", default="sqlite,postgresql")
    args = parser.parse_args()
    rows = [measure(backend, args.events) for backend in args.backends.split(",")]
    for row in rows:
        print(json.dumps(row), flush=True)
    out = HERE / "results" / "latency.json"
    out.write_text(
        json.dumps(
            {
                "benchmark": "webhook to persisted: POST /v1/events round trip on loopback",
                "machine": {"cpus": os.cpu_count(), "python": platform.python_version()},
                "measured_at": datetime.now(UTC).isoformat(timespec="seconds"),
                "events": args.events,
                "results": rows,
            },
            indent=2,
        )
        + "\n"
    )
    print(f"results in {out}")


if __name__ == "__main__":
    main()
