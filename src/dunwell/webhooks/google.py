"""Google Play real-time developer notifications, delivered by a Pub/Sub push subscription.

Authentication, one of two (the endpoint's `config.auth`):
- `token` (default): the push endpoint URL carries a shared token (`?token=...`); dunwell
  compares it in constant time with the endpoint's secret (generated, shown once).
- `oidc`: Pub/Sub's authenticated push. `Authorization: Bearer <JWT>` signed by Google (RS256,
  keys from `config.oidc_jwks_url`, Google's by default, cached), issued by
  accounts.google.com, for `config.oidc_audience`, and, if `config.oidc_email` is set, for
  that service account with a verified email.

A notification names neither an amount nor a decline code. The price comes from the
endpoint's `config.prices` (`{"<subscriptionId>": {"amount": 999, "currency": "EUR"}}`);
without one, a failure is kept in dead letters as untranslatable rather than opening a case
for a made-up amount. Google retries the charge itself: dunwell tracks the case and access.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import hmac
import json
from collections.abc import Mapping
from datetime import datetime
from typing import Any

import jwt

from dunwell.webhooks.base import (
    Endpoint,
    Translation,
    Untranslatable,
    WebhookRejected,
    decline,
    drop_none,
    from_epoch_ms,
    load_json,
)

PROVIDER = "google"
GOOGLE_JWKS_URL = "https://www.googleapis.com/oauth2/v3/certs"
_ISSUERS = ("accounts.google.com", "https://accounts.google.com")
_JWKS: dict[str, jwt.PyJWKClient] = {}  # one cached key set per URL
RECOVERED, RENEWED, CANCELED, ON_HOLD, IN_GRACE_PERIOD, REVOKED, EXPIRED = 1, 2, 3, 5, 6, 12, 13
_FAILED = {ON_HOLD: "on_hold", IN_GRACE_PERIOD: "in_grace_period"}


def _message(body: bytes) -> tuple[dict[str, Any], dict[str, Any]]:
    try:
        push = load_json(body)
        message = push["message"]
        data = json.loads(base64.b64decode(message["data"], validate=True))
    except (Untranslatable, KeyError, TypeError, ValueError, binascii.Error) as exc:
        raise WebhookRejected("malformed_body", f"not a Pub/Sub push: {exc}") from None
    if not isinstance(data, dict):
        raise WebhookRejected("malformed_body", "message.data is not a JSON object")
    return message, data


def _verify_token(headers: Mapping[str, str], endpoint: Endpoint) -> None:
    token = headers.get("query:token")
    if not token:
        raise WebhookRejected("missing_signature", "no token in the push URL", 401)
    if not hmac.compare_digest(token.encode(), endpoint.secret.encode()):
        raise WebhookRejected("bad_signature", "the push token does not match", 401)


def _verify_oidc(headers: Mapping[str, str], endpoint: Endpoint, now: datetime) -> None:
    scheme, _, token = headers.get("authorization", "").partition(" ")
    if scheme.lower() != "bearer" or not token:
        raise WebhookRejected("missing_signature", "no Authorization: Bearer token", 401)
    audience = endpoint.config.get("oidc_audience")
    if not audience:
        raise WebhookRejected("endpoint_misconfigured", "oidc needs config.oidc_audience", 500)
    url = str(endpoint.config.get("oidc_jwks_url") or GOOGLE_JWKS_URL)
    keys = _JWKS.setdefault(url, jwt.PyJWKClient(url, cache_keys=True, timeout=5))
    try:
        key = keys.get_signing_key_from_jwt(token).key
        claims = jwt.decode(
            token,
            key=key,
            algorithms=["RS256"],
            audience=str(audience),
            # Times are checked below against dunwell's clock, not the wall clock.
            options={
                "require": ["exp", "iat", "iss", "aud"],
                "verify_exp": False,
                "verify_iat": False,
                "verify_nbf": False,
            },
        )
    except jwt.PyJWKClientConnectionError as exc:
        # Google's keys could not be fetched: not the sender's fault, let Pub/Sub retry.
        raise WebhookRejected("keys_unavailable", str(exc), 503) from None
    except (jwt.InvalidTokenError, jwt.PyJWKClientError) as exc:
        raise WebhookRejected("bad_signature", f"push token: {exc}", 401) from None
    if not claims["iat"] - 300 <= now.timestamp() <= claims["exp"]:
        raise WebhookRejected("stale_timestamp", "the push token is not valid at this time")
    if claims["iss"] not in _ISSUERS:
        raise WebhookRejected("bad_signature", f"issuer {claims['iss']!r}", 401)
    email = endpoint.config.get("oidc_email")
    if email and (claims.get("email") != email or claims.get("email_verified") is not True):
        raise WebhookRejected("bad_signature", f"not the service account {email}", 401)


def verify(headers: Mapping[str, str], body: bytes, endpoint: Endpoint, now: datetime) -> None:
    if endpoint.config.get("auth", "token") == "oidc":
        _verify_oidc(headers, endpoint, now)
    else:
        _verify_token(headers, endpoint)
    _, data = _message(body)
    if endpoint.account and data.get("packageName") != endpoint.account:
        raise WebhookRejected("wrong_account", f"package {data.get('packageName')!r}", 400)


def translate(body: bytes, endpoint: Endpoint) -> Translation:
    message, data = _message(body)
    out = Translation(delivery_id=str(message.get("messageId") or message.get("message_id")))
    sub = data.get("subscriptionNotification")
    if not isinstance(sub, dict):
        kind = next((k for k in data if k.endswith("Notification")), "notification")
        out.ignored.append(f"{kind}: not a subscription notification")
        return out
    kind = int(sub.get("notificationType", 0))
    token, product = str(sub.get("purchaseToken", "")), str(sub.get("subscriptionId", ""))
    # The purchase token is long and, to Google, a credential of the purchase: keep a digest.
    purchase = "gp_" + hashlib.sha256(token.encode()).hexdigest()[:32]
    at = from_epoch_ms(int(data["eventTimeMillis"]))
    head = {"id": f"google:{out.delivery_id}", "occurred_at": at}
    # No period is named: a failure joins the subscription's open case, or starts one keyed
    # by the time of this first notice; a recovery closes the open case, if any.
    fallback = f"{purchase}:{data['eventTimeMillis']}"
    if kind in _FAILED:
        price = (endpoint.config.get("prices") or {}).get(product)
        if not price:
            raise Untranslatable(f"no price configured for product {product!r} (config.prices)")
        out.events.append(
            {
                **head,
                "type": "payment.failed",
                "customer": {"id": purchase},
                "subscription": drop_none(
                    {
                        "id": purchase,
                        "plan": product,
                        "storefront": endpoint.config.get("storefront", "google_play"),
                    }
                ),
                "invoice": {
                    "id": fallback,
                    "amount": int(price["amount"]),
                    "currency": price["currency"],
                },
                "payment": {"provider": PROVIDER, "payment_method": {"token": purchase}},
                "decline": decline(PROVIDER, _FAILED[kind], message="Google Play billing retry"),
            }
        )
        out.open_case_invoice[0] = (purchase, fallback)
    elif kind in (RECOVERED, RENEWED):
        out.events.append({**head, "type": "payment.succeeded", "invoice": {"id": ""}})
        out.open_case_invoice[0] = (purchase, None)
    elif kind in (CANCELED, REVOKED, EXPIRED):
        out.events.append(
            {**head, "type": "subscription.canceled", "subscription": {"id": purchase}}
        )
    else:
        out.ignored.append(f"subscription notification type {kind}: not acted on")
    return out
