"""The built-in simulated card processor, in process.

Used by `make run` until real provider adapters are configured, and by tests. Deterministic:
it approves, unless the payment-method token names a Stripe decline code after `decline_`
(e.g. `pm_decline_insufficient_funds`), or `error` (a provider failure).
"""

from __future__ import annotations

from dunwell.domain.decision import Charge
from dunwell.domain.events import DeclineReport
from dunwell.providers.base import ChargeResult, ProviderError


class SimulatedProcessor:
    name = "sim"

    def __init__(self) -> None:
        self.captured: dict[str, Charge] = {}  # by idempotency key: the same key captures once

    def charge(self, charge: Charge) -> ChargeResult:
        token = charge.payment_method.token
        if "error" in token:
            raise ProviderError("simulated processor failure")
        if "decline_" in token:
            code = token.split("decline_", 1)[1]
            return ChargeResult(
                False, DeclineReport(provider_code=code, message="simulated decline")
            )
        self.captured.setdefault(charge.idempotency_key, charge)
        return ChargeResult(True, provider_reference=f"sim_{charge.idempotency_key}")
