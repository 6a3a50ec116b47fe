"""Stripe: signatures made by the official SDK, checked by dunwell's own verifier."""

from __future__ import annotations

import json
from datetime import UTC, datetime

import pytest

from dunwell.engine.event_schema import parse_event
from dunwell.webhooks import stripe as adapter
from dunwell.webhooks.base import Endpoint, WebhookRejected
from webhooks_support import STRIPE_SECRET, stripe_event, stripe_header, stripe_invoice

pytestmark = pytest.mark.unit
NOW = datetime(2026, 11, 2, 9, 0, tzinfo=UTC)
T = int(NOW.timestamp())
ENDPOINT = Endpoint("we_1", "acme", "stripe", None, STRIPE_SECRET, {"storefront": "web"})


def _verify(body: bytes, header: str | None, now: datetime = NOW) -> None:
    headers = {"stripe-signature": header} if header is not None else {}
    adapter.verify(headers, body, ENDPOINT, now)


def test_a_payload_signed_by_the_sdk_is_accepted():
    body = stripe_event("invoice.payment_failed", stripe_invoice(), T)
    _verify(body, stripe_header(body, T))
    _verify(body, stripe_header(body, T - 299))  # within tolerance both ways
    _verify(body, stripe_header(body, T + 299))


@pytest.mark.parametrize(
    ("header", "code"),
    [
        (None, "missing_signature"),
        ("", "missing_signature"),
        ("t=abc,v1=00", "malformed_signature"),
        ("v1=00", "malformed_signature"),
    ],
)
def test_missing_or_malformed_headers_are_rejected(header, code):
    body = stripe_event("invoice.paid", stripe_invoice(), T)
    with pytest.raises(WebhookRejected) as caught:
        _verify(body, header)
    assert caught.value.code == code and 400 <= caught.value.status < 500


def test_tampered_body_wrong_secret_and_old_or_future_timestamps_are_rejected():
    body = stripe_event("invoice.payment_failed", stripe_invoice(), T)
    tampered = body.replace(b"1999", b"19")
    cases = [
        (tampered, stripe_header(body, T), "bad_signature"),
        (body, stripe_header(body, T, secret="whsec_other"), "bad_signature"),
        (body, stripe_header(body, T - 301), "stale_timestamp"),
        # The SDK's own verify_header lets this through; dunwell does not.
        (body, stripe_header(body, T + 3600), "future_timestamp"),
    ]
    for payload, header, code in cases:
        with pytest.raises(WebhookRejected) as caught:
            _verify(payload, header)
        assert caught.value.code == code


def test_the_sdk_itself_accepts_a_future_timestamp_which_dunwell_refuses():
    import time

    import stripe

    body = stripe_event("invoice.paid", stripe_invoice(), T)
    future = int(time.time()) + 86_400
    stripe.WebhookSignature.verify_header(body, stripe_header(body, future), STRIPE_SECRET, 300)
    with pytest.raises(WebhookRejected):
        _verify(body, stripe_header(body, future), now=datetime.fromtimestamp(time.time(), UTC))


def test_any_of_several_v1_signatures_matches_during_a_secret_roll():
    body = stripe_event("invoice.paid", stripe_invoice(), T)
    old = stripe_header(body, T, secret="whsec_old").split(",")[1]
    _verify(body, stripe_header(body, T) + "," + old)


def _one(kind: str, obj: dict, **extra) -> dict:
    translation = adapter.translate(stripe_event(kind, obj, T, **extra), ENDPOINT)
    assert len(translation.events) == 1, translation.ignored
    event = translation.events[0]
    parse_event(json.dumps(event))  # exactly the POST /v1/events format
    return event


def test_invoice_payment_failed_becomes_payment_failed_with_the_code_unknown():
    event = _one("invoice.payment_failed", stripe_invoice(default_payment_method="pm_9"))
    assert event["id"] == "stripe:evt_1" and event["type"] == "payment.failed"
    assert event["invoice"] == {"id": "in_1", "amount": 1999, "currency": "EUR"}
    assert event["subscription"] == {"id": "sub_1", "storefront": "web"}
    assert event["customer"]["id"] == "cus_1"
    assert event["payment"]["payment_method"]["token"] == "pm_9"
    assert event["decline"]["provider"] == "stripe"
    assert event["decline"]["provider_code"] is None


def test_an_expanded_payment_intent_on_an_older_invoice_gives_the_decline_facts():
    intent = {
        "id": "pi_1",
        "last_payment_error": {
            "code": "card_declined",
            "decline_code": "insufficient_funds",
            "network_decline_code": "51",
            "network_advice_code": "02",
            "message": "Your card has insufficient funds.",
        },
    }
    old = stripe_invoice(subscription="sub_old", payment_intent=intent)
    del old["parent"]
    event = _one("invoice.payment_failed", old)
    assert event["subscription"]["id"] == "sub_old"
    assert event["decline"] == {
        "provider": "stripe",
        "provider_code": "insufficient_funds",
        "network_code": "51",
        "advice_code": "02",
        "message": "Your card has insufficient funds.",
    }


def test_action_required_is_an_authentication_failure():
    event = _one("invoice.payment_action_required", stripe_invoice())
    assert event["decline"]["provider_code"] == "authentication_required"


@pytest.mark.parametrize("kind", ["invoice.paid", "invoice.payment_succeeded"])
def test_paid_invoices_recover(kind):
    event = _one(kind, stripe_invoice(amount_paid=1999))
    assert event["type"] == "payment.succeeded" and event["invoice"]["amount"] == 1999


def test_subscription_states_and_new_default_methods():
    canceled = _one("customer.subscription.updated", {"id": "sub_1", "status": "canceled"})
    assert canceled["type"] == "subscription.canceled"
    assert canceled["subscription"] == {"id": "sub_1"}
    past_due = adapter.translate(
        stripe_event("customer.subscription.updated", {"id": "sub_1", "status": "past_due"}, T),
        ENDPOINT,
    )
    assert past_due.events == [] and "past_due" in past_due.ignored[0]
    attached = _one(
        "payment_method.attached",
        {"id": "pm_2", "customer": "cus_1", "card": {"brand": "visa", "fingerprint": "fp2"}},
    )
    assert attached["payment_method"] == {"token": "pm_2", "brand": "visa", "fingerprint": "fp2"}
    body = json.loads(
        stripe_event(
            "customer.updated",
            {"id": "cus_1", "invoice_settings": {"default_payment_method": "pm_3"}},
            T,
        )
    )
    body["data"]["previous_attributes"] = {"invoice_settings": {"default_payment_method": "pm_2"}}
    updated = adapter.translate(json.dumps(body).encode(), ENDPOINT).events[0]
    assert updated["type"] == "payment_method.updated"
    assert updated["payment_method"]["token"] == "pm_3"


def test_a_dispute_naming_an_invoice_closes_it_and_one_without_is_recorded():
    event = _one("charge.dispute.created", {"id": "dp_1", "invoice": "in_1", "reason": "fraud"})
    assert event["type"] == "dispute.opened" and event["invoice"] == {"id": "in_1"}
    bare = adapter.translate(
        stripe_event("charge.dispute.created", {"id": "dp_2", "charge": "ch_1"}, T), ENDPOINT
    )
    assert bare.events == [] and "ch_1" in bare.ignored[0]


def test_unknown_types_and_intent_failures_are_acknowledged_not_translated():
    for kind in ("customer.created", "payment_intent.payment_failed", "charge.failed"):
        out = adapter.translate(stripe_event(kind, {"id": "x"}, T), ENDPOINT)
        assert out.events == [] and out.ignored and out.delivery_id == "evt_1"


def test_the_end_of_smart_retries_says_retries_exhausted():
    uncollectible = _one(
        "invoice.marked_uncollectible",
        {"id": "in_9", "customer": "cus_1", "status": "uncollectible"},
    )
    assert uncollectible["type"] == "payment.retries_exhausted"
    assert uncollectible["invoice"] == {"id": "in_9"}
    assert uncollectible["payment"] == {"provider": "stripe"}
    unpaid = _one(
        "customer.subscription.updated",
        {"id": "sub_1", "status": "unpaid", "latest_invoice": "in_8", "customer": "cus_1"},
    )
    assert unpaid["type"] == "payment.retries_exhausted" and unpaid["invoice"] == {"id": "in_8"}
    for body in (uncollectible, unpaid):
        event, _ = parse_event(json.dumps(body))
        assert event.type == "payment.retries_exhausted"
