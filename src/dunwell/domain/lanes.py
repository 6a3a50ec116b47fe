"""The lane vocabulary: where a decline goes. Fixed; policies are tables keyed by lane."""

from __future__ import annotations

from enum import StrEnum


class Lane(StrEnum):
    RETRY_SOON = "retry_soon"  # issuer or network hiccup: try again within hours
    RETRY_AFTER_FUNDS = "retry_after_funds"  # insufficient funds, limits: wait for money
    UPDATE_PAYMENT_METHOD = "update_payment_method"  # expired, closed, invalid: customer acts
    AUTHENTICATE = "authenticate"  # SCA / 3DS required: only the customer can fix it
    DO_NOT_RETRY = "do_not_retry"  # the network or issuer says never
    FRAUD_SUSPECTED = "fraud_suspected"  # never retry, never push the customer
    PROVIDER_ERROR = "provider_error"  # the PSP itself failed: a technical retry


# Lanes where no automatic charge may ever be attempted again on the same credential.
NEVER_RETRY_LANES = frozenset({Lane.DO_NOT_RETRY, Lane.FRAUD_SUSPECTED})

# Lanes only the customer can resolve (a new card, an authentication).
CUSTOMER_ACTION_LANES = frozenset(
    {Lane.UPDATE_PAYMENT_METHOD, Lane.AUTHENTICATE, Lane.DO_NOT_RETRY, Lane.FRAUD_SUSPECTED}
)

# Providers that retry a failed renewal themselves and cannot be charged by anyone else (the
# App Store's and Google Play's billing retry): dunwell tracks the case, tells the customer
# where to fix the payment, and manages access, but never plans a charge.
SELF_RETRYING_PROVIDERS = frozenset({"apple", "google"})
