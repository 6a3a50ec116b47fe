"""Benchmark (item 7): how long `dunwell simulate` takes for many failed payments.

Times, separately, (1) the realistic world alone at full size: drawing the population,
playing out its events, and its oracle bound; and (2) one policy through the real engine on
a smaller population (then profiled on a fifth of it), extrapolated linearly to the full size
(the engine's cost grows with the cases; the world's is measured, not extrapolated).
Results go to benchmarks/results/simulate.json and stdout. Nothing here is a test.

    .venv/bin/python benchmarks/simulate.py [--customers 100000] [--days 60] [--sample 1000]
"""

from __future__ import annotations

import argparse
import cProfile
import io
import json
import logging
import platform
import pstats
import time
from datetime import UTC, datetime
from pathlib import Path

from dunwell.logging_setup import configure_logging
from dunwell.sim.harness import run_policy
from dunwell.sim.population import DEFAULT_START
from dunwell.sim.worlds.realistic import RealisticWorld

HERE = Path(__file__).parent


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--customers", type=int, default=100_000)
    parser.add_argument("--days", type=int, default=60)
    parser.add_argument("--sample", type=int, default=1000, help="customers run through the engine")
    parser.add_argument("--policy", default="default")
    args = parser.parse_args()
    configure_logging("console", logging.ERROR)

    started = time.perf_counter()
    world = RealisticWorld(args.customers, args.days, 1, DEFAULT_START)
    built = time.perf_counter()
    events = len(world.events_due(world.horizon))
    played = time.perf_counter()
    bound = world.oracle()
    ended = time.perf_counter()

    engine_started = time.perf_counter()
    result = run_policy(
        lambda: RealisticWorld(args.sample, args.days, 1, DEFAULT_START), args.policy
    )
    engine_seconds = time.perf_counter() - engine_started
    # The profile on a fifth of the sample: where the time goes, not how much (it slows it).
    profiler = cProfile.Profile()
    profiler.enable()
    run_policy(
        lambda: RealisticWorld(max(1, args.sample // 5), args.days, 1, DEFAULT_START),
        args.policy,
    )
    profiler.disable()
    text = io.StringIO()
    pstats.Stats(profiler, stream=text).sort_stats("cumulative").print_stats(25)

    per_case = engine_seconds / max(1, result.cases)
    report = {
        "when": datetime.now(UTC).isoformat(timespec="seconds"),
        "machine": f"{platform.machine()} {platform.python_version()}",
        "customers": args.customers,
        "days": args.days,
        "world_only_seconds": {
            "draw_population": round(built - started, 2),
            "play_events": round(played - built, 2),
            "oracle": round(ended - played, 2),
            "events": events,
            "oracle_share": round(bound.recoverable / bound.cases, 4),
        },
        "engine_sample": {
            "policy": args.policy,
            "customers": args.sample,
            "seconds": round(engine_seconds, 2),
            "seconds_per_case": round(per_case, 5),
            "attempts": result.attempts,
            "notices": result.notices,
            "extrapolated_seconds_for_all_customers": round(per_case * args.customers),
        },
    }
    (HERE / "results").mkdir(exist_ok=True)
    (HERE / "results" / "simulate.json").write_text(json.dumps(report, indent=2) + "\n")
    print(json.dumps(report, indent=2))
    print(text.getvalue())


if __name__ == "__main__":
    main()
