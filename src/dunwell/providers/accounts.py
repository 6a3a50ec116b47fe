"""Provider accounts: a tenant's credentials to charge through Stripe, Adyen or Braintree.

Credentials are one JSON object sealed with the webhook secrets' helper (Fernet, key derived
from DUNWELL_SECRET_KEY). Unlike a webhook secret they are never kept in the clear: without
DUNWELL_SECRET_KEY an account cannot be added. Settings that are not secret (a merchant
account, the environment) sit beside them in `config`, and are shown; the credentials never
are, by the API or the CLI.

`TenantAdapters` is what the runner's `ProviderRegistry` asks for the adapter of a
(tenant, provider): it builds one from the tenant's newest account of that provider and keeps
it while the stored account is unchanged.
"""

from __future__ import annotations

import hashlib
import json
import secrets
import threading
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from sqlalchemy import Index, String, Text, UniqueConstraint, select
from sqlalchemy.orm import Mapped, Session, mapped_column, sessionmaker

from dunwell.providers.base import PaymentProvider, ProviderError
from dunwell.store.tables import Base, Id
from dunwell.store.unit_of_work import UnitOfWork
from dunwell.webhooks.endpoints import EndpointError, seal, unseal


class ProviderAccount(Base):
    __tablename__ = "provider_accounts"
    __table_args__ = (
        UniqueConstraint("tenant_id", "provider", "account"),
        Index("ix_provider_accounts_tenant_provider", "tenant_id", "provider"),
    )
    id: Mapped[str] = mapped_column(Id, primary_key=True)
    tenant_id: Mapped[str] = mapped_column(Id)
    provider: Mapped[str] = mapped_column(String(16))
    account: Mapped[str] = mapped_column(String(255))
    credentials: Mapped[str] = mapped_column(Text)  # sealed JSON object, `fernet:` prefix
    config: Mapped[dict[str, Any]]
    created_at: Mapped[datetime]


@dataclass(frozen=True)
class _Spec:
    credentials: tuple[str, ...]  # required, sealed
    required: tuple[str, ...]  # required config
    optional: tuple[str, ...]  # optional config


SPECS = {
    "stripe": _Spec(("api_key",), (), ("api_base",)),
    "adyen": _Spec(
        ("api_key",),
        ("merchant_account",),
        ("environment", "live_endpoint_prefix", "api_base"),
    ),
    "braintree": _Spec(
        ("public_key", "private_key"), ("merchant_id",), ("environment", "api_base")
    ),
}
_ENVIRONMENTS = {"adyen": ("test", "live"), "braintree": ("sandbox", "production")}
# Where the SDK sends requests. Only the operator (CLI) may set it, e.g. to a local fake or
# an egress proxy: through the tenant API it would let a tenant make dunwell call any host.
OPERATOR_ONLY = ("api_base",)


class AccountError(ValueError):
    pass


def create(
    sessions: sessionmaker[Session],
    key: str | None,
    now: datetime,
    *,
    tenant_id: str,
    provider: str,
    account: str,
    credentials: dict[str, Any],
    config: dict[str, Any] | None = None,
    operator: bool = False,
) -> ProviderAccount:
    """Add an account, or replace the credentials and config of the one with this label."""
    spec = SPECS.get(provider)
    if spec is None:
        raise AccountError(f"unknown provider {provider!r}; known: {', '.join(SPECS)}")
    if key is None:
        raise AccountError("charging credentials are stored encrypted: set DUNWELL_SECRET_KEY")
    if not account:
        raise AccountError("an account needs a label")
    config = dict(config or {})
    missing = [n for n in spec.credentials if not credentials.get(n)]
    missing += [n for n in spec.required if not config.get(n)]
    if missing:
        raise AccountError(f"a {provider} account needs {', '.join(missing)}")
    unknown = set(credentials) - set(spec.credentials)
    unknown |= set(config) - set(spec.required) - set(spec.optional)
    if unknown:
        raise AccountError(f"not a {provider} setting: {', '.join(sorted(unknown))}")
    environments = _ENVIRONMENTS.get(provider, ())
    if "environment" in config and config["environment"] not in environments:
        raise AccountError(f"a {provider} environment is one of {', '.join(environments)}")
    if config.get("environment") == "live" and not config.get("live_endpoint_prefix"):
        raise AccountError("a live Adyen account needs live_endpoint_prefix")
    if not operator and any(n in config for n in OPERATOR_ONLY):
        raise AccountError("api_base can only be set by the operator (dunwell providers add)")
    sealed = seal(json.dumps({n: str(credentials[n]) for n in spec.credentials}), key)
    with UnitOfWork(sessions) as uow:
        if uow.tenants.get(tenant_id) is None:
            raise AccountError(f"no tenant {tenant_id!r}")
        row = uow.session.scalars(
            select(ProviderAccount).where(
                ProviderAccount.tenant_id == tenant_id,
                ProviderAccount.provider == provider,
                ProviderAccount.account == account,
            )
        ).one_or_none()
        if row is None:
            row = ProviderAccount(
                id="pa_" + secrets.token_hex(10),
                tenant_id=tenant_id,
                provider=provider,
                account=account,
                created_at=now,
            )
            uow.session.add(row)
        row.credentials, row.config = sealed, config
        uow.commit()
        uow.session.refresh(row)
        uow.session.expunge(row)
    return row


def list_for(sessions: sessionmaker[Session], tenant_id: str | None) -> list[ProviderAccount]:
    with UnitOfWork(sessions) as uow:
        query = select(ProviderAccount).order_by(ProviderAccount.created_at, ProviderAccount.id)
        if tenant_id is not None:
            query = query.where(ProviderAccount.tenant_id == tenant_id)
        rows = list(uow.session.scalars(query))
        for row in rows:
            uow.session.expunge(row)
    return rows


def view(row: ProviderAccount) -> dict[str, Any]:
    """What the API and CLI show: never the credentials."""
    return {
        "id": row.id,
        "tenant_id": row.tenant_id,
        "provider": row.provider,
        "account": row.account,
        "config": dict(row.config or {}),
        "created_at": row.created_at.isoformat(),
    }


def build_adapter(
    provider: str,
    credentials: dict[str, str],
    config: dict[str, Any],
    timeout_seconds: float = 30.0,
) -> PaymentProvider:
    """The charging adapter of one account (the SDK clients are made here, no I/O yet)."""
    if provider == "stripe":
        from dunwell.providers.stripe_charges import StripeChargeProvider

        return StripeChargeProvider(
            credentials["api_key"],
            api_base=config.get("api_base"),
            timeout_seconds=timeout_seconds,
        )
    if provider == "adyen":
        from dunwell.providers.adyen_charges import AdyenChargeProvider

        return AdyenChargeProvider(
            credentials["api_key"],
            config["merchant_account"],
            environment=config.get("environment", "test"),
            live_endpoint_prefix=config.get("live_endpoint_prefix"),
            api_base=config.get("api_base"),
            timeout_seconds=int(timeout_seconds),
        )
    if provider == "braintree":
        from dunwell.providers.braintree_charges import BraintreeChargeProvider

        return BraintreeChargeProvider(
            config["merchant_id"],
            credentials["public_key"],
            credentials["private_key"],
            environment=config.get("environment", "sandbox"),
            api_base=config.get("api_base"),
            timeout_seconds=timeout_seconds,
        )
    raise ProviderError(f"no outbound adapter for provider {provider!r}")


class TenantAdapters:
    """The registry's resolver: (tenant, provider) -> the adapter of the tenant's account.

    None when the tenant has no account of the provider (the registry then falls back). An
    account whose credentials cannot be opened raises `ProviderError`: the charge is not sent
    anywhere else, the attempt errors and is retried after the operator fixes the key.
    """

    def __init__(
        self,
        sessions: sessionmaker[Session],
        key: str | None,
        timeout_seconds: float = 30.0,
    ) -> None:
        self.sessions, self.key, self.timeout_seconds = sessions, key, timeout_seconds
        self._cache: dict[tuple[str, str], PaymentProvider] = {}
        self._lock = threading.Lock()

    def __call__(self, tenant_id: str, provider: str) -> PaymentProvider | None:
        # One small query per charge: an account added or rotated is used from the next one.
        with UnitOfWork(self.sessions) as uow:
            row = uow.session.scalars(
                select(ProviderAccount)
                .where(ProviderAccount.tenant_id == tenant_id, ProviderAccount.provider == provider)
                .order_by(ProviderAccount.created_at.desc(), ProviderAccount.id.desc())
                .limit(1)
            ).one_or_none()
            if row is None:
                return None
            account_id, sealed, config = row.id, row.credentials, dict(row.config or {})
        version = hashlib.sha256((sealed + json.dumps(config, sort_keys=True)).encode())
        cache_key = (account_id, version.hexdigest())
        with self._lock:
            adapter = self._cache.get(cache_key)
            if adapter is None:
                try:
                    credentials = json.loads(unseal(sealed, self.key))
                except EndpointError as exc:
                    raise ProviderError(f"{provider} account {account_id}: {exc}") from None
                adapter = build_adapter(provider, credentials, config, self.timeout_seconds)
                self._cache = {k: v for k, v in self._cache.items() if k[0] != account_id}
                self._cache[cache_key] = adapter
        return adapter
