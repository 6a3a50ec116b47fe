"""Training rows: past attempts as the core's `RetryFeatures`, with their outcome.

`row_features` calls the same `retry_features` the planner calls for each candidate time, so
the model is scored on exactly what it was trained on. `history_from_sim` turns what a
simulation's harness saw (its own log of charges and the engine's cases) into history rows:
only what a deployment sees, never a world's hidden state.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Iterable, Sequence
from datetime import datetime

from dunwell.domain.case import RecoveryCase
from dunwell.domain.declines import classify_decline
from dunwell.domain.events import DeclineReport
from dunwell.domain.scoring import RetryFeatures, retry_features
from dunwell.scoring.history import HistoryRow, case_end
from dunwell.sim.log import Entry, Kind, Outcome


def row_features(
    row: HistoryRow, last_try_at: datetime | None = None, declined_at: Sequence[datetime] = ()
) -> RetryFeatures:
    """The features of one past attempt; `last_try_at` is the previous decline on the card
    (None: the failure that opened the case) and `declined_at` all of them, as
    `history_features` finds them."""
    return retry_features(
        lane=row.lane,
        code=row.decline_code,
        amount_minor=row.amount_minor,
        attempt_number=row.attempt_number,
        failed_at=row.first_failed_at,
        at=row.attempted_at,
        timezone=row.timezone or None,
        brand=row.card_brand or None,
        country=row.country or None,
        segment=row.segment or None,
        last_try_at=last_try_at,
        declined_at=declined_at,
    )


def history_features(rows: Sequence[HistoryRow]) -> list[RetryFeatures]:
    """Features of every row, in order, each knowing its case's earlier attempts: the
    earlier rows of the same case (all earlier attempts in a case were declines)."""
    previous: dict[str, list[datetime]] = defaultdict(list)
    earlier: dict[int, tuple[datetime, ...]] = {}
    for index in sorted(range(len(rows)), key=lambda i: (rows[i].case_id, rows[i].attempted_at)):
        row = rows[index]
        earlier[index] = tuple(previous[row.case_id])
        previous[row.case_id].append(row.attempted_at)
    return [
        row_features(row, earlier[i][-1] if earlier[i] else None, earlier[i])
        for i, row in enumerate(rows)
    ]


def history_from_sim(log: Sequence[Entry], cases: Iterable[RecoveryCase]) -> list[HistoryRow]:
    """One row per charge that reached the networks on the card that first failed.

    Charges on a new card (after the customer updated it) are left out: they are retried at
    once by the rules, whatever the model says, and would teach it that a new card passes."""
    by_invoice = {case.invoice_id: case for case in cases}
    first: dict[str, Entry] = {}
    charges: dict[str, list[Entry]] = defaultdict(list)
    for entry in log:
        if entry.invoice_id is None:
            continue
        if entry.kind is Kind.INITIAL_FAILURE:
            first.setdefault(entry.invoice_id, entry)
        elif entry.kind is Kind.CHARGE and entry.outcome is not Outcome.ERROR:
            charges[entry.invoice_id].append(entry)
    rows: list[HistoryRow] = []
    for invoice, opening in first.items():
        case = by_invoice.get(invoice)
        if case is None:
            continue
        last = opening
        ending, closed_at = case_end(case)
        for number, charge in enumerate(sorted(charges[invoice], key=lambda e: e.at), start=1):
            if charge.credential == opening.credential:
                report = DeclineReport(
                    last.code, last.network_code, last.advice, provider=case.decline.provider
                )
                rows.append(
                    HistoryRow(
                        case_id=case.id,
                        first_failed_at=opening.at,
                        attempted_at=charge.at,
                        attempt_number=number,
                        outcome=str(charge.outcome),
                        amount_minor=case.amount.amount_minor,
                        currency=case.amount.currency,
                        decline_code=last.code or "",
                        lane=classify_decline(report, charge.brand).lane.value,
                        provider=case.decline.provider,
                        card_brand=charge.brand or "",
                        country=case.customer.country or "",
                        timezone=case.customer.timezone or "",
                        segment=case.customer.segment or "",
                        case_outcome=ending,
                        case_closed_at=closed_at,
                    )
                )
            if charge.outcome is Outcome.DECLINED:
                last = charge
    return rows
