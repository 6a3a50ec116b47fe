"""Google Play RTDN over Pub/Sub push, authenticated by the shared token of the push URL."""

from __future__ import annotations

import json
from datetime import UTC, datetime

import pytest

from dunwell.engine.event_schema import parse_event
from dunwell.webhooks import google as adapter
from dunwell.webhooks.base import Endpoint, Untranslatable, WebhookRejected
from webhooks_support import google_push as push

pytestmark = pytest.mark.unit
NOW = datetime(2026, 11, 2, 9, 0, tzinfo=UTC)
PRICES = {"prices": {"pro.monthly": {"amount": 499, "currency": "EUR"}}}
ENDPOINT = Endpoint("we_6", "acme", "google", "com.example.app", "tok-123", PRICES)


def test_the_push_token_is_required_and_compared():
    adapter.verify({"query:token": "tok-123"}, push(6), ENDPOINT, NOW)
    for headers, code in [({}, "missing_signature"), ({"query:token": "nope"}, "bad_signature")]:
        with pytest.raises(WebhookRejected) as caught:
            adapter.verify(headers, push(6), ENDPOINT, NOW)
        assert caught.value.code == code and caught.value.status == 401
    with pytest.raises(WebhookRejected) as caught:
        adapter.verify({"query:token": "tok-123"}, push(6, package="x.y"), ENDPOINT, NOW)
    assert caught.value.code == "wrong_account"


def test_grace_period_and_on_hold_are_failures_at_the_configured_price():
    for kind, code in ((6, "in_grace_period"), (5, "on_hold")):
        out = adapter.translate(push(kind), ENDPOINT)
        (event,) = out.events
        parse_event(json.dumps(event))
        assert event["invoice"]["amount"] == 499 and event["decline"]["provider_code"] == code
        assert "purchase-token-abc" not in json.dumps(event)  # kept as a digest only
        assert out.open_case_invoice[0][0] == event["subscription"]["id"]
    bare = Endpoint("we_6", "acme", "google", None, "tok-123", {})
    with pytest.raises(Untranslatable):
        adapter.translate(push(6), bare)


def test_recovered_expired_and_others():
    assert adapter.translate(push(1), ENDPOINT).events[0]["type"] == "payment.succeeded"
    assert adapter.translate(push(13), ENDPOINT).events[0]["type"] == "subscription.canceled"
    assert adapter.translate(push(4), ENDPOINT).ignored
