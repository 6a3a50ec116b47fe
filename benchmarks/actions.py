"""Benchmark (b): due actions carried out end to end per second, 1 and 2 workers, PostgreSQL.

dunwell: N cases whose first retries are due now are opened through ingest with no worker
running; then W `dunwell worker` processes start against the simulated processor (20 ms
latency, no injected errors). Every due action (charges, and the notices and access steps
that fall due with them) is decided, carried out and its outcome ingested and persisted.
The rate is measured from the database: rows done / (last completion - first hand-off).

bare: the same number of charges as jobs in a plain table, W processes of T threads each
looping `SELECT ... FOR UPDATE SKIP LOCKED LIMIT 1`, the same HTTP charge with an
idempotency key, an UPDATE with the outcome, COMMIT. No decisions, no audit, no ledger.

    .venv/bin/python benchmarks/actions.py [--cases 1000] [--runs 3] [--workers 1 2]

Medians go to benchmarks/results/actions.json and stdout. Nothing here is a test.
"""

from __future__ import annotations

import argparse
import json
import multiprocessing
import os
import platform
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import httpx
from sqlalchemy import text

from dunwell.sim.workload import open_due, open_due_cases, start_sim_psp
from dunwell.store.database import make_engine
from dunwell.store.scratch import scratch_database

HERE = Path(__file__).parent
BIN = Path(sys.executable).parent
POSTGRES = os.environ.get("DUNWELL_BENCH_POSTGRES_URL", "postgresql://postgres@127.0.0.1:5432/test")
LATENCY_MS = 20.0
THREADS = 8  # the worker's default charge concurrency, for a like-for-like bare loop


def _start_psp(directory: Path) -> tuple[subprocess.Popen[bytes], str]:
    return start_sim_psp(directory, latency_ms=LATENCY_MS)


def dunwell_run(cases: int, workers: int) -> dict[str, Any]:
    with tempfile.TemporaryDirectory(prefix="dunwell-bench-") as tmp:
        with scratch_database("postgres", Path(tmp), POSTGRES) as db:
            psp, psp_url = _start_psp(Path(tmp))
            open_due_cases(db.url, cases)
            env = {
                **os.environ,
                "DUNWELL_DATABASE_URL": db.url,
                "DUNWELL_DBOS_SCHEMA": db.dbos_schema,
                "DUNWELL_SIM_PSP_URL": psp_url,
                "DUNWELL_LOG_FORMAT": "json",
            }
            procs = [
                subprocess.Popen(
                    [str(BIN / "dunwell"), "worker", "--id", f"bench-{i}"],
                    env=env,
                    stdout=subprocess.DEVNULL,
                    stderr=subprocess.DEVNULL,
                )
                for i in range(workers)
            ]
            try:
                time.sleep(2)
                deadline = time.monotonic() + 900
                while open_due(db.url) and time.monotonic() < deadline:
                    time.sleep(0.5)
            finally:
                for process in [*procs, psp]:
                    process.terminate()
                for process in [*procs, psp]:
                    process.wait(timeout=30)
            engine = make_engine(db.url)
            with engine.connect() as connection:
                row = connection.execute(
                    text(
                        "SELECT count(*), sum(CASE WHEN type = 'retry' THEN 1 ELSE 0 END), "
                        "min(dispatched_at), max(updated_at) FROM actions "
                        "WHERE status = 'done' AND workflow_id IS NOT NULL"
                    )
                ).one()
            engine.dispose()
    done, charges, first, last = int(row[0]), int(row[1] or 0), row[2], row[3]
    seconds = (last - first).total_seconds()
    return {
        "actions": done,
        "charges": charges,
        "seconds": round(seconds, 2),
        "actions_per_second": round(done / seconds, 1),
        "charges_per_second": round(charges / seconds, 1),
    }


def _bare_worker(url: str, psp_url: str, threads: int, ready: Any, go: Any) -> None:
    engine = make_engine(url, pool_size=threads)
    client = httpx.Client(base_url=psp_url, timeout=10)

    def loop() -> None:
        while True:
            with engine.begin() as connection:
                job = connection.execute(
                    text(
                        "SELECT id, key, amount, token FROM bare_jobs WHERE status = 'due' "
                        "ORDER BY id FOR UPDATE SKIP LOCKED LIMIT 1"
                    )
                ).first()
                if job is None:
                    return
                response = client.post(
                    "/v1/charges",
                    json={"amount": job.amount, "currency": "EUR", "payment_method": job.token},
                    headers={"Idempotency-Key": job.key},
                )
                connection.execute(
                    text(
                        "UPDATE bare_jobs SET status = 'done', outcome = :o, done_at = now() "
                        "WHERE id = :i"
                    ),
                    {"o": response.status_code, "i": job.id},
                )

    ready.set()
    go.wait()
    pool = [threading.Thread(target=loop) for _ in range(threads)]
    for thread in pool:
        thread.start()
    for thread in pool:
        thread.join()


def bare_run(jobs: int, workers: int) -> dict[str, Any]:
    with tempfile.TemporaryDirectory(prefix="dunwell-bench-") as tmp:
        with scratch_database("postgres", Path(tmp), POSTGRES) as db:
            psp, psp_url = _start_psp(Path(tmp))
            engine = make_engine(db.url)
            with engine.begin() as connection:
                connection.execute(
                    text(
                        "CREATE TABLE bare_jobs (id bigserial PRIMARY KEY, key text, "
                        "amount int, token text, status text, outcome int, "
                        "done_at timestamptz)"
                    )
                )
                connection.execute(
                    text(
                        "INSERT INTO bare_jobs (key, amount, token, status) SELECT "
                        "'bare_' || g, 1000 + g, CASE WHEN g % 3 = 0 "
                        "THEN 'decline_insufficient_funds' ELSE 'pm_' || g END, 'due' "
                        "FROM generate_series(1, :n) g"
                    ),
                    {"n": jobs},
                )
            context = multiprocessing.get_context("spawn")
            go = context.Event()
            readies = [context.Event() for _ in range(workers)]
            procs = [
                context.Process(target=_bare_worker, args=(db.url, psp_url, THREADS, r, go))
                for r in readies
            ]
            for process in procs:
                process.start()
            for ready in readies:
                ready.wait(60)
            started = time.monotonic()
            go.set()
            for process in procs:
                process.join()
            seconds = time.monotonic() - started
            with engine.connect() as connection:
                done = connection.execute(
                    text("SELECT count(*) FROM bare_jobs WHERE status = 'done'")
                ).scalar_one()
            engine.dispose()
            psp.terminate()
            psp.wait(timeout=30)
    return {"jobs": int(done), "seconds": round(seconds, 2), "per_second": round(done / seconds, 1)}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--cases", type=int, default=1000)
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument("--workers", type=int, nargs="+", default=[1, 2])
    args = parser.parse_args()
    results: dict[str, Any] = {
        "benchmark": "due actions end to end, PostgreSQL, sim psp at 20 ms",
        "machine": {"cpus": os.cpu_count(), "python": platform.python_version()},
        "measured_at": datetime.now(UTC).isoformat(timespec="seconds"),
        "cases": args.cases,
        "runs": args.runs,
        "by_workers": {},
    }
    for workers in args.workers:
        ours = [dunwell_run(args.cases, workers) for _ in range(args.runs)]
        charges = int(statistics.median(r["charges"] for r in ours))
        bare = [bare_run(charges, workers) for _ in range(args.runs)]
        median_actions = statistics.median(r["actions_per_second"] for r in ours)
        median_charges = statistics.median(r["charges_per_second"] for r in ours)
        median_bare = statistics.median(r["per_second"] for r in bare)
        results["by_workers"][str(workers)] = {
            "dunwell_actions_per_second": median_actions,
            "dunwell_charges_per_second": median_charges,
            "bare_charges_per_second": median_bare,
            "ratio_charges": round(median_charges / median_bare, 3),
            "dunwell_runs": ours,
            "bare_runs": bare,
        }
        print(
            f"{workers} worker(s): dunwell {median_actions} actions/s "
            f"({median_charges} charges/s), bare {median_bare} charges/s, "
            f"ratio {median_charges / median_bare:.2f}",
            flush=True,
        )
    out = HERE / "results" / "actions.json"
    out.write_text(json.dumps(results, indent=2) + "\n")
    print(f"results in {out}")


if __name__ == "__main__":
    main()
