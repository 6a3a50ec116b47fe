"""Backtest a policy on past failures, counterfactually, with the learned model.

For each past case (its first failure, amount, customer and card as in the history), the real
core (`decide`, `replan`) plans the candidate policy's retries as if every one declined with
the case's first code; the model gives each planned charge its probability of success. So a
case's chance of recovery under the policy is 1 - prod(1 - p_i), and its expected attempts
sum_i prod_{j<i}(1 - p_j). The same model scores the attempts the merchant actually made, so
the two schedules are compared on one scale (the observed outcome is reported beside them).

Assumptions, said in the output too: attempts are independent given their features (a
decline teaches nothing about the next one beyond what the features carry); card updates,
authentications and notices are left out (only retry timing and depth are compared); the
uncertainty is a bootstrap over cases (90% interval), not the model's own error.
"""

from __future__ import annotations

import random
from collections import defaultdict
from dataclasses import replace
from datetime import timedelta
from typing import Any

from dunwell.domain.case import ActionType, Attempt, AttemptStatus, RecoveryCase
from dunwell.domain.decide import decide
from dunwell.domain.decision import Context
from dunwell.domain.events import (
    Customer,
    DeclineReport,
    PaymentFailed,
    PaymentMethod,
    Subscription,
)
from dunwell.domain.money import Money
from dunwell.domain.planning import replan
from dunwell.domain.policy import Policy
from dunwell.domain.scoring import RetryScorer, case_features_at
from dunwell.scoring.features import history_features
from dunwell.scoring.history import HistoryRow

BOOTSTRAP = 500
MAX_RETRIES = 40  # a runaway policy is cut off, not looped forever


def backtest(
    rows: list[HistoryRow], policy: Policy, scorer: RetryScorer, seed: int = 0
) -> dict[str, Any]:
    by_case: dict[str, list[HistoryRow]] = defaultdict(list)
    for row in rows:
        by_case[row.case_id].append(row)
    per_case = []
    for case_id in sorted(by_case):
        attempts = sorted(by_case[case_id], key=lambda r: r.attempted_at)
        amount = attempts[0].amount_minor
        past_p = scorer.score(history_features(attempts))
        planned_p = _planned(attempts[0], policy, scorer)
        per_case.append(
            {
                "amount": amount,
                "observed": any(r.approved for r in attempts),
                "past": _chance(past_p),
                "past_attempts": _expected_attempts(past_p),
                "policy": _chance(planned_p),
                "policy_attempts": _expected_attempts(planned_p),
            }
        )
    return _summary(per_case, policy, scorer, seed)


def _planned(first: HistoryRow, policy: Policy, scorer: RetryScorer) -> list[float]:
    event = PaymentFailed(
        id=f"backtest:{first.case_id}",
        occurred_at=first.first_failed_at,
        customer=Customer(
            first.case_id,
            country=first.country or None,
            timezone=first.timezone or None,
            segment=first.segment or None,
        ),
        subscription=Subscription(f"sub:{first.case_id}"),
        invoice_id=first.case_id,
        amount=Money(first.amount_minor, first.currency or "USD"),
        provider=first.provider or "stripe",
        payment_method=PaymentMethod(f"pm:{first.case_id}", first.card_brand or None),
        decline=DeclineReport(first.decline_code or None),
    )
    ctx = Context("backtest", scorer=scorer)
    case: RecoveryCase | None = decide(None, event, policy, first.first_failed_at, ctx).case
    probabilities: list[float] = []
    while case is not None and case.is_open and len(probabilities) < MAX_RETRIES:
        retry = next((a for a in case.plan if a.type is ActionType.RETRY), None)
        end = next((a for a in case.plan if a.type is ActionType.END), None)
        if retry is None or (end is not None and retry.due_at >= end.due_at):
            break
        at = retry.due_at
        probabilities.append(scorer.score([case_features_at(case, at)])[0])
        attempt = Attempt(
            id=f"{case.id}:{len(case.attempts) + 1}",
            number=len(case.attempts) + 1,
            credential_key=case.payment_method.credential_key,
            provider=case.decline.provider,
            payment_method_token=case.payment_method.token,
            started_at=at,
            status=AttemptStatus.FAILED,
            finished_at=at + timedelta(seconds=1),
            provider_code=case.decline.provider_code,
        )
        case = replace(
            case, attempts=(*case.attempts, attempt), failures=case.failures + 1, last_failure_at=at
        )
        case, _ = replan(case, policy, at + timedelta(seconds=1), ctx)
    return probabilities


def _chance(ps: list[float]) -> float:
    miss = 1.0
    for p in ps:
        miss *= 1 - p
    return 1 - miss


def _expected_attempts(ps: list[float]) -> float:
    expected, alive = 0.0, 1.0
    for p in ps:
        expected += alive
        alive *= 1 - p
    return expected


def _summary(
    cases: list[dict[str, Any]], policy: Policy, scorer: RetryScorer, seed: int
) -> dict[str, Any]:
    def totals(sample: list[dict[str, Any]]) -> dict[str, float]:
        n = len(sample) or 1
        return {
            "past_amount": sum(c["past"] * c["amount"] for c in sample),
            "policy_amount": sum(c["policy"] * c["amount"] for c in sample),
            "past_rate": sum(c["past"] for c in sample) / n,
            "policy_rate": sum(c["policy"] for c in sample) / n,
            "past_attempts": sum(c["past_attempts"] for c in sample) / n,
            "policy_attempts": sum(c["policy_attempts"] for c in sample) / n,
        }

    point = totals(cases)
    rng = random.Random(f"backtest:{seed}")
    lifts, deltas = [], []
    for _ in range(BOOTSTRAP if cases else 0):
        sample = [cases[rng.randrange(len(cases))] for _ in cases]
        t = totals(sample)
        lifts.append(t["policy_amount"] / t["past_amount"] - 1 if t["past_amount"] else 0.0)
        deltas.append(t["policy_rate"] - t["past_rate"])
    lifts.sort()
    deltas.sort()

    def interval(values: list[float]) -> list[float] | None:
        if not values:
            return None
        return [
            round(values[int(0.05 * len(values))], 4),
            round(values[int(0.95 * len(values)) - 1], 4),
        ]

    failed = sum(c["amount"] for c in cases)
    return {
        "policy": policy.name,
        "model": scorer.version,
        "cases": len(cases),
        "failed_amount_minor": failed,
        "observed": {
            "recovered": sum(1 for c in cases if c["observed"]),
            "recovered_amount_minor": sum(c["amount"] for c in cases if c["observed"]),
        },
        "past_schedule": {
            "expected_recovery_rate": round(point["past_rate"], 4),
            "expected_recovered_amount_minor": round(point["past_amount"]),
            "expected_attempts_per_case": round(point["past_attempts"], 3),
        },
        "candidate_policy": {
            "expected_recovery_rate": round(point["policy_rate"], 4),
            "expected_recovered_amount_minor": round(point["policy_amount"]),
            "expected_attempts_per_case": round(point["policy_attempts"], 3),
        },
        "change": {
            "revenue_lift": round(point["policy_amount"] / point["past_amount"] - 1, 4)
            if point["past_amount"]
            else None,
            "revenue_lift_90pct": interval(lifts),
            "recovery_rate_points": round(point["policy_rate"] - point["past_rate"], 4),
            "recovery_rate_points_90pct": interval(deltas),
        },
        "assumptions": [
            "attempts independent given their features",
            "card updates, authentications and notices left out: retry timing and depth only",
            "interval: bootstrap over cases (500 resamples), not the model's own error",
            "the model scores both schedules; its calibration is in `dunwell scoring show`",
        ],
    }
