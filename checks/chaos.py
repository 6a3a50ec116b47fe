"""`make chaos`: workers killed mid-flight must lose no action and capture nothing twice.

Opens a few thousand cases whose retries are due now, starts the simulated processor with
latency and injected 5xx errors (half of them after the capture committed) and two
`dunwell worker` processes, SIGKILLs one of them mid-flight several times and restarts it
under the same executor id, waits until nothing is due, then prints one JSON line built
from the processor's own ledger and the engine's records. Exit status 1 on any duplicate
capture or lost action.

Defaults: PostgreSQL (DUNWELL_CHAOS_DATABASE_URL, else the local test server), each run
in a fresh schema that is dropped afterwards. `--database sqlite` runs on a SQLite file
with one worker (SQLite is the single-process embedded mode).
"""

from __future__ import annotations

import argparse
import json
import os
import random
import signal
import subprocess
import sys
import tempfile
import time
from collections import Counter
from pathlib import Path
from typing import Any

import httpx
from sqlalchemy import text

from dunwell.sim.workload import open_due, open_due_cases, start_sim_psp
from dunwell.store.database import make_engine
from dunwell.store.scratch import scratch_database

POSTGRES_URL = os.environ.get(
    "DUNWELL_CHAOS_DATABASE_URL", "postgresql://postgres@127.0.0.1:5432/test"
)
BIN = Path(sys.executable).parent


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--cases", type=int, default=2000)
    parser.add_argument("--kills", type=int, default=6)
    parser.add_argument("--kill-every", type=float, default=2.5, help="seconds")
    parser.add_argument("--latency-ms", type=float, default=20)
    parser.add_argument("--error-rate", type=float, default=0.05)
    parser.add_argument("--database", choices=["postgres", "sqlite"], default="postgres")
    parser.add_argument("--timeout", type=float, default=600, help="seconds to quiesce")
    parser.add_argument("--seed", type=int, default=7)
    args = parser.parse_args()
    random.seed(args.seed)
    with tempfile.TemporaryDirectory(prefix="dunwell-chaos-") as tmp:
        with scratch_database(args.database, Path(tmp), POSTGRES_URL) as db:
            return _run(args, Path(tmp), db.url, db.dbos_schema)


def _run(args: argparse.Namespace, tmp: Path, url: str, dbos_schema: str) -> int:
    psp, psp_url = start_sim_psp(
        tmp, latency_ms=args.latency_ms, error_rate=args.error_rate, seed=args.seed
    )
    env = {
        **os.environ,
        "DUNWELL_DATABASE_URL": url,
        "DUNWELL_DBOS_SCHEMA": dbos_schema,
        "DUNWELL_SIM_PSP_URL": psp_url,
        "DUNWELL_LOG_FORMAT": "json",
    }
    names = ["chaos-1"] if args.database == "sqlite" else ["chaos-1", "chaos-2"]
    workers: dict[str, subprocess.Popen[bytes]] = {}
    logs = {name: (tmp / f"{name}.log").open("ab") for name in names}
    try:
        started = time.monotonic()
        opened = open_due_cases(url, args.cases)
        setup_seconds = time.monotonic() - started
        for name in names:
            workers[name] = _start_worker(name, env, logs[name])
        kills = mid_flight = 0
        for i in range(args.kills):
            time.sleep(args.kill_every * random.uniform(0.6, 1.4))
            victim = names[i % len(names)]
            mid_flight += open_due(url) > 0
            workers[victim].send_signal(signal.SIGKILL)
            workers[victim].wait()
            kills += 1
            time.sleep(random.uniform(0.2, 1.0))
            workers[victim] = _start_worker(victim, env, logs[victim])
        quiet = _wait_quiet(url, args.timeout)
        result = _verdict(url, psp_url)
        result.update(
            cases=opened,
            workers=len(names),
            kills=kills,
            kills_with_work_due=mid_flight,
            database=args.database,
            quiesced=quiet,
            setup_seconds=round(setup_seconds, 1),
            run_seconds=round(time.monotonic() - started - setup_seconds, 1),
        )
    finally:
        for process in [*workers.values(), psp]:
            if process.poll() is None:
                process.terminate()
        for process in [*workers.values(), psp]:
            try:
                process.wait(timeout=15)
            except subprocess.TimeoutExpired:
                process.kill()
        for handle in logs.values():
            handle.close()
    print(json.dumps(result, sort_keys=True))
    bad = result["duplicate_captures"] or result["lost_actions"] or not quiet
    if bad:
        for name in names:
            tail = (tmp / f"{name}.log").read_text(errors="replace").splitlines()[-20:]
            print(f"--- last lines of {name}'s log", *tail, sep="\n", file=sys.stderr)
    return 1 if bad else 0


def _start_worker(name: str, env: dict[str, str], log: Any) -> subprocess.Popen[bytes]:
    return subprocess.Popen(
        [str(BIN / "dunwell"), "worker", "--id", name], env=env, stdout=log, stderr=log
    )


def _wait_quiet(url: str, timeout: float) -> bool:
    deadline = time.monotonic() + timeout
    quiet_polls = 0
    while time.monotonic() < deadline:
        quiet_polls = quiet_polls + 1 if open_due(url) == 0 else 0
        if quiet_polls >= 3:
            return True
        time.sleep(1)
    return False


def _verdict(url: str, psp_url: str) -> dict[str, Any]:
    """Compare what the processor captured with what the engine recorded."""
    ledger = httpx.get(f"{psp_url}/charges", timeout=60).json()
    captures = ledger["captures"]
    keys_sent = {r["idempotency_key"] for r in ledger["requests"] if r["idempotency_key"]}
    # Every case has its own card token: two captures on one token are a double charge.
    per_token = Counter(c["token"] for c in captures)
    duplicate_captures = sum(n - 1 for n in per_token.values() if n > 1)
    engine = make_engine(url)
    with engine.connect() as connection:
        cases = connection.execute(text("SELECT id, status, state FROM cases")).all()
    engine.dispose()
    due_not_done = open_due(url)
    attempts: dict[str, str] = {}
    recovered_by_us: set[str] = set()
    for _id, _status, state in cases:
        data = state if isinstance(state, dict) else json.loads(state)
        for attempt in data.get("attempts", []):
            attempts[attempt["id"]] = attempt["status"]
            if attempt["status"] == "succeeded":
                recovered_by_us.add(attempt["id"])
    captured_keys = {c["idempotency_key"] for c in captures}
    # Lost: a due action never carried out; an attempt the engine still thinks in flight;
    # money taken that the engine does not know about; or a success the processor never saw.
    unknown_to_engine = len(captured_keys - recovered_by_us)
    never_captured = len(recovered_by_us - captured_keys)
    in_flight = sum(1 for s in attempts.values() if s == "in_flight")
    return {
        "attempts": len(attempts),
        "requests": len(ledger["requests"]),
        "psp_outcomes": dict(Counter(str(r["outcome"]) for r in ledger["requests"])),
        "idempotency_keys": len(keys_sent),
        # Attempts the engine recorded whose request never reached the processor (a worker
        # killed before sending; the lookup found nothing): neither lost nor doubled.
        "attempts_never_sent": len(set(attempts) - keys_sent),
        "captures": len(captures),
        "duplicate_captures": duplicate_captures,
        "lost_actions": due_not_done + in_flight + unknown_to_engine + never_captured,
        "lost_detail": {
            "due_not_done": due_not_done,
            "attempts_in_flight": in_flight,
            "captures_unknown_to_engine": unknown_to_engine,
            "successes_not_captured": never_captured,
        },
        "recovered_cases": sum(1 for _id, status, _s in cases if status == "recovered"),
    }


if __name__ == "__main__":
    sys.exit(main())
