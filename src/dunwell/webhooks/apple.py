"""Apple App Store Server Notifications V2: `{"signedPayload": JWS}`, ES256, certificate chain
in the `x5c` header.

Verified here: the chain leaf -> intermediate -> root, each certificate issued and signed by
the next, valid at `now`; the root must be one of the endpoint's configured roots
(`config.root_certificates_pem`: Apple Root CA - G3 in production, a test CA in tests); the
leaf and intermediate must carry Apple's marker extensions (1.2.840.113635.100.6.11.1 and
...6.2.1), as Apple's own library requires; then the ES256 signature with the leaf's key.
The nested `signedTransactionInfo` / `signedRenewalInfo` are checked the same way. A payload
signed more than RETRY_WINDOW ago (Apple retries for about three days) is stale; more than
five minutes in the future is refused.

Apple sends no decline code (`expirationIntent` 2 means a billing error) and prices in
thousandths of the currency unit. Apple retries the charge itself: dunwell never charges it.
"""

from __future__ import annotations

import base64
import binascii
from collections.abc import Mapping
from datetime import datetime, timedelta
from typing import Any

import jwt
from cryptography import x509
from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import hashes

from dunwell.webhooks.base import (
    Endpoint,
    Translation,
    Untranslatable,
    WebhookRejected,
    decline,
    drop_none,
    from_epoch_ms,
    load_json,
    milli_to_minor,
)

PROVIDER = "apple"
RETRY_WINDOW = timedelta(days=4)
FUTURE_SKEW = timedelta(minutes=5)
LEAF_OID = x509.ObjectIdentifier("1.2.840.113635.100.6.11.1")
INTERMEDIATE_OID = x509.ObjectIdentifier("1.2.840.113635.100.6.2.1")
BILLING_ERROR = 2  # expirationIntent


def _roots(endpoint: Endpoint) -> list[x509.Certificate]:
    pem = str(endpoint.config.get("root_certificates_pem") or "")
    try:
        return x509.load_pem_x509_certificates(pem.encode())
    except ValueError:
        raise WebhookRejected("endpoint_misconfigured", "no usable root certificate", 500) from None


def _has(cert: x509.Certificate, oid: x509.ObjectIdentifier) -> bool:
    try:
        cert.extensions.get_extension_for_oid(oid)
    except x509.ExtensionNotFound:
        return False
    return True


def _check_chain(
    chain: list[x509.Certificate], roots: list[x509.Certificate], now: datetime
) -> None:
    if len(chain) < 2:
        raise WebhookRejected("bad_signature", "x5c needs at least a leaf and an intermediate", 401)
    leaf, intermediate = chain[0], chain[1]
    trusted = {r.fingerprint(hashes.SHA256()) for r in roots}
    # The root Apple includes must be a configured one; without it, the intermediate must be
    # issued by a configured root.
    anchor = chain[2] if len(chain) > 2 else None
    if anchor is not None and anchor.fingerprint(hashes.SHA256()) not in trusted:
        raise WebhookRejected("untrusted_chain", "the chain's root is not a configured root", 401)
    issuers = [anchor] if anchor is not None else roots
    try:
        leaf.verify_directly_issued_by(intermediate)
        if not any(_issued(intermediate, root) for root in issuers):
            raise InvalidSignature("intermediate")
    except (InvalidSignature, ValueError, TypeError) as exc:
        raise WebhookRejected("untrusted_chain", f"certificate chain broken: {exc}", 401) from None
    for cert in chain:
        if not cert.not_valid_before_utc <= now <= cert.not_valid_after_utc:
            raise WebhookRejected("untrusted_chain", f"{cert.subject} not valid now", 401)
    basic = intermediate.extensions.get_extension_for_class(x509.BasicConstraints).value
    if not basic.ca:
        raise WebhookRejected("untrusted_chain", "the intermediate is not a CA", 401)
    if not _has(leaf, LEAF_OID) or not _has(intermediate, INTERMEDIATE_OID):
        raise WebhookRejected("untrusted_chain", "not Apple's App Store certificates", 401)


def _issued(child: x509.Certificate, parent: x509.Certificate) -> bool:
    try:
        child.verify_directly_issued_by(parent)
    except (InvalidSignature, ValueError, TypeError):
        return False
    return True


def decode_jws(token: str, endpoint: Endpoint, now: datetime) -> dict[str, Any]:
    """Verify one Apple JWS (chain, then signature) and return its payload."""
    try:
        header = jwt.get_unverified_header(token)
        if header.get("alg") != "ES256":
            raise WebhookRejected("bad_signature", f"alg {header.get('alg')!r} is not ES256", 401)
        chain = [
            x509.load_der_x509_certificate(base64.b64decode(c)) for c in header.get("x5c") or []
        ]
    except (jwt.InvalidTokenError, binascii.Error, ValueError, TypeError):
        raise WebhookRejected("bad_signature", "not a JWS with an x5c chain", 401) from None
    _check_chain(chain, _roots(endpoint), now)
    try:
        payload: dict[str, Any] = jwt.decode(
            token,
            key=chain[0].public_key(),  # type: ignore[arg-type]
            algorithms=["ES256"],
            options={"verify_aud": False, "verify_iss": False, "verify_exp": False},
        )
    except jwt.InvalidTokenError as exc:
        raise WebhookRejected("bad_signature", f"JWS signature: {exc}", 401) from None
    return payload


def _signed_payload(body: bytes) -> str:
    try:
        token = load_json(body)["signedPayload"]
    except (Untranslatable, KeyError, TypeError):
        raise WebhookRejected("missing_signature", "no signedPayload", 401) from None
    if not isinstance(token, str) or not token:
        raise WebhookRejected("missing_signature", "no signedPayload", 401)
    return token


def verify(headers: Mapping[str, str], body: bytes, endpoint: Endpoint, now: datetime) -> None:
    payload = decode_jws(_signed_payload(body), endpoint, now)
    signed = payload.get("signedDate")
    if not isinstance(signed, int):
        raise WebhookRejected("malformed_body", "no signedDate")
    age = now - datetime.fromisoformat(from_epoch_ms(signed))
    if age > RETRY_WINDOW:
        raise WebhookRejected("stale_timestamp", f"signed {age} ago (window {RETRY_WINDOW})")
    if age < -FUTURE_SKEW:
        raise WebhookRejected("future_timestamp", f"signed {-age} in the future")
    data = payload.get("data") or {}
    if endpoint.account and data.get("bundleId") != endpoint.account:
        raise WebhookRejected("wrong_account", f"bundle {data.get('bundleId')!r}")
    for nested in ("signedTransactionInfo", "signedRenewalInfo"):
        if data.get(nested):
            decode_jws(data[nested], endpoint, now)


def _unverified(token: str | None) -> dict[str, Any]:
    """Only after `verify` has checked every JWS in the delivery."""
    if not token:
        return {}
    return dict(jwt.decode(token, options={"verify_signature": False}))


def translate(body: bytes, endpoint: Endpoint) -> Translation:
    payload = _unverified(_signed_payload(body))
    kind, subtype = payload.get("notificationType"), payload.get("subtype")
    uuid = str(payload.get("notificationUUID"))
    data = payload.get("data") or {}
    txn = _unverified(data.get("signedTransactionInfo"))
    renewal = _unverified(data.get("signedRenewalInfo"))
    out = Translation(delivery_id=uuid)
    original = txn.get("originalTransactionId") or renewal.get("originalTransactionId")
    label = f"{kind}{'/' + subtype if subtype else ''}"
    if not original:
        out.ignored.append(f"{label}: no subscription transaction")
        return out
    head = {"id": f"apple:{uuid}", "occurred_at": from_epoch_ms(int(payload["signedDate"]))}
    subscription = str(original)
    if kind == "DID_FAIL_TO_RENEW":
        # The period that failed starts where the last paid transaction expired.
        fallback = f"apple:{subscription}:{txn.get('expiresDate')}"
        currency = renewal.get("currency") or txn.get("currency")
        milli = renewal.get("renewalPrice", txn.get("price"))
        if not currency or milli is None:
            raise Untranslatable(f"{label}: no price or currency in the notification")
        intent = renewal.get("expirationIntent")
        out.events.append(
            {
                **head,
                "type": "payment.failed",
                "customer": {"id": str(txn.get("appAccountToken") or subscription)},
                "subscription": drop_none(
                    {
                        "id": subscription,
                        "plan": renewal.get("autoRenewProductId") or txn.get("productId"),
                        "storefront": endpoint.config.get("storefront", "app_store"),
                    }
                ),
                "invoice": {
                    "id": fallback,
                    "amount": milli_to_minor(int(milli), str(currency)),
                    "currency": str(currency).upper(),
                },
                "payment": {
                    "provider": PROVIDER,
                    "payment_method": {"token": f"apple:{subscription}"},
                },
                "decline": decline(
                    PROVIDER,
                    "billing_error" if intent in (BILLING_ERROR, None) else f"intent_{intent}",
                    message="in grace period" if subtype == "GRACE_PERIOD" else "billing retry",
                ),
            }
        )
        out.open_case_invoice[len(out.events) - 1] = (subscription, fallback)
    elif kind == "DID_RENEW" and subtype == "BILLING_RECOVERY":
        out.events.append({**head, "type": "payment.succeeded", "invoice": {"id": ""}})
        out.open_case_invoice[len(out.events) - 1] = (subscription, None)
    elif kind == "EXPIRED" or (
        kind == "GRACE_PERIOD_EXPIRED" and not renewal.get("isInBillingRetryPeriod")
    ):
        out.events.append(
            {**head, "type": "subscription.canceled", "subscription": {"id": subscription}}
        )
    else:
        out.ignored.append(f"{label}: not an event dunwell acts on")
    return out
