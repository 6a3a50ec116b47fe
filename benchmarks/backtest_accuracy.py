"""Benchmark (issue 5, item 6): how far to trust `dunwell backtest`, against the simulator's
truth on the same customers.

For each world and seed: `baseline-fixed` runs a training period (the same world, customers
and days as `simulate --train-days` uses), a model is trained on its attempts, and the
backtest replays those past cases under `smart`, twice: with the history's case columns (how
and when each case ended) and without them. Then the simulator runs `smart` itself, with the
same model, on the very same customers and draws: what the backtest tries to predict. Both
are read on the cases the history holds (those with at least one attempt):

- revenue recovered by retries (approved rows of the history), smart vs what happened;
- all recovered revenue, the customers' own payments included (what `simulate` reports);
- attempts per case, smart vs what happened (the backtest's ratio of expected attempts).

Writes one JSON per world and seed into benchmarks/results/backtest-accuracy/ (or --out) and
prints a Markdown table for docs/scoring.md. Nothing here is a test.

    .venv/bin/python benchmarks/backtest_accuracy.py [--customers 4000] [--days 60]
        [--seeds 44] [--worlds realistic,realistic-apac,...] [--policy smart]
"""

from __future__ import annotations

import argparse
import json
import logging
import time
from dataclasses import replace
from datetime import timedelta
from functools import partial
from pathlib import Path
from typing import Any

from learning import WORLDS  # the worlds the proof runs on (benchmarks/learning.py)

from dunwell.domain.case import CaseStatus, RecoveryCase
from dunwell.logging_setup import configure_logging
from dunwell.policies import load_policies
from dunwell.scoring.backtest import backtest
from dunwell.scoring.history import HistoryRow
from dunwell.scoring.model import train
from dunwell.settings import Settings
from dunwell.sim.harness import PolicyResult, run_policy, training_seed
from dunwell.sim.loading import load_world_factory
from dunwell.sim.population import DEFAULT_START

HERE = Path(__file__).parent
OUT = HERE / "results" / "backtest-accuracy"


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--customers", type=int, default=4000, help="the training period's")
    parser.add_argument("--days", type=int, default=60, help="the training period's")
    parser.add_argument("--seeds", default="44")
    parser.add_argument("--worlds", default=",".join(WORLDS))
    parser.add_argument("--policy", default="smart", help="the candidate a backtest replays")
    parser.add_argument("--out", type=Path, default=OUT)
    args = parser.parse_args()
    configure_logging("console", logging.ERROR)
    args.out.mkdir(parents=True, exist_ok=True)
    rows = []
    for seed in (int(s) for s in args.seeds.split(",")):
        for world in args.worlds.split(","):
            result = measure(world, seed, args.customers, args.days, args.policy)
            (args.out / f"{world}-seed{seed}.json").write_text(json.dumps(result, indent=2) + "\n")
            rows.append(result)
            print(json.dumps(result["summary"]), flush=True)
    print(markdown(rows))


def measure(world: str, seed: int, customers: int, days: int, policy: str) -> dict[str, Any]:
    factory = load_world_factory(f"builtin:{world}")
    # The training period of `simulate --seed SEED --train-days DAYS`: other customers than
    # the evaluation's, over the days before its start.
    past = partial(
        factory,
        seed=training_seed(seed),
        customers=customers,
        days=days,
        start=DEFAULT_START - timedelta(days=days),
    )
    started = time.perf_counter()
    kept: list[object] = []
    happened = run_policy(past, "baseline-fixed", keep=kept)
    rows = list(happened.history)
    scorer, manifest = train(rows, version=f"{world}-seed{seed}")
    candidate = load_policies(Settings().policy_dir)[policy]
    with_ends = backtest(rows, candidate, scorer)
    blank = [replace(r, case_outcome="", case_closed_at=None) for r in rows]
    without_ends = backtest(blank, candidate, scorer)
    kept_smart: list[object] = []
    truth = run_policy(past, policy, scorer=scorer, keep=kept_smart)
    seconds = time.perf_counter() - started
    ids = {r.case_id for r in rows}
    before = _on(happened, _cases(kept), ids)
    after = _on(truth, _cases(kept_smart), ids)
    measured = {
        "retry_revenue_lift": _lift(before["retry_amount"], after["retry_amount"]),
        "all_revenue_lift": _lift(before["recovered_amount"], after["recovered_amount"]),
        "attempts_ratio": round(after["attempts_per_case"] / before["attempts_per_case"], 4),
    }

    def predicted(result: dict[str, Any]) -> dict[str, Any]:
        past_s, new = result["past_schedule"], result["candidate_policy"]
        return {
            "retry_revenue_lift": result["change"]["revenue_lift"],
            "retry_revenue_lift_90pct": result["change"]["revenue_lift_90pct"],
            "all_revenue_lift": result["change"]["all_revenue_lift"],
            "all_revenue_lift_90pct": result["change"]["all_revenue_lift_90pct"],
            "attempts_ratio": round(
                new["expected_attempts_per_case"] / past_s["attempts_per_case"], 4
            ),
        }

    summary = {
        "world": world,
        "seed": seed,
        "cases": len(ids),
        "simulated": measured,
        "backtest_with_case_ends": predicted(with_ends),
        "backtest_without": predicted(without_ends),
        "seconds": round(seconds, 1),
    }
    return {
        "summary": summary,
        "training": {"customers": customers, "days": days, "seed": training_seed(seed)},
        "model": {"rows": manifest["rows"], "auc": manifest["validation"]["auc"]},
        "on_the_historys_cases": {"baseline-fixed (what happened)": before, policy: after},
        "backtest_with_case_ends": with_ends,
        "backtest_without_case_ends": without_ends,
    }


def _cases(kept: list[object]) -> list[RecoveryCase]:
    # run_policy leaves (world, recorder, cases) last in `keep`.
    cases = kept[-1]
    assert isinstance(cases, list)
    return cases


def _on(run: PolicyResult, cases: list[RecoveryCase], ids: set[str]) -> dict[str, Any]:
    """A run read on the history's cases only (case ids are the same in every run of a
    world: they are derived from the invoice). Revenue by retries: the cases a retry
    recovered (a charge after the customer authenticated is the customer's)."""
    mine = [c for c in cases if c.id in ids]
    assert len(mine) == len(ids), "the runs must share their case ids"
    retried: list[HistoryRow] = [r for r in run.history if r.case_id in ids]
    by_lane: dict[str, dict[str, int]] = {}
    for case in mine:
        amount = case.recovered_amount.amount_minor if case.recovered_amount else 0
        how = f"recovered_by_{case.recovered_by}" if amount else case.status.value
        lane = by_lane.setdefault(case.lane.value, {})
        lane[how] = lane.get(how, 0) + (amount or case.amount.amount_minor)
    return {
        "cases": len(mine),
        "retry_amount": _amount(mine, "retry"),
        "recovered_amount": _amount(mine, None),
        "attempts_per_case": round(len(retried) / len(mine), 4),
        # Per lane (the case's last): the amount of each way its cases ended.
        "amount_by_lane": {lane: dict(sorted(v.items())) for lane, v in sorted(by_lane.items())},
    }


def _amount(cases: list[RecoveryCase], by: str | None) -> int:
    return sum(
        c.recovered_amount.amount_minor
        for c in cases
        if c.status is CaseStatus.RECOVERED
        and c.recovered_amount
        and (by is None or c.recovered_by == by)
    )


def _lift(before: int, after: int) -> float | None:
    return round(after / before - 1, 4) if before else None


def markdown(results: list[dict[str, Any]]) -> str:
    def pct(value: float | None) -> str:
        return "n/a" if value is None else f"{value:+.1%}"

    def span(values: list[float] | None) -> str:
        return "" if not values else f" [{values[0]:+.1%}, {values[1]:+.1%}]"

    lines = [
        "| world | seed | revenue by retries: simulated / backtest / without case ends "
        "| all revenue: simulated / backtest | attempts: simulated / backtest / without |",
        "| --- | --- | --- | --- | --- |",
    ]
    for result in results:
        s = result["summary"]
        sim, new, old = s["simulated"], s["backtest_with_case_ends"], s["backtest_without"]
        lines.append(
            f"| {s['world']} | {s['seed']} "
            f"| {pct(sim['retry_revenue_lift'])} / {pct(new['retry_revenue_lift'])}"
            f"{span(new['retry_revenue_lift_90pct'])} / {pct(old['retry_revenue_lift'])} "
            f"| {pct(sim['all_revenue_lift'])} / {pct(new['all_revenue_lift'])}"
            f"{span(new['all_revenue_lift_90pct'])} "
            f"| {sim['attempts_ratio']:.3f} / {new['attempts_ratio']:.3f} / "
            f"{old['attempts_ratio']:.3f} |"
        )
    return "\n".join(lines)


if __name__ == "__main__":
    main()
