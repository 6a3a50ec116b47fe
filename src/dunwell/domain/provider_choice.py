"""Which provider charges the next attempt of a case: the routing rules (issue 4 item 6).

- An attempt whose outcome is unknown (errored after its request was sent) goes back to the
  same provider under the same idempotency key: only that provider can say whether it
  charged, and sending it elsewhere could charge twice.
- Otherwise the case's provider (who charged last, or reported the failure) charges, unless
  the lane says another acquirer may do better: `provider_error` (the provider itself failed)
  and `retry_soon` (a "try again" answer, which may come from the acquiring side: its
  connection to the network, its risk screen). Then the next provider of the routing table
  that can charge the credential goes first. `retry_after_funds` stays: the issuer's answer
  about the cardholder's money is the same whichever acquirer asks.
- A paused provider (open circuit) is skipped; when every candidate is paused the attempt
  waits for the earliest end of a pause. Nothing is sent, so nothing is spent.
Other providers are candidates only for credentials they can charge (a network token or a
vaulted copy, by brand and region; `Routing.eligible`).
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime

from dunwell.domain.case import AttemptStatus, RecoveryCase
from dunwell.domain.decision import Context, Explanation
from dunwell.domain.lanes import Lane
from dunwell.domain.records import direct_init

REROUTE_LANES = frozenset({Lane.PROVIDER_ERROR, Lane.RETRY_SOON})


@direct_init
@dataclass(frozen=True, slots=True)
class ProviderChoice:
    provider: str | None  # None: no candidate can charge at this time
    not_before: datetime | None  # with None: the earliest time one is back
    explanation: Explanation


def choose_provider(case: RecoveryCase, ctx: Context, at: datetime) -> ProviderChoice:
    home = case.decline.provider
    last = case.attempts[-1] if case.attempts else None
    if (
        last is not None
        and last.status is AttemptStatus.ERRORED
        and last.sent
        and last.payment_method_token == case.payment_method.token
    ):
        until = ctx.paused_until(last.provider, at)
        pinned = (("provider", last.provider), ("attempt", last.id))
        if until is not None:
            return ProviderChoice(
                None,
                until,
                Explanation(
                    "routing.unknown_outcome_paused",
                    f"attempt {last.number} has an unknown outcome at {last.provider}, which is "
                    f"paused until {until.isoformat()}: only it can answer, so the re-send waits",
                    (*pinned, ("paused_until", until.isoformat())),
                ),
            )
        return ProviderChoice(
            last.provider,
            None,
            Explanation(
                "routing.unknown_outcome",
                f"attempt {last.number} has an unknown outcome: re-sent to {last.provider} "
                "under the same idempotency key",
                pinned,
            ),
        )
    others = tuple(
        p for p in ctx.routing.eligible(case.payment_method, case.customer.country) if p != home
    )
    reroute = case.lane in REROUTE_LANES and bool(others)
    if reroute:
        # Round the table from the provider that failed, so two providers alternate.
        table = ctx.routing.eligible(case.payment_method, case.customer.country)
        start = table.index(home) + 1 if home in table else 0
        rotated = tuple(p for p in (*table[start:], *table[:start]) if p != home)
        candidates = (*rotated, home)
    else:
        candidates = (home, *others)
    paused = [(p, u) for p in candidates if (u := ctx.paused_until(p, at)) is not None]
    inputs: tuple[tuple[str, str], ...] = (
        ("home", home),
        ("lane", case.lane.value),
        ("candidates", ",".join(candidates)),
        ("paused", ",".join(f"{p}<{u.isoformat()}" for p, u in paused)),
    )
    skipped = {p for p, _ in paused}
    chosen = next((p for p in candidates if p not in skipped), None)
    if chosen is None:
        until = min(u for _, u in paused)
        return ProviderChoice(
            None,
            until,
            Explanation(
                "routing.all_paused",
                f"every provider that can charge this credential is paused; the attempt waits "
                f"until {until.isoformat()}, nothing is spent",
                inputs,
            ),
        )
    if chosen == home:
        rule, text = "routing.home", f"{home} charges (the case's provider)"
        if reroute:
            text += "; no other provider of the routing table is available"
    elif chosen == candidates[0] and reroute:
        rule = "routing.reroute"
        text = (
            f"lane {case.lane.value}: the next attempt goes to {chosen} instead of {home}, "
            "another acquirer may get another answer"
        )
    else:
        rule = "routing.backup"
        text = f"{', '.join(sorted(skipped))} paused (circuit open): {chosen} charges instead"
    return ProviderChoice(chosen, None, Explanation(rule, text, (("provider", chosen), *inputs)))
