"""Benchmark aid (issue 5): what the out-of-time validation of a training period holds, and
why its calibration reads low.

For one world and seed, runs the training period `dunwell simulate` runs (`baseline-fixed`
on other customers over `--train-days`), then repeats the validation split the model's
training makes (the latest 25% of the attempts it learns from are held out) with public
calls only: a model trained on the attempts before the split prices the held-out ones. The
held-out attempts are reported per lane and date, and per lane and month payday passed
since the last try, with the first model's mean price and the observed success rate, and
the month's usual paydays (the 1st, the 15th, the last business day) each part of the
period contains.

Reads nothing hidden of the world. JSON to `--out`. Nothing here is a test.

    .venv/bin/python benchmarks/validation_dates.py [--world realistic] [--seed 12]
        [--train-customers 4000] [--train-days 60]
        [--out benchmarks/results/validation-dates]
"""

from __future__ import annotations

import argparse
import json
import logging
from collections import defaultdict
from datetime import date, timedelta
from pathlib import Path
from typing import Any

from dunwell.domain.timing import likely_paydays
from dunwell.logging_setup import configure_logging
from dunwell.scoring.features import history_features
from dunwell.scoring.model import VALIDATION_SHARE, in_time_order, timing_rows, train
from dunwell.sim.harness import run_policy, training_world
from dunwell.sim.loading import load_world_factory
from dunwell.sim.population import DEFAULT_START

HERE = Path(__file__).parent


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--world", default="realistic")
    parser.add_argument("--seed", type=int, default=12)
    parser.add_argument("--train-customers", type=int, default=4000)
    parser.add_argument("--train-days", type=int, default=60)
    parser.add_argument("--out", type=Path, default=HERE / "results" / "validation-dates")
    args = parser.parse_args()
    configure_logging("console", logging.ERROR)
    factory = load_world_factory(f"builtin:{args.world}")
    past = training_world(factory, args.train_customers, args.train_days, args.seed, DEFAULT_START)
    run = run_policy(past, "baseline-fixed")
    history = in_time_order(run.history)
    rows, features = timing_rows(history, history_features(history))
    split = int(len(rows) * (1 - VALIDATION_SHARE))
    cut = rows[split].attempted_at
    # The first model: trained on what came before the cut, as the validation's held model.
    first, _ = train([r for r in history if r.attempted_at < cut], version="before-the-cut")
    prices = first.score(features[split:])
    by_date: dict[tuple[str, str], list[float]] = defaultdict(lambda: [0, 0.0, 0])
    by_paydays: dict[tuple[str, int], list[float]] = defaultdict(lambda: [0, 0.0, 0])
    for row, feature, price in zip(rows[split:], features[split:], prices, strict=True):
        for key, table in (
            ((row.lane, row.attempted_at.date().isoformat()), by_date),
            ((row.lane, feature.month_paydays_since_last_try), by_paydays),
        ):
            cell = table[key]
            cell[0] += 1
            cell[1] += price
            cell[2] += 1 if row.approved else 0
    report: dict[str, Any] = {
        "world": args.world,
        "seed": args.seed,
        "train_customers": args.train_customers,
        "train_days": args.train_days,
        "attempts_learned_from": len(rows),
        "first_attempt": rows[0].attempted_at.isoformat(),
        "cut": cut.isoformat(),
        "last_attempt": rows[-1].attempted_at.isoformat(),
        # Dates before the cut's own date, and from it on.
        "month_paydays_before_the_cut": _paydays(
            rows[0].attempted_at.date(), cut.date() - timedelta(days=1)
        ),
        "month_paydays_after_the_cut": _paydays(cut.date(), rows[-1].attempted_at.date()),
        "held_out_by_lane_and_date": _table(by_date),
        "held_out_by_lane_and_month_paydays_since_last_try": _table(by_paydays),
    }
    args.out.mkdir(parents=True, exist_ok=True)
    path = args.out / f"{args.world}-seed{args.seed}-train{args.train_customers}.json"
    path.write_text(json.dumps(report, indent=2) + "\n")
    print(json.dumps({k: v for k, v in report.items() if not k.startswith("held_out")}))
    for key, cell in report["held_out_by_lane_and_month_paydays_since_last_try"].items():
        print(key, cell)


def _paydays(first: date, last: date) -> list[str]:
    """The month's usual paydays (UTC dates) from `first` to `last`, as the features know
    them: the 1st, the 15th and the last business day."""
    return [d.isoformat() for d in likely_paydays(first, last)]


def _table(cells: dict[Any, list[float]]) -> dict[str, dict[str, Any]]:
    return {
        " ".join(str(part) for part in key): {
            "attempts": int(n),
            "first_model_mean_price": round(priced / n, 3),
            "observed": round(approved / n, 3),
        }
        for key, (n, priced, approved) in sorted(cells.items())
    }


if __name__ == "__main__":
    main()
