"""Risk rules: how a customer's history limits a case's charges (policy `risk`).

- chronic: a customer with many earlier recovery cases gets a short retry ladder and is
  asked to fix the payment instead; a one-time failer is unaffected.
- card_testing: several cards declined in a short time, a burst of card updates followed by
  declines, or a fraud decline or dispute on an earlier case stop the case's charges for good
  and hand it to a human.

Each rule returns the Explanation it fired with (its inputs included), or None.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Sequence
from datetime import datetime

from dunwell.domain.decision import Explanation
from dunwell.domain.durations import format_duration
from dunwell.domain.history import DECLINES, FRAUD, CustomerHistory, CustomerSignal, SignalKind
from dunwell.domain.policy import CardsDeclined, CardTesting, CardUpdates, Chronic, PriorFraud

_STOP = "charges stop and a human reviews the case"


def chronic_cap(
    history: CustomerHistory, rule: Chronic | None, now: datetime
) -> tuple[int, Explanation] | None:
    """The retry cap for a chronic failer, with why; None for everyone else."""
    if rule is None:
        return None
    recent = [c for c in history.past_cases if c.opened_at > now - rule.lookback]
    counted = [c for c in recent if c.outcome not in rule.ignore]
    if len(counted) < rule.min_cases:
        return None
    outcomes = Counter(c.outcome for c in counted)
    breakdown = ", ".join(f"{n} {o.replace('_', ' ')}" for o, n in sorted(outcomes.items()))
    text = (
        f"customer had {len(counted)} failed renewals in {format_duration(rule.lookback)} "
        f"({breakdown}): retries capped at {rule.max_retries}"
    )
    if len(recent) > len(counted):
        text += (
            f"; {len(recent) - len(counted)} more not counted ({', '.join(sorted(rule.ignore))})"
        )
    if rule.notice is not None:
        text += f"; the customer is asked to fix the payment ({rule.notice.template})"
    inputs = (
        ("lookback", format_duration(rule.lookback)),
        ("earlier_cases", str(len(counted))),
        ("min_cases", str(rule.min_cases)),
        ("max_retries", str(rule.max_retries)),
        *((f"outcome.{o}", str(n)) for o, n in sorted(outcomes.items())),
    )
    return rule.max_retries, Explanation("risk.chronic", text, inputs)


def card_testing(
    signals: Sequence[CustomerSignal], case_id: str, rules: CardTesting, now: datetime
) -> Explanation | None:
    """The first card-testing or fraud rule the customer's signals trip, or None."""
    return (
        _cards_declined(signals, rules.cards_declined, now)
        or _card_updates(signals, rules.card_updates, now)
        or _prior_fraud(signals, case_id, rules.prior_fraud, now)
    )


def _cards_declined(
    signals: Sequence[CustomerSignal], rule: CardsDeclined | None, now: datetime
) -> Explanation | None:
    if rule is None:
        return None
    cards = sorted(
        {s.credential_key for s in signals if s.kind in DECLINES and s.at > now - rule.within}
    )
    if len(cards) < rule.min_cards:
        return None
    return Explanation(
        "risk.card_testing.cards_declined",
        f"{len(cards)} different cards of this customer were declined within "
        f"{format_duration(rule.within)} (the policy stops at {rule.min_cards}): {_STOP}",
        (
            ("within", format_duration(rule.within)),
            ("cards", str(len(cards))),
            ("min_cards", str(rule.min_cards)),
            ("credentials", ",".join(cards)),
        ),
    )


def _card_updates(
    signals: Sequence[CustomerSignal], rule: CardUpdates | None, now: datetime
) -> Explanation | None:
    if rule is None:
        return None
    # By event id: one card update reaches every open case of the customer.
    updates = {
        s.event_id: s.at
        for s in signals
        if s.kind is SignalKind.CARD_UPDATE and s.at > now - rule.within
    }
    if len(updates) < rule.min_updates:
        return None
    first = min(updates.values())
    declines = {s.event_id for s in signals if s.kind in DECLINES and s.at > first}
    if len(declines) < rule.min_declines:
        return None
    return Explanation(
        "risk.card_testing.card_updates",
        f"{len(updates)} card updates within {format_duration(rule.within)}, followed by "
        f"{len(declines)} declines (the policy stops at {rule.min_updates} updates and "
        f"{rule.min_declines} declines): {_STOP}",
        (
            ("within", format_duration(rule.within)),
            ("card_updates", str(len(updates))),
            ("declines_after", str(len(declines))),
            ("min_updates", str(rule.min_updates)),
            ("min_declines", str(rule.min_declines)),
            ("first_update_at", first.isoformat()),
        ),
    )


def _prior_fraud(
    signals: Sequence[CustomerSignal], case_id: str, rule: PriorFraud | None, now: datetime
) -> Explanation | None:
    if rule is None:
        return None
    earlier = [
        s
        for s in signals
        if s.kind in FRAUD and s.case_id != case_id and s.at > now - rule.lookback
    ]
    if not earlier:
        return None
    last = max(earlier, key=lambda s: s.at)
    what = "a fraud decline" if last.kind is SignalKind.FRAUD_DECLINE else "a dispute"
    return Explanation(
        "risk.card_testing.prior_fraud",
        f"an earlier case of this customer ({last.case_id}) had {what} on "
        f"{last.at.date().isoformat()}, within {format_duration(rule.lookback)}: {_STOP}",
        (
            ("lookback", format_duration(rule.lookback)),
            ("case_id", last.case_id),
            ("signal", last.kind.value),
            ("at", last.at.isoformat()),
        ),
    )
