"""A test certificate authority shaped like Apple's (root -> intermediate -> leaf, with Apple's
marker extensions), and App Store Server Notifications V2 signed with it: ES256 JWS with the
chain in x5c, as Apple documents."""

from __future__ import annotations

import base64
import json
import uuid
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

import jwt
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID

LEAF_OID = x509.ObjectIdentifier("1.2.840.113635.100.6.11.1")
INTERMEDIATE_OID = x509.ObjectIdentifier("1.2.840.113635.100.6.2.1")
BUNDLE = "com.example.app"


@dataclass
class Chain:
    root: x509.Certificate
    intermediate: x509.Certificate
    leaf: x509.Certificate
    leaf_key: ec.EllipticCurvePrivateKey

    @property
    def root_pem(self) -> str:
        return self.root.public_bytes(serialization.Encoding.PEM).decode()

    def x5c(self) -> list[str]:
        return [
            base64.b64encode(c.public_bytes(serialization.Encoding.DER)).decode()
            for c in (self.leaf, self.intermediate, self.root)
        ]

    def sign(self, payload: dict[str, Any]) -> str:
        return jwt.encode(payload, self.leaf_key, algorithm="ES256", headers={"x5c": self.x5c()})


def _cert(
    name: str,
    key: ec.EllipticCurvePrivateKey,
    issuer: x509.Name | None,
    issuer_key: ec.EllipticCurvePrivateKey,
    *,
    ca: bool,
    marker: x509.ObjectIdentifier | None,
    not_after: datetime,
) -> x509.Certificate:
    subject = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, name)])
    builder = (
        x509.CertificateBuilder()
        .subject_name(subject)
        .issuer_name(issuer or subject)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(datetime(2020, 1, 1, tzinfo=UTC))
        .not_valid_after(not_after)
        .add_extension(x509.BasicConstraints(ca=ca, path_length=None), critical=True)
    )
    if marker is not None:
        builder = builder.add_extension(x509.UnrecognizedExtension(marker, b"\x05\x00"), False)
    return builder.sign(issuer_key, hashes.SHA256())


def make_chain(
    *, markers: bool = True, leaf_not_after: datetime = datetime(2040, 1, 1, tzinfo=UTC)
) -> Chain:
    root_key, inter_key, leaf_key = (ec.generate_private_key(ec.SECP256R1()) for _ in range(3))
    far = datetime(2040, 1, 1, tzinfo=UTC)
    root = _cert("Test Root CA", root_key, None, root_key, ca=True, marker=None, not_after=far)
    inter = _cert(
        "Test WWDR",
        inter_key,
        root.subject,
        root_key,
        ca=True,
        marker=INTERMEDIATE_OID if markers else None,
        not_after=far,
    )
    leaf = _cert(
        "Test App Store signer",
        leaf_key,
        inter.subject,
        inter_key,
        ca=False,
        marker=LEAF_OID if markers else None,
        not_after=leaf_not_after,
    )
    return Chain(root, inter, leaf, leaf_key)


def notification(
    chain: Chain,
    kind: str,
    subtype: str | None,
    signed_at: datetime,
    *,
    original: str = "1000000000000001",
    renewal: dict[str, Any] | None = None,
    txn: dict[str, Any] | None = None,
    notification_uuid: str | None = None,
    bundle: str = BUNDLE,
) -> bytes:
    ms = int(signed_at.timestamp() * 1000)
    transaction = {
        "originalTransactionId": original,
        "transactionId": "2000000000000009",
        "productId": "pro.monthly",
        "price": 9990,
        "currency": "USD",
        "expiresDate": int((signed_at - timedelta(hours=1)).timestamp() * 1000),
        "signedDate": ms,
        **(txn or {}),
    }
    renewal_info = {
        "originalTransactionId": original,
        "autoRenewProductId": "pro.monthly",
        "expirationIntent": 2,
        "isInBillingRetryPeriod": True,
        "renewalPrice": 9990,
        "currency": "USD",
        "signedDate": ms,
        **(renewal or {}),
    }
    payload = {
        "notificationType": kind,
        "notificationUUID": notification_uuid or str(uuid.uuid4()),
        "version": "2.0",
        "signedDate": ms,
        "data": {
            "bundleId": bundle,
            "environment": "Sandbox",
            "signedTransactionInfo": chain.sign(transaction),
            "signedRenewalInfo": chain.sign(renewal_info),
        },
    }
    if subtype:
        payload["subtype"] = subtype
    return json.dumps({"signedPayload": chain.sign(payload)}).encode()
