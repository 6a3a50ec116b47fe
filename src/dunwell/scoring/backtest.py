"""Backtest a policy on past failures, counterfactually, with the learned model.

For each past case (its first failure, amount, customer and card as in the history), the real
core (`decide`, `replan`) plans the candidate policy's retries as if every one declined with
the case's first code; the model gives each planned charge its probability of success. So a
case's chance of recovery under the policy is 1 - prod(1 - p_i), and its expected attempts
sum_i prod_{j<i}(1 - p_j). The candidate is compared with what happened: the cases the past
schedule's retries recovered and the charges it made. (Scoring the past charges with the model
instead, as the first version did, reads low by construction: a case recovered at its first
retry shows none of the tries the schedule had planned after it, so the lift came out 10 to
15 points high; the model's estimate of the past is still reported, as a check.)

Where the history says how a case ended (`case_outcome`, `case_closed_at`), the customer's
own ends are kept in time: no planned retry at or after the moment the customer paid or
fixed the payment method, cancelled or disputed (the case was over by then, whatever the
schedule). And the revenue is then also counted whole: a case the customer paid is recovered
under either schedule (by a retry first, or by the customer as it happened), so the lift in
all recovered revenue is reported beside the lift in what retries recovered. Without those
columns every planned retry counts, which flatters a deeper or later schedule (measured in
docs/scoring.md, "How far to trust a backtest").

Charges in the lanes only the customer can fix (a card to replace, an authentication) are
not the model's to price: it does not learn from them. They get the approval rate the
history shows in their lane, for both schedules.

Assumptions, said in the output too: attempts are independent given their features (a
decline teaches nothing about the next one beyond what the features carry); notices are left
out, and the customer acts when they did (only retry timing and depth are compared); the
uncertainty is a bootstrap over cases (90% interval), not the model's own error.
"""

from __future__ import annotations

import random
from collections import defaultdict
from dataclasses import replace
from datetime import datetime, timedelta
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
from dunwell.domain.lanes import CUSTOMER_ACTION_LANES
from dunwell.domain.money import Money
from dunwell.domain.planning import replan
from dunwell.domain.policy import Policy
from dunwell.domain.scoring import RetryFeatures, RetryScorer, case_features_at
from dunwell.scoring.features import history_features
from dunwell.scoring.history import EXTERNAL_ENDS, HistoryRow

BOOTSTRAP = 500
MAX_RETRIES = 40  # a runaway policy is cut off, not looped forever


def backtest(
    rows: list[HistoryRow], policy: Policy, scorer: RetryScorer, seed: int = 0
) -> dict[str, Any]:
    by_case: dict[str, list[HistoryRow]] = defaultdict(list)
    for row in rows:
        by_case[row.case_id].append(row)
    price = _Pricing(scorer, _lane_rates(rows))
    per_case = []
    for case_id in sorted(by_case):
        attempts = sorted(by_case[case_id], key=lambda r: r.attempted_at)
        amount = attempts[0].amount_minor
        past_p = price(history_features(attempts))
        planned = _planned(attempts[0], policy, scorer, price)
        ending, closed_at = _ending(attempts)
        if ending in EXTERNAL_ENDS and closed_at is not None:
            planned = [(at, p) for at, p in planned if at < closed_at]
        planned_p = [p for _, p in planned]
        observed = any(r.approved for r in attempts)
        per_case.append(
            {
                "amount": amount,
                "observed": observed,
                # The past schedule is not estimated: it happened. The model's estimate of it
                # is kept as a check only: over the charges made, it cannot see the tries a
                # case recovered early never needed, so it reads low by construction.
                "past": float(observed),
                "past_attempts": float(len(attempts)),
                "past_model": _chance(past_p),
                "policy": _chance(planned_p),
                "policy_attempts": _expected_attempts(planned_p),
                "ending": ending,
                "customer_paid": ending == "recovered_by_customer",
                "lane": attempts[0].lane,
                "retried": bool(planned_p),
            }
        )
    return _summary(per_case, policy, scorer, seed, price.rates)


def _lane_rates(rows: list[HistoryRow]) -> dict[str, float]:
    """The approval rate of the history's charges in each lane only the customer can fix.

    The model does not learn from those charges (`model.timing_rows`): they pass because
    the customer acted, or never. Scored by the model anyway, they came out as likely as
    any retry (a `lane` it never saw): on a history of expired cards the past schedule's
    dead-card charges were priced at 46% of the failed amount, against none approved."""
    tried: dict[str, list[int]] = {}
    for row in rows:
        if row.lane in _CUSTOMER_LANES:
            count = tried.setdefault(row.lane, [0, 0])
            count[0] += row.approved
            count[1] += 1
    return {lane: approved / total for lane, (approved, total) in sorted(tried.items())}


_CUSTOMER_LANES = frozenset(lane.value for lane in CUSTOMER_ACTION_LANES)


class _Pricing:
    """A charge's chance: the model's, or in a lane only the customer can fix, the rate the
    history shows there (0 where it shows no charge)."""

    def __init__(self, scorer: RetryScorer, rates: dict[str, float]) -> None:
        self.scorer, self.rates = scorer, rates

    def __call__(self, features: list[RetryFeatures]) -> list[float]:
        learned = [f for f in features if f.lane not in _CUSTOMER_LANES]
        scored = iter(self.scorer.score(learned) if learned else [])
        return [
            self.rates.get(f.lane, 0.0) if f.lane in _CUSTOMER_LANES else next(scored)
            for f in features
        ]


def _ending(attempts: list[HistoryRow]) -> tuple[str, datetime | None]:
    """How the case ended, from the first of its rows that says (every row should)."""
    for row in attempts:
        if row.case_outcome:
            return row.case_outcome, row.case_closed_at
    return "", None


def _planned(
    first: HistoryRow, policy: Policy, scorer: RetryScorer, price: _Pricing
) -> list[tuple[datetime, float]]:
    """The candidate's retries for this case, each with its time and the model's chance."""
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
    planned: list[tuple[datetime, float]] = []
    while case is not None and case.is_open and len(planned) < MAX_RETRIES:
        retry = next((a for a in case.plan if a.type is ActionType.RETRY), None)
        end = next((a for a in case.plan if a.type is ActionType.END), None)
        if retry is None or (end is not None and retry.due_at >= end.due_at):
            break
        at = retry.due_at
        planned.append((at, price([case_features_at(case, at)])[0]))
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
    return planned


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
    cases: list[dict[str, Any]],
    policy: Policy,
    scorer: RetryScorer,
    seed: int,
    lane_rates: dict[str, float],
) -> dict[str, Any]:
    def totals(sample: list[dict[str, Any]]) -> dict[str, float]:
        n = len(sample) or 1
        return {
            "past_amount": sum(c["past"] * c["amount"] for c in sample),
            "model_amount": sum(c["past_model"] * c["amount"] for c in sample),
            "policy_amount": sum(c["policy"] * c["amount"] for c in sample),
            # A case the customer paid is recovered under either schedule.
            "past_all": sum((1 if c["customer_paid"] else c["past"]) * c["amount"] for c in sample),
            "policy_all": sum(
                (1 if c["customer_paid"] else c["policy"]) * c["amount"] for c in sample
            ),
            "past_rate": sum(c["past"] for c in sample) / n,
            "policy_rate": sum(c["policy"] for c in sample) / n,
            "past_attempts": sum(c["past_attempts"] for c in sample) / n,
            "policy_attempts": sum(c["policy_attempts"] for c in sample) / n,
        }

    def lift(t: dict[str, float], past: str, new: str) -> float | None:
        return t[new] / t[past] - 1 if t[past] else None

    point = totals(cases)
    rng = random.Random(f"backtest:{seed}")
    lifts: list[float] = []
    all_lifts: list[float] = []
    deltas: list[float] = []
    for _ in range(BOOTSTRAP if cases else 0):
        sample = [cases[rng.randrange(len(cases))] for _ in cases]
        t = totals(sample)
        lifts.append(lift(t, "past_amount", "policy_amount") or 0.0)
        all_lifts.append(lift(t, "past_all", "policy_all") or 0.0)
        deltas.append(t["policy_rate"] - t["past_rate"])

    def interval(values: list[float]) -> list[float] | None:
        if not values:
            return None
        values = sorted(values)
        return [
            round(values[int(0.05 * len(values))], 4),
            round(values[int(0.95 * len(values)) - 1], 4),
        ]

    def rounded(value: float | None) -> float | None:
        return None if value is None else round(value, 4)

    unretried = sum(c["amount"] for c in cases if not c["retried"])
    ends = sum(1 for c in cases if c["ending"])
    external = sum(1 for c in cases if c["ending"] in EXTERNAL_ENDS)
    failed = sum(c["amount"] for c in cases)
    with_ends = bool(ends)
    return {
        "policy": policy.name,
        "model": scorer.version,
        "cases": len(cases),
        "failed_amount_minor": failed,
        # How many cases the history says the end of, and how many the customer ended (the
        # candidate's retries stop there).
        "case_ends": {"known": ends, "by_the_customer": external},
        "observed": {
            "recovered": sum(1 for c in cases if c["observed"]),
            "recovered_amount_minor": sum(c["amount"] for c in cases if c["observed"]),
            "paid_by_the_customer": sum(1 for c in cases if c["customer_paid"]),
            "paid_by_the_customer_amount_minor": sum(
                c["amount"] for c in cases if c["customer_paid"]
            ),
        },
        "past_schedule": {
            "recovery_rate": round(point["past_rate"], 4),
            "recovered_amount_minor": round(point["past_amount"]),
            "attempts_per_case": round(point["past_attempts"], 3),
            **(
                {"recovered_amount_with_customer_payments_minor": round(point["past_all"])}
                if with_ends
                else {}
            ),
            "model_estimate": {
                "recovered_amount_minor": round(point["model_amount"]),
                "note": "over the charges made only (a case recovered early shows none of "
                "its later tries): reads low by construction; a check of the model, not "
                "the baseline",
            },
        },
        # The part of the failed amount the candidate plans no retry for (it asks the
        # customer instead, or stops): what its messages bring there is not in this estimate.
        "not_retried": {
            "cases": sum(1 for c in cases if not c["retried"]),
            "amount_minor": unretried,
            "share_of_failed_amount": round(unretried / failed, 4) if failed else 0.0,
        },
        "by_lane": _by_lane(cases),
        # Charges in lanes only the customer can fix are priced at the history's own rate
        # there, not by the model (which does not learn from them).
        "customer_lane_approval_rates": {k: round(v, 4) for k, v in lane_rates.items()},
        "candidate_policy": _schedule(point, with_ends),
        "change": {
            "revenue_lift": rounded(lift(point, "past_amount", "policy_amount")),
            "revenue_lift_90pct": interval(lifts),
            # All recovered revenue, the customer's own payments included: what a simulation
            # reports as recovered. Only when the history says how cases ended.
            "all_revenue_lift": rounded(lift(point, "past_all", "policy_all"))
            if with_ends
            else None,
            "all_revenue_lift_90pct": interval(all_lifts) if with_ends else None,
            "recovery_rate_points": round(point["policy_rate"] - point["past_rate"], 4),
            "recovery_rate_points_90pct": interval(deltas),
        },
        "assumptions": [
            "attempts independent given their features",
            "charges on cards only the customer can fix: priced at the history's approval "
            "rate in that lane, not by the model",
            "notices left out, and customers act when they did: retry timing and depth only "
            f"({unretried / failed if failed else 0:.0%} of the failed amount gets no retry "
            "from the candidate: what its messages recover there is not estimated)",
            "no retry after the customer ended the case (paid, cancelled, disputed)"
            if with_ends
            else "how cases ended is not in the history: every planned retry counts, "
            "even after the customer paid or left (flatters later, deeper schedules)",
            "interval: bootstrap over cases (500 resamples), not the model's own error",
            "the candidate is priced by the model, against what happened; the model's "
            "calibration is in `dunwell scoring show`",
        ],
    }


def _by_lane(cases: list[dict[str, Any]]) -> dict[str, dict[str, Any]]:
    """Per lane of the case's first decline: where the change comes from."""
    lanes: dict[str, list[dict[str, Any]]] = defaultdict(list)
    for case in cases:
        lanes[case["lane"] or "unknown"].append(case)
    return {
        lane: {
            "cases": len(group),
            "failed_amount_minor": sum(c["amount"] for c in group),
            "past_recovered_amount_minor": round(sum(c["past"] * c["amount"] for c in group)),
            "candidate_expected_recovered_amount_minor": round(
                sum(c["policy"] * c["amount"] for c in group)
            ),
            "candidate_retries_none": sum(1 for c in group if not c["retried"]),
        }
        for lane, group in sorted(lanes.items())
    }


def _schedule(point: dict[str, float], with_ends: bool) -> dict[str, Any]:
    out: dict[str, Any] = {
        "expected_recovery_rate": round(point["policy_rate"], 4),
        "expected_recovered_amount_minor": round(point["policy_amount"]),
        "expected_attempts_per_case": round(point["policy_attempts"], 3),
    }
    if with_ends:
        out["expected_recovered_amount_with_customer_payments_minor"] = round(point["policy_all"])
    return out
