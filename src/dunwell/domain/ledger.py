"""The per-credential attempt ledger the network caps are counted on.

The card networks count attempts per payment credential (the card), across every
subscription and provider of the merchant, so the ledger is keyed by credential, not by case.
The shell loads the entries of the last 30 days for the credential in question.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timedelta

from dunwell.domain.records import direct_init, evolve


@direct_init
@dataclass(frozen=True, slots=True)
class LedgerEntry:
    credential_key: str
    attempted_at: datetime
    attempt_id: str | None = None  # None: an attempt we only heard of (the first failure)
    counted: bool = True  # technical failures (provider errors) do not count
    # A never-retry answer (or a dispute) on this credential: it blocks every case charging
    # the same card, not only the one that saw the decline. Kept beyond the 30-day window.
    never_retry: bool = False
    # A Mastercard advice code 24-30 on this credential: no attempt on the card before this.
    wait_until: datetime | None = None


@direct_init
@dataclass(frozen=True, slots=True)
class AttemptLedger:
    entries: tuple[LedgerEntry, ...] = ()

    def counted_between(
        self, credential_key: str, start: datetime, end: datetime
    ) -> list[datetime]:
        """Times of counted attempts on the credential in the half-open window (start, end]."""
        return sorted(
            e.attempted_at
            for e in self.entries
            if e.credential_key == credential_key and e.counted and start < e.attempted_at <= end
        )

    def block(self, credential_key: str) -> LedgerEntry | None:
        """The entry that blocks the credential for good, if any."""
        return next(
            (e for e in self.entries if e.credential_key == credential_key and e.never_retry),
            None,
        )

    def wait_until(self, credential_key: str) -> datetime | None:
        """The latest advice-code wait on the credential, from any case."""
        waits = [
            e.wait_until
            for e in self.entries
            if e.credential_key == credential_key and e.wait_until is not None
        ]
        return max(waits, default=None)

    def with_entry(self, entry: LedgerEntry) -> AttemptLedger:
        return AttemptLedger((*self.entries, entry))

    def uncount(self, attempt_id: str) -> AttemptLedger:
        return AttemptLedger(
            tuple(
                evolve(e, counted=False) if e.attempt_id == attempt_id else e for e in self.entries
            )
        )


LEDGER_HORIZON = timedelta(days=30)
