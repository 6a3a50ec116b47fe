"""Adyen standard webhooks: a batch of NotificationRequestItems, each HMAC-signed on its own.

The signature of an item is HMAC-SHA256 (key: the hex HMAC key from the Customer Area) over
`pspReference:originalReference:merchantAccountCode:merchantReference:value:currency:
eventCode:success`, base64, in `additionalData.hmacSignature`. Adyen's SDK helper checks
only the first item of a batch; dunwell checks every item and rejects the whole delivery if
any one fails, so a forged item cannot ride along with a genuine one.

Adyen signs no timestamp: a replay is caught by the event ids (pspReference, eventCode and
success together), not by age.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import hmac
import re
from collections.abc import Mapping
from datetime import datetime
from typing import Any

from dunwell.webhooks.base import (
    Endpoint,
    Translation,
    Untranslatable,
    WebhookRejected,
    decline,
    drop_none,
    load_json,
)

PROVIDER = "adyen"
_SIGNED = (
    "pspReference",
    "originalReference",
    "merchantAccountCode",
    "merchantReference",
    "value",
    "currency",
    "eventCode",
    "success",
)
_BRANDS = {"mc": "mastercard", "amex": "amex", "visa": "visa", "discover": "discover"}
_AUTO_RESCUE = ("AUTORESCUE", "AUTORESCUE_NEXT_ATTEMPT", "CANCEL_AUTORESCUE")


def _items(body: bytes) -> list[dict[str, Any]]:
    try:
        parsed = load_json(body)
        items = [w["NotificationRequestItem"] for w in parsed["notificationItems"]]
    except (Untranslatable, KeyError, TypeError) as exc:
        raise WebhookRejected("malformed_body", f"not an Adyen notification: {exc}") from None
    if not items or not all(isinstance(i, dict) for i in items):
        raise WebhookRejected("malformed_body", "no notification items")
    return items


def signing_string(item: Mapping[str, Any]) -> str:
    amount = item.get("amount") or {}
    fields = {**item, "value": amount.get("value", ""), "currency": amount.get("currency", "")}
    return ":".join(
        str(fields.get(name) if fields.get(name) is not None else "") for name in _SIGNED
    )


def _basic_auth(headers: Mapping[str, str], endpoint: Endpoint) -> None:
    """Adyen's optional basic authentication, checked besides the HMAC when configured."""
    user = str(endpoint.config.get("basic_auth_username") or "")
    if not user:
        return
    password = str(endpoint.config.get("basic_auth_password") or "")
    expected = base64.b64encode(f"{user}:{password}".encode()).decode()
    scheme, _, given = headers.get("authorization", "").partition(" ")
    if scheme.lower() != "basic" or not hmac.compare_digest(given.strip(), expected):
        raise WebhookRejected("bad_credentials", "basic authentication failed", 401)


def verify(headers: Mapping[str, str], body: bytes, endpoint: Endpoint, now: datetime) -> None:
    _basic_auth(headers, endpoint)
    try:
        key = binascii.unhexlify(endpoint.secret)
    except (binascii.Error, ValueError):
        raise WebhookRejected("endpoint_misconfigured", "the HMAC key is not hex", 500) from None
    for index, item in enumerate(_items(body)):
        given = (item.get("additionalData") or {}).get("hmacSignature")
        if not given:
            raise WebhookRejected("missing_signature", f"item {index} has no hmacSignature", 401)
        digest = hmac.new(key, signing_string(item).encode(), hashlib.sha256).digest()
        if not hmac.compare_digest(base64.b64encode(digest).decode(), str(given)):
            raise WebhookRejected("bad_signature", f"item {index}: hmacSignature mismatch", 401)
        account = item.get("merchantAccountCode")
        if endpoint.account and account != endpoint.account:
            raise WebhookRejected(
                "wrong_account", f"item {index} is for merchant account {account!r}", 400
            )


def _code(text: Any) -> str | None:
    """'51 : Insufficient funds' -> '51'; free text without a leading code -> None."""
    match = re.match(r"\s*([0-9A-Z]{2,3})\s*(?::|$)", str(text or ""))
    return match.group(1) if match else None


def _token(reference: str) -> str:
    """Adyen's stored-method references are 16 digits, which the canonical schema refuses as
    a possible card number; the `adyen:` prefix marks them as tokens (strip it to charge)."""
    return f"adyen:{reference}"


def _event_id(item: Mapping[str, Any]) -> str:
    return f"adyen:{item.get('pspReference')}:{item.get('eventCode')}:{item.get('success')}"


def translate(body: bytes, endpoint: Endpoint) -> Translation:
    items = _items(body)
    ids = sorted(_event_id(i) for i in items)
    out = Translation(delivery_id=hashlib.sha256("|".join(ids).encode()).hexdigest()[:32])
    for item in items:
        try:
            result = _canonical(item, endpoint)
        except (KeyError, TypeError, ValueError) as exc:
            raise Untranslatable(f"{item.get('eventCode')}: missing or malformed {exc}") from exc
        if isinstance(result, dict):
            out.events.append(result)
        else:
            out.ignored.append(result)
    return out


def _canonical(item: dict[str, Any], endpoint: Endpoint) -> dict[str, Any] | str:
    code, success = item.get("eventCode"), str(item.get("success")).lower() == "true"
    extra: dict[str, Any] = item.get("additionalData") or {}
    shopper = extra.get("shopperReference") or extra.get("recurring.shopperReference")
    amount = item.get("amount") or {}
    head = {"id": _event_id(item), "occurred_at": item["eventDate"]}
    if code == "AUTHORISATION" and not success:
        if not shopper:
            return f"AUTHORISATION {item.get('pspReference')}: no shopperReference, no customer"
        stored = extra.get("recurring.recurringDetailReference") or extra.get(
            "tokenization.storedPaymentMethodId"
        )
        token = _token(stored) if stored else f"{shopper}:default"
        brand = item.get("paymentMethod")
        return {
            **head,
            "type": "payment.failed",
            "customer": {"id": shopper},
            "subscription": drop_none(
                {
                    "id": extra.get("metadata.subscription_id") or shopper,
                    "storefront": endpoint.config.get("storefront"),
                }
            ),
            "invoice": {
                "id": item["merchantReference"],
                "amount": int(amount["value"]),
                "currency": amount["currency"],
            },
            "payment": {
                "provider": PROVIDER,
                "payment_method": drop_none(
                    {
                        "token": token,
                        "brand": _BRANDS.get(str(brand), brand),
                        "fingerprint": extra.get("paymentAccountReference"),
                    }
                ),
            },
            "decline": decline(
                PROVIDER,
                item.get("reason"),
                _code(extra.get("refusalReasonRaw")),
                _code(extra.get("merchantAdviceCode")),
                extra.get("refusalReasonRaw") or item.get("reason"),
            ),
        }
    if code == "AUTHORISATION":
        return {
            **head,
            "type": "payment.succeeded",
            "invoice": {
                "id": item["merchantReference"],
                "amount": int(amount["value"]),
                "currency": amount["currency"],
            },
            **({"customer": {"id": shopper}} if shopper else {}),
        }
    if code in ("CHARGEBACK", "NOTIFICATION_OF_CHARGEBACK"):
        return {
            **head,
            "type": "dispute.opened",
            "invoice": {"id": item["merchantReference"]},
            **({"reason": item["reason"]} if item.get("reason") else {}),
        }
    if code == "RECURRING_CONTRACT" and success and shopper:
        token = _token(extra.get("recurring.recurringDetailReference") or item["pspReference"])
        return {
            **head,
            "type": "payment_method.updated",
            "customer": {"id": shopper},
            "payment_method": {"token": token},
        }
    if code == "AUTORESCUE" and not success:
        # "Auto Rescue process ended" without a rescue: Adyen stopped retrying this payment
        # (docs.adyen.com/online-payments/auto-rescue/cards). dunwell takes over or closes.
        return {
            **head,
            "type": "payment.retries_exhausted",
            "invoice": {"id": item["merchantReference"]},
            "payment": {"provider": PROVIDER},
            **({"customer": {"id": shopper}} if shopper else {}),
        }
    if code in _AUTO_RESCUE:
        return (
            f"{code} for {item.get('merchantReference')}: Adyen Auto Rescue progress "
            f"(success {success}); recorded, Adyen is retrying this payment itself"
        )
    return f"{code}: not an event dunwell acts on"
