"""The unit of work: one transaction; every repository shares it. Commit or nothing."""

from __future__ import annotations

from collections.abc import Callable
from types import TracebackType

from sqlalchemy.orm import Session, sessionmaker

from dunwell.store.repositories import (
    ActionRepository,
    AuditRepository,
    CaseRepository,
    DeadLetterRepository,
    EventRepository,
    HistoryRepository,
    InvoiceRepository,
    LedgerRepository,
    TenantRepository,
)


class UnitOfWork:
    def __init__(self, sessions: sessionmaker[Session]) -> None:
        self._sessions = sessions

    def __enter__(self) -> UnitOfWork:
        self.session = self._sessions()
        self.cases = CaseRepository(self.session)
        self.actions = ActionRepository(self.session)
        self.ledger = LedgerRepository(self.session)
        self.history = HistoryRepository(self.session)
        self.audit = AuditRepository(self.session)
        self.invoices = InvoiceRepository(self.session)
        self.events = EventRepository(self.session)
        self.tenants = TenantRepository(self.session)
        self.deadletters = DeadLetterRepository(self.session)
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        if exc_type is not None:
            self.session.rollback()
        self.session.close()

    def commit(self) -> None:
        self.audit.flush()  # entries are batched until here (or until the trail is read)
        self.session.commit()

    def rollback(self) -> None:
        self.session.rollback()


# What the engine opens a unit of work with: `partial(UnitOfWork, sessions)`, or another
# store's with the same repositories (`store/memory.py`, the simulator's).
Units = Callable[[], UnitOfWork]
