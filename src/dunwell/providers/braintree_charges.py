"""Braintree outbound charges: `transaction.sale` on a vaulted token through the official SDK.

The sale carries `payment_method_token`, `transaction_source="recurring"` (a
merchant-initiated charge of a subscription), `options.submit_for_settlement` and
`order_id` = the attempt id.

Braintree's gateway API takes no idempotency key. What makes a re-send safe is the order id:
every charge first searches the transactions with `order_id` = the attempt id, and sends a
sale only when there is none; `lookup` is that search. A re-send after an unknown outcome
(the runner's technical retry comes minutes later) therefore finds the first transaction
instead of charging again. Not covered: two sends of one attempt at the same instant (the
runner never does that: an action row is carried out by one worker at a time).
"""

from __future__ import annotations

import warnings
from decimal import Decimal
from typing import Any
from urllib.parse import urlsplit

from dunwell.domain.decision import Charge
from dunwell.domain.events import DeclineReport
from dunwell.domain.money import minor_exponent
from dunwell.providers.base import ChargeResult, ProviderError

with warnings.catch_warnings():
    # braintree 4.48 warns about a deprecated enum of its own while it is being imported.
    warnings.simplefilter("ignore", DeprecationWarning)
    import braintree as sdk
    from braintree.exceptions.braintree_error import BraintreeError

PROVIDER = "braintree"
_APPROVED = ("authorized", "submitted_for_settlement", "settling", "settled", "settlement_pending")
_ENVIRONMENTS = {"sandbox": sdk.Environment.Sandbox, "production": sdk.Environment.Production}


class BraintreeChargeProvider:
    name = PROVIDER

    def __init__(
        self,
        merchant_id: str,
        public_key: str,
        private_key: str,
        *,
        environment: str = "sandbox",
        api_base: str | None = None,
        timeout_seconds: float = 30.0,
    ) -> None:
        env = _environment(api_base) if api_base else _ENVIRONMENTS[environment]
        self.gateway = sdk.BraintreeGateway(
            sdk.Configuration(
                env,
                merchant_id=merchant_id,
                public_key=public_key,
                private_key=private_key,
                timeout=timeout_seconds,
                # Transport failures as BraintreeError subclasses, not raw `requests` errors.
                wrap_http_exceptions=True,
            )
        )

    def charge(self, charge: Charge) -> ChargeResult:
        earlier = self.lookup(charge)
        if earlier is not None:
            return earlier  # a re-send: the first transaction is the answer
        params = {
            "amount": str(_decimal(charge)),
            "payment_method_token": charge.payment_method.token,
            "order_id": charge.attempt_id,
            "transaction_source": "recurring",
            "options": {"submit_for_settlement": True},
        }
        try:
            result = self.gateway.transaction.sale(params)
        except BraintreeError as exc:
            raise ProviderError(f"braintree {type(exc).__name__}: {exc}"[:300]) from exc
        if result.is_success:
            return _from_transaction(result.transaction)
        if result.transaction is not None:  # processor declined, gateway rejected, failed
            return _from_transaction(result.transaction)
        # Validation errors: nothing was sent to the processor; not a card's decline.
        codes = ", ".join(f"{e.code} {e.message}" for e in result.errors.deep_errors)
        raise ProviderError(f"braintree refused the request: {codes or result.message}"[:300])

    def lookup(self, charge: Charge) -> ChargeResult | None:
        try:
            found = self.gateway.transaction.search(
                sdk.TransactionSearch.order_id == charge.attempt_id
            )
            transactions = list(found.items)
        except BraintreeError as exc:
            raise ProviderError(f"braintree search failed: {type(exc).__name__}") from exc
        if not transactions:
            return None
        # Approved wins: a later transaction under the order id cannot undo a capture.
        approved = [t for t in transactions if t.status in _APPROVED]
        return _from_transaction(approved[0] if approved else transactions[0])


def _decimal(charge: Charge) -> Decimal:
    return Decimal(charge.amount.amount_minor).scaleb(-minor_exponent(charge.amount.currency))


def _from_transaction(txn: Any) -> ChargeResult:
    status = txn.status
    if status in _APPROVED:
        return ChargeResult(True, provider_reference=txn.id)
    if status == "gateway_rejected":
        reason = getattr(txn, "gateway_rejection_reason", None)
        report = DeclineReport(
            provider_code=reason,
            message=f"rejected by the Braintree gateway ({reason})",
            provider=PROVIDER,
        )
        return ChargeResult(False, report, txn.id)
    if status in ("processor_declined", "failed"):
        kind = getattr(txn, "processor_response_type", None)  # soft_declined | hard_declined
        text = getattr(txn, "processor_response_text", None)
        extra = getattr(txn, "additional_processor_response", None)
        report = DeclineReport(
            provider_code=getattr(txn, "processor_response_code", None),
            network_code=getattr(txn, "network_response_code", None),
            advice_code=getattr(txn, "merchant_advice_code", None),
            message="; ".join(str(p) for p in (text, extra, kind) if p) or None,
            provider=PROVIDER,
        )
        return ChargeResult(False, report, txn.id)
    # authorizing, voided, ...: no outcome dunwell can act on in this answer.
    raise ProviderError(f"braintree transaction {txn.id} is {status}; no outcome yet")


def _environment(api_base: str) -> sdk.Environment:
    """An Environment for another host (a local fake, a proxy). The SDK speaks https only on
    port 443; there the system's CA bundle verifies the host (True is `requests`' verify)."""
    url = urlsplit(api_base)
    https = url.scheme == "https"
    port = str(url.port or (443 if https else 80))
    return sdk.Environment("custom", url.hostname, port, "", https, True if https else None)
