"""Braintree: notifications produced and signed by the official SDK's webhook testing."""

from __future__ import annotations

import json
from datetime import UTC, datetime
from urllib.parse import urlencode

import pytest

from dunwell.engine.event_schema import parse_event
from dunwell.webhooks import braintree as adapter
from dunwell.webhooks.base import Endpoint, Untranslatable, WebhookRejected
from webhooks_support import (
    BRAINTREE_PRIVATE,
    BRAINTREE_PUBLIC,
    altered,
    braintree_form,
    braintree_sign,
)

pytestmark = pytest.mark.unit
NOW = datetime(2026, 11, 2, 9, 0, tzinfo=UTC)
SECRET = f"{BRAINTREE_PUBLIC}:{BRAINTREE_PRIVATE}"
ENDPOINT = Endpoint("we_3", "acme", "braintree", "merchant_1", SECRET, {"currency": "USD"})

FAILED_XML = """<notification>
  <timestamp type="datetime">2026-11-02T09:00:00Z</timestamp>
  <kind>subscription_charged_unsuccessfully</kind>
  <subject><subscription>
    <id>sub_bt</id><plan-id>gold</plan-id><payment-method-token>tok_1</payment-method-token>
    <billing-period-start-date type="date">2026-11-01</billing-period-start-date>
    <transactions type="array"><transaction>
      <id>txn_2</id><status>processor_declined</status><amount>49.99</amount>
      <currency-iso-code>USD</currency-iso-code>
      <processor-response-code>2001</processor-response-code>
      <processor-response-text>Insufficient Funds</processor-response-text>
      <network-response-code>51</network-response-code>
      <merchant-advice-code>01</merchant-advice-code>
      <customer><id>cust_bt</id><email>cy@example.com</email></customer>
      <credit-card><card-type>MasterCard</card-type>
        <unique-number-identifier>uniq_1</unique-number-identifier></credit-card>
    </transaction></transactions>
  </subscription></subject>
</notification>"""


def _body(form: dict[str, str]) -> bytes:
    return urlencode(form).encode()


def test_the_sdk_sample_is_accepted_and_a_tampered_payload_is_not():
    form = braintree_form("subscription_charged_unsuccessfully", "sub_bt")
    adapter.verify({}, _body(form), ENDPOINT, NOW)
    tampered = dict(form, bt_payload=altered(form["bt_payload"], 10))
    with pytest.raises(WebhookRejected) as caught:
        adapter.verify({}, _body(tampered), ENDPOINT, NOW)
    assert caught.value.code == "bad_signature"


def test_missing_signature_wrong_key_and_garbage_are_rejected():
    form = braintree_form("subscription_went_past_due", "sub_bt")
    with pytest.raises(WebhookRejected) as caught:
        adapter.verify({}, _body({"bt_payload": form["bt_payload"]}), ENDPOINT, NOW)
    assert caught.value.code == "missing_signature"
    other = Endpoint("we_3", "acme", "braintree", None, f"{BRAINTREE_PUBLIC}:other", {})
    with pytest.raises(WebhookRejected):
        adapter.verify({}, _body(form), other, NOW)
    stranger = Endpoint("we_3", "acme", "braintree", None, f"someone:{BRAINTREE_PRIVATE}", {})
    with pytest.raises(WebhookRejected):
        adapter.verify({}, _body(form), stranger, NOW)
    with pytest.raises(WebhookRejected):
        adapter.verify({}, b"", ENDPOINT, NOW)


def test_a_failed_subscription_charge_with_processor_facts():
    body = _body(braintree_sign(FAILED_XML))
    adapter.verify({}, body, ENDPOINT, NOW)
    (event,) = adapter.translate(body, ENDPOINT).events
    parse_event(json.dumps(event))
    assert event["type"] == "payment.failed"
    assert event["invoice"] == {"id": "sub_bt:2026-11-01", "amount": 4999, "currency": "USD"}
    assert event["customer"] == {"id": "cust_bt", "email": "cy@example.com"}
    assert event["payment"]["payment_method"] == {
        "token": "tok_1",
        "brand": "mastercard",
        "fingerprint": "uniq_1",
    }
    assert event["decline"] == {
        "provider": "braintree",
        "provider_code": "2001",
        "network_code": "51",
        "advice_code": "01",
        "message": "Insufficient Funds",
    }
    success = FAILED_XML.replace("charged_unsuccessfully", "charged_successfully")
    (paid,) = adapter.translate(_body(braintree_sign(success)), ENDPOINT).events
    assert paid["type"] == "payment.succeeded" and paid["invoice"]["id"] == "sub_bt:2026-11-01"


def test_the_sdk_samples_translate_with_the_endpoint_currency():
    form = braintree_form("subscription_charged_unsuccessfully", "sub_s")
    (event,) = adapter.translate(_body(form), ENDPOINT).events
    assert event["invoice"]["amount"] == 4999 and event["invoice"]["currency"] == "USD"
    assert event["payment"]["payment_method"]["token"] == "sub_s:default"
    bare = Endpoint("we_3", "acme", "braintree", None, SECRET, {})
    with pytest.raises(Untranslatable):
        adapter.translate(_body(form), bare)
    past_due = adapter.translate(
        _body(braintree_form("subscription_went_past_due", "sub_s")), ENDPOINT
    )
    assert past_due.events == [] and past_due.ignored
    dispute = adapter.translate(_body(braintree_form("dispute_opened", "dp_1")), ENDPOINT)
    assert dispute.events == [] and "order-id" in dispute.ignored[0]
    unknown = adapter.translate(_body(braintree_form("check", "x")), ENDPOINT)
    assert unknown.events == [] and unknown.ignored == ["check: not an event dunwell acts on"]
