"""Adyen outbound charges: a Checkout API /payments call through the official SDK.

A merchant-initiated subscription charge on a stored card: `shopperInteraction=ContAuth`,
`recurringProcessingModel=Subscription`, `paymentMethod.storedPaymentMethodId` and the
`shopperReference` it was stored under, `reference` = the attempt id, and the
`Idempotency-Key` header = the attempt id.

Unknown outcomes (`lookup`): Adyen keeps idempotency keys for at least 31 days and answers a
re-send under a key it has already processed with the first response, without processing it
again; the Checkout API has no "get payment" call. So the lookup re-sends the same request
under the same key: at most one payment exists under the key whatever happened before.
"""

from __future__ import annotations

import re
from typing import Any

import Adyen as sdk
from Adyen.exceptions import AdyenError

from dunwell.domain.decision import Charge
from dunwell.domain.events import DeclineReport
from dunwell.providers.base import ChargeResult, ProviderError

PROVIDER = "adyen"
_TEST_HOST = "https://checkout-test.adyen.com"
# Adyen's refusal reason "Authentication required": the taxonomy's authenticate lane.
AUTHENTICATION_REQUIRED = "38"
_SHOPPER_ACTIONS = ("RedirectShopper", "IdentifyShopper", "ChallengeShopper", "PresentToShopper")


class AdyenChargeProvider:
    name = PROVIDER

    def __init__(
        self,
        api_key: str,
        merchant_account: str,
        *,
        environment: str = "test",
        live_endpoint_prefix: str | None = None,
        api_base: str | None = None,
        timeout_seconds: int = 30,
    ) -> None:
        self.merchant_account = merchant_account
        self.adyen = sdk.Adyen(
            xapikey=api_key,
            platform=environment,
            live_endpoint_prefix=live_endpoint_prefix,
            http_timeout=timeout_seconds,
        )
        self.payments = self.adyen.checkout.payments_api
        if api_base:
            # Keep the SDK's API version, change only where it is sent (a loopback fake).
            self.payments.baseUrl = self.payments.baseUrl.replace(_TEST_HOST, api_base.rstrip("/"))

    def charge(self, charge: Charge) -> ChargeResult:
        try:
            result = self.payments.payments(
                self._request(charge), idempotency_key=charge.idempotency_key
            )
        except AdyenError as exc:
            status = getattr(exc, "status_code", None)
            code = getattr(exc, "error_code", None)
            raise ProviderError(f"adyen {type(exc).__name__} ({status}, {code})") from exc
        except OSError as exc:  # requests' and urllib's transport errors
            raise ProviderError(f"adyen unreachable: {type(exc).__name__}") from exc
        return _result(result.message or {})

    def lookup(self, charge: Charge) -> ChargeResult | None:
        try:
            return self.charge(charge)  # answered from the first request under the key
        except ProviderError:
            return None

    def _request(self, charge: Charge) -> dict[str, Any]:
        return {
            "merchantAccount": self.merchant_account,
            "reference": charge.attempt_id,
            "amount": {"value": charge.amount.amount_minor, "currency": charge.amount.currency},
            "paymentMethod": {
                "type": "scheme",
                # The inbound adapter marks Adyen's numeric references with `adyen:`.
                "storedPaymentMethodId": charge.payment_method.token.removeprefix("adyen:"),
            },
            "shopperReference": charge.customer_id,
            "shopperInteraction": "ContAuth",
            "recurringProcessingModel": "Subscription",
            "metadata": {"case_id": charge.case_id, "attempt_id": charge.attempt_id},
        }


def _result(body: dict[str, Any]) -> ChargeResult:
    result_code, reference = body.get("resultCode"), body.get("pspReference")
    extra = body.get("additionalData") or {}
    if result_code == "Authorised":
        return ChargeResult(True, provider_reference=reference)
    if result_code in _SHOPPER_ACTIONS:
        # The issuer wants the shopper: nobody is there on a merchant-initiated charge.
        report = DeclineReport(
            provider_code=AUTHENTICATION_REQUIRED,
            message=f"adyen answered {result_code}: the customer must authenticate",
            provider=PROVIDER,
        )
        return ChargeResult(False, report, reference)
    # Refused, Cancelled, and Error with a refusal reason: known not to be authorised.
    if result_code in ("Refused", "Cancelled", "Error") and (
        result_code != "Error" or body.get("refusalReasonCode")
    ):
        report = DeclineReport(
            provider_code=body.get("refusalReasonCode"),
            network_code=_code(extra.get("refusalReasonRaw")),
            advice_code=_code(extra.get("merchantAdviceCode")),
            message=extra.get("refusalReasonRaw") or body.get("refusalReason"),
            provider=PROVIDER,
        )
        return ChargeResult(False, report, reference)
    # Received, Pending, an Error without a reason: no final outcome in this answer.
    raise ProviderError(f"adyen payment {reference} is {result_code}; no outcome yet")


def _code(text: Any) -> str | None:
    """'51 : Insufficient funds' -> '51'; free text without a leading code -> None."""
    match = re.match(r"\s*([0-9A-Z]{2,3})\s*(?::|$)", str(text or ""))
    return match.group(1) if match else None
