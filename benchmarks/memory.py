"""Benchmark (c): a worker's memory and throughput with 10,000 and 1,000,000 open cases.

For each size: a fresh PostgreSQL schema; a few hundred cases opened through ingest with
retries due now (the work); then the open cases that wait (their next retry is 20 days
away), written in bulk with SQL as copies of a real case (ids changed). One `dunwell
worker` runs until nothing is due and then idles through a few more dispatch ticks; its
resident memory is sampled from /proc every 0.2 s.

    .venv/bin/python benchmarks/memory.py [--sizes 10000 1000000] [--due 300]

Results go to benchmarks/results/memory.json and stdout. Nothing here is a test.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import subprocess
import sys
import tempfile
import time
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from sqlalchemy import text

sys.path.insert(0, str(Path(__file__).parent))
from actions import BIN, POSTGRES, _start_psp  # noqa: E402

from dunwell.sim.workload import TENANT, open_due, open_due_cases  # noqa: E402
from dunwell.store.database import make_engine  # noqa: E402
from dunwell.store.scratch import scratch_database  # noqa: E402

HERE = Path(__file__).parent


def _rss_kb(pid: int) -> int:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1])
    return 0


def _add_waiting_cases(url: str, count: int) -> float:
    """Copies of one real open case, each with one retry 20 days away."""
    started = time.monotonic()
    engine = make_engine(url)
    with engine.begin() as connection:
        template = connection.execute(
            text("SELECT state::text FROM cases WHERE tenant_id = :t LIMIT 1"), {"t": TENANT}
        ).scalar_one()
        connection.execute(
            text(
                "INSERT INTO cases (id, tenant_id, invoice_id, customer_id, subscription_id, "
                "status, stage, lane, policy_name, amount_minor, currency, opened_at, "
                "closed_at, next_action_at, state, version, updated_at) "
                "SELECT 'case_wait_' || g, :t, 'in_wait_' || g, 'cus_wait_' || g, "
                "'sub_wait_' || g, 'open', 'retrying', 'retry_soon', 'default', 1999, 'EUR', "
                "now(), NULL, now() + interval '20 days', "
                "jsonb_set(CAST(:state AS jsonb), '{id}', to_jsonb('case_wait_' || g))::json, "
                "1, now() FROM generate_series(1, :n) g"
            ),
            {"t": TENANT, "state": template, "n": count},
        )
        connection.execute(
            text(
                "INSERT INTO actions (tenant_id, case_id, key, type, due_at, status, rule, "
                "reason, params, effects, created_at, updated_at) "
                "SELECT :t, 'case_wait_' || g, 'retry:1', 'retry', now() + interval '20 days', "
                "'scheduled', 'benchmark', 'a retry that waits', '{}', '[]', now(), now() "
                "FROM generate_series(1, :n) g"
            ),
            {"t": TENANT, "n": count},
        )
    with engine.connect() as connection:
        connection.execute(text("ANALYZE cases"))
        connection.execute(text("ANALYZE actions"))
        connection.commit()
    engine.dispose()
    return time.monotonic() - started


def measure(waiting: int, due: int) -> dict[str, Any]:
    with tempfile.TemporaryDirectory(prefix="dunwell-bench-") as tmp:
        with scratch_database("postgres", Path(tmp), POSTGRES) as db:
            psp, psp_url = _start_psp(Path(tmp))
            open_due_cases(db.url, due)
            insert_seconds = _add_waiting_cases(db.url, waiting)
            env = {
                **os.environ,
                "DUNWELL_DATABASE_URL": db.url,
                "DUNWELL_DBOS_SCHEMA": db.dbos_schema,
                "DUNWELL_SIM_PSP_URL": psp_url,
            }
            worker = subprocess.Popen(
                [str(BIN / "dunwell"), "worker", "--id", "bench-memory"],
                env=env,
                stdout=subprocess.DEVNULL,
                stderr=subprocess.DEVNULL,
            )
            samples: list[int] = []
            started = time.monotonic()
            try:
                time.sleep(1)
                while open_due(db.url):
                    samples.append(_rss_kb(worker.pid))
                    time.sleep(0.2)
                busy_seconds = time.monotonic() - started
                idle_until = time.monotonic() + 5  # a few idle dispatch ticks
                while time.monotonic() < idle_until:
                    samples.append(_rss_kb(worker.pid))
                    time.sleep(0.2)
            finally:
                worker.terminate()
                worker.wait(timeout=30)
                psp.terminate()
                psp.wait(timeout=30)
            engine = make_engine(db.url)
            with engine.connect() as connection:
                done = connection.execute(
                    text("SELECT count(*) FROM actions WHERE status = 'done'")
                ).scalar_one()
                open_cases = connection.execute(
                    text("SELECT count(*) FROM cases WHERE status = 'open'")
                ).scalar_one()
            engine.dispose()
    return {
        "open_cases": int(open_cases),
        "waiting_cases_inserted": waiting,
        "insert_seconds": round(insert_seconds, 1),
        "actions_done": int(done),
        "seconds_until_idle": round(busy_seconds, 1),
        "actions_per_second": round(int(done) / busy_seconds, 1),
        "rss_peak_mb": round(max(samples) / 1024, 1),
        "rss_idle_mb": round(samples[-1] / 1024, 1),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sizes", type=int, nargs="+", default=[10_000, 1_000_000])
    parser.add_argument("--due", type=int, default=300)
    args = parser.parse_args()
    results: dict[str, Any] = {
        "benchmark": "worker memory and throughput by open cases, PostgreSQL",
        "machine": {"cpus": os.cpu_count(), "python": platform.python_version()},
        "measured_at": datetime.now(UTC).isoformat(timespec="seconds"),
        "by_waiting_cases": {},
    }
    for size in args.sizes:
        result = measure(size, args.due)
        results["by_waiting_cases"][str(size)] = result
        print(json.dumps({"waiting": size, **result}), flush=True)
    out = HERE / "results" / "memory.json"
    out.write_text(json.dumps(results, indent=2) + "\n")
    print(f"results in {out}")


if __name__ == "__main__":
    main()
