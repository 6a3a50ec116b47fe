"""Webhook endpoints: create, list, load for verification. Secrets are shown once.

At rest a secret is Fernet-encrypted (`fernet:` prefix) with a key derived from
DUNWELL_SECRET_KEY when that is set, otherwise kept as given (`plain:` prefix). It has to be
recoverable, not hashed: every HMAC check needs the secret itself.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import secrets
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from cryptography.fernet import Fernet, InvalidToken
from sqlalchemy import select
from sqlalchemy.orm import Session, sessionmaker

from dunwell.store.unit_of_work import UnitOfWork
from dunwell.webhooks.base import Endpoint
from dunwell.webhooks.store import WebhookDelivery, WebhookEndpoint

PROVIDERS = ("stripe", "adyen", "braintree", "checkout", "apple", "google")
# Providers whose secret dunwell may generate (the shared token of a Google push URL); the
# others issue their secret themselves and it has to be supplied.
_GENERATED = ("google", "apple")
# Config entries that are credentials: sealed like the secret, never shown.
SEALED_CONFIG = ("api_key", "basic_auth_password")
_HIDDEN_CONFIG = (*SEALED_CONFIG, "root_certificates_pem")


class EndpointError(ValueError):
    pass


@dataclass(frozen=True)
class Created:
    endpoint: WebhookEndpoint
    secret_shown: str | None  # only when dunwell generated it


def _fernet(key: str) -> Fernet:
    return Fernet(base64.urlsafe_b64encode(hashlib.sha256(key.encode()).digest()))


def seal(secret: str, key: str | None) -> str:
    if key is None:
        return "plain:" + secret
    return "fernet:" + _fernet(key).encrypt(secret.encode()).decode()


def unseal(stored: str, key: str | None) -> str:
    scheme, _, value = stored.partition(":")
    if scheme == "plain":
        return value
    if key is None:
        raise EndpointError("the secret is encrypted and DUNWELL_SECRET_KEY is not set")
    try:
        return _fernet(key).decrypt(value.encode()).decode()
    except InvalidToken:
        raise EndpointError("DUNWELL_SECRET_KEY does not decrypt this secret") from None


def _check_secret(provider: str, secret: str) -> None:
    if provider == "adyen":
        try:
            binascii.unhexlify(secret)
        except (binascii.Error, ValueError):
            raise EndpointError("an Adyen HMAC key is hexadecimal") from None
    if provider == "braintree" and ":" not in secret:
        raise EndpointError("a Braintree secret is PUBLIC_KEY:PRIVATE_KEY")


def create(
    sessions: sessionmaker[Session],
    key: str | None,
    now: datetime,
    *,
    tenant_id: str,
    provider: str,
    secret: str | None,
    account: str | None = None,
    provider_retries_enabled: bool = False,
    config: dict[str, Any] | None = None,
) -> Created:
    if provider not in PROVIDERS:
        raise EndpointError(f"unknown provider {provider!r}; known: {', '.join(PROVIDERS)}")
    shown = None
    if not secret:
        if provider not in _GENERATED:
            raise EndpointError(f"{provider} issues the signing secret: supply it")
        secret = shown = secrets.token_urlsafe(32)
    _check_secret(provider, secret)
    config = dict(config or {})
    for name in SEALED_CONFIG:
        if config.get(name):
            config[name] = seal(str(config[name]), key)
    if provider == "apple" and not config.get("root_certificates_pem"):
        raise EndpointError("an Apple endpoint needs config.root_certificates_pem")
    row = WebhookEndpoint(
        id="we_" + secrets.token_hex(10),
        tenant_id=tenant_id,
        provider=provider,
        account=account,
        secret=seal(secret, key),
        config=config,
        provider_retries_enabled=provider_retries_enabled,
        created_at=now,
    )
    with UnitOfWork(sessions) as uow:
        if uow.tenants.get(tenant_id) is None:
            raise EndpointError(f"no tenant {tenant_id!r}")
        uow.session.add(row)
        uow.commit()
        uow.session.refresh(row)
        uow.session.expunge(row)
    return Created(row, shown)


def list_for(sessions: sessionmaker[Session], tenant_id: str | None) -> list[WebhookEndpoint]:
    with UnitOfWork(sessions) as uow:
        query = select(WebhookEndpoint).order_by(WebhookEndpoint.created_at)
        if tenant_id is not None:
            query = query.where(WebhookEndpoint.tenant_id == tenant_id)
        rows = list(uow.session.scalars(query))
        for row in rows:
            uow.session.expunge(row)
    return rows


def load(sessions: sessionmaker[Session], key: str | None, endpoint_id: str) -> Endpoint | None:
    with UnitOfWork(sessions) as uow:
        row = uow.session.get(WebhookEndpoint, endpoint_id)
        if row is None:
            return None
        return Endpoint(
            row.id,
            row.tenant_id,
            row.provider,
            row.account,
            unseal(row.secret, key),
            {
                name: unseal(value, key) if name in SEALED_CONFIG else value
                for name, value in (row.config or {}).items()
            },
        )


def view(row: WebhookEndpoint) -> dict[str, Any]:
    """What the API and CLI show: never the secret."""
    return {
        "id": row.id,
        "tenant_id": row.tenant_id,
        "provider": row.provider,
        "account": row.account,
        "url_path": f"/webhooks/{row.provider}/{row.id}",
        "provider_retries_enabled": row.provider_retries_enabled,
        "config": {k: v for k, v in (row.config or {}).items() if k not in _HIDDEN_CONFIG},
        "created_at": row.created_at.isoformat(),
    }


def deliveries(
    sessions: sessionmaker[Session], tenant_id: str, endpoint_id: str, limit: int = 100
) -> list[WebhookDelivery] | None:
    """The endpoint's verified deliveries, newest first; None if it is not the tenant's."""
    with UnitOfWork(sessions) as uow:
        endpoint = uow.session.get(WebhookEndpoint, endpoint_id)
        if endpoint is None or endpoint.tenant_id != tenant_id:
            return None
        query = (
            select(WebhookDelivery)
            .where(WebhookDelivery.endpoint_id == endpoint_id)
            .order_by(WebhookDelivery.id.desc())
            .limit(limit)
        )
        rows = list(uow.session.scalars(query))
        for row in rows:
            uow.session.expunge(row)
    return rows


def delivery_view(row: WebhookDelivery) -> dict[str, Any]:
    """A delivery with its raw payload beside the canonical events made from it."""
    return {
        "delivery_id": row.delivery_id,
        "provider": row.provider,
        "received_at": row.received_at.isoformat(),
        "status": row.status,
        "event_ids": row.event_ids,
        "notes": row.notes,
        "raw_body": row.raw_body,
    }
