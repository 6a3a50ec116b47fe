"""Adyen: items signed with the official SDK's HMAC utility; dunwell checks every item."""

from __future__ import annotations

import json
from datetime import UTC, datetime

import Adyen.util
import pytest

from dunwell.engine.event_schema import parse_event
from dunwell.webhooks import adyen as adapter
from dunwell.webhooks.base import Endpoint, WebhookRejected
from webhooks_support import ADYEN_HMAC_KEY, adyen_body, adyen_item

pytestmark = pytest.mark.unit
NOW = datetime(2026, 11, 2, 9, 0, tzinfo=UTC)
ENDPOINT = Endpoint("we_2", "acme", "adyen", "AcmeCOM", ADYEN_HMAC_KEY, {})


def _verify(body: bytes, endpoint: Endpoint = ENDPOINT) -> None:
    adapter.verify({}, body, endpoint, NOW)


def test_a_batch_signed_by_the_sdk_is_accepted():
    _verify(adyen_body(adyen_item(), adyen_item(pspReference="PSP0002", success="true")))


def test_a_tampered_second_item_rejects_the_batch_though_the_sdk_helper_passes_it():
    good = adyen_item()
    forged = adyen_item(pspReference="PSP0002")
    forged["amount"]["value"] = 1  # changed after signing
    body = adyen_body(good, forged)
    # The SDK helper looks only at the first item and calls the batch valid.
    assert Adyen.util.is_valid_hmac_notification(json.loads(body), ADYEN_HMAC_KEY)
    with pytest.raises(WebhookRejected) as caught:
        _verify(body)
    assert caught.value.code == "bad_signature" and "item 1" in caught.value.reason


def test_unsigned_wrong_key_and_wrong_account_are_rejected():
    unsigned = adyen_item()
    del unsigned["additionalData"]["hmacSignature"]
    with pytest.raises(WebhookRejected) as caught:
        _verify(adyen_body(unsigned))
    assert caught.value.code == "missing_signature"
    other_key = Endpoint("we_2", "acme", "adyen", "AcmeCOM", "AB" * 32, {})
    with pytest.raises(WebhookRejected) as caught:
        _verify(adyen_body(adyen_item()), other_key)
    assert caught.value.code == "bad_signature"
    with pytest.raises(WebhookRejected) as caught:
        _verify(adyen_body(adyen_item(merchantAccountCode="Other")))
    assert caught.value.code == "wrong_account"
    with pytest.raises(WebhookRejected) as caught:
        _verify(b"{not json")
    assert caught.value.code == "malformed_body"


def test_a_refused_authorisation_carries_the_raw_response_and_advice_code():
    out = adapter.translate(adyen_body(adyen_item()), ENDPOINT)
    (event,) = out.events
    parse_event(json.dumps(event))
    assert event["id"] == "adyen:PSP0001:AUTHORISATION:false"
    assert event["type"] == "payment.failed"
    assert event["invoice"] == {"id": "inv_42", "amount": 1999, "currency": "EUR"}
    assert event["customer"] == {"id": "shopper_7"}
    assert event["payment"]["payment_method"] == {
        "token": "adyen:8415000000000001",
        "brand": "mastercard",
    }
    assert event["decline"]["provider"] == "adyen"
    assert event["decline"]["provider_code"] == "Not enough balance"
    assert event["decline"]["network_code"] == "51"
    assert event["decline"]["advice_code"] == "24"


def test_a_refusal_without_raw_response_keeps_the_reason_only():
    item = adyen_item(additionalData={"refusalReasonRaw": "DECLINED", "merchantAdviceCode": ""})
    (event,) = adapter.translate(adyen_body(item), ENDPOINT).events
    assert event["decline"]["network_code"] is None and event["decline"]["advice_code"] is None


def test_success_chargeback_recurring_and_auto_rescue():
    items = [
        adyen_item(success="true"),
        adyen_item(eventCode="NOTIFICATION_OF_CHARGEBACK", success="true", reason="Fraud"),
        adyen_item(eventCode="CHARGEBACK", success="true", pspReference="PSP0003"),
        adyen_item(eventCode="RECURRING_CONTRACT", success="true", pspReference="REC1"),
        adyen_item(eventCode="AUTORESCUE", success="false"),
        adyen_item(eventCode="AUTORESCUE_NEXT_ATTEMPT", success="true"),
        adyen_item(eventCode="REPORT_AVAILABLE", success="true"),
    ]
    out = adapter.translate(adyen_body(*items), ENDPOINT)
    for event in out.events:
        parse_event(json.dumps(event))
    kinds = [e["type"] for e in out.events]
    assert kinds == [
        "payment.succeeded",
        "dispute.opened",
        "dispute.opened",
        "payment_method.updated",
        "payment.retries_exhausted",  # Auto Rescue ended without a rescue
    ]
    assert out.events[1]["reason"] == "Fraud"
    assert out.events[3]["payment_method"] == {"token": "adyen:8415000000000001"}
    assert out.events[4]["payment"] == {"provider": "adyen"}
    assert out.events[4]["invoice"]["id"] == items[4]["merchantReference"]
    assert len(out.ignored) == 2 and "Auto Rescue" in out.ignored[0]
    assert len({e["id"] for e in out.events}) == 5


def test_basic_authentication_when_configured():
    import base64

    config = {"basic_auth_username": "adyen", "basic_auth_password": "pw-123"}
    endpoint = Endpoint("we_2", "acme", "adyen", "AcmeCOM", ADYEN_HMAC_KEY, config)
    body = adyen_body(adyen_item())
    good = "Basic " + base64.b64encode(b"adyen:pw-123").decode()
    adapter.verify({"authorization": good}, body, endpoint, NOW)
    wrong = "Basic " + base64.b64encode(b"adyen:guess").decode()
    for headers in ({}, {"authorization": wrong}):
        with pytest.raises(WebhookRejected) as caught:
            adapter.verify(headers, body, endpoint, NOW)
        assert caught.value.code == "bad_credentials"
