"""Decline classification: a provider's code, a network code and an advice code to a lane.

This is the first table, for Stripe's `decline_code` values
(https://docs.stripe.com/declines/codes), plus the two network facts the guardrails need:
Mastercard Merchant Advice Codes and Visa's category 1 ("issuer will never approve")
response codes. A network "never" always overrides a provider's softer word.
The full multi-provider taxonomy lives in data files in a later iteration.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import timedelta

from dunwell.domain.events import DeclineReport
from dunwell.domain.lanes import NEVER_RETRY_LANES, Lane

_R = Lane.RETRY_SOON
_F = Lane.RETRY_AFTER_FUNDS
_U = Lane.UPDATE_PAYMENT_METHOD
_A = Lane.AUTHENTICATE
_N = Lane.DO_NOT_RETRY
_X = Lane.FRAUD_SUSPECTED

STRIPE_DECLINE_CODES: dict[str, Lane] = {
    "approve_with_id": _R,
    "authentication_required": _A,
    "call_issuer": _R,
    "card_not_supported": _U,
    "card_velocity_exceeded": _F,
    "currency_not_supported": _U,
    "do_not_honor": _R,
    "do_not_try_again": _N,
    "duplicate_transaction": _N,
    "expired_card": _U,
    "fraudulent": _X,
    "generic_decline": _R,
    "incorrect_cvc": _U,
    "incorrect_number": _U,
    "incorrect_pin": _U,
    "incorrect_zip": _U,
    "insufficient_funds": _F,
    "invalid_account": _U,
    "invalid_amount": _N,
    "invalid_cvc": _U,
    "invalid_expiry_month": _U,
    "invalid_expiry_year": _U,
    "invalid_number": _U,
    "invalid_pin": _U,
    "issuer_not_available": _R,
    "lost_card": _N,
    "merchant_blacklist": _X,
    "new_account_information_available": _U,
    "no_action_taken": _R,
    "not_permitted": _N,
    "offline_pin_required": _A,
    "online_or_offline_pin_required": _A,
    "pickup_card": _N,
    "pin_try_exceeded": _U,
    "processing_error": _R,
    "reenter_transaction": _R,
    "restricted_card": _N,
    "revocation_of_all_authorizations": _N,
    "revocation_of_authorization": _N,
    "security_violation": _X,
    "service_not_allowed": _N,
    "stolen_card": _N,
    "stop_payment_order": _N,
    "testmode_decline": _N,
    "transaction_not_allowed": _N,
    "try_again_later": _R,
    "withdrawal_count_limit_exceeded": _F,
}

# Visa decline category 1, "issuer will never approve": no reattempt is allowed.
VISA_NEVER_RETRY_CODES = frozenset(
    {"04", "07", "12", "14", "15", "41", "43", "46", "57", "R0", "R1", "R3"}
)

# Mastercard Merchant Advice Codes.
MASTERCARD_NEVER_RETRY_ADVICE = frozenset({"03", "21"})
MASTERCARD_UPDATE_ADVICE = frozenset({"01"})
MASTERCARD_RETRY_AFTER: dict[str, timedelta] = {
    "24": timedelta(hours=1),
    "25": timedelta(hours=24),
    "26": timedelta(days=2),
    "27": timedelta(days=4),
    "28": timedelta(days=6),
    "29": timedelta(days=8),
    "30": timedelta(days=10),
}

# An unknown code must not lead to aggressive retrying: a few spaced retries at most.
UNKNOWN_CODE_LANE = Lane.RETRY_SOON


@dataclass(frozen=True, slots=True)
class Classification:
    lane: Lane
    rule: str  # which table row decided, for the explanation
    retry_allowed: bool
    retry_after: timedelta | None = None  # Mastercard advice codes 24-30
    known: bool = True

    def explain(self) -> str:
        text = f"lane {self.lane.value} by {self.rule}"
        if self.retry_after is not None:
            text += f"; next attempt not before {self.retry_after} after this decline"
        return text


def classify_decline(report: DeclineReport, brand: str | None) -> Classification:
    """Map one decline report to a lane. Network rules win over the provider's code."""
    brand_key = (brand or "").lower()
    advice = (report.advice_code or "").strip()
    network = (report.network_code or "").strip().upper()
    code = (report.provider_code or "").strip().lower()

    if advice in MASTERCARD_NEVER_RETRY_ADVICE:
        return Classification(Lane.DO_NOT_RETRY, f"mastercard advice code {advice}", False)
    if brand_key == "visa" and network in VISA_NEVER_RETRY_CODES:
        return Classification(Lane.DO_NOT_RETRY, f"visa category 1 code {network}", False)

    provider_lane = STRIPE_DECLINE_CODES.get(code)
    if advice in MASTERCARD_UPDATE_ADVICE and provider_lane not in NEVER_RETRY_LANES:
        return Classification(Lane.UPDATE_PAYMENT_METHOD, f"mastercard advice code {advice}", True)

    retry_after = MASTERCARD_RETRY_AFTER.get(advice)
    if provider_lane is None:
        lane, rule, known = UNKNOWN_CODE_LANE, f"unknown code {code or '(none)'!r}", False
    else:
        lane, rule, known = provider_lane, f"stripe decline_code {code}", True
    if retry_after is not None:
        rule += f" + mastercard advice code {advice}"
    return Classification(lane, rule, lane not in NEVER_RETRY_LANES, retry_after, known)
