"""Apple App Store Server Notifications V2, signed by a test CA generated here."""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta

import pytest

from apple_support import BUNDLE, make_chain, notification
from dunwell.engine.event_schema import parse_event
from dunwell.webhooks import apple as adapter
from dunwell.webhooks.base import Endpoint, WebhookRejected, milli_to_minor

pytestmark = pytest.mark.unit
NOW = datetime(2026, 11, 2, 9, 0, tzinfo=UTC)
CHAIN = make_chain()


def _endpoint(chain=CHAIN, account: str | None = BUNDLE) -> Endpoint:
    return Endpoint(
        "we_5", "acme", "apple", account, "x", {"root_certificates_pem": chain.root_pem}
    )


def _rejected(body: bytes, endpoint: Endpoint | None = None, now: datetime = NOW) -> str:
    with pytest.raises(WebhookRejected) as caught:
        adapter.verify({}, body, endpoint or _endpoint(), now)
    assert 400 <= caught.value.status < 500
    return caught.value.code


def test_a_notification_signed_through_the_configured_root_is_accepted():
    adapter.verify({}, notification(CHAIN, "DID_FAIL_TO_RENEW", None, NOW), _endpoint(), NOW)


def test_another_ca_tampering_and_missing_payload_are_rejected():
    stranger = make_chain()  # a perfectly shaped chain, but not to the configured root
    assert _rejected(notification(stranger, "DID_FAIL_TO_RENEW", None, NOW)) == "untrusted_chain"
    body = json.loads(notification(CHAIN, "DID_FAIL_TO_RENEW", None, NOW))
    head, payload, signature = body["signedPayload"].split(".")
    forged = json.dumps({"signedPayload": f"{head}.{payload[:-4]}AAAA.{signature}"}).encode()
    assert _rejected(forged) == "bad_signature"
    assert _rejected(b'{"other": 1}') == "missing_signature"
    assert _rejected(b"not json") == "missing_signature"


def test_a_chain_without_apple_markers_or_with_an_expired_leaf_is_rejected():
    plain = make_chain(markers=False)
    body = notification(plain, "DID_FAIL_TO_RENEW", None, NOW)
    assert _rejected(body, _endpoint(plain)) == "untrusted_chain"
    expired = make_chain(leaf_not_after=NOW - timedelta(days=1))
    body = notification(expired, "DID_FAIL_TO_RENEW", None, NOW)
    assert _rejected(body, _endpoint(expired)) == "untrusted_chain"


def test_a_nested_transaction_signed_by_someone_else_is_rejected():
    stranger = make_chain()
    body = json.loads(notification(CHAIN, "DID_FAIL_TO_RENEW", None, NOW))
    payload = adapter._unverified(body["signedPayload"])
    payload["data"]["signedTransactionInfo"] = stranger.sign({"originalTransactionId": "1"})
    resigned = json.dumps({"signedPayload": CHAIN.sign(payload)}).encode()
    assert _rejected(resigned) == "untrusted_chain"


def test_old_future_and_other_bundle_notifications_are_rejected():
    assert _rejected(notification(CHAIN, "TEST", None, NOW - timedelta(days=5))) == (
        "stale_timestamp"
    )
    assert _rejected(notification(CHAIN, "TEST", None, NOW + timedelta(hours=1))) == (
        "future_timestamp"
    )
    other = notification(CHAIN, "TEST", None, NOW, bundle="com.other")
    assert _rejected(other) == "wrong_account"


def test_failed_renewal_in_grace_period_becomes_payment_failed_in_minor_units():
    body = notification(CHAIN, "DID_FAIL_TO_RENEW", "GRACE_PERIOD", NOW, notification_uuid="u-1")
    out = adapter.translate(body, _endpoint())
    (event,) = out.events
    parse_event(json.dumps(event))
    assert event["id"] == "apple:u-1" and event["type"] == "payment.failed"
    assert event["invoice"]["amount"] == 999 and event["invoice"]["currency"] == "USD"
    assert event["invoice"]["id"].startswith("apple:1000000000000001:")
    assert event["subscription"]["storefront"] == "app_store"
    assert event["decline"]["provider"] == "apple"
    assert event["decline"]["provider_code"] == "billing_error"
    assert out.open_case_invoice == {0: ("1000000000000001", event["invoice"]["id"])}


def test_recovery_expiry_and_others():
    recovered = adapter.translate(
        notification(CHAIN, "DID_RENEW", "BILLING_RECOVERY", NOW), _endpoint()
    )
    assert recovered.events[0]["type"] == "payment.succeeded"
    assert recovered.open_case_invoice == {0: ("1000000000000001", None)}
    expired = adapter.translate(notification(CHAIN, "EXPIRED", "BILLING_RETRY", NOW), _endpoint())
    assert expired.events[0]["type"] == "subscription.canceled"
    renewed = adapter.translate(notification(CHAIN, "DID_RENEW", None, NOW), _endpoint())
    assert renewed.events == [] and renewed.ignored


@pytest.mark.parametrize(
    ("milli", "currency", "minor"),
    [(9990, "USD", 999), (1000, "JPY", 1), (120000, "JPY", 120), (1234, "KWD", 1234)],
)
def test_thousandths_to_minor_units_exactly(milli, currency, minor):
    assert milli_to_minor(milli, currency) == minor


def test_a_price_finer_than_the_minor_unit_is_not_rounded():
    from dunwell.webhooks.base import Untranslatable

    with pytest.raises(Untranslatable):
        milli_to_minor(9995, "USD")
