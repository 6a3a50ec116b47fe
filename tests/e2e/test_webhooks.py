"""Provider webhooks over real HTTP on loopback, signed with each provider's SDK or documented
algorithm: accepted ones open cases in the right lane once; the rest are refused and kept."""

from __future__ import annotations

import json
from datetime import timedelta
from urllib.parse import urlencode

import httpx
import pytest

from dunwell.store.unit_of_work import UnitOfWork
from webhooks_support import (
    ADYEN_HMAC_KEY,
    BRAINTREE_PRIVATE,
    BRAINTREE_PUBLIC,
    CHECKOUT_SECRET,
    STRIPE_SECRET,
    adyen_body,
    adyen_item,
    altered,
    braintree_form,
    braintree_sign,
    checkout_event,
    checkout_signature,
    stripe_event,
    stripe_header,
    stripe_invoice,
)

pytestmark = pytest.mark.e2e


def _endpoint(client: httpx.Client, provider: str, secret: str | None, **extra) -> dict:
    created = client.post(
        "/v1/webhook-endpoints", json={"provider": provider, "secret": secret, **extra}
    )
    assert created.status_code == 201, created.text
    body = created.json()
    assert "secret" not in body or secret is None  # a supplied secret is never echoed
    assert body["url_path"] == f"/webhooks/{provider}/{body['id']}"
    return body


def _lane(client: httpx.Client, case_id: str) -> str:
    return client.get(f"/v1/cases/{case_id}").json()["decline"]["lane"]


def test_stripe_end_to_end(client, base_url, clock, services):
    endpoint = _endpoint(client, "stripe", STRIPE_SECRET)
    url = f"{base_url}{endpoint['url_path']}"
    now = int(clock.now().timestamp())
    body = stripe_event("invoice.payment_action_required", stripe_invoice(), now, "evt_sca")

    first = httpx.post(url, content=body, headers={"Stripe-Signature": stripe_header(body, now)})
    assert first.status_code == 200, first.text
    (outcome,) = first.json()["events"]
    assert outcome["event_id"] == "stripe:evt_sca" and outcome["outcome"] == "opened"
    case_id = outcome["case_ids"][0]
    assert _lane(client, case_id) == "authenticate"
    timeline = client.get(f"/v1/cases/{case_id}/timeline").json()

    # The provider delivering the same event again: acknowledged, processed once.
    again = httpx.post(url, content=body, headers={"Stripe-Signature": stripe_header(body, now)})
    assert again.status_code == 200 and again.json()["duplicate"] is True
    assert client.get(f"/v1/cases/{case_id}/timeline").json() == timeline

    # Refusals: every one 4xx, kept in dead letters with its reason, nothing processed.
    other = stripe_event("invoice.payment_failed", stripe_invoice(id="in_2"), now, "evt_x")
    refusals = {
        "bad_signature": (other.replace(b"1999", b"1"), stripe_header(other, now)),
        "stale_timestamp": (other, stripe_header(other, now - 301)),
        "future_timestamp": (other, stripe_header(other, now + 301)),
        "missing_signature": (other, None),
    }
    kept = {}
    for reason, (payload, header) in refusals.items():
        headers = {"Stripe-Signature": header} if header else {}
        refused = httpx.post(url, content=payload, headers=headers)
        assert 400 <= refused.status_code < 500, (reason, refused.text)
        assert refused.json()["error"] == reason
        kept[refused.json()["dead_letter_id"]] = reason
    letters = {d["id"]: d for d in client.get("/v1/deadletters").json()["dead_letters"]}
    for dead_letter_id, reason in kept.items():
        assert letters[dead_letter_id]["error"]["error"] == reason
        assert letters[dead_letter_id]["source"] == "webhook:stripe"
        assert "whsec" not in json.dumps(letters[dead_letter_id])
    shown = client.get(f"/v1/deadletters/{next(iter(kept))}").json()
    assert shown["raw_body"].encode() == other.replace(b"1999", b"1")
    assert [c["id"] for c in client.get("/v1/cases").json()["cases"]] == [case_id]

    # A replay of the old signed delivery, long after: stale, not a duplicate.
    clock.advance(timedelta(hours=2))
    replayed = httpx.post(url, content=body, headers={"Stripe-Signature": stripe_header(body, now)})
    assert replayed.status_code == 400 and replayed.json()["error"] == "stale_timestamp"

    # An event type dunwell does not act on: acknowledged and recorded with its raw body.
    later = int(clock.now().timestamp())
    unknown = stripe_event("customer.created", {"id": "cus_9"}, later, "evt_unknown")
    ack = httpx.post(
        url, content=unknown, headers={"Stripe-Signature": stripe_header(unknown, later)}
    )
    assert ack.status_code == 200 and ack.json()["events"] == [] and ack.json()["acknowledged"]
    deliveries = client.get(f"/v1/webhook-endpoints/{endpoint['id']}/deliveries").json()
    by_id = {d["delivery_id"]: d for d in deliveries["deliveries"]}
    assert by_id["evt_unknown"]["status"] == "acknowledged"
    assert json.loads(by_id["evt_unknown"]["raw_body"]) == json.loads(unknown)
    assert by_id["evt_sca"]["event_ids"] == ["stripe:evt_sca"]
    assert json.loads(by_id["evt_sca"]["raw_body"]) == json.loads(body)


def test_unknown_endpoints_and_wrong_provider_are_404_and_kept(client, base_url, services):
    endpoint = _endpoint(client, "checkout", CHECKOUT_SECRET)
    body = checkout_event("payment_declined")
    headers = {"Cko-Signature": checkout_signature(body)}
    missing = httpx.post(f"{base_url}/webhooks/checkout/we_nope", content=body, headers=headers)
    crossed = httpx.post(
        f"{base_url}/webhooks/stripe/{endpoint['id']}", content=body, headers=headers
    )
    for answer in (missing, crossed):
        assert answer.status_code == 404 and answer.json()["error"] == "unknown_endpoint"
    huge = httpx.post(
        f"{base_url}{endpoint['url_path']}", content=b" " * (1024 * 1024 + 1), headers=headers
    )
    assert huge.status_code == 413
    with UnitOfWork(services.sessions) as uow:  # no tenant to show them to: the operator's
        rows = {r.id: r for r in uow.deadletters.list(None)}
    assert len(rows[huge.json()["dead_letter_id"]].raw_body) == 64 * 1024
    assert rows[missing.json()["dead_letter_id"]].error["error"] == "unknown_endpoint"
    assert rows[missing.json()["dead_letter_id"]].tenant_id is None
    assert client.get("/v1/cases").json()["cases"] == []


def test_adyen_batch_each_item_checked_and_processed_once(client, base_url):
    endpoint = _endpoint(client, "adyen", ADYEN_HMAC_KEY, account="AcmeCOM")
    url = f"{base_url}{endpoint['url_path']}"
    refused = adyen_item(additionalData={"merchantAdviceCode": "21 : Cancelled"})
    forged = adyen_item(pspReference="PSP0009", merchantReference="inv_43")
    forged["amount"]["value"] = 5
    bad = httpx.post(url, content=adyen_body(adyen_item(pspReference="PSP0008"), forged))
    assert bad.status_code == 401 and bad.json()["error"] == "bad_signature"
    assert client.get("/v1/cases").json()["cases"] == []  # not even the good first item

    ok = httpx.post(url, content=adyen_body(refused))
    assert ok.status_code == 200, ok.text
    (outcome,) = ok.json()["events"]
    assert _lane(client, outcome["case_ids"][0]) == "do_not_retry"  # Mastercard advice 21
    again = httpx.post(url, content=adyen_body(refused))
    assert again.status_code == 200 and again.json()["duplicate"] is True
    letters = client.get("/v1/deadletters").json()["dead_letters"]
    assert [d["error"]["error"] for d in letters] == ["bad_signature"]


def test_braintree_form_post_signed_by_the_sdk(client, base_url):
    secret = f"{BRAINTREE_PUBLIC}:{BRAINTREE_PRIVATE}"
    endpoint = _endpoint(client, "braintree", secret, config={"currency": "USD"})
    url = f"{base_url}{endpoint['url_path']}"
    xml = """<notification><timestamp type="datetime">2026-11-02T08:59:00Z</timestamp>
      <kind>subscription_charged_unsuccessfully</kind><subject><subscription><id>sub_b</id>
      <current-billing-cycle>3</current-billing-cycle><transactions type="array"><transaction>
      <id>t1</id><amount>10.00</amount><currency-iso-code>USD</currency-iso-code>
      <processor-response-code>2001</processor-response-code><merchant-advice-code>01</merchant-advice-code>
      <customer><id>cb</id></customer></transaction></transactions></subscription></subject>
      </notification>"""
    posted = httpx.post(url, data=braintree_sign(xml))
    assert posted.status_code == 200, posted.text
    (outcome,) = posted.json()["events"]
    assert outcome["outcome"] == "opened"
    assert _lane(client, outcome["case_ids"][0]) == "update_payment_method"
    case = client.get(f"/v1/cases/{outcome['case_ids'][0]}").json()
    assert case["amount"] == {"amount_minor": 1000, "currency": "USD"}
    assert httpx.post(url, data=braintree_sign(xml)).json()["duplicate"] is True

    sample = braintree_form("subscription_went_past_due", "sub_b")
    assert httpx.post(url, data=sample).json()["acknowledged"]
    tampered = dict(sample, bt_signature=altered(sample["bt_signature"], -1))
    refused = httpx.post(
        url,
        content=urlencode(tampered).encode(),
        headers={"Content-Type": "application/x-www-form-urlencoded"},
    )
    assert refused.status_code == 401


def test_checkout_declined_then_captured(client, base_url):
    endpoint = _endpoint(client, "checkout", CHECKOUT_SECRET)
    url = f"{base_url}{endpoint['url_path']}"
    declined = checkout_event("payment_declined")
    opened = httpx.post(
        url, content=declined, headers={"Cko-Signature": checkout_signature(declined)}
    )
    assert opened.status_code == 200, opened.text
    case_id = opened.json()["events"][0]["case_ids"][0]
    captured = checkout_event("payment_captured", "evt_cko_2")
    paid = httpx.post(
        url, content=captured, headers={"Cko-Signature": checkout_signature(captured)}
    )
    assert paid.json()["events"][0]["outcome"] == "closed"
    assert client.get(f"/v1/cases/{case_id}").json()["status"] == "recovered"
    unsigned = httpx.post(url, content=declined)
    assert unsigned.status_code == 401 and unsigned.json()["error"] == "missing_signature"


def test_endpoints_are_listed_without_secrets_and_per_tenant(client, base_url):
    _endpoint(client, "stripe", STRIPE_SECRET, account="acct_1", provider_retries_enabled=True)
    google = client.post("/v1/webhook-endpoints", json={"provider": "google"}).json()
    assert len(google["secret"]) > 20  # generated, shown this once
    listed = client.get("/v1/webhook-endpoints").json()["webhook_endpoints"]
    assert [e["provider"] for e in listed] == ["stripe", "google"]
    assert listed[0]["provider_retries_enabled"] is True and listed[0]["account"] == "acct_1"
    assert STRIPE_SECRET not in json.dumps(listed) and google["secret"] not in json.dumps(listed)
    assert client.post("/v1/webhook-endpoints", json={"provider": "stripe"}).status_code == 422
    assert (
        client.post("/v1/webhook-endpoints", json={"provider": "paypal", "secret": "x"}).status_code
        == 422
    )
    assert httpx.get(f"{base_url}/v1/webhook-endpoints").status_code == 401


def test_apple_grace_period_then_recovery(client, base_url, clock):
    from apple_support import BUNDLE, make_chain, notification

    chain = make_chain()
    config = {"root_certificates_pem": chain.root_pem}
    endpoint = _endpoint(client, "apple", None, account=BUNDLE, config=config)
    url = f"{base_url}{endpoint['url_path']}"
    failed = notification(chain, "DID_FAIL_TO_RENEW", "GRACE_PERIOD", clock.now())
    opened = httpx.post(url, content=failed)
    assert opened.status_code == 200, opened.text
    case_id = opened.json()["events"][0]["case_ids"][0]
    case = client.get(f"/v1/cases/{case_id}").json()
    assert case["amount"] == {"amount_minor": 999, "currency": "USD"}
    assert httpx.post(url, content=failed).json()["duplicate"] is True
    recovered = notification(chain, "DID_RENEW", "BILLING_RECOVERY", clock.now())
    closed = httpx.post(url, content=recovered)
    assert closed.json()["events"][0]["case_ids"] == [case_id]
    assert client.get(f"/v1/cases/{case_id}").json()["status"] == "recovered"
    forged = httpx.post(
        url, content=notification(make_chain(), "DID_FAIL_TO_RENEW", None, clock.now())
    )
    assert forged.status_code == 401 and forged.json()["error"] == "untrusted_chain"


def test_google_push_with_the_url_token(client, base_url):
    from webhooks_support import google_push as push

    config = {"prices": {"pro.monthly": {"amount": 499, "currency": "EUR"}}}
    created = client.post("/v1/webhook-endpoints", json={"provider": "google", "config": config})
    endpoint = created.json()
    url = f"{base_url}{endpoint['url_path']}"
    token = {"token": endpoint["secret"]}
    opened = httpx.post(url, params=token, content=push(6, "m1"))
    assert opened.status_code == 200, opened.text
    case_id = opened.json()["events"][0]["case_ids"][0]
    on_hold = httpx.post(url, params=token, content=push(5, "m2")).json()
    assert on_hold["events"][0]["case_ids"] == [case_id]  # the same case, not a second one
    recovered = httpx.post(url, params=token, content=push(1, "m3")).json()
    assert recovered["events"][0]["outcome"] == "closed"
    refused = httpx.post(url, params={"token": "wrong"}, content=push(6, "m4"))
    assert refused.status_code == 401
    letter = client.get(f"/v1/deadletters/{refused.json()['dead_letter_id']}").json()
    assert endpoint["secret"] not in json.dumps(letter) and "wrong" not in json.dumps(letter)


def test_a_refused_delivery_shaped_like_a_canonical_event_cannot_be_replayed(
    client, base_url, clock
):
    from factories import failed_body

    endpoint = _endpoint(client, "checkout", CHECKOUT_SECRET)
    forged = json.dumps(failed_body("evt_forged", clock.now())).encode()
    refused = httpx.post(
        f"{base_url}{endpoint['url_path']}",
        content=forged,
        headers={"Cko-Signature": checkout_signature(forged, "guessed")},
    )
    assert refused.status_code == 401
    replay = client.post(f"/v1/deadletters/{refused.json()['dead_letter_id']}/replay")
    assert replay.status_code == 422 and replay.json()["detail"]["error"] == "not_replayable"
    assert client.get("/v1/cases").json()["cases"] == []


def test_stripe_decline_details_are_fetched_when_the_invoice_lacks_them(client, base_url, clock):
    from webhooks_support import FakeStripeApi, stripe_intent_routes

    with FakeStripeApi(stripe_intent_routes()) as api:
        config = {"api_key": "rk_test_read_only", "api_base": api.url}
        endpoint = _endpoint(client, "stripe", STRIPE_SECRET, config=config)
        assert "rk_test_read_only" not in json.dumps(endpoint)
        now = int(clock.now().timestamp())
        body = stripe_event("invoice.payment_failed", stripe_invoice(), now, "evt_f")
        posted = httpx.post(
            f"{base_url}{endpoint['url_path']}",
            content=body,
            headers={"Stripe-Signature": stripe_header(body, now)},
        )
        calls = len(api.requests)
        again = httpx.post(
            f"{base_url}{endpoint['url_path']}",
            content=body,
            headers={"Stripe-Signature": stripe_header(body, now)},
        )
        assert again.json()["duplicate"] is True
        assert len(api.requests) == calls == 2  # a redelivery does not call the API again
    assert posted.status_code == 200, posted.text
    case_id = posted.json()["events"][0]["case_ids"][0]
    assert _lane(client, case_id) == "retry_after_funds"  # insufficient_funds, from the API
    listed = client.get("/v1/webhook-endpoints").json()
    assert "rk_test_read_only" not in json.dumps(listed)


def test_an_authentic_delivery_that_cannot_be_translated_is_acknowledged_and_kept(client, base_url):
    secret = f"{BRAINTREE_PUBLIC}:{BRAINTREE_PRIVATE}"
    endpoint = _endpoint(client, "braintree", secret)  # no config.currency
    url = f"{base_url}{endpoint['url_path']}"
    sample = braintree_form("subscription_charged_unsuccessfully", "sub_nc")  # no currency in it
    answer = httpx.post(url, data=sample)
    assert answer.status_code == 202 and answer.json()["error"] == "untranslatable"
    (letter,) = client.get("/v1/deadletters").json()["dead_letters"]
    assert letter["id"] == answer.json()["dead_letter_id"]
    assert "currency" in letter["error"]["message"]
    assert client.get("/v1/cases").json()["cases"] == []
