"""Provider-managed retries, multi-PSP routing and paused providers, through `decide` (issue 4
items 5-6), and the routing file's parser. Pure: no clock, no I/O."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from itertools import count

import pytest

from dunwell.domain.case import ActionType, AttemptStatus, CaseStatus, RecoveryCase
from dunwell.domain.decide import decide
from dunwell.domain.decision import ChangeAccess, Charge, Context, Decision
from dunwell.domain.events import (
    ActionDue,
    AttemptErrored,
    Customer,
    DeclineReport,
    PaymentFailed,
    PaymentMethod,
    PaymentMethodUpdated,
    ProviderRetriesExhausted,
    Subscription,
)
from dunwell.domain.guardrails import NetworkLimits
from dunwell.domain.lanes import Lane
from dunwell.domain.ledger import AttemptLedger, LedgerEntry
from dunwell.domain.money import Money
from dunwell.domain.policy import AccessLevel
from dunwell.domain.routing import (
    ProviderSettings,
    Route,
    Routing,
    RoutingError,
    parse_routing,
    parse_routing_file,
)
from dunwell.policies import load_policies

pytestmark = pytest.mark.unit

DEFAULT = load_policies()["default"]
NOW = datetime(2025, 3, 4, 15, 0, tzinfo=UTC)  # a Tuesday, 10:00 in New York
TENANT = "tenant_1"
CUSTOMER = Customer("cus_1", country="US", timezone="America/New_York")
TOKEN_CARD = PaymentMethod("ntk_1", "visa", "fp_1", kind="network_token")
PLAIN_CARD = PaymentMethod("pm_1", "visa", "fp_1")  # a Stripe token: only Stripe charges it
MASTERCARD = PaymentMethod("ntk_2", "mastercard", "fp_mc", kind="network_token")
TWO_PSPS = Routing(
    providers=(ProviderSettings("stripe"), ProviderSettings("adyen")),
    routes=(Route("stripe"), Route("adyen", brands=frozenset({"visa", "mastercard"}))),
)
_ids = count(1)


def failed(
    code: str, card: PaymentMethod = TOKEN_CARD, provider: str = "stripe", **kw: object
) -> PaymentFailed:
    return PaymentFailed(
        id=f"evt_{next(_ids)}",
        occurred_at=kw.pop("at", NOW),  # type: ignore[arg-type]
        customer=CUSTOMER,
        subscription=Subscription("sub_1"),
        invoice_id="in_1",
        amount=Money(4900, "USD"),
        provider=provider,
        payment_method=card,
        decline=DeclineReport(code),
        attempt_id=kw.pop("attempt_id", None),  # type: ignore[arg-type]
    )


EMPTY = AttemptLedger()


def ctx(routing: Routing = TWO_PSPS, ledger: AttemptLedger = EMPTY, **kw: object) -> Context:
    return Context(TENANT, ledger, routing=routing, **kw)  # type: ignore[arg-type]


def opened(
    code: str,
    card: PaymentMethod = TOKEN_CARD,
    routing: Routing = TWO_PSPS,
    provider: str = "stripe",
) -> RecoveryCase:
    decision = decide(None, failed(code, card, provider), DEFAULT, NOW, ctx(routing))
    assert decision.case is not None and decision.outcome == "opened"
    return decision.case


def retry_of(case: RecoveryCase):  # type: ignore[no-untyped-def]
    found = [a for a in case.plan if a.type is ActionType.RETRY]
    return found[0] if found else None


def run_retry(case: RecoveryCase, context: Context) -> Decision:
    retry = retry_of(case)
    assert retry is not None
    event = ActionDue(f"due_{next(_ids)}", retry.due_at, case.id, retry.key)
    return decide(case, event, DEFAULT, retry.due_at, context)


def charge_of(decision: Decision) -> Charge | None:
    charges = [e for e in decision.effects if isinstance(e, Charge)]
    return charges[0] if charges else None


def rules(decision: Decision) -> list[str]:
    return [e.rule for e in decision.explanations]


# --- provider-managed retries (item 5) ---------------------------------------------------------

RETRYING = Routing(providers=(ProviderSettings("stripe", retries_itself=True),))
TAKEOVER = Routing(
    providers=(ProviderSettings("stripe", retries_itself=True, takeover_after_provider=True),)
)


def exhausted(provider: str = "stripe", at: datetime = NOW + timedelta(days=20)):  # type: ignore[no-untyped-def]
    return ProviderRetriesExhausted(f"evt_{next(_ids)}", at, "in_1", provider, "cus_1")


def test_while_the_provider_retries_no_charge_is_planned_but_notices_and_access_are() -> None:
    decision = decide(None, failed("insufficient_funds"), DEFAULT, NOW, ctx(RETRYING))
    case = decision.case
    assert case is not None and case.provider_retrying == "stripe"
    assert retry_of(case) is None
    kinds = {a.type for a in case.plan}
    assert ActionType.NOTICE in kinds and ActionType.ACCESS in kinds and ActionType.END in kinds
    assert "provider.retries_on" in rules(decision)
    assert "provider.manages_retries" in rules(decision)
    # The provider's own retry failing again is recorded and counted, and still plans nothing.
    again = decide(
        case,
        failed("insufficient_funds", at=NOW + timedelta(days=3)),
        DEFAULT,
        NOW + timedelta(days=3),
        ctx(RETRYING),
    )
    assert again.case is not None and retry_of(again.case) is None
    assert again.case.failures == 2 and len(again.ledger_entries) == 1


def test_without_the_provider_retrying_dunwell_plans_the_retry() -> None:
    case = opened("insufficient_funds", routing=Routing())
    assert case.provider_retrying is None and retry_of(case) is not None


def test_when_the_provider_gives_up_dunwell_takes_over_within_the_caps() -> None:
    card = PaymentMethod("pm_mc", "mastercard", "fp_mc")
    case = decide(None, failed("insufficient_funds", card), DEFAULT, NOW, ctx(TAKEOVER)).case
    assert case is not None
    at = NOW + timedelta(days=4)
    # The provider's own retries are in the card's ledger: 10 in the last day fill the
    # Mastercard 24-hour cap, so dunwell's first retry waits for the oldest to age out.
    ledger = AttemptLedger()
    for hour in range(10):
        ledger = ledger.with_entry(LedgerEntry("fp_mc", at - timedelta(hours=20 - hour)))
    decision = decide(case, exhausted(at=at), DEFAULT, at, ctx(TAKEOVER, ledger))
    assert decision.case is not None and decision.case.provider_gave_up_at == at
    assert "provider.gave_up.takeover" in rules(decision)
    retry = retry_of(decision.case)
    assert retry is not None
    assert retry.due_at > at - timedelta(hours=20) + timedelta(days=1)
    assert "guardrail.network_cap" in retry.rule
    # With room under the cap the retry comes at once (the ladder's first step is past).
    free = decide(case, exhausted(at=at), DEFAULT, at, ctx(TAKEOVER))
    assert free.case is not None
    free_retry = retry_of(free.case)
    assert free_retry is not None and free_retry.due_at < retry.due_at


def test_when_the_provider_gives_up_without_takeover_the_case_ends_churned() -> None:
    case = opened("insufficient_funds", routing=RETRYING)
    decision = decide(case, exhausted(), DEFAULT, NOW + timedelta(days=20), ctx(RETRYING))
    assert decision.case is not None and decision.case.status is CaseStatus.CHURNED
    assert decision.case.plan == ()
    assert decision.effects == (ChangeAccess(case.id, "cus_1", "sub_1", AccessLevel.SUSPENDED),)
    assert "provider.gave_up.churned" in rules(decision)


def test_a_give_up_is_ignored_for_a_case_dunwell_already_retries() -> None:
    case = opened("insufficient_funds", routing=Routing())
    decision = decide(case, exhausted(), DEFAULT, NOW + timedelta(days=2), ctx(Routing()))
    assert decision.outcome == "ignored" and rules(decision) == ["provider.not_retrying"]
    other = opened("insufficient_funds", routing=RETRYING)
    decision = decide(other, exhausted("adyen"), DEFAULT, NOW, ctx(RETRYING))
    assert decision.outcome == "ignored"


# --- routing (item 6) -----------------------------------------------------------------------


def test_a_retry_soon_decline_sends_the_next_attempt_to_the_other_provider() -> None:
    case = opened("do_not_honor")
    assert case.lane is Lane.RETRY_SOON
    assert dict(retry_of(case).params)["provider"] == "adyen"  # type: ignore[union-attr]
    decision = run_retry(case, ctx())
    charge = charge_of(decision)
    assert charge is not None and charge.provider == "adyen"
    assert "routing.reroute" in rules(decision)
    assert decision.case.attempts[-1].provider == "adyen"  # type: ignore[union-attr]


def test_a_provider_error_lane_also_goes_to_the_other_provider() -> None:
    case = opened("21", provider="adyen")  # Adyen "Not Submitted": the provider failed
    assert case.lane is Lane.PROVIDER_ERROR
    charge = charge_of(run_retry(case, ctx()))
    assert charge is not None and charge.provider == "stripe"


def test_insufficient_funds_stays_with_the_same_provider() -> None:
    case = opened("insufficient_funds")
    decision = run_retry(case, ctx())
    charge = charge_of(decision)
    assert charge is not None and charge.provider == "stripe"
    assert "routing.home" in rules(decision)


def test_a_provider_token_is_charged_only_by_its_provider() -> None:
    case = opened("do_not_honor", card=PLAIN_CARD)
    charge = charge_of(run_retry(case, ctx()))
    assert charge is not None and charge.provider == "stripe"


def test_a_route_limited_by_brand_or_region_is_not_a_candidate() -> None:
    amex = PaymentMethod("ntk_3", "amex", "fp_3", kind="network_token")
    case = opened("do_not_honor", card=amex)
    charge = charge_of(run_retry(case, ctx()))
    assert charge is not None and charge.provider == "stripe"  # adyen's route is visa/mc only
    eu_only = Routing(routes=(Route("stripe"), Route("adyen", regions=frozenset({"DE"}))))
    case = opened("do_not_honor", routing=eu_only)
    charge = charge_of(run_retry(case, ctx(eu_only)))
    assert charge is not None and charge.provider == "stripe"  # the customer is in the US


def test_a_paused_provider_hands_its_due_retry_to_the_backup() -> None:
    case = opened("insufficient_funds")
    retry = retry_of(case)
    assert retry is not None
    paused = ctx(paused_providers=(("stripe", retry.due_at + timedelta(hours=3)),))
    decision = run_retry(case, paused)
    charge = charge_of(decision)
    assert charge is not None and charge.provider == "adyen"
    assert "routing.backup" in rules(decision)


def test_with_no_backup_a_paused_provider_moves_the_retry_later_and_spends_nothing() -> None:
    case = opened("insufficient_funds", routing=Routing())
    retry = retry_of(case)
    assert retry is not None
    until = retry.due_at + timedelta(hours=3)
    decision = run_retry(case, ctx(Routing(), paused_providers=(("stripe", until),)))
    assert charge_of(decision) is None
    assert decision.ledger_entries == ()
    assert decision.case is not None and decision.case.attempts == ()
    moved = retry_of(decision.case)
    assert moved is not None and moved.due_at >= until and moved.key == retry.key
    assert "routing.all_paused" in rules(decision)
    # Once the pause is over the same retry charges the same provider.
    later = run_retry(decision.case, ctx(Routing(), paused_providers=(("stripe", until),)))
    assert charge_of(later) is not None and charge_of(later).provider == "stripe"  # type: ignore[union-attr]


def _errored(case: RecoveryCase, sent: bool) -> tuple[RecoveryCase, Charge]:
    started = run_retry(case, ctx())
    charge = charge_of(started)
    assert started.case is not None and charge is not None
    at = started.case.attempts[-1].started_at + timedelta(seconds=5)
    event = AttemptErrored(f"err_{next(_ids)}", at, case.id, charge.attempt_id, "timeout", sent)
    errored = decide(started.case, event, DEFAULT, at, ctx())
    assert errored.case is not None
    return errored.case, charge


def test_an_unknown_outcome_goes_back_to_the_same_provider_even_when_the_lane_reroutes() -> None:
    case, first = _errored(opened("do_not_honor"), sent=True)
    assert first.provider == "adyen"
    decision = run_retry(case, ctx())
    again = charge_of(decision)
    assert again is not None
    assert (again.provider, again.attempt_id) == ("adyen", first.attempt_id)
    assert "routing.unknown_outcome" in rules(decision)
    # While that provider is paused the re-send waits rather than going elsewhere.
    retry = retry_of(case)
    assert retry is not None
    until = retry.due_at + timedelta(hours=2)
    waiting = run_retry(case, ctx(paused_providers=(("adyen", until),)))
    assert charge_of(waiting) is None
    assert retry_of(waiting.case).due_at >= until  # type: ignore[arg-type,union-attr]


def test_an_attempt_never_sent_moves_to_the_backup_under_the_same_id() -> None:
    case, first = _errored(opened("insufficient_funds"), sent=False)
    assert first.provider == "stripe"
    assert case.attempts[-1].sent is False and case.attempts_made == 0
    retry = retry_of(case)
    assert retry is not None
    paused = ctx(paused_providers=(("stripe", retry.due_at + timedelta(hours=1)),))
    decision = run_retry(case, paused)
    charge = charge_of(decision)
    assert charge is not None
    assert (charge.provider, charge.attempt_id) == ("adyen", first.attempt_id)
    assert len(decision.case.attempts) == 1  # type: ignore[union-attr]


def test_the_ledger_counts_one_card_across_providers_for_the_network_caps() -> None:
    """Mastercard: 10 attempts in 24 hours, whichever provider sent them."""
    case = opened("do_not_honor", card=MASTERCARD)
    ledger = AttemptLedger()
    ledger = ledger.with_entry(LedgerEntry("fp_mc", NOW))  # the first decline
    providers: list[str] = []
    limits = NetworkLimits(max_attempts_per_case=35)
    for _ in range(12):
        retry = retry_of(case)
        if retry is None or retry.due_at > NOW + timedelta(hours=24):
            break
        context = ctx(ledger=ledger, limits=limits)
        started = run_retry(case, context)
        charge = charge_of(started)
        if charge is None:
            break
        for entry in started.ledger_entries:
            assert entry.credential_key == "fp_mc"
            ledger = ledger.with_entry(entry)
        providers.append(charge.provider)
        assert started.case is not None
        at = retry.due_at + timedelta(seconds=1)
        declined = failed(
            "do_not_honor", MASTERCARD, charge.provider, at=at, attempt_id=charge.attempt_id
        )
        after = decide(started.case, declined, DEFAULT, at, ctx(ledger=ledger, limits=limits))
        assert after.case is not None
        case = after.case
    assert {"stripe", "adyen"} <= set(providers)  # alternating providers
    in_day = ledger.counted_between("fp_mc", NOW - timedelta(seconds=1), NOW + timedelta(hours=24))
    assert len(in_day) <= 10


def test_the_mastercard_day_cap_holds_a_retry_charged_through_another_provider() -> None:
    case = opened("do_not_honor", card=MASTERCARD)
    retry = retry_of(case)
    assert retry is not None
    ledger = AttemptLedger()
    for i in range(10):  # ten attempts in the last hours, sent through stripe
        ledger = ledger.with_entry(
            LedgerEntry("fp_mc", retry.due_at - timedelta(minutes=10 * (i + 1)), f"att_{i}")
        )
    decision = run_retry(case, ctx(ledger=ledger))  # the lane would send it to adyen
    assert charge_of(decision) is None
    assert "guardrail.network_cap" in rules(decision)


# --- the routing file --------------------------------------------------------------------------


def test_the_routing_file_parses_providers_and_routes() -> None:
    found = parse_routing_file(
        {
            "tenants": {
                "acme": {
                    "providers": {
                        "stripe": {"retries_itself": True, "takeover_after_provider": True},
                        "adyen": None,
                    },
                    "routes": [
                        {"provider": "stripe"},
                        {
                            "provider": "adyen",
                            "brands": ["Visa"],
                            "regions": ["de", "FR"],
                            "credentials": ["network_token"],
                        },
                    ],
                }
            }
        }
    )
    acme = found["acme"]
    assert acme.settings("stripe") == ProviderSettings("stripe", True, True)
    assert acme.settings("adyen") == ProviderSettings("adyen")
    assert acme.routes[1] == Route(
        "adyen", frozenset({"visa"}), frozenset({"DE", "FR"}), frozenset({"network_token"})
    )
    vaulted = PaymentMethod("v_1", "visa", "fp", kind="vaulted")
    assert acme.eligible(TOKEN_CARD, "DE") == ("stripe", "adyen")
    assert acme.eligible(vaulted, "DE") == ("stripe",)
    assert acme.eligible(TOKEN_CARD, "US") == ("stripe",)
    assert acme.eligible(PLAIN_CARD, "DE") == ()


def test_the_routing_file_names_every_problem() -> None:
    with pytest.raises(RoutingError) as caught:
        parse_routing(
            {
                "providers": {"stripe": {"retries_itself": "yes", "smart": True}},
                "routes": [
                    {"provider": "apple"},
                    {"provider": "adyen", "credentials": ["pan"]},
                    {"brand": "visa"},
                ],
                "extra": 1,
            }
        )
    problems = caught.value.problems
    assert "extra: unknown key" in problems
    assert "providers.stripe.smart: unknown key" in problems
    assert "providers.stripe.retries_itself: true or false" in problems
    assert "routes[0].provider: apple charges only its own renewals" in problems
    assert any(p.startswith("routes[1].credentials: 'pan'") for p in problems)
    assert "routes[2]: a mapping with a provider name" in problems


def test_endpoints_with_retries_on_are_merged_into_the_routing() -> None:
    merged = TAKEOVER.with_retrying(frozenset({"adyen"}))
    assert merged.settings("stripe") == ProviderSettings("stripe", True, True)
    assert merged.settings("adyen") == ProviderSettings("adyen", True, False)


def test_a_case_stored_before_these_fields_reads_as_not_provider_managed() -> None:
    from dunwell.store.codec import case_from_dict, case_to_dict

    case = opened("insufficient_funds", routing=RETRYING)
    data = case_to_dict(case)
    back = case_from_dict(data)
    assert (back.provider_retrying, back.provider_gave_up_at) == ("stripe", None)
    del data["provider_retrying"], data["provider_gave_up_at"]
    old = case_from_dict(data)
    assert old.provider_retrying is None and not old.provider_retries_on


def test_attempt_status_vocabulary_is_unchanged() -> None:
    assert {s.value for s in AttemptStatus} == {"in_flight", "succeeded", "failed", "errored"}


# --- card updates (item 7) ------------------------------------------------------------------


def test_a_card_update_does_not_start_a_charge_while_the_provider_retries() -> None:
    case = opened("expired_card", routing=RETRYING)
    new = PaymentMethod("pm_9", "visa", "fp_9")
    event = PaymentMethodUpdated("u_1", NOW + timedelta(hours=1), "cus_1", new)
    decision = decide(case, event, DEFAULT, NOW + timedelta(hours=1), ctx(RETRYING))
    assert decision.case is not None and decision.case.payment_method == new
    assert retry_of(decision.case) is None
    assert "provider.manages_retries" in rules(decision)


def test_a_card_update_retries_at_once_but_within_the_new_cards_caps() -> None:
    case = opened("expired_card", routing=Routing())
    new = PaymentMethod("pm_9", "mastercard", "fp_9")
    at = NOW + timedelta(hours=1)
    event = PaymentMethodUpdated("u_2", at, "cus_1", new)
    free = decide(case, event, DEFAULT, at, ctx(Routing()))
    assert free.case is not None
    retry = retry_of(free.case)
    assert retry is not None and retry.due_at == at + timedelta(minutes=5)
    # The new card was charged ten times in the last day (other invoices, other providers).
    ledger = AttemptLedger()
    for i in range(10):
        ledger = ledger.with_entry(LedgerEntry("fp_9", at - timedelta(hours=i + 1), f"a{i}"))
    held = decide(case, event, DEFAULT, at, ctx(Routing(), ledger))
    assert held.case is not None
    delayed = retry_of(held.case)
    assert delayed is not None and delayed.due_at > at + timedelta(hours=10)
    assert "guardrail.network_cap" in delayed.rule
