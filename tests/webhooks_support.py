"""Webhook fixtures signed the way each provider signs them: with its official SDK, or with its
documented algorithm where the SDK offers no signer. Nothing here hard-codes a signature."""

from __future__ import annotations

import json
import warnings
from typing import Any

import Adyen.util
import stripe

with warnings.catch_warnings():
    # braintree 4.48 warns about its own deprecated enum at import; not ours to fix.
    warnings.simplefilter("ignore", DeprecationWarning)
    import braintree
    from braintree.util.crypto import Crypto

STRIPE_SECRET = "whsec_test_0123456789abcdef"
ADYEN_HMAC_KEY = "44782DEF547AAA06C910C43932B1EB0C71FC68D9D0C057550C48EC2ACF6BA056"
BRAINTREE_PUBLIC, BRAINTREE_PRIVATE = "bt_public_key", "bt_private_key_0123"
CHECKOUT_SECRET = "cko_webhook_secret_0123"


def stripe_header(payload: bytes, timestamp: int, secret: str = STRIPE_SECRET) -> str:
    return stripe.WebhookSignature.generate_signature_header(
        payload.decode(), secret, timestamp=timestamp
    )


def stripe_event(kind: str, obj: dict[str, Any], created: int, event_id: str = "evt_1") -> bytes:
    event = {
        "id": event_id,
        "object": "event",
        "api_version": "2025-03-31.basil",
        "created": created,
        "type": kind,
        "data": {"object": obj},
        "livemode": False,
    }
    return json.dumps(event).encode()


def stripe_invoice(**extra: Any) -> dict[str, Any]:
    invoice = {
        "id": "in_1",
        "object": "invoice",
        "customer": "cus_1",
        "customer_email": "ada@example.com",
        "amount_due": 1999,
        "amount_remaining": 1999,
        "amount_paid": 0,
        "currency": "eur",
        "parent": {"subscription_details": {"subscription": "sub_1"}, "type": "x"},
    }
    invoice.update(extra)
    return invoice


def adyen_item(**fields: Any) -> dict[str, Any]:
    """A NotificationRequestItem signed with the Adyen SDK's HMAC utility."""
    item: dict[str, Any] = {
        "amount": {"currency": "EUR", "value": 1999},
        "eventCode": "AUTHORISATION",
        "eventDate": "2026-11-02T09:00:00+01:00",
        "merchantAccountCode": "AcmeCOM",
        "merchantReference": "inv_42",
        "pspReference": "PSP0001",
        "paymentMethod": "mc",
        "reason": "Not enough balance",
        "success": "false",
    }
    extra = fields.pop("additionalData", {})
    item.update(fields)
    item["additionalData"] = {
        "shopperReference": "shopper_7",
        "recurring.recurringDetailReference": "8415000000000001",
        "refusalReasonRaw": "51 : Insufficient funds",
        "merchantAdviceCode": "24 : Retry after 1 hour",
        **extra,
    }
    unsigned = {k: v for k, v in item.items() if k != "additionalData"}
    signature = Adyen.util.generate_notification_sig(unsigned, ADYEN_HMAC_KEY).decode()
    item["additionalData"]["hmacSignature"] = signature
    return item


def adyen_body(*items: dict[str, Any]) -> bytes:
    wrapped = [{"NotificationRequestItem": i} for i in items]
    return json.dumps({"live": "false", "notificationItems": wrapped}).encode()


def braintree_gateway() -> braintree.BraintreeGateway:
    return braintree.BraintreeGateway(
        braintree.Configuration(
            braintree.Environment.Sandbox,
            merchant_id="merchant_1",
            public_key=BRAINTREE_PUBLIC,
            private_key=BRAINTREE_PRIVATE,
        )
    )


def braintree_form(kind: str, object_id: str) -> dict[str, str]:
    """The SDK's own sample notification, signed by the SDK."""
    sample = braintree_gateway().webhook_testing.sample_notification(kind, object_id)
    return {"bt_signature": sample["bt_signature"], "bt_payload": sample["bt_payload"].decode()}


def braintree_sign(xml: str) -> dict[str, str]:
    """A richer notification than the SDK's samples, signed with the SDK's HMAC helper."""
    import base64

    payload = base64.encodebytes(xml.encode())
    digest = Crypto.sha1_hmac_hash(BRAINTREE_PRIVATE, payload)
    return {"bt_signature": f"{BRAINTREE_PUBLIC}|{digest}", "bt_payload": payload.decode()}


def checkout_signature(body: bytes, secret: str = CHECKOUT_SECRET) -> str:
    """Checkout.com's documented algorithm: hex HMAC-SHA256 of the raw body."""
    import hashlib
    import hmac

    return hmac.new(secret.encode(), body, hashlib.sha256).hexdigest()


def checkout_event(kind: str, event_id: str = "evt_cko_1", **data: Any) -> bytes:
    payload = {
        "id": "pay_1",
        "amount": 2500,
        "currency": "GBP",
        "reference": "inv_cko_1",
        "response_code": "20051",
        "response_summary": "Insufficient Funds",
        "customer": {"id": "cus_cko_1", "email": "bo@example.com"},
        "source": {"id": "src_1", "type": "card", "scheme": "Visa", "fingerprint": "fpx"},
        "metadata": {"subscription_id": "sub_cko_1"},
    }
    payload.update(data)
    return json.dumps(
        {"id": event_id, "type": kind, "created_on": "2026-11-02T09:00:00Z", "data": payload}
    ).encode()


def google_push(kind: int, message_id: str = "m1", package: str = "com.example.app") -> bytes:
    """A Pub/Sub push message carrying a Play subscription notification."""
    import base64

    data = {
        "version": "1.0",
        "packageName": package,
        "eventTimeMillis": str(1793610000000),
        "subscriptionNotification": {
            "version": "1.0",
            "notificationType": kind,
            "purchaseToken": "purchase-token-abc",
            "subscriptionId": "pro.monthly",
        },
    }
    encoded = base64.b64encode(json.dumps(data).encode()).decode()
    message = {"data": encoded, "messageId": message_id, "publishTime": "2026-11-02T09:00:00Z"}
    return json.dumps({"message": message, "subscription": "projects/p/subscriptions/s"}).encode()


class FakeStripeApi:
    """A loopback stand-in for api.stripe.com: canned JSON per path, requests recorded."""

    def __init__(self, routes: dict[str, tuple[int, dict[str, Any]]]) -> None:
        import threading
        from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

        self.routes, self.requests = routes, []
        fake = self

        class Handler(BaseHTTPRequestHandler):
            def do_GET(self) -> None:  # noqa: N802 (http.server's name)
                path = self.path.split("?")[0]
                fake.requests.append((self.path, self.headers.get("Authorization")))
                status, body = fake.routes.get(path, (404, {"error": {"message": "no route"}}))
                data = json.dumps(body).encode()
                self.send_response(status)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(data)))
                self.end_headers()
                self.wfile.write(data)

            def log_message(self, *args: Any) -> None:
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}"
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)

    def __enter__(self) -> FakeStripeApi:
        self.thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.server.shutdown()
        self.server.server_close()


def stripe_intent_routes(invoice: str = "in_1") -> dict[str, tuple[int, dict[str, Any]]]:
    """An invoice whose latest payment is a PaymentIntent declined for insufficient funds."""
    intent = {
        "id": "pi_1",
        "object": "payment_intent",
        "status": "requires_payment_method",
        "last_payment_error": {
            "type": "card_error",
            "code": "card_declined",
            "decline_code": "insufficient_funds",
            "network_decline_code": "51",
            "message": "Your card has insufficient funds.",
            "payment_method": {
                "id": "pm_from_api",
                "object": "payment_method",
                "card": {"brand": "visa", "fingerprint": "fp_api"},
            },
        },
    }
    payments = {
        "object": "list",
        "url": "/v1/invoice_payments",
        "has_more": False,
        "data": [
            {
                "id": "inpay_1",
                "object": "invoice_payment",
                "invoice": invoice,
                "payment": {"type": "payment_intent", "payment_intent": "pi_1"},
            }
        ],
    }
    return {"/v1/invoice_payments": (200, payments), "/v1/payment_intents/pi_1": (200, intent)}


class FakeGoogleKeys:
    """A loopback JWKS endpoint for a generated RSA key, and Pub/Sub-style push tokens."""

    def __init__(self) -> None:
        from cryptography.hazmat.primitives.asymmetric import rsa

        self.key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
        jwk = json.loads(jwt_module().algorithms.RSAAlgorithm.to_jwk(self.key.public_key()))
        jwk.update(kid="test-kid", alg="RS256", use="sig")
        self.api = FakeStripeApi({"/certs": (200, {"keys": [jwk]})})
        self.url = f"{self.api.url}/certs"

    def token(self, audience: str, issued: int, **claims: Any) -> str:
        payload = {
            "iss": "https://accounts.google.com",
            "aud": audience,
            "iat": issued,
            "exp": issued + 3600,
            "email": "pubsub@example.iam.gserviceaccount.com",
            "email_verified": True,
            **claims,
        }
        return jwt_module().encode(
            payload, self.key, algorithm="RS256", headers={"kid": "test-kid"}
        )

    def __enter__(self) -> FakeGoogleKeys:
        self.api.__enter__()
        return self

    def __exit__(self, *exc: object) -> None:
        self.api.__exit__(*exc)


def jwt_module() -> Any:
    import jwt

    return jwt


def altered(text: str, at: int) -> str:
    """`text` with the character at `at` replaced by a different one of the same kind.

    Tampering must always change something: overwriting with a fixed value is a no-op
    whenever the original already held that value (a 1-in-256 flaky test, seen in CI)."""
    old = text[at]
    new = ("1" if old != "1" else "2") if old.isdigit() else ("b" if old != "b" else "c")
    index = at % len(text)
    return text[:index] + new + text[index + 1 :]
