"""Risk and depth: chronic failers, card-testing and fraud signals, longer grace for valued
segments, retries shifted off public holidays. Each test runs the pure core (`decide`,
`next_retry_at`) on policies parsed from YAML, at a fixed `now`."""

from __future__ import annotations

from dataclasses import replace
from datetime import UTC, datetime, timedelta
from itertools import count
from pathlib import Path
from typing import Any

import pytest
import yaml

import dunwell.policies
from dunwell.domain.case import ActionType, AttemptStatus, RecoveryCase
from dunwell.domain.decide import decide
from dunwell.domain.decision import Charge, Context, Decision, Escalate
from dunwell.domain.events import (
    ActionDue,
    Customer,
    DeclineReport,
    PaymentFailed,
    PaymentMethod,
    PaymentMethodUpdated,
    PaymentSucceeded,
    Subscription,
)
from dunwell.domain.history import CustomerHistory, CustomerSignal, PastCase, SignalKind
from dunwell.domain.lanes import Lane
from dunwell.domain.money import Money
from dunwell.domain.policy import AccessLevel, Policy, PolicyError, parse_policy
from dunwell.domain.timing import next_retry_at

pytestmark = pytest.mark.unit

POLICY_DIR = Path(dunwell.policies.__file__).parent


def policy_yaml(name: str) -> dict[str, Any]:
    data: dict[str, Any] = yaml.safe_load((POLICY_DIR / f"{name}.yaml").read_text())
    return data


DEFAULT = parse_policy(policy_yaml("default"))
BASELINE = parse_policy(policy_yaml("baseline-fixed"))

NOW = datetime(2025, 3, 4, 15, 0, tzinfo=UTC)  # a Tuesday
TENANT = "tenant_1"
CUSTOMER = Customer("cus_1", timezone="America/New_York", country="US", segment="consumer")
CARD = PaymentMethod("pm_1", brand="visa", fingerprint="fp_card_1")
AMOUNT = Money(4900, "USD")

_ids = count(1)


def failed(
    code: str = "insufficient_funds",
    *,
    at: datetime = NOW,
    customer: Customer = CUSTOMER,
    card: PaymentMethod = CARD,
    attempt_id: str | None = None,
) -> PaymentFailed:
    return PaymentFailed(
        id=f"evt_{next(_ids)}",
        occurred_at=at,
        customer=customer,
        subscription=Subscription("sub_1"),
        invoice_id="in_1",
        amount=AMOUNT,
        provider="stripe",
        payment_method=card,
        decline=DeclineReport(code),
        attempt_id=attempt_id,
    )


NO_HISTORY = CustomerHistory()


def ctx(history: CustomerHistory = NO_HISTORY) -> Context:
    return Context(TENANT, history=history)


def open_case(
    code: str = "insufficient_funds",
    *,
    history: CustomerHistory = NO_HISTORY,
    policy: Policy = DEFAULT,
    customer: Customer = CUSTOMER,
    at: datetime = NOW,
) -> Decision:
    decision = decide(None, failed(code, customer=customer, at=at), policy, at, ctx(history))
    assert decision.outcome == "opened" and decision.case is not None
    return decision


def retries(case: RecoveryCase) -> list[str]:
    return [a.key for a in case.plan if a.type is ActionType.RETRY]


def rules(decision: Decision) -> list[str]:
    return [e.rule for e in decision.explanations]


def explanation(decision: Decision, rule: str) -> Any:
    [found] = [e for e in decision.explanations if e.rule == rule]
    return found


def earlier(n: int, outcome: str = "churned", days_ago: int = 30) -> tuple[PastCase, ...]:
    return tuple(
        PastCase(f"case_old_{i}", NOW - timedelta(days=days_ago + i), outcome) for i in range(n)
    )


def signal(
    kind: SignalKind, card: str, at: datetime, case_id: str = "case_other"
) -> CustomerSignal:
    return CustomerSignal(kind, at, card, case_id, f"evt_sig_{next(_ids)}")


def run_retry(case: RecoveryCase, history: CustomerHistory) -> tuple[RecoveryCase, Decision]:
    """The planned retry falls due and is declined again."""
    [retry] = [a for a in case.plan if a.type is ActionType.RETRY]
    started = decide(
        case,
        ActionDue("due_1", retry.due_at, case.id, retry.key),
        DEFAULT,
        retry.due_at,
        ctx(history),
    )
    [charge] = [e for e in started.effects if isinstance(e, Charge)]
    assert started.case is not None
    later = retry.due_at + timedelta(seconds=5)
    declined = decide(
        started.case, failed(at=later, attempt_id=charge.attempt_id), DEFAULT, later, ctx(history)
    )
    assert declined.case is not None
    return declined.case, declined


# --- chronic failers ----------------------------------------------------------------------


def test_a_chronic_failer_gets_one_retry_and_is_asked_to_fix_the_payment_at_once() -> None:
    history = CustomerHistory(past_cases=earlier(2) + earlier(1, "recovered_by_customer"))
    decision = open_case(history=history)
    case = decision.case
    assert case is not None and case.retry_cap == 1
    why = explanation(decision, "risk.chronic")
    assert why.text.startswith(
        "customer had 3 failed renewals in 180d (2 churned, 1 recovered by customer): "
        "retries capped at 1"
    )
    assert dict(why.inputs)["earlier_cases"] == "3"
    ask = case.planned("notice:entered:update_payment_method")
    assert ask is not None and ask.due_at == NOW and ask.rule == "risk.chronic.notice"
    # The lane's own checkpoints still go out.
    assert case.planned("notice:failure-2:payment_failed_funds") is None  # not yet: 1 failure
    assert case.planned("notice:elapsed-1209600s:final_notice") is not None
    [retry] = [a for a in case.plan if a.type is ActionType.RETRY]
    assert retry.key == "retry:1" and "retry 1 of 1 for lane retry_after_funds" in retry.reason

    after, declined = run_retry(case, history)
    assert retries(after) == []
    assert (
        "retries are capped at 1 for a chronic failer" in explanation(declined, "risk.chronic").text
    )
    # The second failure's checkpoint of the lane is still planned: only the ladder is cut.
    assert after.planned("notice:failure-2:payment_failed_funds") is not None


def test_a_one_time_failer_keeps_the_whole_ladder() -> None:
    plain = open_case().case
    once = open_case(history=CustomerHistory(past_cases=earlier(1))).case
    assert plain is not None and once is not None
    assert once.retry_cap is None
    assert once.plan == plain.plan


def test_chronic_counts_only_cases_in_the_lookback_and_not_the_ignored_outcomes() -> None:
    old = earlier(3, days_ago=181)
    by_retry = earlier(3, "recovered_by_retry")
    assert open_case(history=CustomerHistory(past_cases=old)).case.retry_cap is None  # type: ignore[union-attr]
    decision = open_case(history=CustomerHistory(past_cases=by_retry + earlier(2)))
    assert decision.case.retry_cap is None  # type: ignore[union-attr]
    assert "risk.chronic" not in rules(decision)


def test_a_policy_without_an_ignore_list_counts_every_earlier_case() -> None:
    data = policy_yaml("default")
    data["risk"]["chronic"] = {"lookback": "90d", "min_cases": 2, "max_retries": 0}
    policy = parse_policy(data)
    decision = open_case(
        history=CustomerHistory(past_cases=earlier(2, "recovered_by_retry")), policy=policy
    )
    assert decision.case is not None and decision.case.retry_cap == 0
    assert retries(decision.case) == []
    capped = [e.text for e in decision.explanations if e.rule == "risk.chronic"]
    assert capped[0].startswith("customer had 2 failed renewals in 90d (2 recovered by retry)")
    assert capped[1].startswith("no retry left: 0 made, retries are capped at 0")


# --- card testing and fraud signals ---------------------------------------------------------


def test_a_third_card_declined_within_a_day_stops_charges_and_escalates() -> None:
    history = CustomerHistory(
        signals=(
            signal(SignalKind.DECLINE, "fp_a", NOW - timedelta(hours=3)),
            signal(SignalKind.DECLINE, "fp_b", NOW - timedelta(hours=1)),
        )
    )
    decision = open_case(history=history)
    case = decision.case
    assert case is not None and case.risk_hold is not None and case.escalated
    assert retries(case) == []
    why = explanation(decision, "risk.card_testing.cards_declined")
    assert dict(why.inputs) == {
        "within": "1d",
        "cards": "3",
        "min_cards": "3",
        "credentials": "fp_a,fp_b,fp_card_1",
    }
    [escalate] = [e for e in decision.effects if isinstance(e, Escalate)]
    assert escalate.reason == why.text
    # Notices are held while a human owns the case; access steps go on.
    assert [a.type for a in case.plan if a.type is ActionType.NOTICE] == []
    assert case.access is AccessLevel.GRACE and case.planned("access:limited") is not None


def test_declines_of_other_cards_outside_the_window_do_not_trip() -> None:
    history = CustomerHistory(
        signals=(
            signal(SignalKind.DECLINE, "fp_a", NOW - timedelta(hours=30)),
            signal(SignalKind.DECLINE, "fp_b", NOW - timedelta(hours=1)),
        )
    )
    decision = open_case(history=history)
    assert decision.case is not None and decision.case.risk_hold is None
    assert retries(decision.case) == ["retry:1"]


def test_a_burst_of_card_updates_followed_by_declines_stops_charges_for_good() -> None:
    case = open_case().case
    assert case is not None
    updates = tuple(
        signal(SignalKind.CARD_UPDATE, "fp_new", NOW + timedelta(hours=h), case.id)
        for h in (1, 2, 3)
    )
    first_decline = signal(SignalKind.DECLINE, "fp_card_1", NOW + timedelta(hours=3, minutes=30))
    two_updates = CustomerHistory(signals=updates[:2] + (first_decline,))
    at = NOW + timedelta(hours=4)
    calm = decide(case, failed(at=at), DEFAULT, at, ctx(two_updates))
    assert calm.case is not None and calm.case.risk_hold is None

    history = CustomerHistory(signals=(*updates, first_decline))
    decision = decide(case, failed(at=at), DEFAULT, at, ctx(history))
    held = decision.case
    assert held is not None and held.risk_hold is not None
    why = explanation(decision, "risk.card_testing.card_updates")
    assert dict(why.inputs)["card_updates"] == "3"
    assert dict(why.inputs)["declines_after"] == "2"
    assert why.text.startswith("3 card updates within 1d, followed by 2 declines")
    assert any(isinstance(e, Escalate) for e in decision.effects)

    # Even a customer's card update does not bring charges back: a human decides.
    later = at + timedelta(hours=1)
    update = PaymentMethodUpdated(
        "evt_upd", later, CUSTOMER.id, PaymentMethod("pm_9", "visa", "fp_9")
    )
    after = decide(held, update, DEFAULT, later, ctx(history))
    assert after.case is not None and retries(after.case) == []
    assert "risk.hold" in rules(after)
    assert [s.kind for s in after.signals] == [SignalKind.CARD_UPDATE]
    assert not any(isinstance(e, Escalate) for e in after.effects)  # escalated once


@pytest.mark.parametrize("kind", [SignalKind.FRAUD_DECLINE, SignalKind.DISPUTE])
def test_a_fraud_decline_or_dispute_on_an_earlier_case_stops_charges(kind: SignalKind) -> None:
    history = CustomerHistory(
        signals=(signal(kind, "fp_other", NOW - timedelta(days=40), "case_before"),)
    )
    decision = open_case(history=history)
    assert decision.case is not None and decision.case.risk_hold is not None
    assert retries(decision.case) == []
    why = explanation(decision, "risk.card_testing.prior_fraud")
    assert dict(why.inputs) == {
        "lookback": "365d",
        "case_id": "case_before",
        "signal": kind.value,
        "at": (NOW - timedelta(days=40)).isoformat(),
    }


def test_a_fraud_signal_of_the_same_case_or_older_than_the_lookback_does_not_count() -> None:
    own = open_case().case
    assert own is not None
    history = CustomerHistory(
        signals=(
            signal(SignalKind.FRAUD_DECLINE, "fp_card_1", NOW - timedelta(hours=1), own.id),
            signal(SignalKind.DISPUTE, "fp_x", NOW - timedelta(days=400), "case_ancient"),
        )
    )
    decision = open_case(history=history)
    assert decision.case is not None and decision.case.risk_hold is None


def test_every_decline_card_update_and_dispute_becomes_a_signal() -> None:
    fraud = open_case("fraudulent")
    assert [(s.kind, s.credential_key) for s in fraud.signals] == [
        (SignalKind.FRAUD_DECLINE, "fp_card_1")
    ]
    plain = open_case()
    assert [s.kind for s in plain.signals] == [SignalKind.DECLINE]
    assert plain.signals[0].case_id == plain.case.id  # type: ignore[union-attr]


def test_an_escalated_segment_with_a_risk_hold_is_escalated_once_with_the_risk_reason() -> None:
    enterprise = replace(CUSTOMER, segment="enterprise")
    history = CustomerHistory(
        signals=(signal(SignalKind.DISPUTE, "fp_other", NOW - timedelta(days=3)),)
    )
    decision = open_case(history=history, customer=enterprise)
    [escalate] = [e for e in decision.effects if isinstance(e, Escalate)]
    assert escalate.reason.startswith("an earlier case of this customer (case_other) had a dispute")
    assert "policy.escalation" in rules(decision)


# --- longer grace for valued segments -------------------------------------------------------


def test_a_premium_customer_gets_seven_more_days_of_grace() -> None:
    premium = replace(CUSTOMER, segment="premium")
    decision = open_case(customer=premium)
    case = decision.case
    assert case is not None
    limited, end = case.planned("access:limited"), case.planned("end")
    assert limited is not None and end is not None
    assert limited.due_at == NOW + timedelta(days=14 + 7)
    assert end.due_at == NOW + timedelta(days=21 + 7)
    assert "14d + 7d grace for segment premium after the first failure" in limited.reason
    assert end.rule == "policy.lanes.retry_after_funds.end + policy.grace"
    why = explanation(decision, "policy.grace.extend.premium")
    assert dict(why.inputs) == {"segment": "premium", "extension": "7d"}

    consumer = open_case().case
    assert consumer is not None
    assert consumer.planned("end").due_at == NOW + timedelta(days=21)  # type: ignore[union-attr]


def test_an_enterprise_customer_gets_longer_grace_and_a_human() -> None:
    decision = open_case(customer=replace(CUSTOMER, segment="enterprise"))
    case = decision.case
    assert case is not None and case.escalated
    assert case.planned("end").due_at == NOW + timedelta(days=21 + 14)  # type: ignore[union-attr]
    assert any(isinstance(e, Escalate) for e in decision.effects)


# --- how a case was recovered ---------------------------------------------------------------


def test_a_recovery_after_a_card_update_is_the_customers_and_one_by_a_retry_is_the_retrys() -> None:
    case = open_case().case
    assert case is not None
    at = NOW + timedelta(hours=1)
    update = PaymentMethodUpdated("evt_u", at, CUSTOMER.id, PaymentMethod("pm_2", "visa", "fp_2"))
    fixed = decide(case, update, DEFAULT, at, ctx()).case
    assert fixed is not None
    paid = PaymentSucceeded("evt_p", at + timedelta(hours=1), "in_1", AMOUNT)
    by_customer = decide(fixed, paid, DEFAULT, at + timedelta(hours=1), ctx())
    assert by_customer.case is not None and by_customer.case.recovered_by == "customer"

    [retry] = [a for a in case.plan if a.type is ActionType.RETRY]
    started = decide(
        case, ActionDue("due_r", retry.due_at, case.id, retry.key), DEFAULT, retry.due_at, ctx()
    )
    assert started.case is not None
    attempt = started.case.attempts[-1]
    assert attempt.status is AttemptStatus.IN_FLIGHT
    ok = PaymentSucceeded("evt_ok", retry.due_at, "in_1", AMOUNT, attempt_id=attempt.id)
    by_retry = decide(started.case, ok, DEFAULT, retry.due_at, ctx())
    assert by_retry.case is not None and by_retry.case.recovered_by == "retry"
    assert "recovered by retry" in explanation(by_retry, "case.recovered").text


# --- holidays -------------------------------------------------------------------------------

BERLIN_CUSTOMER = Customer("cus_de", timezone="Europe/Berlin", country="DE")
# Tuesday 23 December 2025, 10:00 in Berlin: the funds lane's first retry (2d) lands on
# Christmas Day, the next day is a holiday too, then a weekend.
BEFORE_CHRISTMAS = datetime(2025, 12, 23, 9, 0, tzinfo=UTC)


def test_a_retry_landing_on_a_public_holiday_moves_to_the_next_business_day_morning() -> None:
    lane = DEFAULT.lane(Lane.RETRY_AFTER_FUNDS)
    timed = next_retry_at(
        BEFORE_CHRISTMAS, 0, lane, DEFAULT.timing, "Europe/Berlin", "retry_after_funds", "DE"
    )
    assert timed is not None
    assert timed.due_at == datetime(2025, 12, 29, 7, 0, tzinfo=UTC)  # Monday 08:00 Berlin
    assert "moved from 2025-12-25 (Christmas Day, a public holiday in DE)" in timed.reason
    assert "to the next business day 2025-12-29" in timed.reason
    assert timed.rule.endswith("+ timing.holidays")

    # Through decide: the planned retry is the shifted one, and it keeps its place (retry 1).
    case = open_case(customer=BERLIN_CUSTOMER, at=BEFORE_CHRISTMAS).case
    assert case is not None
    [retry] = [a for a in case.plan if a.type is ActionType.RETRY]
    assert (retry.key, retry.due_at) == ("retry:1", timed.due_at)


def test_a_holiday_elsewhere_or_a_normal_day_leaves_the_retry_where_it_was() -> None:
    lane = DEFAULT.lane(Lane.RETRY_AFTER_FUNDS)
    # 25 December is a holiday in the US too, 26 December is not.
    us = next_retry_at(
        BEFORE_CHRISTMAS + timedelta(days=1),
        0,
        lane,
        DEFAULT.timing,
        "Europe/Berlin",
        "retry_after_funds",
        "US",
    )
    assert us is not None and us.due_at == datetime(2025, 12, 26, 9, 0, tzinfo=UTC)
    assert "holiday" not in us.reason
    plain = next_retry_at(NOW, 0, lane, DEFAULT.timing, "Europe/Berlin", "x", None)
    assert plain is not None and "holiday" not in plain.reason


def test_holidays_are_off_for_align_none_and_in_the_naive_baseline() -> None:
    assert BASELINE.timing.holidays is False
    baseline = open_case(
        customer=BERLIN_CUSTOMER, at=BEFORE_CHRISTMAS - timedelta(days=1), policy=BASELINE
    ).case
    assert baseline is not None
    [retry] = [a for a in baseline.plan if a.type is ActionType.RETRY]
    assert retry.due_at == datetime(2025, 12, 25, 9, 0, tzinfo=UTC)  # 3d later: Christmas

    on = replace(DEFAULT.timing, holidays=True)
    none_lane = DEFAULT.lane(Lane.PROVIDER_ERROR)  # align: none
    christmas_eve = datetime(2025, 12, 24, 23, 0, tzinfo=UTC)
    timed = next_retry_at(christmas_eve, 0, none_lane, on, "Europe/Berlin", "x", "DE")
    assert timed is not None and timed.due_at == christmas_eve + timedelta(hours=1)


# --- validation -------------------------------------------------------------------------------


def test_risk_grace_and_holiday_settings_are_validated_with_their_paths() -> None:
    data = policy_yaml("default")
    data["timing"]["holidays"] = "yes"
    data["grace"] = {"extend": {"premium": "7x"}, "segments": []}
    data["risk"] = {
        "chronic": {"lookback": "180d", "min_cases": 0, "ignore": ["lost"], "notice": {}},
        "card_testing": {
            "cards_declined": {"within": "1d", "min_cards": 1},
            "card_updates": {"within": "soon", "min_updates": 3, "min_declines": 2},
            "velocity": {},
        },
    }
    with pytest.raises(PolicyError) as raised:
        parse_policy(data)
    problems = "\n".join(raised.value.problems)
    for path in (
        "timing.holidays: expected true or false",
        "grace.segments: unknown field",
        "grace.extend.premium: '7x' is not a duration",
        "risk.chronic.min_cases: required, an integer >= 1",
        "risk.chronic.max_retries: required, an integer >= 0",
        "risk.chronic.ignore[0]: expected one of",
        "risk.chronic.notice.template: required",
        "risk.card_testing.velocity: unknown field",
        "risk.card_testing.cards_declined.min_cards: required, an integer >= 2",
        "risk.card_testing.card_updates.within: 'soon' is not a duration",
    ):
        assert path in problems, path


def test_the_default_policy_turns_the_risk_rules_on_as_documented() -> None:
    chronic = DEFAULT.risk.chronic
    assert chronic is not None
    assert (chronic.lookback, chronic.min_cases, chronic.max_retries) == (
        timedelta(days=180),
        3,
        1,
    )
    assert chronic.ignore == {"recovered_by_retry"}
    assert DEFAULT.risk.card_testing.horizon() == timedelta(days=365)
    assert DEFAULT.grace.extend == {"enterprise": timedelta(days=14), "premium": timedelta(days=7)}
    assert DEFAULT.timing.holidays is True


# --- asking the customer when the ladder is over ------------------------------------------


def test_when_the_ladder_runs_out_the_customer_is_asked_instead_once() -> None:
    data = policy_yaml("default")
    funds = data["lanes"]["retry_after_funds"]
    funds["retries"] = ["1d"]
    funds["align"] = "none"
    funds["notices"] = [
        {"when": "retries_exhausted", "template": "update_payment_method", "channel": "email"}
    ]
    policy = parse_policy(data)
    opened = open_case(policy=policy).case
    assert opened is not None and retries(opened) == ["retry:1"]
    assert opened.planned("notice:retries-exhausted:update_payment_method") is None  # one left

    [retry] = [a for a in opened.plan if a.type is ActionType.RETRY]
    started = decide(
        opened, ActionDue("due_1", retry.due_at, opened.id, retry.key), policy, retry.due_at, ctx()
    )
    assert started.case is not None
    # While the charge is in flight the ladder is not over: its outcome replans.
    assert started.case.planned("notice:retries-exhausted:update_payment_method") is None
    [charge] = [e for e in started.effects if isinstance(e, Charge)]
    later = retry.due_at + timedelta(seconds=5)
    declined = decide(
        started.case, failed(at=later, attempt_id=charge.attempt_id), policy, later, ctx()
    )
    assert declined.case is not None and retries(declined.case) == []
    ask = declined.case.planned("notice:retries-exhausted:update_payment_method")
    assert ask is not None and ask.due_at == later
    assert "no retry is left on the ladder" in ask.reason


def test_the_end_of_the_ladder_does_not_repeat_what_the_customer_was_just_asked() -> None:
    data = policy_yaml("default")
    funds = data["lanes"]["retry_after_funds"]
    funds["retries"] = ["1d"]
    funds["align"] = "none"
    ask_again = {"template": "update_payment_method", "channel": "email"}
    funds["notices"] = [  # the end of the ladder listed first: the order must not matter
        {"when": "retries_exhausted", **ask_again},
        {"when": "failure", "count": 2, **ask_again},
    ]
    policy = parse_policy(data)
    opened = open_case(policy=policy).case
    assert opened is not None
    [retry] = [a for a in opened.plan if a.type is ActionType.RETRY]
    started = decide(
        opened, ActionDue("due_1", retry.due_at, opened.id, retry.key), policy, retry.due_at, ctx()
    )
    assert started.case is not None
    [charge] = [e for e in started.effects if isinstance(e, Charge)]
    later = retry.due_at + timedelta(seconds=5)
    declined = decide(
        started.case, failed(at=later, attempt_id=charge.attempt_id), policy, later, ctx()
    )
    assert declined.case is not None and retries(declined.case) == []
    # The second failure's checkpoint asks now; the same message twice at once would be noise.
    asked = [a for a in declined.case.plan if a.type is ActionType.NOTICE and a.due_at == later]
    assert [a.key for a in asked] == ["notice:failure-2:update_payment_method"]


def test_retries_exhausted_is_a_known_checkpoint_kind_and_others_are_refused() -> None:
    data = policy_yaml("default")
    data["lanes"]["retry_soon"]["notices"] = [{"when": "ladder_done", "template": "x"}]
    with pytest.raises(PolicyError, match="retries_exhausted"):
        parse_policy(data)
