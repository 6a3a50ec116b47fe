"""Benchmark aid (issue 5): how the models of a small and a large training history price the
same attempts, to look for why `smart` spends more charges after a larger history.

For one world and seed, trains a model on each `--train-customers` size (the training period
of `dunwell simulate`: `baseline-fixed` over `--train-days`), then scores one common set of
attempts (those of another seed's `baseline-fixed` run, `--common-customers` customers):

- per value-bar lane: the share of attempts whose expected value (probability x amount)
  clears the lane's bar in `smart` (its share x the model's recovered-per-attempt), at the
  attempt's own hour and at the best local hour from 8 to 20 with everything else kept;
- per lane: the mean probability of the third retry's attempts restated as retries 3 to 7,
  the depth rule (the manifest's `depth`) applied as the live model applies it;
- `smart` itself with each model on the evaluation world (`--customers` over `--days`, the
  seed's own, as `dunwell simulate` runs it): its retries of the card that failed (the rows a
  model trains on; a new card's charges are not among them) per case, by lane and retry
  number, and by lane and days since the failure;
- `smart`'s own retries (each model's evaluation run's) scored by every model: per lane,
  the mean probability and the share whose expected value clears that model's bar, so a
  model that prices `smart`'s situations higher than another shows.

Reads nothing hidden of the world; a model, not a simulation of the policy. JSON to
`--out`. Nothing here is a test.

    .venv/bin/python benchmarks/history_size.py [--world realistic] [--seed 42]
        [--train-customers 4000,13333] [--train-days 60] [--common-customers 4000]
        [--customers 3000] [--days 45]
        [--out benchmarks/results/history-size]
"""

from __future__ import annotations

import argparse
import json
import logging
import statistics
from collections import Counter
from dataclasses import replace
from pathlib import Path
from typing import Any

from dunwell.domain.scoring import RetryFeatures
from dunwell.logging_setup import configure_logging
from dunwell.policies import load_policies
from dunwell.scoring.features import history_features
from dunwell.sim.harness import run_policy, train_period
from dunwell.sim.loading import load_world_factory
from dunwell.sim.population import CURRENCY, DEFAULT_START

HERE = Path(__file__).parent
HOURS = range(8, 21)
COMMON_SEED = 99_991  # a world seed no benchmark evaluates


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--world", default="realistic")
    parser.add_argument("--seed", type=int, default=42)
    parser.add_argument("--train-customers", default="4000,13333")
    parser.add_argument("--train-days", type=int, default=60)
    parser.add_argument("--common-customers", type=int, default=4000)
    parser.add_argument("--customers", type=int, default=3000)
    parser.add_argument("--days", type=int, default=45)
    parser.add_argument("--out", type=Path, default=HERE / "results" / "history-size")
    args = parser.parse_args()
    configure_logging("console", logging.ERROR)
    factory = load_world_factory(f"builtin:{args.world}")
    common = run_policy(
        lambda: factory(
            seed=COMMON_SEED,
            customers=args.common_customers,
            days=args.train_days,
            start=DEFAULT_START,
        ),
        "baseline-fixed",
    )
    features = history_features(common.history)
    smart = load_policies()["smart"]
    shares = {
        name: lane.learned_min_value_share
        for name, lane in ((k.value, v) for k, v in smart.lanes.items())
        if lane.learned_min_value_share is not None
    }
    models = []
    runs: list[tuple[Any, Any, int]] = []  # (scorer, evaluation history, bar base) per size
    for size in (int(n) for n in args.train_customers.split(",")):
        scorer, training = train_period(
            factory, size, args.train_days, args.seed, DEFAULT_START, "baseline-fixed"
        )
        per_attempt = training["recovered_per_attempt_minor"][CURRENCY]
        model: dict[str, Any] = {
            "train_customers": size,
            "rows": training["rows"],
            "auc": training["auc"],
            "recovered_per_attempt_minor": per_attempt,
            "depth": training["manifest"].get("depth"),
            "lanes": {},
        }
        for lane, share in shares.items():
            model["lanes"][lane] = {
                "value_share": share,
                **_clearing(scorer, features, lane, share * per_attempt),
                **_deeper(scorer, features, lane),
            }
        evaluation = run_policy(
            lambda: factory(
                seed=args.seed, customers=args.customers, days=args.days, start=DEFAULT_START
            ),
            "smart",
            scorer,
        )
        model["smart"] = _charges(evaluation.history, evaluation.cases)
        model["smart"]["recovered_minor"] = evaluation.recovered_minor
        models.append(model)
        runs.append((scorer, history_features(evaluation.history), per_attempt))
        print(json.dumps(model), flush=True)
    for model, (_, attempts, _) in zip(models, runs, strict=True):
        model["smart"]["its_retries_scored_by"] = {
            str(other["train_customers"]): {
                lane: _priced(scorer, attempts, lane, share * base)
                for lane, share in shares.items()
            }
            for other, (scorer, _, base) in zip(models, runs, strict=True)
        }
    args.out.mkdir(parents=True, exist_ok=True)
    path = args.out / f"{args.world}-seed{args.seed}.json"
    report = {
        "world": args.world,
        "seed": args.seed,
        "train_days": args.train_days,
        "common": {"seed": COMMON_SEED, "customers": args.common_customers},
        "common_attempts": len(features),
        "models": models,
    }
    path.write_text(json.dumps(report, indent=2) + "\n")


def _clearing(scorer: Any, features: list[RetryFeatures], lane: str, bar: float) -> dict:
    rows = [f for f in features if f.lane == lane]
    own = scorer.score(rows)
    hours = scorer.score([replace(f, local_hour=h) for f in rows for h in HOURS])
    width = len(HOURS)
    best = [max(hours[k * width : (k + 1) * width]) for k in range(len(rows))]
    return {
        "attempts": len(rows),
        "bar_minor": round(bar),
        "clear_at_own_hour": _share(
            p * f.amount_minor >= bar for p, f in zip(own, rows, strict=True)
        ),
        "clear_at_best_hour": _share(
            p * f.amount_minor >= bar for p, f in zip(best, rows, strict=True)
        ),
        "mean_p_own_hour": round(statistics.fmean(own), 4),
        "mean_p_best_hour": round(statistics.fmean(best), 4),
    }


def _priced(scorer: Any, features: list[RetryFeatures], lane: str, bar: float) -> dict:
    rows = [f for f in features if f.lane == lane]
    p = scorer.score(rows)
    return {
        "retries": len(rows),
        "mean_p": round(statistics.fmean(p), 4) if p else None,
        "clear_bar": _share(q * f.amount_minor >= bar for q, f in zip(p, rows, strict=True)),
    }


def _deeper(scorer: Any, features: list[RetryFeatures], lane: str) -> dict:
    thirds = [f for f in features if f.lane == lane and f.attempt_number == 3]
    if not thirds:
        return {"third_retries": 0}
    mean_p = {}
    for k in range(3, 8):
        # `score` applies the depth rule to retries beyond the history's deepest, as live.
        p = scorer.score([replace(f, attempt_number=k) for f in thirds])
        mean_p[str(k)] = round(statistics.fmean(p), 4)
    return {"third_retries": len(thirds), "mean_p_as_retry": mean_p}


def _charges(rows: list[Any], cases: int) -> dict[str, Any]:
    """Retries of the failed card per evaluation case, by lane and retry number, and by lane
    and whole days since the failure."""
    by_number: Counter[str] = Counter()
    by_day: Counter[str] = Counter()
    for f in history_features(rows):
        by_number[f"{f.lane} #{f.attempt_number}"] += 1
        by_day[f"{f.lane} day {int(f.hours_since_failure // 24)}"] += 1
    return {
        "cases": cases,
        "retries_per_case": round(len(rows) / cases, 4),
        "by_lane_and_retry": {k: round(v / cases, 4) for k, v in sorted(by_number.items())},
        "by_lane_and_day": {k: round(v / cases, 4) for k, v in sorted(by_day.items())},
    }


def _share(flags: Any) -> float:
    values = list(flags)
    return round(sum(values) / len(values), 4) if values else 0.0


if __name__ == "__main__":
    main()
