"""Guardrails no policy can break. The only gate a charge passes through.

`check_attempt` is called both when a retry is planned (to place its due time) and when it
falls due (the ledger may have grown since), and `decide` produces a charge nowhere else.
Rules, in order:
- never retry a credential declined as do_not_retry / fraud_suspected (incl. Mastercard
  advice codes 03 and 21, Visa category 1 codes);
- never two attempts on one obligation in flight;
- a per-case maximum of attempts;
- a Mastercard advice code 24-30 delays the next attempt as the code says;
- the card networks' reattempt caps per credential: Visa 15 (or 20 under its 2025 rule) in a
  rolling 30 days; Mastercard 10 in 24 hours and 35 in 30 days; other brands as Visa.
  Every attempt on the credential counts, the first decline included: one stricter than the
  letter of the rules, on purpose.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Literal

from dunwell.domain.case import RecoveryCase
from dunwell.domain.ledger import AttemptLedger
from dunwell.domain.records import direct_init

_DAY = timedelta(days=1)
_MONTH = timedelta(days=30)


@dataclass(frozen=True, slots=True)
class NetworkLimits:
    visa_rule: Literal["2024", "2025"] = "2024"
    max_attempts_per_case: int = 12

    @property
    def visa_per_30d(self) -> int:
        return 20 if self.visa_rule == "2025" else 15

    def caps(self, brand: str | None) -> tuple[tuple[str, int, timedelta], ...]:
        if (brand or "").lower() == "mastercard":
            return (("mastercard 24h cap", 10, _DAY), ("mastercard 30d cap", 35, _MONTH))
        name = (
            "visa" if (brand or "").lower() == "visa" else f"{brand or 'unknown brand'} (as visa)"
        )
        return ((f"{name} 30d cap ({self.visa_rule} rule)", self.visa_per_30d, _MONTH),)


@direct_init
@dataclass(frozen=True, slots=True)
class Verdict:
    allowed: bool
    rule: str
    reason: str
    not_before: datetime | None = None  # refused for now; allowed again from this time
    inputs: tuple[tuple[str, str], ...] = ()

    @property
    def final(self) -> bool:
        """Refused for good: no later time would change the answer."""
        return not self.allowed and self.not_before is None


def check_attempt(
    case: RecoveryCase, at: datetime, ledger: AttemptLedger, limits: NetworkLimits
) -> Verdict:
    credential = case.payment_method.credential_key
    brand = case.payment_method.brand
    base = (("credential", credential[-8:]), ("brand", brand or "unknown"), ("at", at.isoformat()))

    shared_block = ledger.block(credential)
    if shared_block is not None and credential not in case.blocked_credentials:
        return Verdict(
            False,
            "guardrail.never_retry",
            "this card was declined with a never-retry answer (or disputed) on another invoice "
            f"at {shared_block.attempted_at.isoformat()}; only a new payment method can be charged",
            inputs=(*base, ("blocked_at", shared_block.attempted_at.isoformat())),
        )
    if credential in case.blocked_credentials:
        return Verdict(
            False,
            "guardrail.never_retry",
            f"this credential was declined with a never-retry answer ({case.decline.rule}); "
            "only a new payment method can be charged",
            inputs=(*base, ("lane", case.decline.lane.value)),
        )
    if case.in_flight is not None:
        return Verdict(
            False,
            "guardrail.one_in_flight",
            f"attempt {case.in_flight.number} is still in flight for this invoice",
            inputs=(*base, ("in_flight", case.in_flight.id)),
        )
    if case.attempts_made >= limits.max_attempts_per_case:
        return Verdict(
            False,
            "guardrail.case_maximum",
            f"{case.attempts_made} attempts made, the per-case maximum is "
            f"{limits.max_attempts_per_case}",
            inputs=(*base, ("attempts_made", str(case.attempts_made))),
        )
    if case.not_before is not None and at < case.not_before:
        return Verdict(
            False,
            "guardrail.advice_delay",
            f"the issuer's advice code {case.decline.advice_code} asks to wait until "
            f"{case.not_before.isoformat()}",
            not_before=case.not_before,
            inputs=(*base, ("advice_code", case.decline.advice_code or "")),
        )
    card_wait = ledger.wait_until(credential)
    if card_wait is not None and at < card_wait:
        return Verdict(
            False,
            "guardrail.advice_delay",
            f"an issuer's advice code on this card (another invoice) asks to wait until "
            f"{card_wait.isoformat()}",
            not_before=card_wait,
            inputs=(*base, ("wait_until", card_wait.isoformat())),
        )
    for name, cap, window in limits.caps(brand):
        times = ledger.counted_between(credential, at - window, at)
        if len(times) >= cap:
            # Allowed again once enough of the oldest attempts leave the rolling window.
            free_at = times[len(times) - cap] + window + timedelta(seconds=1)
            return Verdict(
                False,
                "guardrail.network_cap",
                f"{name}: {len(times)} attempts on this credential in the last {window.days}d, "
                f"the cap is {cap}",
                not_before=free_at,
                inputs=(*base, ("count", str(len(times))), ("cap", str(cap))),
            )
    return Verdict(True, "guardrail.pass", "no guardrail objects", inputs=base)
