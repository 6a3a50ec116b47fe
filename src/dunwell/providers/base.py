"""The `PaymentProvider` port. Declines are data, not exceptions; a provider failure (timeout,
5xx, connection refused) raises `ProviderError`, which the runner turns into a technical retry.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Protocol

from dunwell.domain.decision import Charge
from dunwell.domain.events import DeclineReport


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


class ProviderRegistry:
    """Adapters by provider name; `fallback` charges for providers without an adapter yet."""

    def __init__(
        self, adapters: dict[str, PaymentProvider], fallback: PaymentProvider | None = None
    ):
        self.adapters = adapters
        self.fallback = fallback

    def for_charge(self, charge: Charge) -> PaymentProvider:
        adapter = self.adapters.get(charge.provider) or self.fallback
        if adapter is None:
            raise ProviderError(f"no adapter configured for provider {charge.provider!r}")
        return adapter
