"""The Stripe trap: since API 2025-03-31 the failed invoice names no PaymentIntent, so the
decline facts are fetched through the official SDK (here from a loopback fake API)."""

from __future__ import annotations

import pytest

from dunwell.webhooks import stripe as adapter
from dunwell.webhooks.base import Endpoint
from webhooks_support import (
    STRIPE_SECRET,
    FakeStripeApi,
    stripe_event,
    stripe_intent_routes,
    stripe_invoice,
)

pytestmark = pytest.mark.integration
T = 1793610000


def _endpoint(api: FakeStripeApi) -> Endpoint:
    config = {"api_key": "rk_test_read", "api_base": api.url}
    return Endpoint("we_1", "acme", "stripe", None, STRIPE_SECRET, config)


def test_decline_facts_and_the_card_come_from_the_payment_intent():
    with FakeStripeApi(stripe_intent_routes()) as api:
        out = adapter.translate(
            stripe_event("invoice.payment_failed", stripe_invoice(), T), _endpoint(api)
        )
    (event,) = out.events
    assert event["decline"]["provider_code"] == "insufficient_funds"
    assert event["decline"]["network_code"] == "51"
    assert event["payment"]["payment_method"] == {
        "token": "pm_from_api",
        "brand": "visa",
        "fingerprint": "fp_api",
    }
    assert out.ignored == []
    paths = [path for path, _ in api.requests]
    assert paths[0].startswith("/v1/invoice_payments?") and "invoice=in_1" in paths[0]
    assert paths[1] == "/v1/payment_intents/pi_1"
    assert all(auth == "Bearer rk_test_read" for _, auth in api.requests)


def test_an_older_invoice_names_its_intent_and_is_fetched_directly():
    with FakeStripeApi(stripe_intent_routes()) as api:
        invoice = stripe_invoice(payment_intent="pi_1")
        out = adapter.translate(stripe_event("invoice.payment_failed", invoice, T), _endpoint(api))
    assert out.events[0]["decline"]["provider_code"] == "insufficient_funds"
    assert [path for path, _ in api.requests] == ["/v1/payment_intents/pi_1"]


def test_an_api_failure_leaves_the_code_unknown_and_says_so():
    routes = {"/v1/invoice_payments": (401, {"error": {"message": "Invalid API Key"}})}
    with FakeStripeApi(routes) as api:
        out = adapter.translate(
            stripe_event("invoice.payment_failed", stripe_invoice(), T), _endpoint(api)
        )
    assert out.events[0]["decline"]["provider_code"] is None
    assert "could not be fetched" in out.ignored[0]


def test_without_an_api_key_nothing_is_fetched():
    endpoint = Endpoint("we_1", "acme", "stripe", None, STRIPE_SECRET, {})
    out = adapter.translate(stripe_event("invoice.payment_failed", stripe_invoice(), T), endpoint)
    assert out.events[0]["decline"]["provider_code"] is None and out.ignored == []


def test_a_dispute_naming_only_its_payment_intent_finds_the_invoice_through_the_api():
    from urllib.parse import parse_qs, urlsplit

    dispute = {"id": "dp_1", "charge": "ch_1", "payment_intent": "pi_1", "reason": "fraudulent"}
    with FakeStripeApi(stripe_intent_routes(invoice="in_7")) as api:
        out = adapter.translate(stripe_event("charge.dispute.created", dispute, T), _endpoint(api))
    (event,) = out.events
    assert event["type"] == "dispute.opened" and event["invoice"] == {"id": "in_7"}
    ((path, _),) = api.requests
    query = parse_qs(urlsplit(path).query)
    assert query["payment[payment_intent]"] == ["pi_1"]
    assert query["payment[type]"] == ["payment_intent"]
