"""The `sim` provider adapter: charges the simulated processor over HTTP, like a real one.

The idempotency key is the attempt id. Every answer that is not an outcome (a timeout, a
connection error, a 5xx, a 409 "in progress") raises `ProviderError`: the outcome is
unknown, and the runner retries the same attempt with the same key, so the processor
replays its stored answer instead of charging again.
"""

from __future__ import annotations

import httpx

from dunwell.domain.decision import Charge
from dunwell.domain.events import DeclineReport
from dunwell.providers.base import ChargeResult, ProviderError


class HttpSimProvider:
    name = "sim"

    def __init__(
        self, base_url: str, timeout_seconds: float = 10.0, client: httpx.Client | None = None
    ) -> None:
        self.client = client or httpx.Client(base_url=base_url, timeout=timeout_seconds)

    def charge(self, charge: Charge) -> ChargeResult:
        body = {
            "amount": charge.amount.amount_minor,
            "currency": charge.amount.currency,
            "payment_method": charge.payment_method.token,
            "metadata": {"case_id": charge.case_id, "attempt_id": charge.attempt_id},
        }
        try:
            response = self.client.post(
                "/v1/charges", json=body, headers={"Idempotency-Key": charge.idempotency_key}
            )
        except httpx.HTTPError as exc:
            raise ProviderError(f"sim psp unreachable: {type(exc).__name__}") from exc
        return self._result(response) or _raise(response)

    def lookup(self, charge: Charge) -> ChargeResult | None:
        """Ask what became of the request under this attempt's key (no new charge)."""
        try:
            response = self.client.get(f"/v1/charges/by-key/{charge.idempotency_key}")
        except httpx.HTTPError as exc:
            raise ProviderError(f"sim psp unreachable: {type(exc).__name__}") from exc
        if response.status_code == 404:
            return None
        return self._result(response) or _raise(response)

    @staticmethod
    def _result(response: httpx.Response) -> ChargeResult | None:
        if response.status_code == 200:
            return ChargeResult(True, provider_reference=response.json().get("id"))
        if response.status_code == 402:
            data = response.json()
            report = DeclineReport(
                provider_code=data.get("decline_code"),
                advice_code=data.get("advice_code"),
                message="declined by the simulated processor",
            )
            return ChargeResult(False, report)
        return None

    def close(self) -> None:
        self.client.close()


def _raise(response: httpx.Response) -> ChargeResult:
    raise ProviderError(f"sim psp answered {response.status_code}: {response.text[:200]}")
