"""Braintree outbound charges through the official SDK, against a loopback fake of the XML
gateway API. Braintree takes no idempotency key: the order id (= attempt id) stands in."""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import replace

import pytest

from dunwell.domain.decision import Charge
from dunwell.domain.events import PaymentMethod
from dunwell.domain.money import Money
from dunwell.providers.base import ProviderError
from dunwell.providers.braintree_charges import BraintreeChargeProvider
from fakes.braintree_api import FakeBraintree

pytestmark = pytest.mark.integration


@pytest.fixture
def fake() -> Iterator[FakeBraintree]:
    with FakeBraintree() as api:
        yield api


@pytest.fixture
def adapter(fake: FakeBraintree) -> BraintreeChargeProvider:
    return BraintreeChargeProvider(
        fake.merchant_id, fake.public_key, fake.private_key, api_base=fake.url, timeout_seconds=5
    )


def _charge(token: str = "bt_visa", attempt: str = "att_1", amount: int = 1999) -> Charge:
    return Charge(
        case_id="case_1",
        attempt_id=attempt,
        idempotency_key=attempt,
        amount=Money(amount, "EUR"),
        provider="braintree",
        payment_method=PaymentMethod(token),
        customer_id="cust_1",
        invoice_id="in_1",
    )


def test_a_sale_on_the_vaulted_token_is_submitted_for_settlement(fake, adapter):
    result = adapter.charge(_charge())
    assert result.approved and result.provider_reference == fake.settled[0]
    (sale,) = fake.sales
    assert sale["amount"] == "19.99"
    assert sale["payment_method_token"] == "bt_visa"
    assert sale["order_id"] == "att_1"
    assert sale["transaction_source"] == "recurring"
    assert sale["type"] == "sale"
    assert sale["options"] == {"submit_for_settlement": "true"}


@pytest.mark.parametrize(
    ("token", "code", "network", "advice", "kind"),
    [
        ("bt_insufficient_funds", "2001", "51", None, "soft_declined"),
        ("bt_expired_card", "2004", "54", None, "hard_declined"),
        ("bt_do_not_honor_mac03", "2000", "05", "03", "soft_declined"),
        ("bt_network_unavailable", "3000", None, None, "soft_declined"),
    ],
)
def test_processor_declines_carry_the_codes(fake, adapter, token, code, network, advice, kind):
    result = adapter.charge(_charge(token))
    assert not result.approved and result.decline is not None
    assert result.decline.provider == "braintree"
    assert result.decline.provider_code == code
    assert result.decline.network_code == network
    assert result.decline.advice_code == advice
    assert kind in (result.decline.message or "")
    assert fake.settled == []


def test_a_gateway_rejection_is_a_decline_with_its_reason(adapter):
    result = adapter.charge(_charge("bt_gateway_cvv"))
    assert not result.approved and result.decline is not None
    assert result.decline.provider_code == "cvv"


def test_a_validation_error_is_a_provider_error(adapter):
    with pytest.raises(ProviderError, match="91518"):
        adapter.charge(_charge("bt_deleted"))


def test_the_amount_is_sent_in_major_units_per_currency(fake, adapter):
    adapter.charge(replace(_charge(), amount=Money(1200, "JPY")))
    adapter.charge(replace(_charge(attempt="att_2"), amount=Money(1200, "KWD")))
    assert [sale["amount"] for sale in fake.sales] == ["1200", "1.200"]


def test_a_resend_finds_the_first_transaction_instead_of_selling_again(fake, adapter):
    first = adapter.charge(_charge())
    assert adapter.charge(_charge()) == first
    assert len(fake.sales) == 1 and len(fake.settled) == 1


def test_a_lost_answer_is_resolved_by_the_order_id_search(fake, adapter):
    fake.fail_next.append("lost_response")
    with pytest.raises(ProviderError):
        adapter.charge(_charge())
    found = adapter.lookup(_charge())
    assert found is not None and found.approved and found.provider_reference == fake.settled[0]
    # A later re-send of the attempt is answered from the search too: still one sale.
    assert adapter.charge(_charge()) == found and len(fake.sales) == 1


def test_unavailable_is_a_provider_error_and_the_lookup_finds_nothing(fake, adapter):
    fake.fail_next.append("unavailable")
    with pytest.raises(ProviderError):
        adapter.charge(_charge())
    assert adapter.lookup(_charge()) is None and fake.settled == []


def test_wrong_keys_are_a_provider_error(fake):
    adapter = BraintreeChargeProvider(fake.merchant_id, "pub", "wrong", api_base=fake.url)
    with pytest.raises(ProviderError, match="Authentication"):
        adapter.charge(_charge())


def test_an_unreachable_gateway_is_a_provider_error():
    from e2e_support import free_port

    url = f"http://127.0.0.1:{free_port()}"
    adapter = BraintreeChargeProvider("m", "p", "k", api_base=url, timeout_seconds=2)
    with pytest.raises(ProviderError):
        adapter.charge(_charge())
