"""Learned retry timing in the core: features, the best time, and the planner's use of it."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field, replace
from datetime import UTC, date, datetime, timedelta
from zoneinfo import ZoneInfo

import pytest

from dunwell.domain.case import ActionType, Attempt, AttemptStatus
from dunwell.domain.decide import decide
from dunwell.domain.decision import Context
from dunwell.domain.events import (
    Customer,
    DeclineReport,
    PaymentFailed,
    PaymentMethod,
    Subscription,
)
from dunwell.domain.lanes import Lane
from dunwell.domain.money import Money
from dunwell.domain.policy import Align, Policy, PolicyError, parse_policy
from dunwell.domain.scoring import (
    FEATURE_NAMES,
    RetryFeatures,
    best_time,
    candidate_times,
    learned_retry_at,
    pay_note,
    retry_features,
)
from dunwell.domain.timing import RetryTime
from dunwell.policies import load_policies

pytestmark = pytest.mark.unit

BERLIN = ZoneInfo("Europe/Berlin")
POLICIES = load_policies()
SMART = POLICIES["smart"]


@dataclass
class TableScorer:
    """A scorer that answers from a function of the features: a stand-in for a model."""

    p: object
    rows: int = 10_000
    version: str = "test-1"
    calls: int = 0

    per_attempt: dict[str, int] = field(default_factory=dict)
    note: str | None = None  # what `depth_note` says (None: the attempt is within history)

    def score(self, features: Sequence[RetryFeatures]) -> list[float]:
        self.calls += 1
        return [self.p(f) for f in features]  # type: ignore[operator]

    def value_per_attempt(self, currency: str) -> int | None:
        return self.per_attempt.get(currency)

    def depth_note(self, lane: str, attempt_number: int) -> str | None:
        return None if self.note is None else f"{self.note} ({lane}, attempt {attempt_number})"


def test_features_are_what_a_deployment_sees_in_the_customers_local_time() -> None:
    f = retry_features(
        lane="retry_after_funds",
        code="Insufficient_Funds",
        amount_minor=1999,
        attempt_number=2,
        failed_at=datetime(2025, 5, 28, 10, tzinfo=UTC),
        at=datetime(2025, 6, 1, 7, 30, tzinfo=UTC),  # 09:30 in Berlin, a Sunday
        timezone="Europe/Berlin",
        brand="Visa",
        country="de",
        segment="Consumer",
    )
    assert (f.local_hour, f.weekday, f.day_of_month) == (9, 6, 1)
    assert f.hours_since_failure == pytest.approx(93.5)
    assert (f.days_since_payday, f.days_to_payday) == (0, 0)  # the 1st is a likely payday
    assert (f.code, f.brand, f.country, f.segment) == (
        "insufficient_funds",
        "visa",
        "DE",
        "consumer",
    )
    assert len(f.values()) == len(FEATURE_NAMES)


def test_payday_distance_counts_to_the_next_and_since_the_last_likely_payday() -> None:
    f = retry_features(
        lane="retry_soon",
        code=None,
        amount_minor=1,
        attempt_number=1,
        failed_at=datetime(2025, 6, 10, tzinfo=UTC),
        at=datetime(2025, 6, 10, 12, tzinfo=UTC),
        timezone=None,
        brand=None,
        country=None,
        segment=None,
    )
    assert (f.days_since_payday, f.days_to_payday) == (9, 5)  # the 1st .. the 15th


def test_a_countrys_own_payday_counts_in_the_payday_features() -> None:
    def features(country: str) -> tuple[int, int, int]:
        f = retry_features(
            lane="retry_after_funds",
            code="insufficient_funds",
            amount_minor=1,
            attempt_number=2,
            failed_at=datetime(2025, 6, 20, tzinfo=UTC),
            at=datetime(2025, 6, 27, 3, tzinfo=UTC),  # Friday 27 June, 12:00 in Tokyo
            timezone="Asia/Tokyo",
            brand=None,
            country=country,
            segment=None,
            last_try_at=datetime(2025, 6, 23, 3, tzinfo=UTC),
        )
        return f.days_since_payday, f.days_to_payday, f.month_paydays_since_last_try

    assert features("US") == (12, 3, 0)  # the 15th .. the 30th (last business day)
    assert features("JP") == (2, 3, 1)  # Wednesday the 25th passed since the last try


def test_paydays_since_the_last_try_count_fridays_and_month_paydays_apart() -> None:
    def since(last: datetime | None, at: datetime) -> tuple[float, int, int]:
        f = retry_features(
            lane="retry_after_funds",
            code="insufficient_funds",
            amount_minor=1,
            attempt_number=2,
            failed_at=datetime(2025, 5, 26, 8, tzinfo=UTC),  # a Monday
            at=at,
            timezone="America/New_York",
            brand=None,
            country="US",
            segment=None,
            last_try_at=last,
        )
        return f.hours_since_last_try, f.fridays_since_last_try, f.month_paydays_since_last_try

    # Local New York dates: Wed 28 May .. Mon 2 Jun holds Fri 30 May (the last business day)
    # and Sun 1 Jun; the Friday is counted once as a Friday and once as a month payday.
    assert since(datetime(2025, 5, 28, 14, tzinfo=UTC), datetime(2025, 6, 2, 14, tzinfo=UTC)) == (
        120.0,
        1,
        2,
    )
    # Without a try since the failure, the failure counts as the last try.
    assert since(None, datetime(2025, 5, 29, 8, tzinfo=UTC)) == (72.0, 0, 0)
    # The same local day as the last try: nothing came in between.
    assert since(datetime(2025, 5, 30, 13, tzinfo=UTC), datetime(2025, 5, 30, 20, tzinfo=UTC)) == (
        7.0,
        0,
        0,
    )


def test_candidates_are_whole_local_hours_inside_contact_hours() -> None:
    start = datetime(2025, 6, 2, 5, 20, tzinfo=UTC)  # 07:20 Berlin
    times = candidate_times(start, start + timedelta(days=1), BERLIN, (8, 20))
    local = [t.astimezone(BERLIN) for t in times]
    assert local[0].hour == 8 and local[0].minute == 0
    assert all(8 <= t.hour < 20 and t.minute == 0 for t in local)
    assert len(times) == 12  # 08..19 on the 2nd; the 3rd's 08:00 is after the window's end
    assert candidate_times(start, start - timedelta(hours=1), BERLIN, (8, 20)) == []


def test_best_time_is_the_earliest_within_tolerance_of_the_best() -> None:
    now = datetime(2025, 6, 2, 6, tzinfo=UTC)
    candidates = [now + timedelta(hours=h) for h in range(1, 6)]
    ps = {c: p for c, p in zip(candidates, [0.1, 0.39, 0.2, 0.4, 0.3], strict=True)}

    def features_at(at: datetime) -> RetryFeatures:
        return retry_features(
            lane="retry_soon",
            code="x",
            amount_minor=int(ps.get(at, 0.05) * 1000),
            attempt_number=1,
            failed_at=now,
            at=at,
            timezone=None,
            brand=None,
            country=None,
            segment=None,
        )

    scorer = TableScorer(lambda f: f.amount_minor / 1000)
    choice = best_time(now, candidates, features_at, scorer, tolerance=0.05)
    assert choice is not None
    assert (choice.at, choice.probability, choice.best_probability) == (candidates[1], 0.39, 0.4)
    assert choice.now_probability == 0.05
    strict = best_time(now, candidates, features_at, scorer, tolerance=0.0)
    assert strict is not None and strict.at == candidates[3]
    assert best_time(now, [], features_at, scorer) is None


def _failed(at: datetime, code: str = "insufficient_funds") -> PaymentFailed:
    return PaymentFailed(
        id="evt_1",
        occurred_at=at,
        invoice_id="in_1",
        customer=Customer("cus_1", timezone="Europe/Berlin", country="DE"),
        subscription=Subscription("sub_1"),
        amount=Money(1999, "EUR"),
        provider="stripe",
        payment_method=PaymentMethod("pm_1", "visa", "fp_1"),
        decline=DeclineReport(code),
    )


def _retry(decision_case: object) -> object:
    plan = decision_case.plan  # type: ignore[attr-defined]
    return next(a for a in plan if a.type is ActionType.RETRY)


def test_the_learned_lane_retries_at_the_models_best_hour_and_says_why() -> None:
    opened = datetime(2025, 6, 10, 9, tzinfo=UTC)  # a Tuesday; the 15th is a Sunday

    def p(f: RetryFeatures) -> float:  # money arrives on the 13th at 10:00 local
        return 0.6 if (f.day_of_month == 13 and f.local_hour == 10) else 0.05

    scorer = TableScorer(p)
    decision = decide(None, _failed(opened), SMART, opened, Context("t", scorer=scorer))
    retry = _retry(decision.case)
    assert retry.due_at == datetime(2025, 6, 13, 8, tzinfo=UTC)  # 10:00 in Berlin (CEST)
    assert "p=0.60 at 10:00 Europe/Berlin" in retry.reason
    assert "vs 0.05 now" in retry.reason
    assert "model test-1" in retry.rule


def test_a_retry_deeper_than_the_models_history_says_so() -> None:
    opened = datetime(2025, 6, 10, 9, tzinfo=UTC)
    within = TableScorer(lambda f: 0.3)
    plain = decide(None, _failed(opened), SMART, opened, Context("t", scorer=within))
    assert "deeper" not in _retry(plain.case).reason
    scorer = TableScorer(lambda f: 0.3, note="deeper than the history")
    decision = decide(None, _failed(opened), SMART, opened, Context("t", scorer=scorer))
    reason = _retry(decision.case).reason
    assert reason.endswith("; deeper than the history (retry_after_funds, attempt 1)")


def test_cold_start_falls_back_to_the_payday_rule() -> None:
    opened = datetime(2025, 6, 10, 9, tzinfo=UTC)
    young = TableScorer(lambda f: 0.9, rows=SMART.timing.learned_min_rows - 1)
    for ctx in (Context("t"), Context("t", scorer=young)):
        decision = decide(None, _failed(opened), SMART, opened, ctx)
        retry = _retry(decision.case)
        assert "model" not in retry.rule and "timing.payday" in retry.rule
    assert young.calls == 0


def test_policies_without_learned_lanes_never_ask_the_model() -> None:
    opened = datetime(2025, 6, 10, 9, tzinfo=UTC)
    scorer = TableScorer(lambda f: 0.9)
    for name in ("default", "baseline-fixed"):
        with_model = decide(
            None, _failed(opened), POLICIES[name], opened, Context("t", scorer=scorer)
        )
        without = decide(None, _failed(opened), POLICIES[name], opened, Context("t"))
        assert with_model.case == without.case
    assert scorer.calls == 0


def test_the_model_never_moves_a_retry_past_a_guardrail() -> None:
    # The model loves right now; the case's not_before (an advice code's wait) still rules.
    opened = datetime(2025, 6, 10, 9, tzinfo=UTC)
    scorer = TableScorer(lambda f: 0.9 if f.hours_since_failure < 30 else 0.1)
    decision = decide(None, _failed(opened), SMART, opened, Context("t", scorer=scorer))
    assert decision.case is not None
    held = replace(decision.case, not_before=opened + timedelta(days=3))
    from dunwell.domain.planning import replan

    case, notes = replan(held, SMART, opened, Context("t", scorer=scorer))
    retry = _retry(case)
    assert retry.due_at >= opened + timedelta(days=3)


def test_learned_align_is_validated() -> None:
    data = {
        "name": "x",
        "timing": {"learned_min_rows": -1, "learned_tolerance": 2},
        "lanes": {
            lane: {
                "retries": [] if lane in ("do_not_retry", "fraud_suspected") else ["1d"],
                "align": "learned",
                "end": {"after": "7d"},
            }
            for lane in (
                "retry_soon",
                "retry_after_funds",
                "update_payment_method",
                "authenticate",
                "do_not_retry",
                "fraud_suspected",
                "provider_error",
            )
        },
    }
    with pytest.raises(PolicyError) as caught:
        parse_policy(data)
    problems = "\n".join(caught.value.problems)
    assert "timing.learned_min_rows" in problems
    assert "timing.learned_tolerance" in problems
    assert "lanes.do_not_retry.align: lane do_not_retry is never retried" in problems
    assert SMART.lane(next(iter(SMART.lanes))).align in set(Align)


def _with_bars(minor: int = 0, share: float = 0.0) -> Policy:
    """`smart` with the value bars given (whatever the shipped file says), and no lane with
    a share of its own."""
    return replace(
        SMART,
        timing=replace(SMART.timing, learned_min_value_minor=minor, learned_min_value_share=share),
        lanes={k: replace(v, learned_min_value_share=None) for k, v in SMART.lanes.items()},
    )


ABSOLUTE_300 = _with_bars(minor=300)


def test_a_cheap_hopeless_case_gets_no_retry_and_a_valuable_one_does() -> None:
    opened = datetime(2025, 6, 10, 9, tzinfo=UTC)
    scorer = TableScorer(lambda f: 0.02)  # 2% at every hour
    cheap = decide(None, _failed(opened), ABSOLUTE_300, opened, Context("t", scorer=scorer))
    assert cheap.case is not None
    assert not [a for a in cheap.case.plan if a.type is ActionType.RETRY]
    why = [e.text for e in cheap.explanations if "learned_min_value_minor" in e.rule]
    assert why and "p=0.02" in why[0] and "below the bar of 300 minor units" in why[0]
    # No charge worth making: the customer is asked instead, at once, and only once (the
    # first failure's message already asks for another card; the ladder's end adds no copy).
    asks = [a for a in cheap.case.plan if a.type is ActionType.NOTICE and a.due_at == opened]
    assert [a.key for a in asks] == ["notice:failure-1:update_payment_method"]
    valuable = replace(_failed(opened), amount=Money(49_900, "EUR"))  # 0.02 x 49,900 = 998
    rich = decide(None, valuable, ABSOLUTE_300, opened, Context("t", scorer=scorer))
    assert rich.case is not None and [a for a in rich.case.plan if a.type is ActionType.RETRY]


def test_the_relative_bar_is_a_share_of_what_an_attempt_recovered_in_the_models_history() -> None:
    opened = datetime(2025, 6, 10, 9, tzinfo=UTC)
    valuable = replace(_failed(opened), amount=Money(49_900, "EUR"))  # 0.02 x 49,900 = 998
    half = _with_bars(minor=300, share=0.5)
    # A shop whose attempts recovered EUR 10 on average: the bar is 500, the charge is made.
    cheap_shop = TableScorer(lambda f: 0.02, per_attempt={"EUR": 1000})
    made = decide(None, valuable, half, opened, Context("t", scorer=cheap_shop))
    assert made.case is not None and [a for a in made.case.plan if a.type is ActionType.RETRY]
    # One whose attempts recovered EUR 40: the bar is 2,000, and the same charge is not made.
    dear_shop = TableScorer(lambda f: 0.02, per_attempt={"EUR": 4000})
    skipped = decide(None, valuable, half, opened, Context("t", scorer=dear_shop))
    assert skipped.case is not None
    assert not [a for a in skipped.case.plan if a.type is ActionType.RETRY]
    why = [e.text for e in skipped.explanations if "learned_min_value_share" in e.rule]
    assert why and "worth 998 of 49900 minor units, below the bar of 2000 minor units" in why[0]
    assert "0.5 x the 4000 EUR minor units an attempt recovered on average" in why[0]


def test_the_relative_bar_is_not_applied_without_history_in_the_cases_currency() -> None:
    opened = datetime(2025, 6, 10, 9, tzinfo=UTC)
    scorer = TableScorer(lambda f: 0.02, per_attempt={"USD": 100_000})  # no EUR attempt
    context = Context("t", scorer=scorer)
    decision = decide(None, _failed(opened), _with_bars(300, 0.5), opened, context)
    why = [e.text for e in decision.explanations if "learned_min_value_minor" in e.rule]
    assert why and "(no EUR attempt in the model's history)" in why[0]


def test_the_higher_of_the_two_bars_applies() -> None:
    opened = datetime(2025, 6, 10, 9, tzinfo=UTC)
    valuable = replace(_failed(opened), amount=Money(49_900, "EUR"))  # 998 expected
    scorer = TableScorer(lambda f: 0.02, per_attempt={"EUR": 100})  # relative bar: 50
    decision = decide(None, valuable, _with_bars(1000, 0.5), opened, Context("t", scorer=scorer))
    assert decision.case is not None
    assert not [a for a in decision.case.plan if a.type is ActionType.RETRY]
    why = [e.text for e in decision.explanations if "learned_min_value_minor" in e.rule]
    assert why and "below the bar of 1000 minor units" in why[0]


def test_a_lanes_own_share_replaces_the_policys_for_that_lane() -> None:
    opened = datetime(2025, 6, 10, 9, tzinfo=UTC)
    valuable = replace(_failed(opened), amount=Money(49_900, "EUR"))  # 0.02 x 49,900 = 998
    scorer = TableScorer(lambda f: 0.02, per_attempt={"EUR": 4000})
    half = _with_bars(share=0.5)  # the policy's bar: 2,000, so no charge (test above)
    funds = Lane.RETRY_AFTER_FUNDS
    lanes = {**half.lanes, funds: replace(half.lane(funds), learned_min_value_share=0.2)}
    decision = decide(
        None, valuable, replace(half, lanes=lanes), opened, Context("t", scorer=scorer)
    )
    assert decision.case is not None and decision.case.lane is funds
    retries = [a for a in decision.case.plan if a.type is ActionType.RETRY]
    assert retries  # the lane's bar: 0.2 x 4,000 = 800 <= 998
    # With nothing worth it even at the lane's bar, the skip names the lane's own rule.
    dear = {**half.lanes, funds: replace(half.lane(funds), learned_min_value_share=0.3)}
    skipped = decide(None, valuable, replace(half, lanes=dear), opened, Context("t", scorer=scorer))
    rules = [e.rule for e in skipped.explanations if "learned_min_value_share" in e.rule]
    assert rules and rules[0].endswith("+ policy.lanes.retry_after_funds.learned_min_value_share")


@pytest.mark.parametrize(
    ("lane", "problem"),
    [
        ({"align": "learned", "learned_min_value_share": 11}, "expected a number from 0 to"),
        ({"align": "learned", "learned_min_value_share": "x"}, "expected a number from 0 to"),
        ({"align": "payday", "learned_min_value_share": 0.3}, "only a lane with align: learned"),
    ],
)
def test_a_lanes_share_is_validated(lane: dict[str, object], problem: str) -> None:
    data = {
        "name": "x",
        "lanes": {"retry_soon": {"retries": ["1d"], "end": {"after": "10d"}, **lane}},
    }
    with pytest.raises(PolicyError) as caught:
        parse_policy(data)
    problems = "\n".join(caught.value.problems)
    assert f"lanes.retry_soon.learned_min_value_share: {problem}" in problems


@pytest.mark.parametrize("share", [-0.1, 10.5, "half", True])
def test_the_relative_bar_is_validated(share: object) -> None:
    data = {"name": "x", "timing": {"learned_min_value_share": share}, "lanes": {}}
    with pytest.raises(PolicyError) as caught:
        parse_policy(data)
    assert "timing.learned_min_value_share" in "\n".join(caught.value.problems)


def test_a_window_not_worth_a_charge_is_skipped_for_a_later_one() -> None:
    opened = datetime(2025, 6, 10, 9, tzinfo=UTC)

    def p(f: RetryFeatures) -> float:  # only from day 8 on is a charge worth it
        return 0.5 if f.hours_since_failure >= 8 * 24 else 0.01

    policy = ABSOLUTE_300
    decision = decide(None, _failed(opened), policy, opened, Context("t", scorer=TableScorer(p)))
    retry = _retry(decision.case)
    # The windows from 1d to 4d and from 4d to 7d are not worth a charge; a later one is.
    assert retry.due_at >= opened + timedelta(days=8)
    assert "earlier window(s) skipped as not worth a charge (the bar: 300 minor units)" in (
        retry.reason
    )


def test_after_a_skipped_window_the_next_is_the_ladders_next_not_a_longer_one() -> None:
    opened = datetime(2025, 6, 10, 9, tzinfo=UTC)

    def p(f: RetryFeatures) -> float:  # worth a charge from day 4; better still from day 7
        days = f.hours_since_failure / 24
        return 0.05 if days <= 4 else 0.2 if days <= 7 else 0.6

    decision = decide(
        None, _failed(opened), ABSOLUTE_300, opened, Context("t", scorer=TableScorer(p))
    )
    retry = _retry(decision.case)
    # The funds ladder's windows are 1d-4d, 4d-7d, 7d-10d, ...: the first is skipped, and the
    # retry goes in the second (0.2 x 1,999 is worth the bar), not at day 7 in a week-long
    # window after the skipped one. Day 7 keeps its own window for the next retry.
    assert opened + timedelta(days=4) < retry.due_at < opened + timedelta(days=7)
    assert "1 earlier window(s) skipped" in retry.reason
    assert "policy.lanes.retry_after_funds.retries[1]" in retry.rule


def test_a_floor_on_the_probability_stops_charges_that_will_almost_surely_fail() -> None:
    opened = datetime(2025, 6, 10, 9, tzinfo=UTC)
    valuable = replace(_failed(opened), amount=Money(49_900, "EUR"))  # 0.05 x 49,900 = 2,495
    scorer = TableScorer(lambda f: 0.05)
    floored = replace(
        ABSOLUTE_300, timing=replace(ABSOLUTE_300.timing, learned_min_probability=0.1)
    )
    without = decide(None, valuable, ABSOLUTE_300, opened, Context("t", scorer=scorer))
    assert without.case is not None and [a for a in without.case.plan if a.type is ActionType.RETRY]
    with_floor = decide(None, valuable, floored, opened, Context("t", scorer=scorer))
    assert with_floor.case is not None
    assert not [a for a in with_floor.case.plan if a.type is ActionType.RETRY]
    why = [e.text for e in with_floor.explanations if "learned_min_probability" in e.rule]
    assert why and "p=0.05, below the policy's floor of 0.10" in why[0]


@pytest.mark.parametrize("floor", [-0.1, 1, 1.5, "high"])
def test_the_probability_floor_is_validated(floor: object) -> None:
    data = {"name": "x", "timing": {"learned_min_probability": floor}, "lanes": {}}
    with pytest.raises(PolicyError) as caught:
        parse_policy(data)
    assert "timing.learned_min_probability" in "\n".join(caught.value.problems)


def test_a_decline_on_a_payday_steers_the_next_funds_retry_to_another_calendar() -> None:
    opened = datetime(2025, 6, 10, 9, tzinfo=UTC)  # a Tuesday, in Berlin

    def p(f: RetryFeatures) -> float:  # likely only once a still-open calendar has paid
        return 0.6 if f.pay_calendars_open == 3 and f.open_calendars_paid_share > 0 else 0.05

    scorer = TableScorer(p)
    case = decide(None, _failed(opened), ABSOLUTE_300, opened, Context("t", scorer=scorer)).case
    # Declined on Friday 13 June, 10:00 in Berlin: a Friday, and the 15th's payday (a
    # Sunday) paid early. Weekly, one biweekly phase and semimonthly are out; the other
    # biweekly phase (Friday 20 June), the 1st and the last business day are left.
    declined = datetime(2025, 6, 13, 8, tzinfo=UTC)
    attempt = Attempt(
        id="att_1",
        number=1,
        credential_key=case.payment_method.credential_key,
        provider="stripe",
        payment_method_token="pm_1",
        started_at=declined,
        status=AttemptStatus.FAILED,
        finished_at=declined,
    )
    case = replace(case, attempts=(attempt,), last_failure_at=declined, failures=2, plan=())
    now = declined + timedelta(minutes=1)
    funds = ABSOLUTE_300.lane(Lane.RETRY_AFTER_FUNDS)
    retry = learned_retry_at(case, funds, ABSOLUTE_300.timing, now, scorer)
    assert isinstance(retry, RetryTime)
    assert retry.due_at.astimezone(BERLIN).date() == date(2025, 6, 20)
    assert (
        "declines on paydays leave 3 of 6 usual pay calendars (biweekly_" in retry.reason
        and "monthly_1st, monthly_last_business_day); 1 of them paid 0 day(s) before"
        in retry.reason
    )
    # A decline on another card (before the customer changed it) says nothing of this one.
    other = replace(attempt, credential_key="another card")
    fresh = replace(case, attempts=(other,))
    assert pay_note(fresh, retry.due_at) is None
