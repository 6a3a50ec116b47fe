"""Checkout.com: Cko-Signature by the documented algorithm (HMAC-SHA256 of the body)."""

from __future__ import annotations

import json
from datetime import UTC, datetime

import pytest

from dunwell.engine.event_schema import parse_event
from dunwell.webhooks import checkout as adapter
from dunwell.webhooks.base import Endpoint, WebhookRejected
from webhooks_support import CHECKOUT_SECRET, checkout_event, checkout_signature

pytestmark = pytest.mark.unit
NOW = datetime(2026, 11, 2, 9, 0, tzinfo=UTC)
ENDPOINT = Endpoint("we_4", "acme", "checkout", None, CHECKOUT_SECRET, {})


def test_signed_accepted_and_tampered_or_unsigned_rejected():
    body = checkout_event("payment_declined")
    adapter.verify({"cko-signature": checkout_signature(body)}, body, ENDPOINT, NOW)
    for headers, payload in [
        ({}, body),
        ({"cko-signature": checkout_signature(body)}, body.replace(b"2500", b"25")),
        ({"cko-signature": checkout_signature(body, "other")}, body),
    ]:
        with pytest.raises(WebhookRejected) as caught:
            adapter.verify(headers, payload, ENDPOINT, NOW)
        assert caught.value.status == 401


def test_declined_and_captured():
    (failed,) = adapter.translate(checkout_event("payment_declined"), ENDPOINT).events
    parse_event(json.dumps(failed))
    assert failed["id"] == "checkout:evt_cko_1"
    assert failed["invoice"] == {"id": "inv_cko_1", "amount": 2500, "currency": "GBP"}
    assert failed["subscription"] == {"id": "sub_cko_1"}
    assert failed["payment"]["payment_method"] == {
        "token": "src_1",
        "brand": "visa",
        "fingerprint": "fpx",
    }
    assert failed["decline"]["provider"] == "checkout"
    assert failed["decline"]["provider_code"] == "20051"
    captured = adapter.translate(checkout_event("payment_captured", "evt_2"), ENDPOINT).events
    assert captured[0]["type"] == "payment.succeeded"
    other = adapter.translate(checkout_event("card_verified", "evt_3"), ENDPOINT)
    assert other.events == [] and other.ignored


def test_an_authentic_event_of_an_unexpected_shape_is_untranslatable_not_a_crash():
    from dunwell.webhooks.base import Untranslatable

    body = b'{"id": "evt_9", "type": "payment_declined", "data": {"amount": "x"}}'
    with pytest.raises(Untranslatable):  # no created_on: named, not a KeyError
        adapter.translate(body, ENDPOINT)
