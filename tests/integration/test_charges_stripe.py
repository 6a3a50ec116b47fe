"""Stripe outbound charges through the official SDK, against a loopback fake of the API."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from dunwell.domain.decision import Charge
from dunwell.domain.events import PaymentMethod
from dunwell.domain.money import Money
from dunwell.providers.base import ProviderError
from dunwell.providers.stripe_charges import StripeChargeProvider
from fakes.stripe_api import FakeStripe

pytestmark = pytest.mark.integration


@pytest.fixture
def fake() -> Iterator[FakeStripe]:
    with FakeStripe() as api:
        yield api


@pytest.fixture
def adapter(fake: FakeStripe) -> StripeChargeProvider:
    return StripeChargeProvider(fake.api_key, api_base=fake.url, timeout_seconds=5)


def _charge(token: str = "pm_card_visa", attempt: str = "att_1") -> Charge:
    return Charge(
        case_id="case_1",
        attempt_id=attempt,
        idempotency_key=attempt,
        amount=Money(1999, "EUR"),
        provider="stripe",
        payment_method=PaymentMethod(token),
        customer_id="cus_1",
        invoice_id="in_1",
    )


def test_an_approval_creates_one_confirmed_off_session_intent(fake, adapter):
    result = adapter.charge(_charge())
    assert result.approved and result.provider_reference == fake.captures[0]
    (sent,) = fake.requests
    assert sent["idempotency_key"] == "att_1"
    assert sent["params"] == {
        "amount": "1999",
        "currency": "eur",
        "customer": "cus_1",
        "payment_method": "pm_card_visa",
        "confirm": "true",
        "off_session": "true",
        "metadata": {"case_id": "case_1", "attempt_id": "att_1"},
    }


@pytest.mark.parametrize(
    ("token", "code", "network", "advice"),
    [
        ("pm_decline_insufficient_funds", "insufficient_funds", "51", "try_again_later"),
        ("pm_decline_do_not_honor", "do_not_honor", "05", "03"),
        ("pm_decline_stolen_card", "stolen_card", "43", "do_not_try_again"),
        ("pm_decline_expired_card", "expired_card", "54", "confirm_card_data"),
    ],
)
def test_card_errors_are_declines_with_the_codes(fake, adapter, token, code, network, advice):
    result = adapter.charge(_charge(token))
    assert not result.approved and result.decline is not None
    assert result.decline.provider == "stripe"
    assert result.decline.provider_code == code
    assert result.decline.network_code == network
    assert result.decline.advice_code == advice
    assert result.provider_reference in fake.intents
    assert fake.captures == []


@pytest.mark.parametrize("token", ["pm_requires_action", "pm_authentication_required"])
def test_sca_is_an_authentication_required_decline(adapter, token):
    result = adapter.charge(_charge(token))
    assert not result.approved and result.decline is not None
    assert result.decline.provider_code == "authentication_required"


def test_a_resend_under_the_same_key_is_replayed_not_charged_again(fake, adapter):
    first = adapter.charge(_charge())
    again = adapter.charge(_charge())
    assert again == first and len(fake.captures) == 1 and len(fake.intents) == 1


def test_unavailable_is_a_provider_error_and_lookup_finds_nothing(fake, adapter):
    fake.fail_next.append("unavailable")
    with pytest.raises(ProviderError):
        adapter.charge(_charge())
    # Nothing was executed: the lookup's re-send is the first real request.
    assert fake.captures == []


def test_a_lost_answer_is_resolved_by_the_replay_without_a_second_capture(fake, adapter):
    fake.fail_next.append("lost_response")
    with pytest.raises(ProviderError):
        adapter.charge(_charge())
    assert len(fake.captures) == 1
    found = adapter.lookup(_charge())
    assert found is not None and found.approved
    assert found.provider_reference == fake.captures[0] and len(fake.captures) == 1


def test_a_stored_500_is_resolved_by_searching_the_attempt_id(fake, adapter):
    fake.fail_next.append("stored_500")
    with pytest.raises(ProviderError):
        adapter.charge(_charge())
    found = adapter.lookup(_charge())  # the replay is the same 500; the search finds the intent
    assert found is not None and found.approved and len(fake.captures) == 1


def test_a_declined_intent_found_by_search_is_a_decline(fake, adapter):
    fake.fail_next.append("stored_500")
    with pytest.raises(ProviderError):
        adapter.charge(_charge("pm_decline_insufficient_funds"))
    found = adapter.lookup(_charge("pm_decline_insufficient_funds"))
    assert found is not None and not found.approved
    assert found.decline is not None and found.decline.provider_code == "insufficient_funds"


def test_a_wrong_api_key_is_a_provider_error(fake):
    adapter = StripeChargeProvider("sk_test_wrong", api_base=fake.url, timeout_seconds=5)
    with pytest.raises(ProviderError, match="401"):
        adapter.charge(_charge())


def test_an_unreachable_api_is_a_provider_error():
    from e2e_support import free_port

    url = f"http://127.0.0.1:{free_port()}"
    adapter = StripeChargeProvider("sk_test_fake", api_base=url, timeout_seconds=2)
    with pytest.raises(ProviderError, match="APIConnectionError"):
        adapter.charge(_charge())
