"""Adyen outbound charges through the official SDK, against a loopback fake of /payments."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from dunwell.domain.decision import Charge
from dunwell.domain.events import PaymentMethod
from dunwell.domain.money import Money
from dunwell.providers.adyen_charges import AdyenChargeProvider
from dunwell.providers.base import ProviderError
from fakes.adyen_api import FakeAdyen

pytestmark = pytest.mark.integration


@pytest.fixture
def fake() -> Iterator[FakeAdyen]:
    with FakeAdyen() as api:
        yield api


@pytest.fixture
def adapter(fake: FakeAdyen) -> AdyenChargeProvider:
    return AdyenChargeProvider(
        fake.api_key, fake.merchant_account, api_base=f"{fake.url}/checkout", timeout_seconds=5
    )


def _charge(token: str = "adyen:8415000000000001", attempt: str = "att_1") -> Charge:
    return Charge(
        case_id="case_1",
        attempt_id=attempt,
        idempotency_key=attempt,
        amount=Money(1999, "EUR"),
        provider="adyen",
        payment_method=PaymentMethod(token),
        customer_id="shopper_1",
        invoice_id="in_1",
    )


def test_an_authorisation_sends_a_subscription_contauth_payment(fake, adapter):
    result = adapter.charge(_charge())
    assert result.approved and result.provider_reference == fake.authorisations[0]
    (sent,) = fake.requests
    assert sent["idempotency_key"] == "att_1"
    assert fake.paths[0].startswith("/checkout/v") and fake.paths[0].endswith("/payments")
    body = sent["body"]
    assert body["shopperInteraction"] == "ContAuth"
    assert body["recurringProcessingModel"] == "Subscription"
    assert body["paymentMethod"] == {"type": "scheme", "storedPaymentMethodId": "8415000000000001"}
    assert body["amount"] == {"value": 1999, "currency": "EUR"}
    assert body["reference"] == "att_1" and body["shopperReference"] == "shopper_1"
    assert body["merchantAccount"] == "AcmeECOM"


@pytest.mark.parametrize(
    ("token", "code", "network", "advice"),
    [
        ("stored_not_enough_balance", "12", "51", None),
        ("stored_do_not_honor_mac03", "2", "05", "03"),
        ("stored_expired", "6", "54", None),
        ("stored_auth_required", "38", "1A", None),
    ],
)
def test_refusals_are_declines_with_the_codes(fake, adapter, token, code, network, advice):
    result = adapter.charge(_charge(token))
    assert not result.approved and result.decline is not None
    assert result.decline.provider == "adyen"
    assert result.decline.provider_code == code
    assert result.decline.network_code == network
    assert result.decline.advice_code == advice
    assert fake.authorisations == []


def test_a_shopper_challenge_is_an_authentication_required_decline(adapter):
    result = adapter.charge(_charge("stored_challenge"))
    assert not result.approved and result.decline is not None
    assert result.decline.provider_code == "38"


def test_a_resend_under_the_same_key_gets_the_first_answer(fake, adapter):
    first = adapter.charge(_charge())
    assert adapter.charge(_charge()) == first and len(fake.authorisations) == 1


def test_a_lost_answer_is_resolved_by_the_lookup_without_a_second_payment(fake, adapter):
    fake.fail_next.append("lost_response")
    with pytest.raises(ProviderError):
        adapter.charge(_charge())
    found = adapter.lookup(_charge())
    assert found is not None and found.approved
    assert found.provider_reference == fake.authorisations[0] and len(fake.authorisations) == 1


def test_a_500_is_a_provider_error(fake, adapter):
    fake.fail_next.append("unavailable")
    with pytest.raises(ProviderError, match="500"):
        adapter.charge(_charge())
    assert fake.authorisations == []


def test_a_wrong_api_key_is_a_provider_error(fake):
    adapter = AdyenChargeProvider(
        "wrong", fake.merchant_account, api_base=f"{fake.url}/checkout", timeout_seconds=5
    )
    with pytest.raises(ProviderError, match="401"):
        adapter.charge(_charge())
    assert adapter.lookup(_charge()) is None


def test_an_unreachable_api_is_a_provider_error():
    from e2e_support import free_port

    base = f"http://127.0.0.1:{free_port()}/checkout"
    adapter = AdyenChargeProvider("k", "AcmeECOM", api_base=base, timeout_seconds=2)
    with pytest.raises(ProviderError, match="unreachable"):
        adapter.charge(_charge())
