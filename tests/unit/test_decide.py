"""Scenarios for `decide(case, event, policy, now, ctx)`, each named as the sentence it checks.

Every test builds canonical events, calls the pure core at a fixed `now`, and looks at the
decision: the new case, its plan, the effects and the ledger changes. No clock, no I/O.
"""

from __future__ import annotations

import uuid
from dataclasses import replace
from datetime import UTC, datetime, timedelta
from itertools import count
from zoneinfo import ZoneInfo

import pytest

from dunwell.domain.case import (
    ActionType,
    AttemptStatus,
    CaseStatus,
    PlannedAction,
    RecoveryCase,
    Stage,
    case_id_for,
    child_id,
)
from dunwell.domain.decide import decide
from dunwell.domain.decision import (
    ChangeAccess,
    Charge,
    Context,
    Decision,
    Escalate,
    SendNotice,
)
from dunwell.domain.events import (
    ActionDue,
    AttemptErrored,
    Customer,
    CustomerAuthenticated,
    DeclineReport,
    DisputeOpened,
    NoticeDelivered,
    PaymentFailed,
    PaymentMethod,
    PaymentMethodUpdated,
    PaymentSucceeded,
    Subscription,
    SubscriptionCanceled,
)
from dunwell.domain.guardrails import NetworkLimits, check_attempt
from dunwell.domain.lanes import Lane
from dunwell.domain.ledger import AttemptLedger, LedgerEntry
from dunwell.domain.money import Money
from dunwell.domain.policy import AccessLevel, Policy
from dunwell.policies import load_policies

pytestmark = pytest.mark.unit

POLICIES = load_policies()
DEFAULT = POLICIES["default"]
BASELINE = POLICIES["baseline-fixed"]

NOW = datetime(2025, 3, 4, 15, 0, tzinfo=UTC)  # a Tuesday, 10:00 in New York
TENANT = "tenant_1"
CUSTOMER = Customer("cus_1", email="ada@example.com", timezone="America/New_York")
# The default policy gives this segment 7 days more: its grace step is not due at opening.
PREMIUM = Customer("cus_1", timezone="America/New_York", segment="premium")
SUBSCRIPTION = Subscription("sub_1", plan="pro")
CARD = PaymentMethod("pm_1", brand="visa", fingerprint="fp_card_1")
NEW_CARD = PaymentMethod("pm_2", brand="mastercard", fingerprint="fp_card_2")
AMOUNT = Money(4900, "USD")
INVOICE = "in_1"

_ids = count(1)


def _id(prefix: str) -> str:
    return f"{prefix}_{next(_ids)}"


def failed(
    code: str | None = "insufficient_funds",
    *,
    at: datetime = NOW,
    attempt_id: str | None = None,
    advice: str | None = None,
    network: str | None = None,
    card: PaymentMethod = CARD,
    customer: Customer = CUSTOMER,
    amount: Money = AMOUNT,
) -> PaymentFailed:
    return PaymentFailed(
        id=_id("evt"),
        occurred_at=at,
        customer=customer,
        subscription=SUBSCRIPTION,
        invoice_id=INVOICE,
        amount=amount,
        provider="stripe",
        payment_method=card,
        decline=DeclineReport(code, network, advice),
        attempt_id=attempt_id,
    )


def succeeded(at: datetime = NOW, attempt_id: str | None = None) -> PaymentSucceeded:
    return PaymentSucceeded(
        _id("evt"), at, INVOICE, AMOUNT, "stripe", CUSTOMER.id, attempt_id=attempt_id
    )


def due(case: RecoveryCase, key: str, at: datetime) -> ActionDue:
    return ActionDue(_id("due"), at, case.id, key)


EMPTY = AttemptLedger()


def ctx(ledger: AttemptLedger = EMPTY, **kw: object) -> Context:
    return Context(TENANT, ledger, **kw)  # type: ignore[arg-type]


def open_case(code: str = "insufficient_funds", policy: Policy = DEFAULT, **kw: object) -> Decision:
    decision = decide(None, failed(code, **kw), policy, NOW, ctx())  # type: ignore[arg-type]
    assert decision.outcome == "opened"
    assert decision.case is not None
    return decision


def planned(case: RecoveryCase, kind: ActionType) -> list[PlannedAction]:
    return [a for a in case.plan if a.type is kind]


def retry_of(case: RecoveryCase) -> PlannedAction | None:
    [retry] = planned(case, ActionType.RETRY) or [None]
    return retry


def with_ledger(ledger: AttemptLedger, decision: Decision) -> AttemptLedger:
    for entry in decision.ledger_entries:
        ledger = ledger.with_entry(entry)
    for attempt_id in decision.ledger_uncount:
        ledger = ledger.uncount(attempt_id)
    return ledger


def start_retry(case: RecoveryCase, ledger: AttemptLedger) -> tuple[Decision, Charge]:
    retry = retry_of(case)
    assert retry is not None
    decision = decide(case, due(case, retry.key, retry.due_at), DEFAULT, retry.due_at, ctx(ledger))
    charges = [e for e in decision.effects if isinstance(e, Charge)]
    assert len(charges) == 1
    return decision, charges[0]


# --- opening ----------------------------------------------------------------------------------


def test_insufficient_funds_opens_a_retry_after_funds_case_with_a_future_retry() -> None:
    decision = open_case("insufficient_funds")
    case = decision.case
    assert case is not None
    assert case.id == case_id_for(TENANT, INVOICE)
    assert case.status is CaseStatus.OPEN
    assert case.lane is Lane.RETRY_AFTER_FUNDS
    assert case.stage is Stage.RETRYING
    assert case.failures == 1
    retry = retry_of(case)
    assert retry is not None
    assert retry.key == "retry:1"
    assert retry.due_at > NOW
    assert retry.rule.startswith("policy.lanes.retry_after_funds.retries[0]")
    assert "retry 1 of 4 for lane retry_after_funds" in retry.reason
    # The first failure is an attempt the networks count.
    [entry] = decision.ledger_entries
    assert (entry.credential_key, entry.attempted_at, entry.attempt_id) == ("fp_card_1", NOW, None)
    assert [e.rule for e in decision.explanations][:2] == ["case.open", "declines.classify"]
    # The lane's grace step is due at once: taken with the decision, not planned.
    assert decision.effects == (ChangeAccess(case.id, "cus_1", "sub_1", AccessLevel.GRACE),)


def test_the_same_invoice_always_gets_the_same_case_id() -> None:
    assert open_case().case.id == open_case().case.id  # type: ignore[union-attr]
    assert case_id_for(TENANT, "in_1") != case_id_for("tenant_2", "in_1")


@pytest.mark.parametrize(
    ("tenant", "invoice"), [("", ""), ("t", "in_1"), ("sim", "in_42\x1fx"), ("t", "zahlung-ü-€")]
)
def test_ids_are_the_first_24_hex_digits_of_a_name_based_uuid(tenant: str, invoice: str) -> None:
    # As they were when built with `uuid.uuid5` (ids in stores written before stay valid).
    namespace = uuid.UUID("5d0c8f1e-64f4-4c55-9d5b-0a4a9e1f7c21")
    name = f"{tenant}\x1f{invoice}"
    assert case_id_for(tenant, invoice) == "case_" + uuid.uuid5(namespace, name).hex[:24]
    child = uuid.uuid5(namespace, f"{name}\x1fatt\x1f3").hex[:24]
    assert child_id("att", name, 3) == "att_" + child


def test_a_case_opens_in_grace_and_plans_the_later_access_steps() -> None:
    decision = open_case("insufficient_funds")
    case = decision.case
    assert case is not None
    # The step due at once (`after: 0m`) is taken by the opening decision, with its reason.
    assert case.access is AccessLevel.GRACE
    assert ChangeAccess(case.id, "cus_1", "sub_1", AccessLevel.GRACE) in decision.effects
    [why] = [e for e in decision.explanations if e.rule == "policy.lanes.retry_after_funds.access"]
    assert why.text == "due: access becomes grace 0s after the first failure"
    [limited] = planned(case, ActionType.ACCESS)
    assert (limited.key, limited.due_at) == ("access:limited", NOW + timedelta(days=14))
    assert case.planned("end").due_at == NOW + timedelta(days=21)  # type: ignore[union-attr]


def test_a_segment_with_longer_grace_opens_with_full_access_and_plans_its_grace_step() -> None:
    decision = open_case("insufficient_funds", customer=PREMIUM)
    case = decision.case
    assert case is not None and case.access is AccessLevel.FULL
    assert not [e for e in decision.effects if isinstance(e, ChangeAccess)]
    [grace, limited] = planned(case, ActionType.ACCESS)
    assert (grace.key, grace.due_at) == ("access:grace", NOW + timedelta(days=7))
    assert (limited.key, limited.due_at) == ("access:limited", NOW + timedelta(days=21))


def test_a_failure_reported_late_opens_with_every_access_step_already_due_taken() -> None:
    # Reported 15 days after it happened: grace (0m) and limited (14d) are both past.
    late = decide(None, failed(at=NOW - timedelta(days=15)), DEFAULT, NOW, ctx())
    case = late.case
    assert case is not None and case.access is AccessLevel.LIMITED
    levels = [e.level for e in late.effects if isinstance(e, ChangeAccess)]
    assert levels == [AccessLevel.GRACE, AccessLevel.LIMITED]  # in order, as due actions were
    assert planned(case, ActionType.ACCESS) == []
    assert case.planned("end").due_at == NOW + timedelta(days=6)  # type: ignore[union-attr]


def test_an_unknown_decline_code_opens_a_retry_soon_case_and_says_it_was_unknown() -> None:
    decision = open_case("a_code_nobody_has_seen")
    assert decision.case.lane is Lane.RETRY_SOON  # type: ignore[union-attr]
    assert "declines.unknown_code" in [e.rule for e in decision.explanations]


def test_retries_land_in_the_customers_local_hours() -> None:
    # 6h after 15:00 UTC is 21:00 UTC, 16:00 in New York: inside 08-20, so it is kept.
    case = open_case("do_not_honor").case
    assert case is not None
    retry = retry_of(case)
    assert retry is not None
    local = retry.due_at.astimezone(ZoneInfo("America/New_York"))
    assert retry.due_at == NOW + timedelta(hours=6)
    assert 8 <= local.hour < 20
    assert "America/New_York" in retry.reason


# --- recovery ---------------------------------------------------------------------------------


def test_a_payment_succeeded_recovers_the_case_clears_the_plan_and_restores_full_access() -> None:
    case = open_case().case
    assert case is not None and case.access is AccessLevel.GRACE

    paid_at = NOW + timedelta(hours=3)
    decision = decide(case, succeeded(paid_at), DEFAULT, paid_at, ctx())
    recovered = decision.case
    assert decision.outcome == "closed"
    assert recovered is not None
    assert recovered.status is CaseStatus.RECOVERED
    assert recovered.plan == ()
    assert recovered.stage is None
    assert recovered.access is AccessLevel.FULL
    assert recovered.closed_at == paid_at
    assert recovered.recovered_amount == AMOUNT
    assert decision.effects == (ChangeAccess(case.id, "cus_1", "sub_1", AccessLevel.FULL),)


def test_a_recovery_with_access_still_full_changes_no_access() -> None:
    case = open_case(customer=PREMIUM).case
    assert case is not None and case.access is AccessLevel.FULL
    decision = decide(case, succeeded(), DEFAULT, NOW, ctx())
    assert decision.case.status is CaseStatus.RECOVERED  # type: ignore[union-attr]
    assert decision.effects == ()


def test_a_success_before_any_failure_is_remembered_and_a_later_failure_opens_no_case() -> None:
    paid = decide(None, succeeded(NOW), DEFAULT, NOW, ctx())
    assert paid.outcome == "ignored"
    assert paid.case is None
    assert paid.invoice_paid is True

    late = NOW + timedelta(minutes=2)
    decision = decide(None, failed(at=late), DEFAULT, late, ctx(invoice_paid_at=NOW))
    assert decision.outcome == "ignored"
    assert decision.case is None
    assert decision.ledger_entries == ()
    assert decision.effects == ()
    assert decision.explanations[0].rule == "ingest.invoice_already_paid"


def test_a_failure_for_a_recovered_case_is_ignored() -> None:
    case = decide(open_case().case, succeeded(), DEFAULT, NOW, ctx()).case
    later = NOW + timedelta(days=1)
    decision = decide(case, failed("do_not_honor", at=later), DEFAULT, later, ctx())
    assert decision.outcome == "ignored"
    assert decision.case == case
    assert decision.effects == ()
    assert decision.ledger_entries == ()


def test_a_payment_after_the_case_churned_still_recovers_it_and_says_it_was_late() -> None:
    case = open_case().case
    assert case is not None
    end = case.planned("end")
    assert end is not None
    churned = decide(case, due(case, "end", end.due_at), DEFAULT, end.due_at, ctx()).case
    later = end.due_at + timedelta(days=1)
    decision = decide(churned, succeeded(later), DEFAULT, later, ctx())
    assert decision.case.status is CaseStatus.RECOVERED  # type: ignore[union-attr]
    assert "case.late_payment" in [e.rule for e in decision.explanations]
    assert decision.effects == (ChangeAccess(case.id, "cus_1", "sub_1", AccessLevel.FULL),)


# --- customer-action lanes --------------------------------------------------------------------


def test_an_expired_card_opens_awaiting_customer_with_an_entered_notice_now_and_no_retry() -> None:
    case = open_case("expired_card").case
    assert case is not None
    assert case.lane is Lane.UPDATE_PAYMENT_METHOD
    assert case.stage is Stage.AWAITING_CUSTOMER
    assert retry_of(case) is None
    entered = case.planned("notice:entered:update_payment_method")
    assert entered is not None
    assert entered.due_at == NOW
    assert entered.param("channel") == "email"


def test_a_payment_method_update_on_an_awaiting_case_plans_an_immediate_retry() -> None:
    case = open_case("expired_card").case
    at = NOW + timedelta(hours=2)
    event = PaymentMethodUpdated(_id("evt"), at, "cus_1", NEW_CARD)
    decision = decide(case, event, DEFAULT, at, ctx())
    updated = decision.case
    assert updated is not None
    assert updated.payment_method == NEW_CARD
    assert updated.lane is Lane.RETRY_SOON
    assert updated.stage is Stage.RETRYING
    retry = retry_of(updated)
    assert retry is not None
    assert retry.due_at == at + DEFAULT.timing.customer_fix_delay
    assert retry.rule == "policy.timing.customer_fix_delay"


def test_the_same_payment_method_again_is_not_an_update() -> None:
    case = open_case("expired_card").case
    event = PaymentMethodUpdated(_id("evt"), NOW, "cus_1", CARD)
    assert decide(case, event, DEFAULT, NOW, ctx()).outcome == "ignored"


def test_an_authentication_on_an_authenticate_case_plans_an_immediate_retry() -> None:
    case = open_case("authentication_required").case
    assert case is not None
    assert case.stage is Stage.AWAITING_CUSTOMER
    at = NOW + timedelta(hours=1)
    decision = decide(case, CustomerAuthenticated(_id("evt"), at, "cus_1"), DEFAULT, at, ctx())
    retry = retry_of(decision.case)  # type: ignore[arg-type]
    assert retry is not None
    assert retry.due_at == at + timedelta(minutes=5)


def test_an_authentication_means_nothing_to_a_case_that_does_not_wait_for_one() -> None:
    case = open_case("insufficient_funds").case
    decision = decide(case, CustomerAuthenticated(_id("evt"), NOW, "cus_1"), DEFAULT, NOW, ctx())
    assert decision.outcome == "ignored"
    assert decision.explanations[0].rule == "case.not_authenticate"


# --- attempts ---------------------------------------------------------------------------------


def test_an_action_due_on_a_retry_charges_once_with_the_attempt_id_as_idempotency_key() -> None:
    opened = open_case("do_not_honor")
    ledger = with_ledger(AttemptLedger(), opened)
    case = opened.case
    assert case is not None
    decision, charge = start_retry(case, ledger)
    attempting = decision.case
    assert attempting is not None
    [attempt] = attempting.attempts
    assert decision.effects == (charge,)
    assert charge.idempotency_key == charge.attempt_id == attempt.id
    assert (charge.amount, charge.payment_method, charge.invoice_id) == (AMOUNT, CARD, INVOICE)
    assert attempting.in_flight == attempt
    assert attempt.status is AttemptStatus.IN_FLIGHT
    assert attempt.number == 1
    assert retry_of(attempting) is None  # nothing more while one is in flight
    assert attempting.stage is Stage.RETRYING
    [entry] = decision.ledger_entries
    assert (entry.attempt_id, entry.counted) == (attempt.id, True)


def test_a_second_action_due_for_the_same_key_is_ignored() -> None:
    opened = open_case("do_not_honor")
    case = opened.case
    assert case is not None
    retry = retry_of(case)
    assert retry is not None
    first, _ = start_retry(case, with_ledger(AttemptLedger(), opened))
    again = decide(first.case, due(case, retry.key, retry.due_at), DEFAULT, retry.due_at, ctx())
    assert again.outcome == "ignored"
    assert again.effects == ()
    assert again.ledger_entries == ()
    assert again.case == first.case


def test_an_attempts_decline_updates_the_lane_and_replans() -> None:
    opened = open_case("do_not_honor")
    ledger = with_ledger(AttemptLedger(), opened)
    started, charge = start_retry(opened.case, ledger)  # type: ignore[arg-type]
    ledger = with_ledger(ledger, started)
    at = started.case.attempts[0].started_at + timedelta(seconds=3)  # type: ignore[union-attr]
    outcome = failed("insufficient_funds", at=at, attempt_id=charge.attempt_id)
    decision = decide(started.case, outcome, DEFAULT, at, ctx(ledger))
    case = decision.case
    assert decision.outcome == "updated"
    assert case is not None
    assert case.lane is Lane.RETRY_AFTER_FUNDS
    assert case.failures == 2
    assert case.attempts[0].status is AttemptStatus.FAILED
    assert case.attempts[0].provider_code == "insufficient_funds"
    assert case.in_flight is None
    # The charge was already in the ledger when it started: the outcome adds nothing.
    assert decision.ledger_entries == ()
    retry = retry_of(case)
    assert retry is not None
    assert retry.key == "retry:2"
    assert retry.rule.startswith("policy.lanes.retry_after_funds.retries[1]")
    assert retry.due_at > at
    # Two failures is the funds lane's notice checkpoint.
    assert case.planned("notice:failure-2:payment_failed_funds") is not None


def test_an_attempt_declined_as_expired_moves_the_case_to_awaiting_customer() -> None:
    opened = open_case("do_not_honor")
    started, charge = start_retry(opened.case, with_ledger(AttemptLedger(), opened))  # type: ignore[arg-type]
    at = started.case.attempts[0].started_at  # type: ignore[union-attr]
    decision = decide(
        started.case,
        failed("expired_card", at=at, attempt_id=charge.attempt_id),
        DEFAULT,
        at,
        ctx(),
    )
    assert decision.case.lane is Lane.UPDATE_PAYMENT_METHOD  # type: ignore[union-attr]
    assert decision.case.stage is Stage.AWAITING_CUSTOMER  # type: ignore[union-attr]
    assert retry_of(decision.case) is None  # type: ignore[arg-type]


def test_an_outcome_for_an_attempt_already_settled_is_ignored() -> None:
    opened = open_case("do_not_honor")
    started, charge = start_retry(opened.case, with_ledger(AttemptLedger(), opened))  # type: ignore[arg-type]
    at = started.case.attempts[0].started_at  # type: ignore[union-attr]
    outcome = failed("do_not_honor", at=at, attempt_id=charge.attempt_id)
    settled = decide(started.case, outcome, DEFAULT, at, ctx())
    again = decide(settled.case, outcome, DEFAULT, at, ctx())
    assert again.outcome == "ignored"
    assert again.case == settled.case


def test_a_success_of_dunwells_attempt_recovers_the_case_and_settles_the_attempt() -> None:
    opened = open_case("do_not_honor")
    started, charge = start_retry(opened.case, with_ledger(AttemptLedger(), opened))  # type: ignore[arg-type]
    at = started.case.attempts[0].started_at  # type: ignore[union-attr]
    decision = decide(started.case, succeeded(at, charge.attempt_id), DEFAULT, at, ctx())
    case = decision.case
    assert case is not None
    assert case.status is CaseStatus.RECOVERED
    assert case.attempts[0].status is AttemptStatus.SUCCEEDED


def test_a_provider_error_uncounts_the_attempt_and_plans_a_technical_retry_within_minutes() -> None:
    opened = open_case("do_not_honor")
    ledger = with_ledger(AttemptLedger(), opened)
    started, charge = start_retry(opened.case, ledger)  # type: ignore[arg-type]
    ledger = with_ledger(ledger, started)
    case = started.case
    assert case is not None
    at = case.attempts[0].started_at + timedelta(seconds=30)
    event = AttemptErrored(_id("evt"), at, case.id, charge.attempt_id, "HTTP 503 from provider")
    decision = decide(case, event, DEFAULT, at, ctx(ledger))
    assert decision.ledger_uncount == (charge.attempt_id,)
    ledger = with_ledger(ledger, decision)
    assert [e.counted for e in ledger.entries] == [True, False]
    errored = decision.case
    assert errored is not None
    assert errored.attempts[0].status is AttemptStatus.ERRORED
    assert errored.attempts_made == 0
    assert errored.failures == 1  # a provider error is not a decline
    retry = retry_of(errored)
    assert retry is not None
    assert retry.key == "retry:2"
    assert retry.rule == "policy.timing.technical_retries[0]"
    assert at < retry.due_at <= at + timedelta(minutes=5)
    assert "does not count against network caps" in retry.reason


def test_an_error_for_an_attempt_that_is_not_in_flight_is_ignored() -> None:
    case = open_case("do_not_honor").case
    assert case is not None
    event = AttemptErrored(_id("evt"), NOW, case.id, "att_unknown", "timeout")
    assert decide(case, event, DEFAULT, NOW, ctx()).outcome == "ignored"


def test_a_decline_dunwell_did_not_make_counts_in_the_ledger_and_a_stale_one_is_ignored() -> None:
    case = open_case("do_not_honor").case
    later = NOW + timedelta(hours=1)
    decision = decide(case, failed("do_not_honor", at=later), DEFAULT, later, ctx())
    assert decision.outcome == "updated"
    [entry] = decision.ledger_entries
    assert (entry.attempted_at, entry.attempt_id) == (later, None)
    assert decision.case.failures == 2  # type: ignore[union-attr]
    stale = decide(decision.case, failed("do_not_honor", at=NOW), DEFAULT, later, ctx())
    assert stale.outcome == "ignored"
    assert stale.ledger_entries == ()


# --- network rules inside decide --------------------------------------------------------------


def test_a_mastercard_advice_code_delays_the_first_retry_past_the_policy_offset() -> None:
    card = PaymentMethod("pm_mc", brand="mastercard", fingerprint="fp_mc")
    case = open_case("do_not_honor", advice="25", card=card).case
    assert case is not None
    retry = retry_of(case)
    assert retry is not None
    assert case.not_before == NOW + timedelta(hours=24)
    assert retry.due_at >= NOW + timedelta(hours=24)  # the policy alone says 6h
    assert "guardrail.advice_delay" in retry.rule


@pytest.mark.parametrize(
    ("code", "advice", "network", "brand"),
    [
        ("do_not_honor", "03", None, "mastercard"),
        ("insufficient_funds", "21", None, "mastercard"),
        ("do_not_honor", None, "R0", "visa"),
        ("stolen_card", None, None, "visa"),
    ],
)
def test_a_never_retry_decline_blocks_the_credential_and_plans_no_retry(
    code: str, advice: str | None, network: str | None, brand: str
) -> None:
    card = PaymentMethod("pm_x", brand=brand, fingerprint="fp_x")
    decision = open_case(code, advice=advice, network=network, card=card)
    case = decision.case
    assert case is not None
    assert case.lane is Lane.DO_NOT_RETRY
    assert case.blocked_credentials == frozenset({"fp_x"})
    assert retry_of(case) is None
    assert case.stage is Stage.AWAITING_CUSTOMER
    assert case.planned("notice:entered:update_payment_method") is not None


def test_a_new_card_after_a_never_retry_decline_is_charged_but_the_old_one_stays_blocked() -> None:
    case = open_case("stolen_card").case
    at = NOW + timedelta(days=1)
    updated = decide(
        case, PaymentMethodUpdated(_id("evt"), at, "cus_1", NEW_CARD), DEFAULT, at, ctx()
    )
    assert updated.case.blocked_credentials == frozenset({"fp_card_1"})  # type: ignore[union-attr]
    assert retry_of(updated.case) is not None  # type: ignore[arg-type]
    # Going back to the blocked card (a new token for the same card) plans nothing.
    back = PaymentMethodUpdated(_id("evt"), at, "cus_1", replace(CARD, token="pm_again"))
    returned = decide(updated.case, back, DEFAULT, at, ctx())
    assert retry_of(returned.case) is None  # type: ignore[arg-type]
    assert "guardrail.never_retry" in [e.rule for e in returned.explanations]


# --- notices ----------------------------------------------------------------------------------


def test_the_baseline_policy_sends_a_notice_at_every_failure() -> None:
    opened = open_case("do_not_honor", policy=BASELINE)
    case = opened.case
    assert case is not None
    [first] = planned(case, ActionType.NOTICE)
    assert (first.key, first.due_at) == ("notice:failure-1:payment_failed", NOW)
    sent = decide(case, due(case, first.key, NOW), BASELINE, NOW, ctx())
    assert [type(e) for e in sent.effects] == [SendNotice]
    case = sent.case
    assert case is not None
    retry = retry_of(case)
    assert retry is not None and retry.due_at == NOW + timedelta(days=3)
    ledger = with_ledger(AttemptLedger(), opened)
    started = decide(case, due(case, retry.key, retry.due_at), BASELINE, retry.due_at, ctx(ledger))
    [charge] = started.effects
    assert isinstance(charge, Charge)
    outcome = failed("do_not_honor", at=retry.due_at, attempt_id=charge.attempt_id)
    declined = decide(started.case, outcome, BASELINE, retry.due_at, ctx(ledger))
    [second] = planned(declined.case, ActionType.NOTICE)  # type: ignore[arg-type]
    assert (second.key, second.due_at) == ("notice:failure-2:payment_failed", retry.due_at)


def test_the_default_policy_sends_no_notice_on_the_first_retry_soon_failure() -> None:
    case = open_case("do_not_honor").case
    assert case is not None
    notices = planned(case, ActionType.NOTICE)
    assert all(n.due_at > NOW for n in notices)  # only checkpoints in the future
    assert [n.key for n in notices] == ["notice:elapsed-1209600s:final_notice"]


def test_a_notice_action_sends_the_template_once_and_delivery_is_recorded() -> None:
    case = open_case("expired_card").case
    assert case is not None
    key = "notice:entered:update_payment_method"
    decision = decide(case, due(case, key, NOW), DEFAULT, NOW, ctx())
    [effect] = decision.effects
    assert isinstance(effect, SendNotice)
    assert (effect.template, effect.channel, effect.lane) == (
        "update_payment_method",
        "email",
        "update_payment_method",
    )
    case = decision.case
    assert case is not None
    assert case.planned(key) is None  # fired once per case
    [notice] = case.notices
    assert notice.id == effect.notice_id and notice.status == "sending"
    delivered = decide(
        case, NoticeDelivered(_id("evt"), NOW, case.id, notice.id), DEFAULT, NOW, ctx()
    )
    assert delivered.case.notices[0].status == "sent"  # type: ignore[union-attr]


# --- endings ----------------------------------------------------------------------------------


def test_the_end_action_closes_the_case_churned_with_access_suspended() -> None:
    case = open_case("insufficient_funds").case
    assert case is not None
    end = case.planned("end")
    assert end is not None and end.due_at == NOW + timedelta(days=21)
    decision = decide(case, due(case, "end", end.due_at), DEFAULT, end.due_at, ctx())
    closed = decision.case
    assert decision.outcome == "closed"
    assert closed is not None
    assert closed.status is CaseStatus.CHURNED
    assert closed.access is AccessLevel.SUSPENDED
    assert closed.closed_at == end.due_at
    assert closed.plan == ()
    assert closed.stage is None
    assert decision.effects == (ChangeAccess(case.id, "cus_1", "sub_1", AccessLevel.SUSPENDED),)


def test_the_fraud_lane_ends_written_off() -> None:
    case = open_case("fraudulent").case
    assert case is not None
    assert planned(case, ActionType.NOTICE) == []  # never push the customer
    end = case.planned("end")
    assert end is not None
    decision = decide(case, due(case, "end", end.due_at), DEFAULT, end.due_at, ctx())
    assert decision.case.status is CaseStatus.WRITTEN_OFF  # type: ignore[union-attr]


def test_a_subscription_cancellation_closes_the_case_canceled() -> None:
    case = open_case().case
    at = NOW + timedelta(days=2)
    decision = decide(case, SubscriptionCanceled(_id("evt"), at, "sub_1"), DEFAULT, at, ctx())
    closed = decision.case
    assert decision.outcome == "closed"
    assert closed is not None
    assert closed.status is CaseStatus.CANCELED
    assert closed.plan == ()
    assert closed.closed_at == at
    assert decide(closed, due(closed, "retry:1", at), DEFAULT, at, ctx()).outcome == "ignored"


def test_a_dispute_closes_the_case_disputed_and_blocks_the_credential() -> None:
    case = open_case().case
    at = NOW + timedelta(days=1)
    decision = decide(case, DisputeOpened(_id("evt"), at, INVOICE), DEFAULT, at, ctx())
    closed = decision.case
    assert closed is not None
    assert closed.status is CaseStatus.DISPUTED
    assert "fp_card_1" in closed.blocked_credentials
    assert closed.plan == ()
    # A payment reported afterwards does not turn a dispute into a recovery.
    assert decide(closed, succeeded(at), DEFAULT, at, ctx()).outcome == "ignored"


# --- escalation -------------------------------------------------------------------------------


def test_an_enterprise_customer_is_escalated_and_customer_notices_are_held() -> None:
    enterprise = replace(CUSTOMER, segment="enterprise")
    decision = open_case("expired_card", customer=enterprise)
    case = decision.case
    assert case is not None
    assert case.escalated is True
    assert case.stage is Stage.ESCALATED
    [escalate] = [e for e in decision.effects if isinstance(e, Escalate)]
    assert escalate.case_id == case.id
    assert "enterprise" in escalate.reason
    assert planned(case, ActionType.NOTICE) == []
    assert "policy.escalation" in [e.rule for e in decision.explanations]


def test_a_large_amount_is_escalated_too() -> None:
    decision = open_case("do_not_honor", amount=Money(500000, "USD"))
    assert decision.case.escalated is True  # type: ignore[union-attr]
    assert open_case("do_not_honor", amount=Money(499999, "USD")).case.escalated is False  # type: ignore[union-attr]


# --- skipping time ----------------------------------------------------------------------------


def run_until_closed(
    code: str, policy: Policy
) -> tuple[RecoveryCase, list[Charge], list[SendNotice], AttemptLedger]:
    """Skip from one planned action to the next, answering every charge with a decline."""
    opened = decide(None, failed(code), policy, NOW, ctx())
    ledger = with_ledger(AttemptLedger(), opened)
    case = opened.case
    assert case is not None
    clock = NOW
    charges: list[Charge] = []
    notices: list[SendNotice] = []
    for _ in range(200):
        if not case.is_open:
            break
        action = case.next_action
        assert action is not None, "an open case always has its end planned"
        assert action.due_at >= clock, "time never goes backwards"
        clock = action.due_at
        decision = decide(case, due(case, action.key, clock), policy, clock, ctx(ledger))
        ledger = with_ledger(ledger, decision)
        case = decision.case
        assert case is not None
        for effect in decision.effects:
            if isinstance(effect, SendNotice):
                notices.append(effect)
            if isinstance(effect, Charge):
                charges.append(effect)
                answer = failed(code, at=clock, attempt_id=effect.attempt_id)
                decision = decide(case, answer, policy, clock, ctx(ledger))
                assert decision.outcome == "updated"
                ledger = with_ledger(ledger, decision)
                case = decision.case
                assert case is not None
    return case, charges, notices, ledger


@pytest.mark.parametrize(
    ("code", "lane", "templates"),
    [
        ("do_not_honor", Lane.RETRY_SOON, ["payment_failed", "final_notice"]),
        ("insufficient_funds", Lane.RETRY_AFTER_FUNDS, ["payment_failed_funds", "final_notice"]),
    ],
)
def test_skipping_time_a_card_that_always_declines_churns_after_the_policys_retries(
    code: str, lane: Lane, templates: list[str]
) -> None:
    case, charges, notices, ledger = run_until_closed(code, DEFAULT)
    lane_policy = DEFAULT.lane(lane)
    retries = min(lane_policy.max_attempts, len(lane_policy.retries))

    assert case.status is CaseStatus.CHURNED
    assert case.access is AccessLevel.SUSPENDED
    assert case.closed_at == NOW + lane_policy.end_after
    assert len(charges) == retries
    assert len({c.idempotency_key for c in charges}) == retries
    assert case.failures == 1 + retries
    assert len(ledger.counted_between("fp_card_1", NOW - timedelta(days=1), case.closed_at)) == (
        1 + retries
    )
    # Notices at checkpoints only: never one per retry.
    assert [n.template for n in notices] == templates
    assert len(notices) <= len(lane_policy.notices) < len(charges)
    assert len({n.key for n in case.notices}) == len(case.notices)
    # Every charge happened in the customer's local hours, spaced as the policy says.
    zone = ZoneInfo("America/New_York")
    times = [a.started_at for a in case.attempts]
    assert times == sorted(times)
    for n, started in enumerate(times):
        assert 8 <= started.astimezone(zone).hour < 20
        assert started >= NOW + lane_policy.retries[n]


def test_skipping_time_under_the_baseline_policy_sends_a_notice_per_failure() -> None:
    case, charges, notices, _ = run_until_closed("do_not_honor", BASELINE)
    assert case.status is CaseStatus.CHURNED
    assert len(charges) == 3
    assert [a.started_at - NOW for a in case.attempts] == [
        timedelta(days=3),
        timedelta(days=7),
        timedelta(days=14),
    ]
    assert [n.template for n in notices] == ["payment_failed"] * 4  # the first failure + 3


def test_skipping_time_an_expired_card_is_never_charged_and_walks_the_access_ladder() -> None:
    case, charges, notices, _ = run_until_closed("expired_card", DEFAULT)
    assert charges == []
    assert case.status is CaseStatus.CHURNED
    assert [(n.template, n.channel) for n in notices] == [
        ("update_payment_method", "email"),
        ("update_payment_method_reminder", "sms"),
        ("final_notice", "email"),
    ]


# --- delivery is at least once: stale and early actions ---------------------------------------


def test_an_action_delivered_before_its_planned_time_is_ignored() -> None:
    case = open_case("do_not_honor").case
    assert case is not None
    retry = retry_of(case)
    assert retry is not None and retry.due_at > NOW
    decision = decide(case, due(case, retry.key, NOW), DEFAULT, NOW, ctx())
    assert decision.outcome == "ignored"
    assert decision.effects == ()
    assert decision.explanations[0].rule == "case.not_due"


def test_a_retry_refused_by_a_network_cap_and_planned_again_is_not_fired_twice() -> None:
    card = PaymentMethod("pm_mc", brand="mastercard", fingerprint="fp_mc")
    case = open_case("do_not_honor", card=card).case
    assert case is not None
    retry = retry_of(case)
    assert retry is not None
    at = retry.due_at
    # Meanwhile other invoices used up the card's Mastercard budget of 10 a day.
    ledger = AttemptLedger(
        tuple(LedgerEntry("fp_mc", at - timedelta(minutes=10 * n + 10)) for n in range(10))
    )
    first = decide(case, due(case, retry.key, at), DEFAULT, at, ctx(ledger))
    assert first.effects == ()
    assert "guardrail.network_cap" in [e.rule for e in first.explanations]
    replanned = retry_of(first.case)  # type: ignore[arg-type]
    assert replanned is not None
    assert replanned.key == retry.key and replanned.due_at > at
    assert "guardrail.network_cap" in replanned.rule
    # The same delivery again (a crash, a second worker) must not fire the re-planned retry.
    again = decide(first.case, due(case, retry.key, at), DEFAULT, at, ctx(ledger))
    assert again.outcome == "ignored"
    assert again.effects == ()


# --- a network's advice delay holds whatever happens on the same card ------------------------

MC = PaymentMethod("pm_mc", brand="mastercard", fingerprint="fp_mc")


def advised_case() -> RecoveryCase:
    """Declined with Mastercard advice 27: not again on this card for 4 days."""
    case = open_case("insufficient_funds", advice="27", card=MC).case
    assert case is not None
    assert case.not_before == NOW + timedelta(days=4)
    return case


def test_a_later_decline_without_an_advice_code_does_not_shorten_the_advice_delay() -> None:
    later = NOW + timedelta(hours=2)  # the provider's own retry, declined again
    decision = decide(
        advised_case(), failed("do_not_honor", at=later, card=MC), DEFAULT, later, ctx()
    )
    case = decision.case
    assert case is not None
    assert case.not_before == NOW + timedelta(days=4)
    retry = retry_of(case)
    assert retry is not None and retry.due_at >= NOW + timedelta(days=4)


def test_a_new_token_for_the_same_card_keeps_the_advice_delay() -> None:
    at = NOW + timedelta(hours=1)
    same_card = replace(MC, token="pm_mc_refreshed")
    event = PaymentMethodUpdated(_id("evt"), at, "cus_1", same_card)
    case = decide(advised_case(), event, DEFAULT, at, ctx()).case
    assert case is not None
    retry = retry_of(case)
    assert retry is not None
    assert retry.due_at >= NOW + timedelta(days=4)
    assert "guardrail.advice_delay" in retry.rule


def test_a_different_card_is_not_held_by_the_old_cards_advice_delay() -> None:
    at = NOW + timedelta(hours=1)
    event = PaymentMethodUpdated(_id("evt"), at, "cus_1", NEW_CARD)
    case = decide(advised_case(), event, DEFAULT, at, ctx()).case
    assert case is not None
    retry = retry_of(case)
    assert retry is not None
    assert retry.due_at == at + DEFAULT.timing.customer_fix_delay


def test_an_authentication_does_not_override_the_advice_delay() -> None:
    case = open_case("authentication_required", advice="25", card=MC).case
    assert case is not None
    at = NOW + timedelta(hours=1)
    decision = decide(case, CustomerAuthenticated(_id("evt"), at, "cus_1"), DEFAULT, at, ctx())
    retry = retry_of(decision.case)  # type: ignore[arg-type]
    assert retry is not None
    assert retry.due_at >= NOW + timedelta(hours=24)


# --- regressions: each failed on an earlier version of the core ------------------------------


def test_a_late_decline_of_an_attempt_on_the_replaced_card_keeps_the_new_card() -> None:
    opened = open_case("do_not_honor")
    ledger = with_ledger(AttemptLedger(), opened)
    started, charge = start_retry(opened.case, ledger)  # type: ignore[arg-type]
    ledger = with_ledger(ledger, started)
    at = started.case.attempts[0].started_at + timedelta(seconds=10)  # type: ignore[union-attr]
    update = PaymentMethodUpdated(_id("evt"), at, "cus_1", NEW_CARD)
    updated = decide(started.case, update, DEFAULT, at, ctx(ledger))
    assert updated.case.payment_method == NEW_CARD  # type: ignore[union-attr]
    at += timedelta(seconds=10)
    late = failed("do_not_honor", at=at, attempt_id=charge.attempt_id)  # about the old card
    decision = decide(updated.case, late, DEFAULT, at, ctx(ledger))
    assert decision.case.payment_method == NEW_CARD  # type: ignore[union-attr]


def test_a_provider_that_keeps_failing_is_not_charged_again_at_the_same_instant() -> None:
    opened = open_case("do_not_honor")
    ledger = with_ledger(AttemptLedger(), opened)
    case = opened.case
    assert case is not None
    starts: list[datetime] = []
    for _ in range(len(DEFAULT.timing.technical_retries) + 3):
        retry = retry_of(case)
        if retry is None:
            break
        started, charge = start_retry(case, ledger)
        starts.append(retry.due_at)
        ledger = with_ledger(ledger, started)
        error = AttemptErrored(_id("evt"), retry.due_at, case.id, charge.attempt_id, "HTTP 503")
        errored = decide(started.case, error, DEFAULT, retry.due_at, ctx(ledger))
        ledger = with_ledger(ledger, errored)
        case = errored.case
        assert case is not None
    assert len(starts) == len(set(starts)), f"charges at the same instant: {starts}"


def test_a_never_retry_decline_blocks_the_card_for_every_case_through_the_ledger() -> None:
    first = open_case("do_not_honor")
    assert first.case is not None
    other = decide(
        None,
        replace(failed("stolen_card"), id="evt_other", invoice_id="in_other"),
        DEFAULT,
        NOW,
        ctx(),
    )
    markers = [e for e in other.ledger_entries if e.never_retry]
    assert [m.credential_key for m in markers] == [first.case.payment_method.credential_key]
    ledger = AttemptLedger((*other.ledger_entries,))
    verdict = check_attempt(first.case, NOW + timedelta(days=1), ledger, NetworkLimits())
    assert not verdict.allowed and verdict.rule == "guardrail.never_retry"


def test_an_advice_code_wait_on_one_invoice_holds_every_case_on_the_card() -> None:
    first = open_case("do_not_honor")
    assert first.case is not None
    later = NOW + timedelta(hours=1)
    other = decide(
        None,
        replace(failed("do_not_honor", advice="27", at=later), invoice_id="in_other"),
        DEFAULT,
        later,
        ctx(),
    )
    [marker] = [e for e in other.ledger_entries if e.wait_until is not None]
    assert marker.wait_until == later + timedelta(days=4)
    ledger = AttemptLedger((*first.ledger_entries, *other.ledger_entries))
    verdict = check_attempt(first.case, later + timedelta(days=1), ledger, NetworkLimits())
    assert not verdict.allowed and verdict.rule == "guardrail.advice_delay"
    assert verdict.not_before == later + timedelta(days=4)


@pytest.mark.parametrize("store", ["apple", "google"])
def test_a_store_renewal_is_never_charged_but_the_customer_is_told(store: str) -> None:
    event = replace(failed("expired_card"), provider=store)
    decision = decide(None, event, DEFAULT, NOW, ctx())
    assert decision.case is not None
    case = decision.case
    assert retry_of(case) is None
    assert planned(case, ActionType.NOTICE), "the customer still hears where to fix it"
    assert any(n.rule == "provider.retries_itself" for n in decision.explanations)
    # A new card does not make dunwell charge the store either.
    later = NOW + timedelta(hours=1)
    updated = decide(
        case, PaymentMethodUpdated(_id("evt"), later, "cus_1", NEW_CARD), DEFAULT, later, ctx()
    )
    assert updated.case is not None and retry_of(updated.case) is None
    assert not [e for e in updated.effects if isinstance(e, Charge)]


def test_a_fallback_channel_that_bounced_in_this_case_is_not_used_again() -> None:
    both_ways = replace(DEFAULT, fallback={"email": "sms", "sms": "email"})
    case = open_case("expired_card", both_ways).case
    assert case is not None

    def bounce(case: RecoveryCase, key: str, at: datetime) -> Decision:
        sending = decide(case, due(case, key, at), both_ways, at, ctx())
        assert sending.case is not None
        notice = sending.case.notices[-1]
        event = NoticeDelivered(_id("evt"), at, case.id, notice.id, False, "550", True)
        return decide(sending.case, event, both_ways, at, ctx())

    # The welcome email bounces: resent by SMS, which bounces too (one hop, no more).
    first = bounce(case, "notice:entered:update_payment_method", NOW)
    [sms] = first.effects
    assert isinstance(sms, SendNotice) and sms.channel == "sms"
    assert first.case is not None
    fell_back = first.case.notices[-1]
    delivered = NoticeDelivered(_id("evt"), NOW, case.id, fell_back.id, False, "no phone", True)
    both_dead = decide(first.case, delivered, both_ways, NOW, ctx())
    assert both_dead.effects == ()
    assert both_dead.case is not None
    # The 4-day SMS reminder bounces as well: its fallback, email, is known dead in this case.
    later = NOW + timedelta(days=4)
    reminder = bounce(
        both_dead.case, "notice:elapsed-345600s:update_payment_method_reminder", later
    )
    assert reminder.case is not None
    assert reminder.case.notices[-1].channel == "sms"
    assert reminder.effects == ()
