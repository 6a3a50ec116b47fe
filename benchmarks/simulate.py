"""Benchmark (item 7): how long `dunwell simulate` takes for many failed payments.

Measures, on the realistic world (seed 1):

1. the world alone at full size: drawing the population, playing out its own events, and its
   oracle bound (median of `--repeat` runs);
2. one policy through the engine on a sample, on each store: `memory` (the default) and
   `sqlite` (a migrated file per run, as before), median of `--repeat` runs each, in wall
   and CPU seconds per case; CPU time is the steadier figure on a shared machine;
3. the whole command at full size, `simulate()` as `dunwell simulate --world
   builtin:realistic --customers N --days D` runs it (two policies, `--workers` processes),
   timed once per `--full-repeat` (skip it with `--full-repeat 0`: the results file then
   keeps the full run it had, marked `"from_an_earlier_run": true` with its date).

Results go to benchmarks/results/simulate.json and stdout; `--profile` adds a cProfile of
one policy on the sample. Nothing here is a test.

    .venv/bin/python benchmarks/simulate.py [--customers 100000] [--days 60] [--sample 2000]
"""

from __future__ import annotations

import argparse
import cProfile
import io
import json
import logging
import os
import platform
import pstats
import statistics
import time
from collections.abc import Callable
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from dunwell.logging_setup import configure_logging
from dunwell.sim.harness import DEFAULT_POLICIES, run_policy, simulate
from dunwell.sim.population import DEFAULT_START
from dunwell.sim.worlds.realistic import RealisticWorld

HERE = Path(__file__).parent
SEED = 1


def _timed(work: Callable[[], Any]) -> tuple[float, float, Any]:
    wall, cpu = time.perf_counter(), time.process_time()
    result = work()
    return time.perf_counter() - wall, time.process_time() - cpu, result


def world_only(customers: int, days: int, repeat: int) -> dict[str, Any]:
    draws, plays, oracles = [], [], []
    for _ in range(repeat):
        draw, _, world = _timed(lambda: RealisticWorld(customers, days, SEED, DEFAULT_START))
        play, _, events = _timed(lambda: world.events_due(world.horizon))  # noqa: B023
        oracle, _, bound = _timed(world.oracle)
        draws.append(draw)
        plays.append(play)
        oracles.append(oracle)
    return {
        "draw_population": round(statistics.median(draws), 2),
        "play_events": round(statistics.median(plays), 2),
        "oracle": round(statistics.median(oracles), 2),
        "events": len(events),
        "oracle_share": round(bound.recoverable / bound.cases, 4),
        "runs": repeat,
    }


def engine_sample(customers: int, days: int, policy: str, store: str, repeat: int) -> dict:
    walls, cpus = [], []
    for _ in range(repeat):
        wall, cpu, result = _timed(
            lambda: run_policy(
                lambda: RealisticWorld(customers, days, SEED, DEFAULT_START), policy, store=store
            )
        )
        walls.append(wall)
        cpus.append(cpu)
    wall, cpu = statistics.median(walls), statistics.median(cpus)
    return {
        "store": store,
        "policy": policy,
        "customers": customers,
        "runs": repeat,
        "seconds": round(wall, 2),
        "cpu_seconds": round(cpu, 2),
        "ms_per_case": round(wall / result.cases * 1000, 3),
        "cpu_ms_per_case": round(cpu / result.cases * 1000, 3),
        "attempts": result.attempts,
        "notices": result.notices,
    }


def full_run(customers: int, days: int, workers: int, repeat: int) -> dict[str, Any]:
    walls, cpus = [], []
    for _ in range(repeat):
        wall, cpu, result = _timed(
            lambda: simulate(customers, days, SEED, world="builtin:realistic", workers=workers)
        )
        walls.append(wall)
        cpus.append(cpu)
    arms = result["policies"]
    return {
        "command": f"dunwell simulate --world builtin:realistic --customers {customers} "
        f"--days {days} --seed {SEED} --workers {workers}",
        "policies": list(DEFAULT_POLICIES),
        "workers": workers,
        "runs": repeat,
        "seconds": round(statistics.median(walls), 1),
        "all_seconds": [round(w, 1) for w in walls],
        # The parent's CPU only: the arms' own CPU is spent in the worker processes.
        "parent_cpu_seconds": round(statistics.median(cpus), 1),
        "cases_per_policy": {name: arm["cases"] for name, arm in arms.items()},
        "recovery_rate": {name: arm["recovery_rate"]["by_count"] for name, arm in arms.items()},
    }


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--customers", type=int, default=100_000)
    parser.add_argument("--days", type=int, default=60)
    parser.add_argument("--sample", type=int, default=2000, help="customers per engine sample")
    parser.add_argument("--sqlite-sample", type=int, default=500, help="the same on SQLite")
    parser.add_argument("--policy", default="default")
    parser.add_argument("--repeat", type=int, default=3, help="runs per median")
    parser.add_argument("--full-repeat", type=int, default=1, help="full-size runs (0: none)")
    parser.add_argument("--workers", type=int, default=os.cpu_count() or 1)
    parser.add_argument("--profile", action="store_true")
    args = parser.parse_args()
    configure_logging("console", logging.ERROR)

    report: dict[str, Any] = {
        "when": datetime.now(UTC).isoformat(timespec="seconds"),
        "machine": f"{platform.machine()} {platform.python_version()}, {os.cpu_count()} CPUs",
        "load_average_at_start": [round(x, 2) for x in os.getloadavg()],
        "customers": args.customers,
        "days": args.days,
        "world_only_seconds": world_only(args.customers, args.days, args.repeat),
        "engine_sample": [
            engine_sample(args.sample, args.days, args.policy, "memory", args.repeat),
            engine_sample(args.sqlite_sample, args.days, args.policy, "sqlite", args.repeat),
        ],
    }
    memory, sqlite = report["engine_sample"]
    report["memory_speedup_per_case_cpu"] = round(
        sqlite["cpu_ms_per_case"] / memory["cpu_ms_per_case"], 1
    )
    report["extrapolated_one_policy_seconds"] = round(memory["ms_per_case"] * args.customers / 1000)
    results = HERE / "results" / "simulate.json"
    if args.full_repeat > 0:
        report["full_run"] = full_run(args.customers, args.days, args.workers, args.full_repeat)
    elif results.exists():  # not measured this time: the last one stays, said to be older
        before = json.loads(results.read_text())
        earlier = before.get("full_run")
        if earlier is not None:
            when = earlier.get("measured_at", before.get("when"))
            report["full_run"] = {**earlier, "from_an_earlier_run": True, "measured_at": when}
    report["load_average_at_end"] = [round(x, 2) for x in os.getloadavg()]
    results.parent.mkdir(exist_ok=True)
    results.write_text(json.dumps(report, indent=2) + "\n")
    print(json.dumps(report, indent=2))

    if args.profile:  # where the time goes, not how much (profiling slows it)
        profiler = cProfile.Profile()
        profiler.enable()
        run_policy(lambda: RealisticWorld(args.sample, args.days, SEED, DEFAULT_START), args.policy)
        profiler.disable()
        text = io.StringIO()
        pstats.Stats(profiler, stream=text).sort_stats("tottime").print_stats(30)
        print(text.getvalue())


if __name__ == "__main__":
    main()
