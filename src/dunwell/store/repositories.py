"""Repositories: the only code that reads and writes rows; they speak domain values."""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime, timedelta
from typing import Any

from sqlalchemy import select, update
from sqlalchemy.orm import Session

from dunwell.domain.case import PlannedAction, RecoveryCase
from dunwell.domain.ledger import LEDGER_HORIZON, AttemptLedger, LedgerEntry
from dunwell.store.codec import case_from_dict, case_to_dict
from dunwell.store.tables import (
    ActionRow,
    AuditEntry,
    CaseRow,
    DeadLetter,
    EventRow,
    LedgerRow,
    PaidInvoice,
    PolicyAssignment,
    Tenant,
)


class CaseRepository:
    def __init__(self, session: Session) -> None:
        self.session = session
        self._rows: dict[str, CaseRow] = {}

    def get(self, tenant_id: str, case_id: str, *, lock: bool = False) -> RecoveryCase | None:
        row = self.session.get(CaseRow, case_id, with_for_update=lock or None)
        if row is None or row.tenant_id != tenant_id:
            return None
        return self._load(row)

    def by_invoice(
        self, tenant_id: str, invoice_id: str, *, lock: bool = False
    ) -> RecoveryCase | None:
        query = select(CaseRow).where(
            CaseRow.tenant_id == tenant_id, CaseRow.invoice_id == invoice_id
        )
        # FOR UPDATE on PostgreSQL: writers of one case queue up instead of failing on the
        # version check (SQLite's BEGIN IMMEDIATE already serializes every writer).
        row = self.session.scalars(query.with_for_update() if lock else query).one_or_none()
        return None if row is None else self._load(row)

    def open_by(
        self,
        tenant_id: str,
        *,
        customer_id: str | None = None,
        subscription_id: str | None = None,
        lock: bool = False,
    ) -> list[RecoveryCase]:
        query = select(CaseRow).where(CaseRow.tenant_id == tenant_id, CaseRow.status == "open")
        if customer_id is not None:
            query = query.where(CaseRow.customer_id == customer_id)
        if subscription_id is not None:
            query = query.where(CaseRow.subscription_id == subscription_id)
        query = query.order_by(CaseRow.opened_at, CaseRow.id)
        return [
            self._load(row)
            for row in self.session.scalars(query.with_for_update() if lock else query)
        ]

    def _load(self, row: CaseRow) -> RecoveryCase:
        self._rows[row.id] = row
        return case_from_dict(row.state)

    def save(self, case: RecoveryCase, now: datetime) -> None:
        """Insert or update; the version column makes a concurrent writer fail, not overwrite."""
        # Only a row this unit of work loaded is updated; any other save is an insert, so a
        # case opened concurrently elsewhere fails the insert instead of being overwritten.
        row = self._rows.get(case.id)
        next_action = case.next_action
        columns: dict[str, Any] = dict(
            tenant_id=case.tenant_id,
            invoice_id=case.invoice_id,
            customer_id=case.customer.id,
            subscription_id=case.subscription.id,
            status=case.status.value,
            stage=case.stage.value if case.stage else None,
            lane=case.lane.value,
            policy_name=case.policy_name,
            amount_minor=case.amount.amount_minor,
            currency=case.amount.currency,
            opened_at=case.opened_at,
            closed_at=case.closed_at,
            next_action_at=next_action.due_at if next_action else None,
            state=case_to_dict(case),
            updated_at=now,
        )
        if row is None:
            row = CaseRow(id=case.id, **columns)
            self.session.add(row)
            self._rows[case.id] = row
        else:
            for name, value in columns.items():
                setattr(row, name, value)

    def list(
        self,
        tenant_id: str,
        *,
        status: str | None = None,
        stage: str | None = None,
        lane: str | None = None,
        customer_id: str | None = None,
        limit: int = 100,
        offset: int = 0,
    ) -> list[RecoveryCase]:
        query = select(CaseRow).where(CaseRow.tenant_id == tenant_id)
        for column, value in (
            (CaseRow.status, status),
            (CaseRow.stage, stage),
            (CaseRow.lane, lane),
            (CaseRow.customer_id, customer_id),
        ):
            if value is not None:
                query = query.where(column == value)
        query = query.order_by(CaseRow.opened_at.desc(), CaseRow.id).limit(limit).offset(offset)
        return [case_from_dict(row.state) for row in self.session.scalars(query)]


class ActionRepository:
    def __init__(self, session: Session) -> None:
        self.session = session

    def sync(
        self, case: RecoveryCase, now: datetime
    ) -> list[tuple[str, PlannedAction | ActionRow]]:
        """Make the scheduled rows of a case match its plan.

        Returns what changed, as (scheduled | rescheduled | canceled, action) for the audit.
        """
        rows = {
            row.key: row
            for row in self.session.scalars(
                select(ActionRow).where(
                    ActionRow.case_id == case.id, ActionRow.status == "scheduled"
                )
            )
        }
        wanted = {p.key: p for p in case.plan}
        changes: list[tuple[str, PlannedAction | ActionRow]] = []
        for key, row in rows.items():
            if key not in wanted:
                row.status, row.updated_at = "canceled", now
                changes.append(("canceled", row))
        for key, planned in wanted.items():
            row = rows.get(key)
            if row is None:
                self.session.add(self._row(case, planned, now))
                changes.append(("scheduled", planned))
            elif (row.due_at, row.reason) != (planned.due_at, planned.reason):
                row.due_at, row.rule, row.reason = planned.due_at, planned.rule, planned.reason
                row.updated_at = now
                changes.append(("rescheduled", planned))
        return changes

    @staticmethod
    def _row(case: RecoveryCase, planned: PlannedAction, now: datetime) -> ActionRow:
        return ActionRow(
            tenant_id=case.tenant_id,
            case_id=case.id,
            key=planned.key,
            type=planned.type.value,
            due_at=planned.due_at,
            status="scheduled",
            rule=planned.rule,
            reason=planned.reason,
            params=dict(planned.params),
            effects=[],
            created_at=now,
            updated_at=now,
        )

    def add_effects(
        self, tenant_id: str, case_id: str, key: str, effects: list[dict[str, Any]], now: datetime
    ) -> None:
        """Effects decided outside a due action (an escalation, a reinstatement): an outbox row."""
        self.session.add(
            ActionRow(
                tenant_id=tenant_id,
                case_id=case_id,
                key=key,
                type="effect",
                due_at=now,
                status="running",
                rule="outbox",
                reason="carry out the decision's effects",
                params={},
                effects=effects,
                created_at=now,
                updated_at=now,
            )
        )

    def due(self, now: datetime, limit: int) -> Sequence[ActionRow]:
        return self.session.scalars(
            select(ActionRow)
            .where(ActionRow.status == "scheduled", ActionRow.due_at <= now)
            .order_by(ActionRow.due_at, ActionRow.id)
            .limit(limit)
        ).all()

    def running(self, limit: int) -> Sequence[ActionRow]:
        return self.session.scalars(
            select(ActionRow)
            .where(ActionRow.status == "running")
            .order_by(ActionRow.id)
            .limit(limit)
        ).all()

    def get(self, action_id: int) -> ActionRow | None:
        return self.session.get(ActionRow, action_id)

    def next_due_at(self) -> datetime | None:
        return self.session.scalars(
            select(ActionRow.due_at)
            .where(ActionRow.status == "scheduled")
            .order_by(ActionRow.due_at)
            .limit(1)
        ).first()

    def for_case(self, case_id: str) -> Sequence[ActionRow]:
        return self.session.scalars(
            select(ActionRow).where(ActionRow.case_id == case_id).order_by(ActionRow.id)
        ).all()


class LedgerRepository:
    def __init__(self, session: Session) -> None:
        self.session = session

    def load(self, tenant_id: str, credential_keys: set[str], now: datetime) -> AttemptLedger:
        if not credential_keys:
            return AttemptLedger()
        # A little more than the 30-day window: entries dated up to a day ahead (clock skew)
        # and the window's edge both stay visible.
        since = now - LEDGER_HORIZON - timedelta(days=1)
        rows = self.session.scalars(
            select(LedgerRow).where(
                LedgerRow.tenant_id == tenant_id,
                LedgerRow.credential_key.in_(sorted(credential_keys)),
                # Never-retry blocks are kept whatever their age.
                (LedgerRow.attempted_at > since) | LedgerRow.never_retry.is_(True),
            )
        )
        return AttemptLedger(
            tuple(
                LedgerEntry(
                    r.credential_key,
                    r.attempted_at,
                    r.attempt_id,
                    r.counted,
                    r.never_retry,
                    r.wait_until,
                )
                for r in rows
            )
        )

    def add(self, tenant_id: str, case_id: str, entry: LedgerEntry) -> None:
        self.session.add(
            LedgerRow(
                tenant_id=tenant_id,
                credential_key=entry.credential_key,
                attempted_at=entry.attempted_at,
                attempt_id=entry.attempt_id,
                case_id=case_id,
                counted=entry.counted,
                never_retry=entry.never_retry,
                wait_until=entry.wait_until,
            )
        )

    def uncount(self, attempt_id: str) -> None:
        self.session.execute(
            update(LedgerRow).where(LedgerRow.attempt_id == attempt_id).values(counted=False)
        )


class AuditRepository:
    def __init__(self, session: Session) -> None:
        self.session = session

    def add(
        self,
        tenant_id: str,
        case_id: str | None,
        at: datetime,
        kind: str,
        rule: str,
        text: str,
        data: dict[str, Any],
        event_id: str | None = None,
    ) -> None:
        self.session.add(
            AuditEntry(
                tenant_id=tenant_id,
                case_id=case_id,
                at=at,
                kind=kind,
                event_id=event_id,
                rule=rule,
                text=text,
                data=data,
            )
        )

    def for_case(self, case_id: str) -> Sequence[AuditEntry]:
        return self.session.scalars(
            select(AuditEntry).where(AuditEntry.case_id == case_id).order_by(AuditEntry.id)
        ).all()


class InvoiceRepository:
    def __init__(self, session: Session) -> None:
        self.session = session

    def paid_at(self, tenant_id: str, invoice_id: str) -> datetime | None:
        row = self.session.get(PaidInvoice, (tenant_id, invoice_id))
        return None if row is None else row.paid_at

    def mark_paid(self, tenant_id: str, invoice_id: str, at: datetime, event_id: str) -> None:
        if self.session.get(PaidInvoice, (tenant_id, invoice_id)) is None:
            self.session.add(
                PaidInvoice(
                    tenant_id=tenant_id, invoice_id=invoice_id, paid_at=at, event_id=event_id
                )
            )


class EventRepository:
    def __init__(self, session: Session) -> None:
        self.session = session

    def find(self, tenant_id: str, event_id: str) -> EventRow | None:
        return self.session.scalars(
            select(EventRow).where(EventRow.tenant_id == tenant_id, EventRow.event_id == event_id)
        ).one_or_none()


class TenantRepository:
    def __init__(self, session: Session) -> None:
        self.session = session

    def by_key_hash(self, key_hash: str) -> Tenant | None:
        return self.session.scalars(
            select(Tenant).where(Tenant.api_key_hash == key_hash)
        ).one_or_none()

    def get(self, tenant_id: str) -> Tenant | None:
        return self.session.get(Tenant, tenant_id)

    def policy_name(self, tenant_id: str, storefront: str | None) -> str | None:
        rows = {
            row.storefront: row.policy_name
            for row in self.session.scalars(
                select(PolicyAssignment).where(PolicyAssignment.tenant_id == tenant_id)
            )
        }
        return rows.get(storefront or "", rows.get(""))


class DeadLetterRepository:
    def __init__(self, session: Session) -> None:
        self.session = session

    def add(self, row: DeadLetter) -> None:
        self.session.add(row)

    def get(self, dead_letter_id: str) -> DeadLetter | None:
        return self.session.get(DeadLetter, dead_letter_id)

    def list(
        self, tenant_id: str | None, status: str | None = None, limit: int = 100
    ) -> Sequence[DeadLetter]:
        query = select(DeadLetter)
        if tenant_id is not None:
            query = query.where(DeadLetter.tenant_id == tenant_id)
        if status is not None:
            query = query.where(DeadLetter.status == status)
        return self.session.scalars(
            query.order_by(DeadLetter.received_at.desc()).limit(limit)
        ).all()
