"""The harness's own guardrail check: the card networks' rules, read off the world's log.

Written apart from `dunwell.domain.guardrails` on purpose (it imports nothing from the
engine): a bug there must show up here, not be repeated. Per credential, the initial
failure and every charge that reached the network count as attempts:
- Visa and every brand but Mastercard: at most 15 in any rolling 30 days;
- Mastercard: at most 10 in any 24 hours and 35 in any 30 days;
- no charge on a credential after a never-retry answer (Mastercard advice 03/21, Visa
  category 1);
- no charge before a Mastercard advice 24-30 delay has passed since that decline;
- no second capture for one invoice, and no new charge once it is paid (by invoice; the
  customer stands in for a log that does not name one). Sending one attempt
  again (its idempotency key) is how an unknown outcome is resolved: the provider answers
  the first request again, which is neither a new charge nor a duplicate.
A charge the provider failed on (it never reached the network) is not counted for the caps,
but still breaks the never-retry and delay rules: dunwell should not have sent it at all.
"""

from __future__ import annotations

from bisect import bisect_right
from collections import Counter, defaultdict
from collections.abc import Iterable
from datetime import datetime, timedelta

from dunwell.sim.log import Entry, Kind, Outcome

NEVER_RETRY_CODES = frozenset(
    {
        "do_not_try_again",
        "fraudulent",
        "lost_card",
        "pickup_card",
        "stolen_card",
        "revocation_of_authorization",
        "revocation_of_all_authorizations",
    }
)
NEVER_RETRY_ADVICE = frozenset({"03", "21"})
# Visa decline category 1 response codes: "the issuer will never approve".
VISA_NEVER_RETRY_NETWORK_CODES = frozenset(
    {"04", "07", "12", "14", "15", "41", "43", "46", "57", "R0", "R1", "R3"}
)
ADVICE_DELAY = {
    "24": timedelta(hours=1),
    "25": timedelta(hours=24),
    "26": timedelta(days=2),
    "27": timedelta(days=4),
    "28": timedelta(days=6),
    "29": timedelta(days=8),
    "30": timedelta(days=10),
}
_DAY, _MONTH = timedelta(days=1), timedelta(days=30)

KINDS = (
    "visa_30d_cap",
    "mastercard_24h_cap",
    "mastercard_30d_cap",
    "charge_after_never_retry",
    "charge_before_advice_delay",
    "duplicate_charge",
    "charge_after_paid",
)


def count_violations(log: Iterable[Entry]) -> dict[str, int]:
    """Violations by kind (every kind present, zero or not), in the log's own order."""
    entries = list(log)
    found: Counter[str] = Counter({kind: 0 for kind in KINDS})
    by_credential: dict[str, list[Entry]] = defaultdict(list)
    for entry in entries:
        if entry.credential is not None and entry.kind in (Kind.INITIAL_FAILURE, Kind.CHARGE):
            by_credential[entry.credential].append(entry)
    for credential in sorted(by_credential):
        attempts = by_credential[credential]
        _caps(attempts, found)
        _answers(attempts, found)
    _duplicates_and_paid(entries, found)
    return {kind: found[kind] for kind in KINDS}


def _caps(attempts: list[Entry], found: Counter[str]) -> None:
    counted = sorted(e.at for e in attempts if e.reached_network)
    mastercard = (attempts[0].brand or "").lower() == "mastercard"
    caps = (
        (("mastercard_24h_cap", 10, _DAY), ("mastercard_30d_cap", 35, _MONTH))
        if mastercard
        else (("visa_30d_cap", 15, _MONTH),)
    )
    for kind, cap, window in caps:
        for i, at in enumerate(counted):
            # Attempts in the rolling window (at - window, at], this one included.
            inside = i + 1 - bisect_right(counted, at - window, 0, i + 1)
            if inside > cap:
                found[kind] += 1


def _answers(attempts: list[Entry], found: Counter[str]) -> None:
    """Walk one credential's attempts in order, remembering what the network answered."""
    never = False
    not_before: datetime | None = None
    for entry in attempts:
        if entry.kind is Kind.CHARGE:
            if never:
                found["charge_after_never_retry"] += 1
            if not_before is not None and entry.at < not_before:
                found["charge_before_advice_delay"] += 1
        if entry.outcome is not Outcome.DECLINED:
            continue
        visa_never = (entry.brand or "").lower() == "visa" and (
            entry.network_code in VISA_NEVER_RETRY_NETWORK_CODES
        )
        if entry.code in NEVER_RETRY_CODES or entry.advice in NEVER_RETRY_ADVICE or visa_never:
            never = True
        delay = ADVICE_DELAY.get(entry.advice or "")
        if delay is not None:
            until = entry.at + delay
            not_before = until if not_before is None else max(not_before, until)


def _duplicates_and_paid(entries: list[Entry], found: Counter[str]) -> None:
    answered: set[str] = set()  # attempt ids the provider gave an outcome for
    captured: defaultdict[str, set[str]] = defaultdict(set)
    paid: set[str] = set()
    for entry in entries:
        invoice = entry.invoice_id or entry.customer_id  # what one capture pays
        if entry.kind is Kind.CHARGE:
            replay = entry.attempt_id is not None and entry.attempt_id in answered
            approved_again = entry.outcome is Outcome.APPROVED  # counted as a duplicate below
            if not replay and invoice in paid and not approved_again:
                found["charge_after_paid"] += 1
            if entry.outcome is Outcome.APPROVED and entry.attempt_id is not None:
                captured[invoice].add(entry.attempt_id)
            if entry.outcome is not Outcome.ERROR and entry.attempt_id is not None:
                answered.add(entry.attempt_id)
        approved = entry.kind is Kind.CHARGE and entry.outcome is Outcome.APPROVED
        if entry.kind is Kind.PAID_OUT_OF_BAND:
            captured[invoice].add("(paid out of band)")
        if approved or entry.kind is Kind.PAID_OUT_OF_BAND:
            paid.add(invoice)
    found["duplicate_charge"] += sum(len(ids) - 1 for ids in captured.values())
