"""The `PaymentProvider` port. Declines are data, not exceptions; a provider failure (timeout,
5xx, connection refused) raises `ProviderError`, which the runner turns into a technical retry.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Protocol

from dunwell.domain.decision import Charge
from dunwell.domain.events import DeclineReport
from dunwell.domain.records import direct_init


@direct_init
@dataclass(frozen=True, slots=True)
class ChargeResult:
    approved: bool
    decline: DeclineReport | None = None
    provider_reference: str | None = None


class ProviderError(Exception):
    """The provider did not answer with an outcome; nothing is known to have been charged."""


class PaymentProvider(Protocol):
    name: str

    def charge(self, charge: Charge) -> ChargeResult: ...


class OutcomeLookup(Protocol):
    """Providers that can say what became of a request sent under an idempotency key."""

    def lookup(self, charge: Charge) -> ChargeResult | None:
        """The outcome, or None when the provider has no finished request under the key."""
        ...


# (tenant id, provider name) -> the adapter of the tenant's own account, or None without one.
AccountAdapters = Callable[[str, str], PaymentProvider | None]


class ProviderRegistry:
    """Adapters by provider name; `fallback` charges for providers without an adapter yet.

    With `accounts`, a tenant's own account of the charge's provider comes first.
    """

    def __init__(
        self,
        adapters: dict[str, PaymentProvider],
        fallback: PaymentProvider | None = None,
        accounts: AccountAdapters | None = None,
    ):
        self.adapters = adapters
        self.fallback = fallback
        self.accounts = accounts

    def for_charge(self, charge: Charge, tenant_id: str | None = None) -> PaymentProvider:
        if tenant_id is not None and self.accounts is not None:
            own = self.accounts(tenant_id, charge.provider)
            if own is not None:
                return own
        adapter = self.adapters.get(charge.provider) or self.fallback
        if adapter is None:
            raise ProviderError(f"no adapter configured for provider {charge.provider!r}")
        return adapter
