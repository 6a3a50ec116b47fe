"""Stripe outbound charges: an off-session PaymentIntent through the official SDK.

One attempt is one PaymentIntent created with `confirm=true, off_session=true` under the
idempotency key = the attempt id. Stripe stores the first answer to a key for 24 hours and
replays it to any re-send with the same key and parameters, so a re-send never charges twice.

Unknown outcomes (`lookup`): first the documented way, re-sending the same request under the
same key (a finished request is replayed, not re-executed). Stripe also replays a stored 5xx,
and answers 409 while the first request still runs; then the PaymentIntent is searched by
`metadata['attempt_id']`. Search is eventually consistent (usually within a minute), so
"not found" there means "not known yet": the runner records a technical failure and the
attempt is re-sent later under the same key, which is safe for the reason above.
"""

from __future__ import annotations

from typing import Any

import stripe as sdk

from dunwell.domain.decision import Charge
from dunwell.domain.events import DeclineReport
from dunwell.providers.base import ChargeResult, ProviderError

PROVIDER = "stripe"
AUTHENTICATION_REQUIRED = "authentication_required"


class StripeChargeProvider:
    name = PROVIDER

    def __init__(
        self,
        api_key: str,
        *,
        api_base: str | None = None,
        timeout_seconds: float = 30.0,
    ) -> None:
        self.client = sdk.StripeClient(
            api_key,
            base_addresses={"api": api_base} if api_base else None,
            # Retries are the engine's (same key, after a lookup), not hidden in the SDK.
            max_network_retries=0,
            http_client=sdk.new_default_http_client(timeout=timeout_seconds),
        )

    def charge(self, charge: Charge) -> ChargeResult:
        try:
            intent = self.client.v1.payment_intents.create(
                params=_params(charge),  # type: ignore[arg-type]
                options={"idempotency_key": charge.idempotency_key},
            )
        except sdk.CardError as exc:
            return _declined(exc.json_body or {})
        except sdk.StripeError as exc:
            raise ProviderError(_describe(exc)) from exc
        return _from_intent(intent.to_dict())

    def lookup(self, charge: Charge) -> ChargeResult | None:
        try:
            return self.charge(charge)  # replayed by Stripe, not executed again
        except ProviderError:
            pass
        query = f"metadata['attempt_id']:'{_quoted(charge.attempt_id)}'"
        try:
            found = self.client.v1.payment_intents.search(params={"query": query, "limit": 1})
        except sdk.StripeError as exc:
            raise ProviderError(_describe(exc)) from exc
        if not found.data:
            return None
        intent = found.data[0].to_dict()
        if intent.get("status") == "requires_payment_method" and intent.get("last_payment_error"):
            return _declined({"error": intent["last_payment_error"]}, intent.get("id"))
        try:
            return _from_intent(intent)
        except ProviderError:
            return None  # still processing: not finished, so no outcome yet


def _params(charge: Charge) -> dict[str, Any]:
    return {
        "amount": charge.amount.amount_minor,
        "currency": charge.amount.currency.lower(),
        "customer": charge.customer_id,
        "payment_method": charge.payment_method.token,
        "confirm": True,
        "off_session": True,
        "metadata": {"case_id": charge.case_id, "attempt_id": charge.attempt_id},
    }


def _from_intent(intent: dict[str, Any]) -> ChargeResult:
    status, reference = intent.get("status"), intent.get("id")
    if status == "succeeded":
        return ChargeResult(True, provider_reference=reference)
    if status == "requires_action":
        # Strong customer authentication: only the customer can complete it, on-session.
        report = DeclineReport(
            provider_code=AUTHENTICATION_REQUIRED,
            message="the card issuer requires the customer to authenticate (3DS)",
            provider=PROVIDER,
        )
        return ChargeResult(False, report, reference)
    # `processing` and the rest: no final outcome in this answer.
    raise ProviderError(f"stripe PaymentIntent {reference} is {status}; no outcome yet")


def _declined(body: dict[str, Any], reference: str | None = None) -> ChargeResult:
    error = body.get("error") or {}
    intent = error.get("payment_intent") or {}
    # The error of the request, else the intent's own last error (same facts, either place).
    facts = {**(intent.get("last_payment_error") or {}), **error}
    code = facts.get("decline_code") or facts.get("code")
    if facts.get("code") == AUTHENTICATION_REQUIRED:
        code = AUTHENTICATION_REQUIRED
    report = DeclineReport(
        provider_code=code,
        network_code=facts.get("network_decline_code"),
        advice_code=facts.get("network_advice_code") or facts.get("advice_code"),
        message=facts.get("message"),
        provider=PROVIDER,
    )
    return ChargeResult(False, report, intent.get("id") or reference)


def _describe(exc: sdk.StripeError) -> str:
    status = exc.http_status if exc.http_status is not None else "no answer"
    return f"stripe {type(exc).__name__} ({status}): {exc.user_message or str(exc)}"[:300]


def _quoted(value: str) -> str:
    return value.replace("\\", "\\\\").replace("'", "\\'")
